"""Slow end-to-end check of the audio-expression stage on the real demo data (CREMA-D actor
1001 with video, 1002 audio-only; offline features): Snakemake trains and evaluates the main
variant, the test RMSE (within-clip time split) beats the constant-mean predictor, and
predict_alpha runs from a wav."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, repo_root, mirror):
    out = tmp_path_factory.mktemp("a2e_demo")
    target = out / "results" / "cremad" / "audio2exp" / "main" / "eval.json"
    env = {**os.environ, "EMOHEAD_MIRROR": str(mirror), "OMP_NUM_THREADS": "1"}
    cmd = [
        str(Path(sys.executable).parent / "snakemake"),
        "--cores",
        "2",
        "--configfile",
        "config/demo.yaml",
        "--config",
        f"results_dir={out}/results",
        f"logs_dir={out}/logs",
        f"benchmarks_dir={out}/bench",
        "--",
        str(target),
    ]
    proc = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, target


def test_demo_outputs(demo_run):
    out, target = demo_run
    ev = json.loads(target.read_text())
    assert ev["n_frames"] > 20 and ev["n_clips"] >= 1
    assert ev["rmse_train_alpha_hat"] < ev["rmse_train_constant_mean"]  # it learns the training set
    d = target.parent
    assert (d / "loss.png").stat().st_size > 0
    rows = (d / "loss.csv").read_text().splitlines()
    assert len(rows) == 1 + ev["train_config"]["iterations"]


def test_demo_beats_constant_mean(demo_run):
    # demo split (config/demo.yaml audio2exp.split): last third of every 1001 clip is test, the
    # baseline is the mean of the train frames' targets (docs/decisions.md)
    ev = json.loads(demo_run[1].read_text())
    assert ev["split_mode"] == {"mode": "within_clip", "test_fraction": 0.33}
    assert ev["n_clips"] == 6  # every emotion of 1001 has test frames
    assert ev["rmse_alpha_hat"] < ev["rmse_constant_mean"], ev


def test_predict_alpha_from_wav_with_timeline(demo_run, mirror):
    from emohead_core.audio2exp.infer import predict_alpha
    from emohead_core.config import REPO_ROOT, load_config
    from emohead_core.media import load_audio

    out, target = demo_run
    cfg = load_config(REPO_ROOT / "config" / "demo.yaml")
    cfg["results_dir"] = str(out / "results")
    wav = out / "results" / "cremad" / "audio" / "1002" / "1002_DFA_HAP_XX.wav"
    pred = predict_alpha(target.parent, wav=wav, config=cfg, timeline="0:happy,1.0:sad", intensity=1.0)
    T = int(np.floor(len(load_audio(wav, 16000)) / 16000 * 25 + 0.5))
    assert pred.alpha_hat.shape == (T, 10) and np.isfinite(pred.alpha_hat).all()
    assert pred.emotions == ["happy", "sad"]
    # precomputed features of the same clip give the same alpha_tilde as the wav path
    feats = {
        k: out / "results" / "cremad" / "features" / n / "1002" / "1002_DFA_HAP_XX.parquet"
        for k, n in (("v", "whisper"), ("e", "logmel"), ("gamma", "minilm"))
    }
    pred2 = predict_alpha(target.parent, feats, emotion="happy")
    assert pred2.alpha_tilde.shape == (T, 10)
    np.testing.assert_allclose(pred2.alpha_tilde, pred.alpha_tilde, atol=0.05)
