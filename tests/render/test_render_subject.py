"""Render subjects made of a person's clips (the paper's per-person protocol): preparation of real
(ffmpeg-encoded) clips with their own crop boxes and backgrounds, split modes, training over all
clips, per-clip test renders, the parse-time plan, metrics pairs and the emotion-control measure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_render import TINY_MODEL, _tiny_train  # noqa: E402

from emohead_core import media  # noqa: E402
from emohead_core.errors import EmoheadInputError  # noqa: E402
from emohead_core.render.camera import DEFAULT_BOX_CENTER, DEFAULT_BOX_HALF  # noqa: E402
from emohead_core.render.data import ClipInput, SubjectData, load_prepared, prepare_subject, split_frames  # noqa: E402

SIZE = 48  # crop video size (pixels)
RES = 32  # render resolution


def _bfm(mirror):
    from emohead_core.expression.tddfa import load_bfm_keypoints

    return load_bfm_keypoints(mirror / "models" / "3ddfa_v2" / "bfm_68_landmarks.npz")


def write_clip(
    root: Path,
    name: str,
    bfm,
    *,
    n: int = 12,
    scale: float = 1.0,
    shift=(0.0, 0.0),
    bg_rgb=(40, 90, 200),
    seed: int = 0,
) -> ClipInput:
    """A synthetic clip as the preprocessing and expression stages would leave it: an H.264 crop
    video of a ball-shaped 'head' (colour follows alpha[0]) over a clip-specific background, and an
    expression Parquet whose landmarks are the exact projection of the BFM keypoints (so the
    camera fit is exact). ``scale`` / ``shift`` play the clip's own crop box."""
    from emohead_core.expression.schema import write_expression
    from emohead_core.render.data import canonical_landmarks

    rng = np.random.default_rng(seed)
    alpha = (rng.normal(size=(n, 10)) * 0.5).astype(np.float32)
    shape = np.zeros((n, 40), np.float32)
    s = SIZE / (2 * DEFAULT_BOX_HALF) * 0.9 * scale
    M = s * np.diag([1.0, -1.0, 1.0])
    c = np.asarray(DEFAULT_BOX_CENTER)
    centre = np.array([SIZE / 2 - 0.5 + shift[0], SIZE / 2 - 0.5 + shift[1], 7.0])
    t = centre - M @ c
    X = canonical_landmarks(shape.astype(np.float64), alpha.astype(np.float64), bfm)
    lm = (X @ M.T + t).astype(np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    bg = np.stack(
        [np.full((SIZE, SIZE), bg_rgb[0]), bg_rgb[1] + 40 * xx / SIZE, bg_rgb[2] - 60 * yy / SIZE], -1
    )
    rad = 70000 * s
    d2 = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2
    disk = d2 < rad**2
    frames = []
    for k in range(n):
        col = 255 * np.array([0.5 + 0.35 * np.tanh(alpha[k, 0]), 0.35, 0.55 - 0.2 * np.tanh(alpha[k, 0])])
        img = np.where(disk[..., None], col * (1 - 0.3 * d2 / rad**2)[..., None], bg)
        frames.append(img.clip(0, 255).round().astype(np.uint8)[..., ::-1])  # BGR
    crop = root / f"{name}.mp4"
    media.write_video(frames, crop, 25.0, crf=10)
    expr = root / f"{name}.parquet"
    z = np.zeros(n, np.float32)
    write_expression(
        expr,
        dict(
            frame=np.arange(n),
            time_s=np.arange(n) / 25.0,
            detected=np.ones(n, bool),
            roi_source=np.ones(n, np.int8),
            box=np.zeros((n, 5)),
            roi_box=np.zeros((n, 4)),
            pose=np.zeros((n, 12)),
            shape=shape,
            exp=alpha,
            landmarks=lm.reshape(n, -1),
            yaw=z,
            pitch=z,
            roll=z,
            scale=z,
            mar=z,
        ),
        {"video": crop.name},
    )
    return ClipInput(sample=name, crop=crop, expression=expr, emotion="neutral", dataset="synth")


@pytest.fixture(scope="module")
def two_clips(mirror, tmp_path_factory):
    """Clip a (centred, bluish background) and clip b (head smaller and shifted: another crop box;
    reddish background), prepared with the within_clip split."""
    root = tmp_path_factory.mktemp("clips")
    bfm = _bfm(mirror)
    a = write_clip(root, "a", bfm, seed=1)
    b = write_clip(root, "b", bfm, scale=0.8, shift=(4.0, -3.0), bg_rgb=(200, 60, 40), seed=2)
    b.emotion = "happy"
    out = root / "prepared"
    summary = prepare_subject(
        [a, b],
        out,
        resolution=RES,
        bfm_path=mirror / "models/3ddfa_v2/bfm_68_landmarks.npz",
        split_mode="within_clip",
        test_fraction=0.25,
        subject="synth",
        progress=False,
    )
    return out, summary, (a, b)


def test_split_modes():
    assert split_frames(12, "within_clip", 0.25, False) == 9
    assert split_frames(3, "within_clip", 0.01, True) == 2  # at least one test frame
    assert split_frames(2, "within_clip", 0.99, False) == 1  # at least one training frame
    assert split_frames(12, "clips", 0.25, True) == 0 and split_frames(12, "clips", 0.25, False) == 12
    with pytest.raises(EmoheadInputError, match="split mode"):
        split_frames(12, "random", 0.1, False)


def test_prepare_keeps_each_clips_crop_box_and_background(two_clips):
    out, summary, (a, b) = two_clips
    data = load_prepared(out)
    assert summary["n_clips"] == 2 and data.n_frames == 24 and len(data.clips) == 2
    assert [c["sample"] for c in data.clips] == ["a", "b"] and data.clips[1]["emotion"] == "happy"
    # within_clip: the last quarter of each clip is tested, the rest trains
    assert data.clip_test_frames(0).tolist() == [9, 10, 11] and data.clip_test_frames(1).tolist() == [
        21,
        22,
        23,
    ]
    assert set(data.train_idx) == set(range(9)) | set(range(12, 21))
    # frames decoded at the render resolution, RGB, from each clip's own video
    f_a, f_b = data.frame(0).astype(int), data.frame(12).astype(int)
    assert f_a.shape == (RES, RES, 3)
    assert f_a[0, 0, 2] > f_a[0, 0, 0] + 80 and f_b[0, 0, 0] > f_b[0, 0, 2] + 80  # blue vs red corners
    # one background per clip, each matching its own frames away from the head
    bg_a, bg_b = data.bg(3).astype(int), data.bg(15).astype(int)
    assert np.abs(bg_a[:4, :4] - f_a[:4, :4]).max() <= 6 and np.abs(bg_b[:4, :4] - f_b[:4, :4]).max() <= 6
    assert np.abs(bg_a - bg_b).mean() > 50
    # each clip's camera maps its own crop: clip b's head is smaller and shifted
    s_a, s_b = abs(data.poses[0][0, 0]), abs(data.poses[12][0, 0])
    assert s_b == pytest.approx(0.8 * s_a, rel=1e-3)
    m_a, m_b = data.mask(0), data.mask(12)
    cy_a, cx_a = np.argwhere(m_a).mean(0)
    cy_b, cx_b = np.argwhere(m_b).mean(0)
    assert cx_b - cx_a == pytest.approx(4 * RES / SIZE, abs=1.5) and m_b.sum() < m_a.sum()


def test_subject_trains_over_clips_and_renders_each_clip_against_its_background(two_clips, tmp_path):
    from emohead_core.render.infer import write_test_clip
    from emohead_core.render.train import Trainer, load_renderer

    torch.set_num_threads(1)
    out, _, _ = two_clips
    data = load_prepared(out)
    tr = Trainer(data, TINY_MODEL, _tiny_train(iters=150, frames_per_step=2), device="cpu")
    tr.fit(progress=False)
    tr.save(tmp_path / "model.pt")
    r = load_renderer(tmp_path / "model.pt", "cpu")
    for sample in ("a", "b"):
        k = data.clip_index(sample)
        res = write_test_clip(r, data, sample, tmp_path / sample)
        meta = json.loads((tmp_path / sample / "test_meta.json").read_text())
        assert meta["sample"] == sample and meta["frame_start"] == 9 and meta["frame_end"] == 12
        gt = media.read_frames(tmp_path / sample / "test_gt.mp4")[..., ::-1].astype(int)
        own = np.abs(gt - data.frames(data.clip_test_frames(k)).astype(int)).mean()
        other = np.abs(gt - data.frames(data.clip_test_frames(1 - k)).astype(int)).mean()
        assert own < 8 and own < 0.3 * other  # its own frames (8-bit H.264 of a 32x32 image)
        assert res["psnr_head"] > res["baseline_psnr_head"] + 3, (sample, res)
        assert res["psnr_full"] > 24, (sample, res)  # the clip's own background behind the head
    # rendering clip b's frames over clip a's background instead is clearly worse: the backgrounds matter
    i = int(data.clip_test_frames(1)[0])
    gt = data.frame(i).astype(np.float32) / 255
    own, _ = r.render_frame(data.poses[i], data.alpha[i], data.behind(i))
    wrong_behind = np.where(data.mask(i)[..., None], data.bg(0), data.frame(i))
    other, _ = r.render_frame(data.poses[i], data.alpha[i], wrong_behind)
    assert np.abs(own - gt).mean() < 0.5 * np.abs(other - gt).mean()


def test_multi_clip_resume_is_exact(two_clips, tmp_path):
    from emohead_core.render.train import Trainer

    torch.set_num_threads(1)
    data = load_prepared(two_clips[0])
    cfg = _tiny_train(iters=24, frames_per_step=3)
    a = Trainer(data, TINY_MODEL, cfg, device="cpu")
    a.fit(progress=False)
    b = Trainer(data, TINY_MODEL, cfg, device="cpu")
    b.fit(steps=11, progress=False, ckpt_path=tmp_path / "ck.pt")
    c = Trainer(data, TINY_MODEL, cfg, device="cpu")
    c.load(tmp_path / "ck.pt")
    c.fit(progress=False)
    for (ka, va), (_kc, vc) in zip(a.model.state_dict().items(), c.model.state_dict().items()):
        assert torch.equal(va, vc), ka
    assert [r["photo"] for r in a.history] == [r["photo"] for r in c.history]


def test_checkpoint_of_other_settings_or_data_is_not_resumed(two_clips, tmp_path):
    """Trainer.resume continues only its own run: a fresh trainer with the same settings and
    prepared subject resumes; other settings, other expressions, or a checkpoint without a
    fingerprint (written before fingerprints) do not."""
    from emohead_core.render.train import Trainer

    torch.set_num_threads(1)
    data = load_prepared(two_clips[0])
    cfg = _tiny_train(iters=12, frames_per_step=2)
    a = Trainer(data, TINY_MODEL, cfg, device="cpu")
    a.fit(steps=5, progress=False, ckpt_path=tmp_path / "ck.pt")
    same = Trainer(data, TINY_MODEL, cfg, device="cpu")
    assert same.resume(tmp_path / "ck.pt") and same.step == 5
    assert not Trainer(data, TINY_MODEL, {**cfg, "lr_mlp": 0.0123}, device="cpu").resume(tmp_path / "ck.pt")
    assert not Trainer(data, TINY_MODEL, {**cfg, "iters": 24}, device="cpu").resume(tmp_path / "ck.pt")
    other = load_prepared(two_clips[0])
    other.alpha = other.alpha.copy()
    other.alpha[0, 0] += 0.5  # the expression of one frame changed (e.g. a re-extracted clip)
    fresh = Trainer(other, TINY_MODEL, cfg, device="cpu")
    assert not fresh.resume(tmp_path / "ck.pt") and fresh.step == 0
    st = torch.load(tmp_path / "ck.pt", weights_only=True)
    del st["fingerprint"]
    torch.save(st, tmp_path / "old.pt")
    assert not Trainer(data, TINY_MODEL, cfg, device="cpu").resume(tmp_path / "old.pt")


def test_face_fraction_draws_that_share_of_head_rays_from_the_landmark_hull(two_clips):
    import cv2

    from emohead_core.render.train import Trainer

    torch.set_num_threads(1)
    data = load_prepared(two_clips[0])
    i = int(data.train_idx[0])
    lm = data.landmarks[i][:, :2]
    hull = np.zeros((data.H, data.W), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(lm).astype(np.int32)), 1)
    face = hull.astype(bool) & data.mask(i)
    share = face.sum() / data.mask(i).sum()
    assert 0.05 < share < 0.9  # the hull is a part of the head mask here

    def face_share(fraction, frame=i):
        cfg = {**_tiny_train(iters=4), "inside_fraction": 1.0, "face_fraction": fraction}
        tr = Trainer(data, TINY_MODEL, cfg, device="cpu")
        uv, _, _ = tr.sample_batch(frame, 4000)
        u, v = uv[:, 0].long().numpy(), uv[:, 1].long().numpy()
        return float(face[v, u].mean())

    assert face_share(0.0) == pytest.approx(share, abs=0.03)  # uniform in the head mask
    # half from the hull, half uniform (which hits the hull at its area share)
    assert face_share(0.5) == pytest.approx(0.5 + 0.5 * share, abs=0.03)
    # a frame without fitted landmarks falls back to uniform head rays
    data.landmarks = data.landmarks.copy()
    data.landmarks[i] = np.nan
    assert face_share(0.5) == pytest.approx(share, abs=0.03)


