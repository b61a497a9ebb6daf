"""Render stage: background / head-mask helpers, test outputs and the `emohead render` command
(tiny synthetic subject, real ffmpeg muxing, the real hyperplane timeline helpers)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_render import TINY_MODEL, _tiny_train, synthetic_subject  # noqa: E402

from emohead_core.render.data import estimate_background, face_polygon  # noqa: E402


def test_background_median_ignores_the_moving_head():
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 255, size=(24, 24, 3), dtype=np.uint8)
    T = 9
    frames = np.repeat(bg[None], T, 0).copy()
    excl = np.zeros((T, 24, 24), bool)
    for t in range(T):
        x = 2 * t
        frames[t, 5:15, x : x + 6] = 200  # the "head" moves across
        excl[t, 4:16, max(x - 1, 0) : x + 7] = True
    est = estimate_background(frames, excl)
    assert np.array_equal(est, bg)
    # a pixel never free is inpainted from its neighbours (no zeros / garbage)
    excl[:, 10, 10] = True
    est2 = estimate_background(frames, excl)
    assert abs(int(est2[10, 10, 0]) - int(np.median(bg[9:12, 9:12, 0]))) < 120


def test_face_polygon_covers_face_and_dome_above_brows():
    import cv2

    ang = np.linspace(np.pi, 0, 17)  # jaw from left ear over the chin to the right ear (y down)
    jaw = np.stack([50 + 30 * np.cos(ang), 50 + 35 * np.sin(ang)], 1)
    lm = np.zeros((68, 2))
    lm[0:17] = jaw
    lm[17:27] = np.stack([np.linspace(30, 70, 10), np.full(10, 45.0)], 1)
    lm[27:68] = [50, 60]
    lm[8] = [50, 85]
    poly = face_polygon(lm)
    m = np.zeros((120, 120), np.uint8)
    cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
    assert m[60, 50] and m[80, 50]  # face
    assert m[20, 50] and not m[2, 50]  # forehead / hair dome, bounded
    assert not m[60, 5]


def _subject_dir(tmp_path):
    from emohead_core.render.train import Trainer

    torch.set_num_threads(1)
    data = synthetic_subject(T=12, size=32)
    tr = Trainer(data, TINY_MODEL, _tiny_train(iters=40), device="cpu")
    tr.fit(progress=False)
    sdir = tmp_path / "render" / "synth"
    sdir.mkdir(parents=True)
    tr.save(sdir / "model.pt")
    from emohead_core.render.data import save_prepared

    save_prepared(data, sdir / "prepared")
    hp = {
        "hyperplanes": {
            z: {"w_z": (np.eye(10)[k] * 0.5).tolist(), "b": 0.0}
            for k, z in enumerate(["happy", "sad", "angry"])
        }
    }
    (sdir / "hyperplanes.json").write_text(json.dumps(hp))
    return sdir, data


def test_render_command_with_alpha_file_and_timeline(tmp_path):
    from emohead_core import media
    from emohead_core.cli import main

    sdir, data = _subject_dir(tmp_path)
    n = 20
    np.save(tmp_path / "alpha.npy", np.repeat(data.alpha[:1], n, 0))
    sr = 16000
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, (0.1 * np.sin(np.arange(int(sr * n / 25)) * 0.05)).astype(np.float32), sr)
    out = tmp_path / "out.mp4"
    rc = main(
        [
            "render",
            "--subject-dir",
            str(sdir),
            "--audio",
            str(wav),
            "--alpha",
            str(tmp_path / "alpha.npy"),
            "--timeline",
            "0:happy,0.4:sad",
            "--intensity",
            "3.0",
            "--hyperplanes",
            str(sdir / "hyperplanes.json"),
            "--out",
            str(out),
            "--pose",
            "still",
        ]
    )
    assert rc == 0
    info = media.probe(out)
    assert info.has_audio and info.width == 32
    frames = media.read_frames(out)
    assert len(frames) == n
    # the emotion switch changes the rendered head (alpha edited along w_happy then w_sad)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 0.5


def test_timeline_alphas_ramp_between_hyperplanes(tmp_path):
    from emohead_core.render.infer import timeline_alphas

    hp = {"happy": (np.eye(10)[0], 0.0), "sad": (np.eye(10)[1], 0.0)}
    a = np.zeros((50, 10), np.float32)
    out = timeline_alphas(a, "0:happy,1.0:sad", hp, intensity=2.0, fps=25, ramp_s=0.4)
    assert np.allclose(out[0], 2 * np.eye(10)[0]) and np.allclose(out[-1], 2 * np.eye(10)[1])
    mid = out[25]  # t = 1.0 s: half way through the ramp (eq. 9 with a linear ramp of tau w)
    assert np.allclose(mid[:2], [1.0, 1.0])
    curve = np.linspace(0, 1, 50)
    out2 = timeline_alphas(a, "0:happy", hp, intensity=curve, fps=25)
    assert np.allclose(out2[:, 0], curve)


def test_test_outputs_and_psnr_files(tmp_path):
    from emohead_core import media
    from emohead_core.render.infer import novel_view_strip, summarise_tests, write_test_clip
    from emohead_core.render.train import load_renderer

    sdir, data = _subject_dir(tmp_path)
    r = load_renderer(sdir / "model.pt", "cpu")
    res = write_test_clip(r, data, "s", sdir / "test" / "s", meta={"subject": "synth"})
    meta = json.loads((sdir / "test" / "s" / "test_meta.json").read_text())
    assert meta["frame_start"] == 10 and meta["frame_end"] == 12 and meta["fps"] == 25
    assert meta["emotion"] == "neutral" and meta["sample"] == "s" and meta["dataset"] == "d"
    assert meta["alpha_source"] == "ground truth"
    for name in ("test_render.mp4", "test_gt.mp4"):
        assert len(media.read_frames(sdir / "test" / "s" / name)) == 2
    # the ground-truth frames' head masks beside the videos (the metrics' head region)
    from emohead_core.headmask import load_masks

    assert meta["mask"] == "test_mask.npz"
    assert np.array_equal(load_masks(sdir / "test" / "s" / "test_mask.npz"), data.masks(data.test_idx))
    assert res["psnr_head"] > res["baseline_psnr_head"]
    summary = summarise_tests([sdir / "test" / "s" / "test_meta.json"], sdir / "val_psnr.json")
    assert summary["n_clips"] == 1 and summary["val_psnr_head"] == pytest.approx(res["psnr_head"])
    assert json.loads((sdir / "val_psnr.json").read_text())["clips"]["s"]["n_frames"] == 2
    novel_view_strip(r, data, sdir / "nv.png", yaws=(-20, 0, 20))
    import cv2

    assert cv2.imread(str(sdir / "nv.png")).shape == (32, 96, 3)


def test_driven_clip_renders_the_test_span_from_the_clips_audio(tmp_path, mirror, repo_root):
    """The audio-driven test render: alpha_hat of a saved audio2exp model (the demo's offline
    encoders, real ASR) from the clip's real wav (its test span cut from a prediction over the
    whole clip), the test span's poses, the span's audio muxed; meta has the alpha RMSE against
    the frames' ground-truth alphas."""
    from emohead_core import media
    from emohead_core.audio2exp.model import ModelConfig
    from emohead_core.audio2exp.synthetic import synthetic_corpus
    from emohead_core.audio2exp.train import TrainConfig, train
    from emohead_core.config import load_config
    from emohead_core.render.infer import fit_length, write_driven_clip
    from emohead_core.render.train import load_renderer

    sdir, data = _subject_dir(tmp_path)
    corpus = synthetic_corpus(frames=20, dims=(80, 80, 384))
    corpus.meta["encoders"] = {"v": "logmel", "e": "logmel", "gamma": "minilm"}  # config/demo.yaml profile
    mcfg = ModelConfig(dim_v=80, dim_e=80, dim_gamma=384, d=16, d_h=16, n=3, ffn=(32, 16))
    a2e = train(corpus, mcfg, TrainConfig(iterations=3, batch_size=8), tmp_path / "a2e", progress=False)
    wav = tmp_path / "speech.wav"
    media.extract_audio(mirror / "data" / "crema-d" / "1001_DFA_HAP_XX.flv", wav)
    cfg = load_config(repo_root / "config" / "demo.yaml")
    out = tmp_path / "driven" / "main" / "s"
    r = load_renderer(sdir / "model.pt", "cpu")
    res = write_driven_clip(
        r,
        data,
        "s",
        out,
        a2e_model=a2e.parent,
        audio=wav,
        config=cfg,
        hyperplanes=sdir / "hyperplanes.json",
        emotion="happy",
        meta={"variant": "main"},
    )
    meta = json.loads((out / "test_meta.json").read_text())
    val = data.test_idx
    assert (meta["frame_start"], meta["frame_end"], meta["n_frames"]) == (10, 12, len(val))
    assert meta["variant"] == "main" and meta["alpha_source"] == "audio" and meta["emotion"] == "happy"
    assert res["n_predicted"] > len(val)  # predicted over the whole clip, the test span cut from it
    assert np.isfinite(res["alpha_rmse"]) and res["alpha_rmse"] > 0 and np.isfinite(res["psnr_head"])
    for name in ("test_render.mp4", "test_gt.mp4"):
        info = media.probe(out / name)
        assert len(media.read_frames(out / name)) == len(val) and info.has_audio, name
    from emohead_core.headmask import load_masks

    assert np.array_equal(load_masks(out / "test_mask.npz"), data.masks(val))
    assert not list(out.glob(".*"))  # the cut audio segment is removed
    # feature frame counts may differ by one from the video's: cut or edge-padded
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert fit_length(a, 2).tolist() == [[0, 1], [2, 3]]
    assert fit_length(a, 4).tolist() == [[0, 1], [2, 3], [4, 5], [4, 5]]


