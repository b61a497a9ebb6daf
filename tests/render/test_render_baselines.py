"""Trivial baselines of the renderer's test spans (rule render_baseline): the last-frame and
mean-head frames are built from training frames only, pasted into each held-out frame's head
mask over that frame's ground truth, and written like the renders (videos, masks, meta)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from emohead_core import media
from emohead_core.errors import EmoheadInputError
from emohead_core.headmask import load_masks
from emohead_core.render.data import SubjectData
from emohead_core.render.infer import (
    baseline_frames,
    last_training_frame,
    mean_head,
    write_baseline_clip,
)

S = 32


def _subject(train_idx=None, test_idx=None, split_mode="within_clip"):
    """Two clips of 8 frames; every frame a distinct random image with its own head mask (a
    box that moves); clip 0's frame 5 is not usable (not a training frame)."""
    rng = np.random.default_rng(0)
    N = 16
    frames = rng.integers(0, 256, size=(N, S, S, 3), dtype=np.uint8)
    masks = np.zeros((N, S, S), bool)
    for i in range(N):
        masks[i, 6 + i % 5 : 22 + i % 5, 8 + i % 3 : 20 + i % 3] = True
    clip_of = np.repeat([0, 1], 8)
    train_idx = np.array([0, 1, 2, 3, 4, 8, 9, 10, 11, 12, 13]) if train_idx is None else train_idx
    test_idx = np.array([6, 7, 14, 15]) if test_idx is None else test_idx
    return SubjectData.from_arrays(
        frames=frames,
        head_mask=masks,
        bg=rng.integers(0, 256, size=(2, S, S, 3), dtype=np.uint8),
        poses=np.zeros((N, 3, 4)),
        alpha=rng.normal(size=(N, 10)).astype(np.float32),
        shape=np.zeros((N, 40), np.float32),
        landmarks=np.zeros((N, 68, 3), np.float32),
        train_idx=train_idx,
        test_idx=test_idx,
        clip_of=clip_of,
        clips=[dict(sample="a", dataset="d", emotion="happy"), dict(sample="b", dataset="d", emotion="sad")],
        subject="synth",
        split_mode=split_mode,
    )


def test_last_frame_baseline_is_the_training_frame_inside_the_mask_and_the_ground_truth_outside():
    data = _subject()
    # clip 0: test frames 6, 7; its last training frame is 4 (5 is not usable)
    assert last_training_frame(data, 0) == (4, "clip")
    out, info = baseline_frames(data, 0, "last_frame")
    assert info == {"source": "clip", "source_frame": 4, "source_sample": "a"}
    src = data.frame(4)
    for t, i in enumerate((6, 7)):
        m = data.mask(i)
        assert np.array_equal(out[t][m], src[m])  # inside the held-out frame's mask
        assert np.array_equal(out[t][~m], data.frame(i)[~m])  # the ground truth elsewhere
    # clip 1 uses its own training frames, not the subject's last one
    assert last_training_frame(data, 1) == (13, "clip")


def test_mean_head_baseline_is_the_mean_of_the_clips_training_heads():
    data = _subject()
    idx = data.clip_train_frames(1)
    assert list(idx) == [8, 9, 10, 11, 12, 13]
    f = data.frames(idx).astype(float)
    m = data.masks(idx)[..., None]
    n = m.sum(0)
    want = np.where(n > 0, (f * m).sum(0) / np.maximum(n, 1), f.mean(0))
    got = mean_head(data, idx)
    assert np.abs(got.astype(float) - want).max() <= 0.5  # rounded to 8 bits
    out, info = baseline_frames(data, 1, "mean_head")
    assert info == {"source": "clip", "n_source_frames": 6}
    for t, i in enumerate((14, 15)):
        mk = data.mask(i)
        assert np.array_equal(out[t][mk], got[mk]) and np.array_equal(out[t][~mk], data.frame(i)[~mk])
    # a pixel in no training head mask takes the plain mean of the training frames
    never = n[..., 0] == 0
    assert never.any() and np.abs(got[never] - f.mean(0)[never]).max() <= 0.5


def test_a_test_clip_held_out_whole_falls_back_to_the_subjects_training_frames():
    # split mode clips: clip 1 is a test clip, no training frame of its own
    data = _subject(train_idx=np.arange(8), test_idx=np.arange(8, 16), split_mode="clips")
    assert last_training_frame(data, 1) == (7, "subject")
    out, info = baseline_frames(data, 1, "mean_head")
    assert info["source"] == "subject" and info["n_source_frames"] == 8
    with pytest.raises(EmoheadInputError, match="unknown render baseline"):
        baseline_frames(data, 1, "median")


def test_baseline_clip_is_written_like_a_render(tmp_path):
    data = _subject()
    out = tmp_path / "baseline" / "last_frame" / "a"
    res = write_baseline_clip(data, "a", "last_frame", out, meta={"subject": "synth"})
    meta = json.loads((out / "test_meta.json").read_text())
    assert (meta["frame_start"], meta["frame_end"], meta["n_frames"]) == (6, 8, 2)
    assert meta["baseline"] == "last_frame" and meta["mask"] == "test_mask.npz" and meta["source_frame"] == 4
    assert np.array_equal(load_masks(out / "test_mask.npz"), data.masks([6, 7]))
    frames, _ = baseline_frames(data, 0, "last_frame")
    got = media.read_frames(out / "test_render.mp4")[..., ::-1]
    gt = media.read_frames(out / "test_gt.mp4")[..., ::-1]
    assert got.shape == gt.shape == (2, S, S, 3)
    # the same H.264 encode as the renders: lossy, but these frames
    assert np.abs(got.astype(float) - frames).mean() < np.abs(got.astype(float) - data.frames([6, 7])).mean()
    assert np.isfinite(res["psnr_head"]) and res["psnr_full"] > res["psnr_head"]
    assert not list(out.glob(".*"))
    with pytest.raises(EmoheadInputError, match="no test frames"):
        write_baseline_clip(_subject(test_idx=np.array([15])), "a", "mean_head", tmp_path / "x")


def test_plan_baseline_inputs_read_only_the_prepared_subject():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_render_subject import _plan

    plan = _plan({"p1": {"dataset": "cremad", "actor": "1001", "split": "within_clip"}})
    w = SimpleNamespace(subject="p1", clip="1001_sad", baseline="mean_head")
    got = plan.baseline_inputs(w)
    assert got["prepared"] == "res/render/p1/prepared" and "model" not in got
    with pytest.raises(EmoheadInputError, match="unknown render baseline"):
        plan.baseline_inputs(SimpleNamespace(subject="p1", clip="1001_sad", baseline="median"))
    with pytest.raises(EmoheadInputError, match="not a test clip"):
        plan.baseline_inputs(SimpleNamespace(subject="p1", clip="nope", baseline="mean_head"))
