# Trainer image for Vertex AI custom jobs / GKE. GPU base by default; the CPU one works too:
#   docker build --build-arg BASE=python:3.11-slim -t playclips-trainer .
ARG BASE=tensorflow/tensorflow:2.16.2-gpu
FROM ${BASE}
WORKDIR /app
ENV TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
COPY setup.py ./
COPY schemas schemas
COPY media media
COPY beam_jobs beam_jobs
COPY trainer trainer
RUN pip install --no-cache-dir '.[gcp]'
ENTRYPOINT ["python", "-m", "trainer.task"]