def test_rays_of_a_step_come_from_several_frames_with_their_own_expression(two_clips):
    from emohead_core.render.train import Trainer

    data = load_prepared(two_clips[0])
    tr = Trainer(data, TINY_MODEL, _tiny_train(iters=10, frames_per_step=4, rays=64), device="cpu")
    frames = tr.draw_frames()
    assert len(frames) == 4 and set(frames) <= set(data.train_idx)
    o, d, cond, target, bg = tr.ray_batch(frames)
    assert o.shape == (64, 3) and cond.shape == (64, 10) and target.shape == (64, 3)
    for k, i in enumerate(frames):  # 16 rays per frame, each with its frame's alpha
        assert torch.equal(cond[16 * k : 16 * (k + 1)], torch.as_tensor(data.alpha[i]).expand(16, -1))
    # draws are uniform over the training frames of both clips
    seen = np.concatenate([tr.draw_frames() for _ in range(200)])
    assert set(np.unique(data.clip_of[seen])) == {0, 1}


def test_clips_split_and_bad_clips(mirror, tmp_path):
    bfm = _bfm(mirror)
    a = write_clip(tmp_path, "a", bfm, n=6)
    b = write_clip(tmp_path, "b", bfm, n=6, seed=3)
    b.test = True
    bfm_path = mirror / "models/3ddfa_v2/bfm_68_landmarks.npz"
    prepare_subject(
        [a, b], tmp_path / "p", resolution=RES, bfm_path=bfm_path, split_mode="clips", progress=False
    )
    data = load_prepared(tmp_path / "p")
    assert data.train_idx.tolist() == list(range(6)) and data.test_idx.tolist() == list(range(6, 12))
    assert data.test_clips() == [1]
    with pytest.raises(EmoheadInputError, match="twice"):
        prepare_subject([a, a], tmp_path / "q", resolution=RES, bfm_path=bfm_path, progress=False)
    with pytest.raises(EmoheadInputError, match="no usable training frames"):
        a.test = True
        prepare_subject(
            [a, b], tmp_path / "r", resolution=RES, bfm_path=bfm_path, split_mode="clips", progress=False
        )
    assert not (tmp_path / "r").exists() and not list(tmp_path.glob(".r.*"))  # nothing half-written
    with pytest.raises(EmoheadInputError, match="old single-file format"):
        np.savez(tmp_path / "prepared.npz", x=np.zeros(1))
        load_prepared(tmp_path / "prepared.npz")


