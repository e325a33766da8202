"""trainer.predict: end to end from a frames folder / an mp4 through an exported tiny model."""

import json
import os
import subprocess
import sys

import av
import keras
import numpy as np
import pytest
from PIL import Image

from schemas.sampling import FrameSampling
from trainer.serving import export
from trainer import predict
from trainer.serving.predictor import Predictor

SIZE = 32
NUM_FRAMES = 4
RECORD_FRAMES = 8
LABELS = ["cut", "handoff", "isolation", "post_up"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_model():
    keras.utils.set_random_seed(0)
    clips = keras.Input((None, SIZE, SIZE, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255.0)(clips)
    x = keras.layers.TimeDistributed(keras.layers.Conv2D(4, 3, strides=4, activation="relu"))(x)
    x = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D())(x)
    x = keras.layers.LSTM(4)(x)
    return keras.Model(clips, keras.layers.Dense(len(LABELS), activation="softmax")(x))


def _frames(count, height=48, width=64, seed=0):
    rng = np.random.default_rng(seed)
    frames = np.zeros((count, height, width, 3), np.uint8)
    for t in range(count):
        frames[t, ..., 1] = 90
        x = int(t / max(count - 1, 1) * (width - 8))
        frames[t, 10:18, x:x + 8] = (255, 128, 0)
    return np.clip(frames + rng.integers(0, 20, frames.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("job"))
    export.export_model(_tiny_model(), path, labels=LABELS, image_size=SIZE,
                        num_frames=NUM_FRAMES, sampling=FrameSampling(num_frames=RECORD_FRAMES))
    return path


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("play_folder")
    for i, frame in enumerate(_frames(10)):
        Image.fromarray(frame).save(path / f"frame_{i:04d}.png")
    return str(path)


@pytest.fixture(scope="module")
def video_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("videos") / "play.mp4")
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for frame in _frames(12, seed=1):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _check_result(result, path, top_k):
    assert result["path"] == path
    assert len(result["top"]) == top_k
    probs = [t["probability"] for t in result["top"]]
    assert probs == sorted(probs, reverse=True)
    assert {t["label"] for t in result["top"]} <= set(LABELS)
    assert set(result["probabilities"]) == set(LABELS)
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    for top in result["top"]:
        assert result["probabilities"][top["label"]] == pytest.approx(top["probability"])


def test_predict_json_on_folder_and_video(job_dir, frames_dir, video_path, capsys):
    status = predict.run(["--model", job_dir, frames_dir, video_path, "--top_k", "2", "--json"])
    out = capsys.readouterr()
    assert status == 0, out.err
    results = json.loads(out.out)
    assert len(results) == 2
    _check_result(results[0], frames_dir, 2)
    _check_result(results[1], video_path, 2)


def test_predict_text_output_from_saved_model_dir(job_dir, frames_dir, capsys):
    saved_model_dir = os.path.join(job_dir, export.SAVED_MODEL_DIR)
    assert predict.run(["--model", saved_model_dir, frames_dir, "--compute_dtype=float32"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "the model computes in float32 (--compute_dtype=float32)"
    assert lines[1] == frames_dir
    assert len(lines) == 5  # the dtype, the path, then --top_k 3 (default) ranked lines
    for rank, line in enumerate(lines[2:], 1):
        number, label, probability = line.split()
        assert number == f"{rank}."
        assert label in LABELS
        assert 0.0 <= float(probability) <= 1.0


def test_predictor_matches_the_signature_on_the_sampled_frames(job_dir, frames_dir):
    predictor = Predictor(job_dir)
    jpegs = predictor.read(frames_dir)
    assert len(jpegs) == RECORD_FRAMES
    result = predictor.classify(frames_dir, top_k=len(LABELS))
    probs = predictor.classify_frames(jpegs)
    assert [result["probabilities"][l] for l in LABELS] == pytest.approx(probs)


def test_missing_model_dir_exits_2_with_one_line(tmp_path, frames_dir, capsys):
    assert predict.run(["--model", str(tmp_path / "missing"), frames_dir]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "does not exist" in err


def test_bad_play_exits_2_and_other_plays_still_print(job_dir, frames_dir, tmp_path, capsys):
    empty = tmp_path / "empty_play"
    empty.mkdir()
    status = predict.run(["--model", job_dir, str(empty), frames_dir])
    out = capsys.readouterr()
    assert status == 2
    err_lines = out.err.strip().splitlines()
    assert len(err_lines) == 1 and str(empty) in err_lines[0]
    assert out.out.splitlines()[1] == frames_dir  # after the compute dtype's line


def test_module_entry_point(job_dir, video_path):
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.predict", "--model", job_dir, video_path, "--json",
         "--top_k", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    _check_result(results[0], video_path, 1)


def test_predict_start_end_cuts_the_play_from_a_long_video(job_dir, tmp_path, capsys):
    from media import video_clips  # pylint: disable=g-import-not-at-top
    from tests import media_fixtures as mf  # pylint: disable=g-import-not-at-top
    game = mf.write_h264(str(tmp_path / "game.mp4"), 150, gop=25)  # 6 s
    predictor = Predictor(job_dir)
    jpegs = predictor.read(game, 2.0, 3.0)
    how = FrameSampling.of(RECORD_FRAMES, SIZE)
    assert jpegs == video_clips.read_clip(game, 2.0, 3.0, how).frames
    assert predict.run(["--model", job_dir, game, "--start", "2", "--end", "3", "--json",
                        "--compute_dtype=float32"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert (result["start"], result["end"]) == (2.0, 3.0)
    assert result["probabilities"] == pytest.approx(dict(zip(LABELS, predictor.classify_frames(jpegs))))
    assert predict.run(["--model", job_dir, game, "--start", "5", "--end", "7"]) == 2
    assert "ends after the end of the video" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        predict.parse_args(["--model", job_dir, game, "--start", "2"])
    assert exit_info.value.code == 2


def test_bfloat16_predictions_match_float32_without_re_export(job_dir, frames_dir, capsys):
    """The float32 export computes in bfloat16 (model.keras rebuilt under mixed_bfloat16 behind
    the export's serving function): the same top label, probabilities within 0.05, float32 out."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    float32 = Predictor(job_dir)
    jpegs = float32.read(frames_dir)
    bf16 = Predictor(job_dir, compute_dtype="bfloat16")
    assert bf16.compute_dtype == "bfloat16" and bf16.labels == float32.labels
    assert bf16.serving.model.get_layer(index=-2).compute_dtype == "bfloat16"
    expected, got = np.array(float32.classify_frames(jpegs)), np.array(bf16.classify_frames(jpegs))
    raw = bf16.serving.outputs(tf.constant([jpegs], tf.string))
    assert raw["probabilities"].dtype == tf.float32  # the softmax stays float32, as exported
    assert raw["top_label"].numpy()[0].decode() == LABELS[int(got.argmax())]
    assert abs(got.sum() - 1) < 1e-5
    np.testing.assert_allclose(got, expected, atol=0.05)
    assert got.argmax() == expected.argmax()
    assert predict.run(["--model", job_dir, frames_dir, "--compute_dtype=bfloat16", "--json",
                        "--top_k=4"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert [result["probabilities"][l] for l in LABELS] == pytest.approx(got.tolist(), abs=1e-6)


def test_compute_dtype_auto_and_usage_errors(job_dir, frames_dir, tmp_path, capsys):
    from trainer.serving import compute_dtype as dtype_lib  # pylint: disable=g-import-not-at-top
    with pytest.raises(SystemExit) as exit_info:
        predict.run(["--model", job_dir, frames_dir, "--compute_dtype=bf16"])
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and "--compute_dtype" in err[0] and "bf16" in err[0], err
    # A SavedModel folder alone (no model.keras beside it): float32 only.
    alone = tmp_path / "alone"
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.copytree(os.path.join(job_dir, export.SAVED_MODEL_DIR), alone / "saved_model")
    assert predict.run(["--model", str(alone), frames_dir, "--compute_dtype=bfloat16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.keras" in err[0] and "--compute_dtype=float32" in err[0], err
    avx512_bf16 = "flags\t\t: fpu sse2 avx512f avx512_bf16\n"
    assert dtype_lib.resolve("auto", str(alone / "saved_model"), avx512_bf16, []) == "float32"
    assert dtype_lib.resolve("auto", job_dir, avx512_bf16, []) == "bfloat16"
