"""FaceBoxes: weights load into our module, anchors/decode/NMS, ONNX == torch, real faces found."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from emohead_core import media
from emohead_core.errors import EmoheadInputError
from emohead_core.preprocess import facedetect as fd

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def weights(mirror):
    return mirror / "models" / "3ddfa_v2" / "FaceBoxesProd.pth"


@pytest.fixture(scope="module")
def onnx_path(weights, tmp_path_factory):
    return fd.export_onnx(weights, tmp_path_factory.mktemp("onnx") / "faceboxes.onnx")


@pytest.fixture(scope="module")
def torch_det(weights):
    return fd.TorchFaceDetector(weights)


@pytest.fixture(scope="module")
def onnx_det(onnx_path):
    return fd.FaceDetector(onnx_path, ["CPUExecutionProvider"], threads=1)


@pytest.fixture(scope="module")
def crema_frames(crema_clips):
    """Three frames (first, middle, last at 25 fps) of each real CREMA-D clip."""
    out = {}
    for clip in crema_clips:
        fr = media.read_frames(clip, fps=25)
        out[clip.stem] = fr[[0, len(fr) // 2, len(fr) - 1]]
    return out


def test_state_dict_matches_module(weights):
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    ours = fd.FaceBoxesNet().state_dict()
    assert list(sd) == list(ours)
    assert all(tuple(sd[k].shape) == tuple(ours[k].shape) for k in sd)
    net = fd.load_faceboxes(str(weights))
    assert not net.training
    assert torch.equal(net.state_dict()["loc.0.weight"], sd["loc.0.weight"])


def _reference_priors(h, w):
    """Straightforward loop over cells and anchors (FaceBoxes' PriorBox definition)."""
    anchors = []
    for step, sizes in zip(fd.STEPS, fd.MIN_SIZES):
        for i, j in itertools.product(range(math.ceil(h / step)), range(math.ceil(w / step))):
            for s in sizes:
                if s == 32:
                    offs = [0, 0.25, 0.5, 0.75]
                elif s == 64:
                    offs = [0, 0.5]
                else:
                    offs = [0.5]
                for oy in offs:
                    for ox in offs:
                        anchors.append([(j + ox) * step / w, (i + oy) * step / h, s / w, s / h])
    return np.array(anchors, np.float32)


@pytest.mark.parametrize("h,w", [(360, 480), (257, 301), (128, 128)])
def test_priors_match_network_and_reference(weights, h, w):
    net = fd.load_faceboxes(str(weights))
    with torch.inference_mode():
        loc, conf = net(torch.zeros(1, 3, h, w))
    pri = fd.prior_boxes(h, w)
    assert pri.shape == (loc.shape[1], 4) == (conf.shape[1], 4)
    np.testing.assert_allclose(pri, _reference_priors(h, w), atol=1e-6)
    np.testing.assert_allclose(conf.sum(-1).numpy(), 1.0, atol=1e-5)  # softmax scores


def test_decode_inverts_encoding():
    rng = np.random.default_rng(0)
    pri = fd.prior_boxes(200, 300)[:50]
    gt = np.stack(
        [
            rng.uniform(0, 0.5, 50),
            rng.uniform(0, 0.5, 50),
            rng.uniform(0.55, 1, 50),
            rng.uniform(0.55, 1, 50),
        ],
        1,
    )
    c = (gt[:, :2] + gt[:, 2:]) / 2
    wh = gt[:, 2:] - gt[:, :2]
    v0, v1 = fd.VARIANCE
    loc = np.concatenate([(c - pri[:, :2]) / (v0 * pri[:, 2:]), np.log(wh / pri[:, 2:]) / v1], 1)
    np.testing.assert_allclose(fd.decode(loc, pri), gt, atol=1e-5)


def test_nms():
    dets = np.array(
        [
            [0, 0, 10, 10, 0.9],
            [1, 1, 11, 11, 0.95],  # IoU with the first ~0.68: suppresses it
            [20, 20, 30, 30, 0.5],
            [0, 0, 10, 5, 0.8],  # IoU 0.5 with the first, 36/114 = 0.316 with the second
        ],
        np.float32,
    )
    assert list(fd.nms(dets, 0.3)) == [1, 2]
    assert list(fd.nms(dets, 0.35)) == [1, 3, 2]
    assert list(fd.nms(dets, 0.6)) == [1, 3, 2]
    assert list(fd.nms(dets, 0.7)) == [1, 0, 3, 2]
    assert fd.nms(np.zeros((0, 5), np.float32), 0.3).shape == (0,)
    # greedy NMS invariant on random boxes: kept boxes overlap each other by <= thresh
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, (200, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (200, 2)), rng.uniform(0, 1, (200, 1))], 1)
    keep = fd.nms(boxes, 0.3)
    iou = fd.box_iou(boxes[keep], boxes[keep])
    np.fill_diagonal(iou, 0)
    assert iou.max() <= 0.3
    dropped = np.setdiff1d(np.arange(200), keep)
    # every dropped box overlaps some kept box with a higher score
    for d in dropped:
        ov = fd.box_iou(boxes[d : d + 1], boxes[keep])[0]
        assert ((ov > 0.3) & (boxes[keep, 4] >= boxes[d, 4])).any()