def test_prepared_frames_are_memory_mapped(two_clips):
    data = load_prepared(two_clips[0])
    assert all(
        isinstance(f, np.memmap) or isinstance(getattr(f, "base", None), np.memmap) for f in data._frames
    )


# ----------------------------------------------------------------------------- parse-time plan


def _table():
    rows = []
    for actor in ("1001", "1002"):
        for emo, split in (("angry", "train"), ("happy", "train"), ("sad", "test"), ("neutral", "unused")):
            rows.append(
                dict(
                    sample_id=f"{actor}_{emo}",
                    dataset="cremad",
                    actor=actor,
                    emotion=emo,
                    split=split,
                    video_path="x.flv",
                    audio_path="x.flv",
                )
            )
    rows.append(
        dict(
            sample_id="1003_audio",
            dataset="cremad",
            actor="1003",
            emotion="sad",
            split="train",
            video_path="",
            audio_path="x.wav",
        )
    )
    cre = pd.DataFrame(rows)
    fol = pd.DataFrame(
        [
            dict(
                sample_id="me",
                dataset="own",
                actor="me",
                emotion="unknown",
                split="train",
                video_path="me.mp4",
                audio_path="me.mp4",
            )
        ]
    )
    return {"cremad": cre, "own": fol}


def _plan(subjects, split=None, a2e=("cremad",)):
    from emohead_core.layout import Layout
    from emohead_core.render.plan import RenderPlan

    cfg = {
        "render": {"subjects": subjects, **({"split": split} if split else {})},
        "datasets": {"cremad": {"kind": "crema_d"}, "own": {"kind": "folder"}},
    }
    return RenderPlan(
        cfg,
        _table(),
        "res",
        Layout("res", []),
        hyperplane_actors=lambda ds: ["1001", "all"],
        a2e_datasets=list(a2e),
        a2e_variants=["main", "d256"],
    )


