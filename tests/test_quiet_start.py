"""A quiet start: the demo's commands print none of the libraries' start-up noise.

Each command runs in its own process, as `make demo` runs them, without
TF_CPP_MIN_LOG_LEVEL in the environment (the commands set their own), and the
embed job with two worker processes, which load TensorFlow and the base too.
"""
import os
import subprocess
import sys

from tests import media_fixtures as mf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOISE = (
    "Unable to register",  # TensorFlow's CUDA factories (cuDNN, cuFFT, cuBLAS)
    "Couldn't find python-snappy or google-crc32c",  # Beam's TFRecord CRC
    "Resource module is not available",  # Beam RunInference's memory probe
)


def _run(args, cwd):
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    said = done.stdout + done.stderr
    for noise in NOISE:
        assert noise not in said, f"{args[0]} {args[1]} printed {noise!r}:\n{said[-3000:]}"
    return done


def test_demo_commands_start_quietly(tmp_path):
    records, features, job = tmp_path / "records", tmp_path / "features", tmp_path / "job"
    done = _run([os.path.join(ROOT, "beam_jobs", "make_records.py"), "--runner=DirectRunner",
                 f"--output_dir={records}", "--demo_plays=12", "--num_frames=4",
                 "--frame_size=32"], tmp_path)
    assert "records: 12 plays written" in done.stdout  # the summary line stays
    done = _run([os.path.join(ROOT, "beam_jobs", "embed_records.py"), "--runner=DirectRunner",
                 f"--records_dir={records}", f"--output_dir={features}", "--weights=none",
                 "--cut_layer=block1_pool", "--direct_running_mode=multi_processing",
                 "--direct_num_workers=2"], tmp_path)
    assert "features: 12 plays embedded" in done.stdout
    _run(["-m", "trainer.task", f"--features_dir={features}", f"--job_dir={job}",
          "--strategy=default", "--epochs=1", "--rnn=gru", "--rnn_units=4", "--num_frames=4",
          "--batch_size=4"], ROOT)
    video = mf.write_h264(str(tmp_path / "play.mp4"), 8)
    done = _run(["-m", "trainer.predict", "--model", str(job), video, "--top_k", "1"], ROOT)
    assert video in done.stdout