def test_driven_models_and_metric_methods():
    from emohead_core.metrics.pairs import driven_method
    from emohead_core.render.plan import SubjectPlan, driven_models

    def sp(name, a2e):
        return SubjectPlan(
            name, "obama", "o", ["o"], {"o": "neutral"}, {"o": False}, "within_clip", 0.1, None, a2e
        )

    subj = {
        "obama": sp("obama", "results/cremad/audio2exp/main"),
        "ext": sp("ext", "/models/my_a2e/model.pt"),
        "none": sp("none", None),
    }
    cfg = {"render": {}}
    got = driven_models(cfg, "results", subj, ["main", "d256"])
    assert got == {
        "obama": {"main": "results/cremad/audio2exp/main", "d256": "results/cremad/audio2exp/d256"},
        "ext": {"main": "/models/my_a2e"},
    }
    cfg["render"]["driven"] = {"variants": ["d256"]}
    assert driven_models(cfg, "results", subj, ["main", "d256"])["obama"] == {
        "d256": "results/cremad/audio2exp/d256"
    }
    cfg["render"]["driven"] = {"enabled": False}
    assert driven_models(cfg, "results", subj, ["main"]) == {}
    assert driven_method("main") == "ours" and driven_method("wo_refinement") == "ours_wo_refinement"