def test_plan_actor_subject_clip_split_and_defaults():
    plan = _plan({"p1": {"dataset": "cremad", "actor": 1001}})
    sp = plan.subjects["p1"]
    assert sp.clips == ["1001_angry", "1001_happy", "1001_sad"]  # 'unused' clips are left out
    assert sp.split_mode == "clips" and sp.test_clips == ["1001_sad"]
    assert sp.emotions["1001_happy"] == "happy"
    assert sp.hyperplanes == "res/cremad/hyperplanes/1001/hyperplanes.json"  # the actor's own
    assert sp.audio2exp == "res/cremad/audio2exp/main"
    assert plan.driven["p1"] == {"main": "res/cremad/audio2exp/main", "d256": "res/cremad/audio2exp/d256"}
    clips = plan.clip_inputs("p1")
    assert clips[2]["test"] and not clips[0]["test"]
    assert clips[0]["crop"] == "res/cremad/crop/1001/1001_angry.mp4"
    assert clips[0]["expression"] == "res/cremad/expression/1001/1001_angry.parquet"
    t = plan.targets()
    assert (
        "res/render/p1/emotion_control.json" in t and "res/render/p1/driven/d256/1001_sad/test_meta.json" in t
    )
    # within_clip: every clip has a test span; 1002 falls back to the pooled hyperplanes
    plan = _plan({"p2": {"dataset": "cremad", "actor": "1002", "split": "within_clip"}})
    sp = plan.subjects["p2"]
    assert sp.test_clips == sp.clips and len(sp.clips) == 4
    assert sp.hyperplanes == "res/cremad/hyperplanes/all/hyperplanes.json"


