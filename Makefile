# playclips: `make demo` runs the whole demo, `make test` runs the tests.
# Both bootstrap a virtual environment (.venv) on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

DEMO_DATA := runs/demo/records
DEMO_JOB := runs/demo

.PHONY: venv test demo records benchmarks clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

records: $(STAMP)
	$(PY) beam_jobs/make_records.py --runner=DirectRunner --output_dir=$(DEMO_DATA)

# Demo training settings: 64 px frames, 8 of the 40 stored frames, VGG16 cut at block2_pool.
# No ImageNet weights offline, so the demo uses a frozen, randomly initialized base
# (--weights=none); with the Keras cache or a weights file, use --weights=imagenet.
DEMO_TRAIN_FLAGS := --num_frames=8 --cut_layer=block2_pool --weights=none --trainable_from=none \
	--rnn=gru --rnn_units=64 --epochs=30 --batch_size=8 --learning_rate=3e-3

demo: $(STAMP)
	$(PY) beam_jobs/make_records.py --runner=DirectRunner --output_dir=$(DEMO_DATA) --frame_size=64 --demo_plays=660
	$(PY) -m trainer.task --strategy=mirrored --cpu_replicas=2 --data_dir=$(DEMO_DATA) \
		--job_dir=$(DEMO_JOB)/job $(DEMO_TRAIN_FLAGS)

benchmarks: $(STAMP)
	$(PY) benchmarks/records_job.py
	$(PY) benchmarks/input_pipeline.py

clean:
	rm -rf runs .pytest_cache
