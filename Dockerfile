# Trainer image for Vertex AI custom jobs / GKE (the default target). GPU base by default; the CPU
# one works too:
#   docker build --build-arg BASE=python:3.11-slim --build-arg TENSORFLOW=tensorflow-cpu -t playclips-trainer .
# The same code as a Beam SDK worker image, for the records and embed jobs on Dataflow
# (--sdk_container_image), Flink or Spark (--environment_type=DOCKER):
#   docker build --build-arg BASE=python:3.11-slim --build-arg TENSORFLOW=tensorflow-cpu \
#       --target=beam-sdk -t playclips-beam .
ARG BASE=tensorflow/tensorflow:2.16.2-gpu
FROM ${BASE} AS app
WORKDIR /app
ENV TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1
COPY setup.py ./
COPY schemas schemas
COPY media media
COPY backbone backbone
COPY demo_data demo_data
COPY beam_jobs beam_jobs
COPY trainer trainer
# setup.py pins the CPU build (tensorflow-cpu); on the GPU base the CUDA build goes back in.
ARG TENSORFLOW=tensorflow
RUN pip install --no-cache-dir '.[gcp]' \
 && if [ "$TENSORFLOW" = tensorflow ]; then pip uninstall -y tensorflow-cpu \
    && pip install --no-cache-dir --no-deps --force-reinstall tensorflow==2.16.2; fi

# Beam's SDK worker boot program (the version setup.py pins, Python 3.11) on top of the app.
FROM app AS beam-sdk
COPY --from=apache/beam_python3.11_sdk:2.72.0 /opt/apache/beam /opt/apache/beam
ENTRYPOINT ["/opt/apache/beam/boot"]

FROM app AS trainer
ENTRYPOINT ["python", "-m", "trainer.task"]