def test_plan_single_video_and_sample_list_forms():
    plan = _plan(
        {
            "me": {
                "dataset": "own",
                "sample": "me",
                "emotion": "happy",
                "hyperplanes": "{results}/cremad/hyperplanes/all/hyperplanes.json",
                "audio2exp": "{results}/cremad/audio2exp/main",
            },
            "two": {"dataset": "cremad", "samples": ["1001_sad", "1002_angry"], "split": "within_clip"},
        },
        split={"mode": "clips", "test_fraction": 0.2},
    )
    me = plan.subjects["me"]
    assert me.split_mode == "within_clip" and me.test_fraction == 0.2  # one video splits in time
    assert me.emotions == {"me": "happy"} and me.hyperplanes == "res/cremad/hyperplanes/all/hyperplanes.json"
    assert plan.driven["me"] == {"main": "res/cremad/audio2exp/main", "d256": "res/cremad/audio2exp/d256"}
    two = plan.subjects["two"]
    assert two.clips == ["1001_sad", "1002_angry"] and two.actor == "all"


@pytest.mark.parametrize(
    "spec,match",
    [
        ({"dataset": "nope", "actor": "1"}, "names dataset"),
        ({"dataset": "cremad"}, "exactly one of"),
        ({"dataset": "cremad", "actor": "1001", "sample": "1001_sad"}, "exactly one of"),
        ({"dataset": "cremad", "actor": "1003"}, "has no video clips"),
        ({"dataset": "cremad", "samples": ["1001_sad", "zzz"]}, "no video sample"),
        ({"dataset": "cremad", "actor": "1001", "emotions": ["angry", "happy"]}, "none of its"),
        (
            {"dataset": "cremad", "actor": "1001", "exclude": ["1001_angry", "1001_happy", "1001_sad"]},
            "no clips left",
        ),
        ({"dataset": "cremad", "actor": "1001", "split": "random"}, "unknown split mode"),
    ],
)
def test_plan_errors_name_the_subject_and_the_fix(spec, match):
    with pytest.raises(EmoheadInputError, match=match) as e:
        _plan({"bad": spec})
    assert "render.subjects.bad" in str(e.value) or "render.split" in str(e.value)


def test_metric_pairs_per_test_clip_reach_the_tables(tmp_path):
    from emohead_core.metrics.pairs import build_pairs
    from emohead_core.metrics.tables import EMOTION_CONTROL, emotion_control_rows

    plan = _plan({"p1": {"dataset": "cremad", "actor": "1001", "split": "within_clip"}})
    pairs = build_pairs({}, {}, {}, "res", plan.metric_pairs())
    # 4 test spans (within_clip keeps every clip) x (ours, ours_d256, ours_gt_alpha and the two
    # trivial baselines)
    assert len(pairs) == 4 * 5
    row = pairs[(pairs["method"] == "ours") & (pairs["clip"] == "1001_happy")].iloc[0]
    assert row["group"] == "p1" and row["dataset"] == "cremad" and row["emotion"] == "happy"
    assert row["generated"] == "res/render/p1/driven/main/1001_happy/test_render.mp4"
    assert row["mask"] == "res/render/p1/driven/main/1001_happy/test_mask.npz"
    gt = pairs[(pairs["method"] == "ours_gt_alpha") & (pairs["clip"] == "1001_sad")].iloc[0]
    assert gt["generated"] == "res/render/p1/test/1001_sad/test_render.mp4"
    for b in ("last_frame", "mean_head"):
        r = pairs[(pairs["method"] == f"baseline_{b}") & (pairs["clip"] == "1001_sad")].iloc[0]
        base = f"res/render/p1/baseline/{b}/1001_sad"
        assert (r["generated"], r["ground_truth"]) == (f"{base}/test_render.mp4", f"{base}/test_gt.mp4")
        assert r["mask"] == f"{base}/test_mask.npz" and r["meta"] == f"{base}/test_meta.json"
        assert f"{base}/test_meta.json" in plan.targets()
    assert plan.emotion_control_files() == {
        "cremad": ["res/render/p1/emotion_control.json", "res/render/p1/driven_emotion.json"]
    }
    # the Emotion control column: GT-alpha row = the calibrated summary of emotion_control.json,
    # audio-driven row = the tag accuracy of driven_emotion.json; mean over subjects, in %
    for k, v in enumerate((0.5, 0.75)):
        (tmp_path / f"e{k}.json").write_text(json.dumps({"dataset": "cremad", "summary": v}))
    (tmp_path / "d0.json").write_text(
        json.dumps({"dataset": "cremad", "accuracy": {"mean": 0.2, "ci95": [0.1, 0.3]}, "clips": {}})
    )
    (tmp_path / "none.json").write_text(json.dumps({"dataset": "cremad", "summary": None}))
    agg = pd.DataFrame(
        {
            "dataset": ["cremad"] * 3,
            "method": ["ours", "ours_gt_alpha", "ours_d256"],
            "metric": ["PSNR"] * 3,
            "value": [1.0] * 3,
            "note": [""] * 3,
            "n_clips": [3] * 3,
        }
    )
    files = [tmp_path / f for f in ("e0.json", "e1.json", "d0.json", "none.json")]
    ec = emotion_control_rows(files, agg)
    got = {r.method: r for r in ec.itertuples()}
    assert (
        got["ours_gt_alpha"].value == pytest.approx(62.5) and got["ours_gt_alpha"].metric == EMOTION_CONTROL
    )
    assert got["ours"].value == pytest.approx(20.0)
    assert np.isnan(got["ours_d256"].value) and "renderer" in got["ours_d256"].note
    only_none = emotion_control_rows([tmp_path / "none.json"], agg)
    row = only_none[only_none["method"] == "ours_gt_alpha"].iloc[0]
    assert np.isnan(row["value"]) and "measurable" in row["note"]