def test_onnx_matches_torch(weights, onnx_path):
    import onnxruntime as ort

    net = fd.load_faceboxes(str(weights))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in [(1, 3, 360, 480), (2, 3, 250, 190)]:  # dynamic batch and size
        x = (rng.uniform(0, 255, shape) - 117).astype(np.float32)
        loc, conf = sess.run(["loc", "conf"], {"input": x})
        with torch.inference_mode():
            tl, tc = net(torch.from_numpy(x))
        np.testing.assert_allclose(loc, tl.numpy(), atol=2e-3)
        np.testing.assert_allclose(conf, tc.numpy(), atol=1e-4)


def _green_fraction(img):
    b, g, r = (img[..., i].astype(int) for i in range(3))
    return float(((g > r + 30) & (g > b + 30)).mean())


def test_one_face_per_real_crema_frame(crema_frames, onnx_det, torch_det):
    """Actor 1001 in front of a green screen: exactly one face, on the person, not the screen."""
    boxes = []
    for name, frames in crema_frames.items():
        for f in frames:
            d = onnx_det.detect(f)
            assert d.dtype == np.float32 and d.shape == (1, 5), (name, d)
            x1, y1, x2, y2, s = d[0]
            assert s > 0.9
            h, w = f.shape[:2]
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            assert 60 < x2 - x1 < 200 and 60 < y2 - y1 < 220  # a face at this distance
            assert w * 0.3 < (x1 + x2) / 2 < w * 0.7 and (y1 + y2) / 2 < h * 0.6  # head, centred, upper half
            face = f[int(y1) : int(y2), int(x1) : int(x2)]
            assert _green_fraction(face) < 0.15 < 0.5 < _green_fraction(f[:, : int(x1)])
            t = torch_det.detect(f)
            assert fd.box_iou(d, t)[0, 0] > 0.99 and abs(t[0, 4] - s) < 1e-3
            boxes.append(d[0])
    # the same person at the same place in every clip
    boxes = np.array(boxes)
    assert fd.box_iou(boxes, boxes).min() > 0.6


def test_masked_face_is_not_detected(crema_frames, onnx_det):
    f = crema_frames["1001_DFA_NEU_XX"][1].copy()
    x1, y1, x2, y2, _ = onnx_det.detect(f)[0].astype(int)
    f[max(0, y1 - 20) : y2 + 20, max(0, x1 - 20) : x2 + 20] = 128
    assert len(onnx_det.detect(f)) == 0
    assert len(onnx_det.detect(np.full((360, 480, 3), 90, np.uint8))) == 0


def test_batch_scaling_and_flip(crema_frames, onnx_path):
    f = crema_frames["1001_DFA_HAP_XX"][0]
    det = fd.FaceDetector(onnx_path, threads=1)
    assert "CPUExecutionProvider" in det.providers
    one = det.detect(f)
    batch = det.detect_batch(np.stack([f, f[:, ::-1]]))
    np.testing.assert_allclose(batch[0], one, atol=1e-3)
    flipped = batch[1][0]
    w = f.shape[1]
    mirrored = np.array([w - flipped[2], flipped[1], w - flipped[0], flipped[3]])
    assert fd.box_iou(one, mirrored[None])[0, 0] > 0.8
    # a 2x upscaled frame detected at max_side=480 gives the same box x2, in input pixels
    import cv2

    big = cv2.resize(f, (960, 720))
    small_det = fd.FaceDetector(onnx_path, threads=1, max_side=480).detect(big)
    assert fd.box_iou(small_det, one * np.array([2, 2, 2, 2, 1], np.float32))[0, 0] > 0.95


def test_real_talking_head(mirror, onnx_det):
    f = next(media.iter_frames(mirror / "data/talking-heads/uncrop_Obama.mp4"))
    d = onnx_det.detect(f)
    assert len(d) == 1 and d[0, 4] > 0.9
    assert 100 < d[0, 2] - d[0, 0] < 300


def test_missing_onnx_and_bad_input(tmp_path, onnx_det):
    with pytest.raises(EmoheadInputError, match="export_faceboxes_onnx"):
        fd.FaceDetector(tmp_path / "none.onnx")
    with pytest.raises(ValueError):
        onnx_det.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        onnx_det.detect_batch(np.zeros((1, 10, 10, 3), np.float32))
    assert fd.default_providers("cpu") == ["CPUExecutionProvider"]


def test_batch_split_over_threads_gives_the_same_boxes(onnx_path, crema_clips):
    """threads > 1 runs a batch as parts in parallel (ortsession.BatchSplitter): same detections
    to the bit as one call, also for a batch that does not divide evenly."""
    frames = media.read_frames(crema_clips[1], fps=25)[:7]
    one = fd.FaceDetector(onnx_path, ["CPUExecutionProvider"], threads=1).detect_batch(frames)
    split = fd.FaceDetector(onnx_path, ["CPUExecutionProvider"], threads=3)
    assert split._runner.parts == 3
    for a, b in zip(one, split.detect_batch(frames)):
        assert np.array_equal(a, b)
