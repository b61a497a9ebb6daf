"""docs/own-video.md and config/examples/own_video.yaml: a person's own video (a `folder`
dataset) -> preprocessing -> expression -> a trained render subject -> `emohead render` on new
audio with an emotion timeline.

Fast: the example config validates and plans the right jobs (dry run). Slow: the real chain on
the mirror's 8-s video with tiny iteration counts (tests/docs/own_video_run.py), then the
command a user runs on new speech."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from own_video_run import (  # noqa: E402
    BIN,
    CLIP,
    EXAMPLE,
    REPO,
    SUBJECT,
    env,
    prepare,
    run_all,
    snakemake_cmd,
)


def test_example_config_is_the_documented_one():
    cfg = yaml.safe_load(EXAMPLE.read_text())
    me = cfg["datasets"][SUBJECT]
    assert me["kind"] == "folder" and Path(me["include"][0]).stem == CLIP
    subject = cfg["render"]["subjects"][SUBJECT]
    assert subject["dataset"] == SUBJECT and subject["sample"] == CLIP
    # the emotion directions and the audio model come from the labelled dataset it trains
    labelled = [n for n, d in cfg["datasets"].items() if d["kind"] in ("mead", "crema_d")]
    assert labelled and all(n in cfg["audio2exp"]["datasets"] for n in labelled)
    assert subject["hyperplanes"].startswith("{results}/" + labelled[0] + "/hyperplanes/")
    # every command of the guide names this file and the subject directory it produces
    guide = (REPO / "docs" / "own-video.md").read_text()
    assert "config/examples/own_video.yaml" in guide and f"results/render/{SUBJECT}" in guide
    assert re.search(r"emohead render --subject-dir results/render/" + SUBJECT, guide)


def test_example_config_plans_preprocessing_to_a_trained_subject(tmp_path, mirror):
    wd = prepare(tmp_path)
    r = subprocess.run(
        snakemake_cmd(wd, "-n", "--quiet", "rules", "--cores", "2", "all_render"),
        cwd=wd,
        env=env(mirror),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", r.stdout, re.M)}
    # the folder video runs per clip (batch: clip), CREMA-D per actor; one renderer, one test clip
    expected = {
        "crop_video": 1,
        "extract_audio": 1,
        "expression_extract": 1,
        "audio2exp_train": 1,
        "render_prepare": 1,
        "render_train": 1,
        "render_test": 1,
        "render_driven": 1,
        "render_showcase": 1,
    }
    for rule, n in expected.items():
        assert counts.get(rule) == n, (rule, counts)
    assert counts.get("preprocess_actor", 0) >= 1 and counts.get("expression_hyperplanes", 0) >= 1


@pytest.mark.slow
def test_own_video_to_trained_subject_and_new_audio(tmp_path_factory, mirror):
    from emohead_core import media

    wd = run_all(tmp_path_factory, mirror)
    res = wd / "results"
    crop = res / SUBJECT / "crop" / CLIP / f"{CLIP}.mp4"
    info = media.probe(crop)
    assert info.width == info.height == 256 and info.fps == 25.0 and abs(info.duration_s - 8.0) < 0.2
    assert (res / SUBJECT / "expression" / CLIP / f"{CLIP}.parquet").is_file()

    sdir = res / "render" / SUBJECT
    doc = json.loads((sdir / "subject.json").read_text())
    assert doc["clips"] == [CLIP] and doc["split_mode"] == "within_clip" and doc["iters"] == 40
    meta = json.loads((sdir / "test" / CLIP / "test_meta.json").read_text())
    frames = media.read_frames(sdir / "test" / CLIP / "test_render.mp4")
    assert len(frames) == meta["n_frames"] == doc["n_test_frames"] > 0
    assert frames[0].shape[:2] == (64, 64) and 5 < frames.mean() < 250
    switch = media.probe(sdir / "emotion_switch.mp4")
    assert switch.has_video and switch.width == 64 and switch.duration_s > 0.5  # 4 tags x 0.2 s
    for f in ("model.pt", "loss.png", "masks.png", "emotion_control.json", "novel_views.png"):
        assert (sdir / f).stat().st_size > 0, f

    # new speech (an audio the subject never heard) with an emotion timeline
    audio = mirror / "data" / "crema-d" / "1002_DFA_HAP_XX.mp3"
    out = wd / "me_happy.mp4"
    cmd = [
        str(BIN / "emohead"),
        "render",
        "--subject-dir",
        str(sdir),
        "--audio",
        str(audio),
        "--timeline",
        "0:neutral,1:happy",
        "--intensity",
        "1.5",
        "--out",
        str(out),
        "--config",
        str(REPO / "config" / "config.yaml"),
        "--config",
        str(EXAMPLE),
        "--config",
        str(wd / "tiny.yaml"),
    ]
    r = subprocess.run(cmd, cwd=wd, env=env(mirror), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    info = media.probe(out)
    speech = media.probe(audio)
    assert info.has_video and info.has_audio and info.width == 64 and info.fps == 25.0
    frames = media.read_frames(out)
    assert abs(len(frames) - speech.duration_s * 25) <= 2, (len(frames), speech.duration_s)
    assert 5 < frames.mean() < 250 and np.std(frames.astype(np.float32)) > 5  # a face, not a blank