# ----------------------------------------------------------------------------- emotion control


def test_emotion_control_scores_follow_what_the_extractor_sees(two_clips):
    """The measurement itself (distances, classification, the reference, 'rising'), with the
    3DDFA re-extraction replaced by an oracle that reads back the alpha the renderer was asked
    for through the rendered head's colour: the renderer here encodes alpha[0] in the colour, so
    the hyperplane along alpha[0] must rise with tau and the orthogonal one must not."""
    from emohead_core.render.control import measure_emotion_control, rising_tags
    from emohead_core.render.train import Trainer

    torch.set_num_threads(1)
    data = load_prepared(two_clips[0])
    tr = Trainer(data, TINY_MODEL, _tiny_train(iters=120, frames_per_step=2), device="cpu")
    tr.fit(progress=False)
    # colour -> alpha[0]: the red-minus-blue of the head centre is monotone in tanh(alpha[0])
    ref = [(float(np.tanh(data.alpha[i, 0])), data.frame(int(i))) for i in data.train_idx]
    c = RES // 2

    def rb(img):
        return float(img[c - 2 : c + 2, c - 2 : c + 2, 0].mean()) - float(
            img[c - 2 : c + 2, c - 2 : c + 2, 2].mean()
        )

    xs = np.array([rb(f) for _, f in ref])
    ys = np.array([a for a, _ in ref])
    slope, icpt = np.polyfit(xs, ys, 1)

    def extractor(frames, _seed):
        a = np.zeros((len(frames), 10))
        a[:, 0] = np.arctanh(np.clip(slope * np.array([rb(f) for f in frames]) + icpt, -0.99, 0.99))
        return a

    hp = {"happy": (np.eye(10)[0], 0.0), "neutral": (-np.eye(10)[0], 0.0)}
    doc, renders = measure_emotion_control(
        tr.renderer, data, hp, extractor, n_frames=3, unit="std", taus=(0.0, 0.5, 1.0, 1.5), progress=False
    )
    happy = sorted((r for r in doc["rendered"] if r["tag"] == "happy"), key=lambda r: r["tau"])
    d = [r["mean_distance"] for r in happy]
    assert d[-1] > d[0] + 0.2 and doc["rising"]["happy"]
    assert [r["input_distance"] for r in happy] == sorted(r["input_distance"] for r in happy)
    assert happy[-1]["classified_fraction"] >= happy[0]["classified_fraction"]
    # paired change from tau = 0 and bootstrap intervals around every mean
    assert happy[0]["distance_change"]["mean"] == pytest.approx(0.0)
    assert happy[-1]["distance_change"]["mean"] == pytest.approx(d[-1] - d[0], abs=1e-9)
    for r in doc["rendered"]:
        for key in ("classified", "distance", "requested_classified", "classified_change"):
            lo, hi = r[key]["ci95"]
            assert lo - 1e-9 <= r[key]["mean"] <= hi + 1e-9, (key, r)
    # the requested alphas themselves: along +alpha[0], happy wins from tau > 0 on
    assert happy[-1]["requested_classified"]["mean"] == 1.0
    # base frames: held-out frames of the OTHER tag's clips (clip a is neutral, clip b happy)
    assert set(data.clip_of[doc["base"]["happy"]["base_frames"]]) == {0}
    assert set(data.clip_of[doc["base"]["neutral"]["base_frames"]]) == {1}
    assert all(
        int(i) in set(data.test_idx.tolist()) for z in doc["base"] for i in doc["base"][z]["base_frames"]
    )
    # the instrument: the real held-out frames of each tag, classified; measurable at 2x chance
    assert set(doc["confusion"]) == {"happy", "neutral"} and doc["chance"] == 0.5
    for z, row in doc["confusion"].items():
        assert sum(row["shares"].values()) == pytest.approx(1.0)
        assert doc["measurable"][z] == (row["shares"][z] >= 1.0)
    if doc["summary_tags"]:
        at = {(r["tag"], r["tau"]): r["classified_fraction"] for r in doc["rendered"]}
        want = np.mean([at[(z, 1.0)] - at[(z, 0.0)] for z in doc["summary_tags"]])
        assert doc["summary"] == pytest.approx(want)
    assert 0.0 <= doc["unedited_accuracy"]["mean"] <= 1.0
    assert set(renders) >= {(z, t) for z in ("happy", "neutral") for t in (0.0, 0.5, 1.0, 1.5)}
    assert all(np.isfinite(r["input_offset_std"]) and r["input_offset_std"] >= 0 for r in doc["rendered"])
    assert doc["training_spacing_std"] > 0
    assert rising_tags(
        [dict(tag="x", tau=0, mean_distance=1.0), dict(tag="x", tau=1, mean_distance=0.5)], ["x"]
    ) == {"x": False}
    assert doc["response_gain"]["happy"] > 0.2 and doc["response_gain_mean"] is not None


