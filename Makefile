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

demo: records

benchmarks: $(STAMP)
	$(PY) benchmarks/records_job.py

clean:
	rm -rf runs .pytest_cache