def test_subject_json_is_valid_from_any_directory_and_when_results_move(tmp_path, monkeypatch):
    """subject.json stores the audio2exp model relative to the subject directory and a copy of
    the hyperplanes, so `emohead render` finds them from another working directory and after
    the results directory moved."""
    from emohead_core.render.infer import subject_info
    from emohead_core.render.pipeline import subject_json

    res = tmp_path / "results"
    hp = res / "cremad" / "hyperplanes" / "1001" / "hyperplanes.json"
    hp.parent.mkdir(parents=True)
    hp.write_text(json.dumps({"hyperplanes": {"happy": {"w_z": [1.0] + [0.0] * 9, "b": 0.0}}}))
    a2e = res / "cremad" / "audio2exp" / "main"
    a2e.mkdir(parents=True)
    (a2e / "model.pt").write_bytes(b"x")
    sdir = res / "render" / "p"
    sdir.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    doc = subject_json(
        {
            "name": "p",
            "hyperplanes": "results/cremad/hyperplanes/1001/hyperplanes.json",
            "audio2exp": "results/cremad/audio2exp/main",
        },
        sdir,
    )
    assert doc["hyperplanes"] == "hyperplanes.json" and doc["audio2exp"] == "../../cremad/audio2exp/main"
    (sdir / "subject.json").write_text(json.dumps(doc))
    moved = tmp_path / "elsewhere" / "results"
    moved.parent.mkdir()
    res.rename(moved)
    monkeypatch.chdir(moved.parent.parent.parent)
    info = subject_info(moved / "render" / "p")
    assert Path(info["hyperplanes"]).is_file() and (Path(info["audio2exp"]) / "model.pt").is_file()