def test_bootstrap_interval_and_summary_tags():
    from emohead_core.render.control import Classifier, bootstrap_ci, confusion

    v = np.r_[np.ones(30), np.zeros(70)]
    lo, hi = bootstrap_ci(v, seed=1)
    assert lo < 0.3 < hi and hi - lo < 0.25 and bootstrap_ci(np.ones(10)) == [1.0, 1.0]
    clf = Classifier({"a": (np.eye(10)[0], 0.0), "b": (-np.eye(10)[0], 0.0)})
    x = np.zeros((4, 10))
    x[:3, 0] = 1.0
    x[3, 0] = -1.0
    conf = confusion(clf, {"a": x})
    assert conf["a"]["shares"] == {"a": 0.75, "b": 0.25} and conf["a"]["n_frames"] == 4


def test_response_gain_is_the_share_of_the_requested_change():
    from emohead_core.render.control import response_gain

    rows = [
        dict(tag="x", tau=1.5, input_distance=1.0, mean_distance=0.6),
        dict(tag="x", tau=0.0, input_distance=0.0, mean_distance=0.1),
        dict(tag="x", tau=0.5, input_distance=0.3, mean_distance=0.9),
        dict(tag="y", tau=0.0, input_distance=0.2, mean_distance=0.0),
        dict(tag="y", tau=1.5, input_distance=0.2, mean_distance=0.4),
        dict(tag="w", tau=0.0, input_distance=0.0, mean_distance=0.3),
        dict(tag="w", tau=1.5, input_distance=0.5, mean_distance=0.1),
    ]
    g = response_gain(rows, ["x", "y", "w"])
    assert g["x"] == pytest.approx(0.5)  # end points of the tau range, not the middle
    assert g["y"] is None  # the input did not move
    assert g["w"] == pytest.approx(-0.4)  # the render moved the other way


def test_expression_support_distances():
    """Nearest-training-expression distance in the renderer's standardised units: zero on a
    training alpha, the component offset divided by that component's std elsewhere."""
    from emohead_core.render.control import ExpressionSupport

    rng = np.random.default_rng(0)
    train = rng.normal(size=(400, 10)) * np.linspace(0.1, 2.0, 10)
    s = ExpressionSupport(train)
    assert s.offset(train[:5]) == pytest.approx(np.zeros(5), abs=1e-6)
    far = train[:1].copy()
    far[0, 0] += 100 * train[:, 0].std()  # far along the low-variance component
    assert s.offset(far)[0] == pytest.approx(100.0, rel=0.05)
    assert 0 < s.spacing < 3


