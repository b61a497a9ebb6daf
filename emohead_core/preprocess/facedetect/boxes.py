"""FaceBoxes anchors, box decoding and non-maximum suppression (NumPy)."""

from __future__ import annotations

import functools
import math

import numpy as np

MIN_SIZES = ((32, 64, 128), (256,), (512,))
STEPS = (32, 64, 128)
VARIANCE = (0.1, 0.2)
MEAN_BGR = (104.0, 117.0, 123.0)

# densification: an anchor of size s on a source of stride `step` is tiled n x n per cell
# (n = 4 for 32 px, 2 for 64 px, 1 otherwise) so small anchors are as dense as large ones.
_DENSITY = {32: 4, 64: 2}


@functools.lru_cache(maxsize=32)
def _prior_boxes_cached(height: int, width: int) -> np.ndarray:
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        ii, jj = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")  # row-major cells
        cell = []
        for s in sizes:
            n = _DENSITY.get(s, 1)
            offs = (np.arange(n) + 0.5) / n if n == 1 else np.arange(n) / n
            # per cell: cy outer, cx inner (the order of the head's channel groups)
            oy, ox = np.meshgrid(offs, offs, indexing="ij")
            cx = (jj[..., None] + ox.reshape(-1)) * step / width
            cy = (ii[..., None] + oy.reshape(-1)) * step / height
            wh = np.broadcast_to(np.array([s / width, s / height]), cx.shape + (2,))
            cell.append(np.concatenate([cx[..., None], cy[..., None], wh], axis=-1))
        out.append(np.concatenate(cell, axis=2).reshape(-1, 4))
    pri = np.concatenate(out, axis=0).astype(np.float32)
    pri.setflags(write=False)
    return pri


def prior_boxes(height: int, width: int) -> np.ndarray:
    """Anchors (A, 4) as (cx, cy, w, h) normalised by the image size, in the order of the
    network's outputs: source 1, 2, 3; cells row-major; anchors of a cell in head order."""
    return _prior_boxes_cached(int(height), int(width))


def decode(loc: np.ndarray, priors: np.ndarray, variance=VARIANCE) -> np.ndarray:
    """SSD box decoding: offsets (A, 4) relative to ``priors`` -> corners (x1, y1, x2, y2),
    normalised coordinates."""
    loc = loc.astype(np.float32, copy=False)
    c = priors[:, :2] + loc[:, :2] * variance[0] * priors[:, 2:]
    wh = priors[:, 2:] * np.exp(loc[:, 2:] * variance[1])
    return np.concatenate([c - wh / 2, c + wh / 2], axis=1)


def nms(dets: np.ndarray, thresh: float) -> np.ndarray:
    """Greedy non-maximum suppression. ``dets`` (N, 5) [x1, y1, x2, y2, score]; returns the
    indices kept, by descending score. Boxes overlapping a kept box with IoU > ``thresh`` go."""
    if len(dets) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2, scores = (dets[:, i] for i in range(5))
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[iou <= thresh]
    return np.asarray(keep, dtype=np.int64)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of corner boxes a (N, 4+) and b (M, 4+)."""
    a = np.asarray(a, np.float64)[:, None, :4]
    b = np.asarray(b, np.float64)[None, :, :4]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)
