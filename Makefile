# playclips: `make demo` runs the whole demo, `make test` runs the tests.
# Both bootstrap a virtual environment (.venv) on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

DEMO_DATA := runs/demo/records
DEMO_JOB := runs/demo

.PHONY: venv test test-engines demo demo-timeline records benchmarks engine-jars clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The engines extra (pyspark, Flink's jars: ~580 MB) only for tests/test_engines.py (make test-engines).
ENGINES_STAMP := $(VENV)/.engines-installed
$(ENGINES_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[engines]'
	touch $(ENGINES_STAMP)

venv: $(STAMP)

# Two pytest workers (pytest-xdist): many tests wait on processes, Beam or I/O, so two keep both
# cores busy (docs/setup.md: 763 s on two workers on a quiet 2-core machine, 1,144 s on one).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests

# Flink and Spark on 127.0.0.1 (tests/test_engines.py): the engines extra, then Beam's job server
# jars from Maven Central (they skip, with Maven's answer, where Maven cannot serve them).
test-engines: $(ENGINES_STAMP)
	$(PY) -m pytest -q tests/test_engines.py

# Beam's Flink and Spark job server jars from Maven Central into .cache/jars/ (tests/test_engines.py
# fetches them itself when missing).
engine-jars: $(STAMP)
	$(PY) -m tests.engines fetch

records: $(STAMP)
	$(PY) beam_jobs/make_records.py --runner=DirectRunner --output_dir=$(DEMO_DATA) --overwrite

# The demo: 330 synthetic plays of 40 frames at 32 px -> the frozen VGG16 base (cut at
# block2_pool) run once per stored frame by the embed job -> the head (GRU 64 on 8 of the
# 40 frames, 60 epochs) trained from the cached features -> evaluation and export of the full model.
# No ImageNet weights offline, so the base is randomly initialized (--weights=none, seeded);
# with the Keras cache or a weights file, use --weights=imagenet or --weights=PATH.
DEMO_FEATURES := runs/demo/features
DEMO_RECORD_FLAGS := --frame_size=32 --demo_plays=330
DEMO_EMBED_FLAGS := --weights=none --cut_layer=block2_pool
DEMO_TRAIN_FLAGS := --num_frames=8 --trainable_from=none --rnn=gru --rnn_units=64 --epochs=60 \
	--batch_size=8 --learning_rate=3e-3

demo: $(STAMP)
	$(PY) beam_jobs/make_records.py --runner=DirectRunner --output_dir=$(DEMO_DATA) --overwrite $(DEMO_RECORD_FLAGS)
	$(PY) beam_jobs/embed_records.py --runner=DirectRunner --records_dir=$(DEMO_DATA) \
		--output_dir=$(DEMO_FEATURES) --overwrite $(DEMO_EMBED_FLAGS)
	$(PY) -m trainer.task --strategy=mirrored --cpu_replicas=2 --features_dir=$(DEMO_FEATURES) \
		--job_dir=$(DEMO_JOB)/job $(DEMO_TRAIN_FLAGS)

# The demo as a play detector: the same 330 plays cut from 33 demo game videos (dead-ball time
# between them), one no_play clip per play from the time no play covers (a quarter hard negatives)
# and 2 shifted copies of each training play -> the same embed and head -> the timeline over a
# demo game of plays the model never saw (seed 7), scored against its true plays.
GAMES_JOB := runs/games
GAMES_RECORD_FLAGS := --frame_size=32 --demo_game_videos=33 --no_play_clips=1x --shifted_plays=2

demo-timeline: $(STAMP)
	$(PY) beam_jobs/make_records.py --runner=DirectRunner --output_dir=$(GAMES_JOB)/records \
		--overwrite $(GAMES_RECORD_FLAGS)
	$(PY) beam_jobs/embed_records.py --runner=DirectRunner --records_dir=$(GAMES_JOB)/records \
		--output_dir=$(GAMES_JOB)/features --overwrite $(DEMO_EMBED_FLAGS)
	$(PY) -m trainer.task --strategy=mirrored --cpu_replicas=2 --features_dir=$(GAMES_JOB)/features \
		--job_dir=$(GAMES_JOB)/job $(DEMO_TRAIN_FLAGS)
	$(PY) beam_jobs/make_records.py --runner=DirectRunner --output_dir=$(GAMES_JOB)/unseen \
		--overwrite --frame_size=32 --demo_game_videos=1 --demo_seed=7
	$(PY) -m trainer.timeline --model=$(GAMES_JOB)/job \
		$(GAMES_JOB)/unseen/demo_games/demo-game-0000.mp4 \
		--plays=$(GAMES_JOB)/unseen/demo_games/plays.csv --output_dir=$(GAMES_JOB)/timeline

benchmarks: $(STAMP)
	$(PY) benchmarks/records_job.py
	$(PY) benchmarks/input_pipeline.py
	$(PY) benchmarks/feature_cache.py --preset=demo
	$(PY) benchmarks/feature_cache.py --preset=seed
	$(PY) benchmarks/game_video.py
	$(PY) benchmarks/data_service.py
	$(PY) benchmarks/predict_plays.py
	$(PY) benchmarks/timeline.py
	$(PY) benchmarks/compute_dtype.py
	$(PY) benchmarks/gpu_check.py

clean:
	rm -rf runs .pytest_cache