def test_reextractor_recovers_the_expression_stage_alphas_on_real_frames(mirror, tmp_path):
    """The production re-extraction (3DDFA_V2 through the expression stage's FaceModel) on real
    CREMA-D frames at a render resolution gives alphas close to the expression stage's own."""
    from emohead_core.expression import FaceModel, extract_clip
    from emohead_core.render.control import Reextractor

    fm = FaceModel(mirror / "models" / "3ddfa_v2", onnx_dir=tmp_path, threads=1)
    video = mirror / "data" / "crema-d" / "1001_DFA_HAP_XX.flv"
    frames_bgr = media.read_frames(video, fps=25)[:20]
    side = min(frames_bgr.shape[1:3])
    sq = frames_bgr[:, :side, (frames_bgr.shape[2] - side) // 2 :][:, :, :side]
    crop = tmp_path / "crop.mp4"
    media.write_video(sq, crop, 25.0, crf=10)
    ref = extract_clip(crop, fm)
    frames = media.read_frames(crop, size=(160, 160))[..., ::-1]
    k = 160 / side
    seed = (ref["landmarks"][..., :2] + 0.5) * k - 0.5
    alpha = Reextractor(fm, side)(frames, seed)
    err = np.sqrt(((alpha - ref["exp"]) ** 2).mean(0))
    spread = ref["exp"].std(0) + 1e-6
    assert alpha.shape == (20, 10)
    assert float(np.median(err / np.maximum(spread, 0.05))) < 1.0
    assert np.corrcoef(alpha[:, 0], ref["exp"][:, 0])[0, 1] > 0.8  # the main mouth component follows


def test_from_arrays_single_clip_matches_accessors():
    rng = np.random.default_rng(0)
    T, S = 5, 8
    frames = rng.integers(0, 255, (T, S, S, 3), dtype=np.uint8)
    masks = rng.random((T, S, S)) > 0.5
    d = SubjectData.from_arrays(
        frames=frames,
        head_mask=masks,
        bg=frames[0],
        poses=np.zeros((T, 3, 4)),
        alpha=np.zeros((T, 10)),
        shape=np.zeros((T, 40)),
        landmarks=np.zeros((T, 68, 3)),
        train_idx=[0, 1, 2],
        test_idx=[3, 4],
    )
    assert np.array_equal(d.frame(4), frames[4]) and np.array_equal(d.mask(2), masks[2])
    assert d.clips[0]["test_start"] == 3 and d.clip_test_frames(0).tolist() == [3, 4]
    assert np.array_equal(d.behind(1), np.where(masks[1][..., None], frames[0], frames[1]))


def test_person_tau_unit_reaches_the_persons_own_clips(two_clips):
    """unit person: tau = 1 raises the score by the gap between the person's own TRAINING frames of
    z and their other training frames (held-out frames never set the unit); never less than one
    standard deviation."""
    from emohead_core.render.control import base_pool, tau_units
    from emohead_core.render.infer import std_tau

    data = load_prepared(two_clips[0])
    w = np.eye(10)[0]
    hp = {"happy": (w, 0.0), "neutral": (-w, 0.0)}
    pool = base_pool(data, 3)
    scale = tau_units(hp, data, ["happy", "neutral"], pool, "person")
    happy_train = data.clip_train_frames(1)
    rest_train = data.clip_train_frames(0)
    gap = data.alpha[happy_train, 0].mean() - data.alpha[rest_train, 0].mean()
    std = std_tau(hp, data, ["happy", "neutral"], 1.0)
    assert scale["happy"] == pytest.approx(max(gap, std["happy"]))
    assert scale["neutral"] == pytest.approx(max(-gap, std["neutral"]))
    # the held-out frames do not enter: changing them leaves the unit as it is
    data.alpha[data.test_idx] += 5.0
    assert tau_units(hp, data, ["happy", "neutral"], pool, "person")["happy"] == pytest.approx(scale["happy"])
    assert tau_units(hp, data, ["happy"], pool, "raw") == {"happy": 1.0}
    with pytest.raises(EmoheadInputError, match="unknown tau unit"):
        tau_units(hp, data, ["happy"], pool, "percent")


def test_person_tau_unit_along_an_edit_direction_other_than_the_normal(two_clips):
    """With d_z != w_z the score rises by w_z . d_z per unit of tau: tau = 1 (unit person)
    still moves the score by the training-frame gap."""
    from emohead_core.render.control import base_pool, tau_units

    data = load_prepared(two_clips[0])
    w = np.eye(10)[0]
    d = np.zeros(10)
    d[0], d[1] = 0.5, np.sqrt(0.75)  # w . d = 0.5
    hp = {"happy": (w, 0.0)}
    scale = tau_units(hp, data, ["happy"], base_pool(data, 3), "person", {"happy": d})
    gap = data.alpha[data.clip_train_frames(1), 0].mean() - data.alpha[data.clip_train_frames(0), 0].mean()
    if gap > 0:
        assert scale["happy"] * 0.5 >= gap - 1e-9
    assert scale["happy"] > 0


def test_video_only_clips_have_no_audio_input_or_sound(monkeypatch):
    """A video-only clip (MEAD style clips: empty audio_path) is rendered and tested without a
    wav: no audio input, no sound muxed, no ClipInput audio; clips with speech keep theirs."""
    from types import SimpleNamespace

    plan = _plan({"p1": {"dataset": "cremad", "actor": "1001", "split": "within_clip"}})
    df = plan.samples["cremad"]
    df.loc[df["sample_id"] == "1001_happy", "audio_path"] = ""
    w = SimpleNamespace(subject="p1", clip="1001_happy")
    assert plan.clip_audio(w) == "" and "audio" not in plan.test_clip_inputs(w)
    clips = {c["sample"]: c for c in plan.clip_inputs("p1")}
    assert clips["1001_happy"]["audio"] is None
    assert clips["1001_angry"]["audio"] == "res/cremad/audio/1001/1001_angry.wav"
    w2 = SimpleNamespace(subject="p1", clip="1001_angry")
    assert plan.clip_audio(w2).endswith("1001_angry.wav") and "audio" in plan.test_clip_inputs(w2)
