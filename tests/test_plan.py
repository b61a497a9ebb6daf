"""emohead_core.plan: the sample-table lookups every stage plan uses, and the wiring of the
stage plans (the render plan sees the expression stage's hyperplanes and the audio2exp models)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pandas as pd
import pytest

from emohead_core.layout import Layout
from emohead_core.plan import SampleIndex, alternation, batch_runtime


def _index() -> SampleIndex:
    df = pd.DataFrame(
        {
            "sample_id": ["a1", "a2", "b1"],
            "actor": ["A", "A", "B"],
            "split": ["train", "test", "train"],
            "video_path": ["a1.mp4", "", "b1.mp4"],
            "audio_path": ["a1.wav", "a2.wav", "b1.wav"],
            "emotion": ["angry", "happy", "angry"],
        }
    )
    return SampleIndex({"ds": df}, "res")


def test_sample_index_lookups():
    idx = _index()
    assert idx.video_samples("ds") == ["a1", "b1"] and idx.audio_samples("ds") == ["a1", "a2", "b1"]
    assert idx.samples("ds", split="train", video=True) == ["a1", "b1"]
    assert idx.actor_samples("ds", "A") == ["a1", "a2"] and idx.actor_samples("ds", "A", video=False) == [
        "a2"
    ]
    assert idx.clip_file("ds", "crop", "b1") == "res/ds/crop/B/b1.mp4"
    row = idx.row("ds", "a2")
    assert row["audio_path"] == "a2.wav"
    with pytest.raises(TypeError):
        row["actor"] = "B"  # read-only
    with pytest.raises(ValueError, match="unknown sample"):
        idx.row("ds", "zz")
    with pytest.raises(ValueError, match="unknown actor"):
        idx.actor_samples("ds", "Z")
    # a per-clip path whose {actor} is not the sample's actor is refused
    assert idx.clip_row(SimpleNamespace(dataset="ds", sample="b1", actor="B"))["actor"] == "B"
    with pytest.raises(ValueError, match="belongs to actor"):
        idx.clip_row(SimpleNamespace(dataset="ds", sample="b1", actor="A"))


def test_alternation_and_batch_runtime():
    assert re.fullmatch(alternation(["b.c", "a"]), "b.c") and not re.fullmatch(alternation(["b.c"]), "bxc")
    assert not re.fullmatch(alternation([]), "")
    runtime = batch_runtime(_index(), 0.5, base=10)
    assert runtime(SimpleNamespace(dataset="ds", actor="A"), 1) == 11
    assert runtime(SimpleNamespace(dataset="ds", actor="A"), 2) == 22


def test_preprocess_plan_targets_follow_the_batch_mode():
    from emohead_core.preprocess.plan import PreprocessPlan

    cfg = {"datasets": {"ds": {"kind": "crema_d"}}}
    by_clip = PreprocessPlan(cfg, _index(), "res", Layout("res", [])).targets()
    assert "res/ds/samples.parquet" in by_clip and "res/ds/crop/A/a1.boxes.parquet" in by_clip
    assert "res/ds/audio/A/a2.wav" in by_clip and "res/ds/crop/A/a2.mp4" not in by_clip  # audio-only
    by_actor = PreprocessPlan(cfg, _index(), "res", Layout("res", ["ds"])).targets()
    assert sorted(by_actor) == sorted(
        ["res/ds/samples.parquet", "res/ds/crop/A", "res/ds/crop/B", "res/ds/audio/A", "res/ds/audio/B"]
    )
