"""Landmark distances M-LMD (mouth, points 48-67) and F-LMD (face, points 0-67).

Definition (docs/decisions.md): for every aligned frame, the 2-D (x, y) landmarks of the generated
and the ground-truth frame, in pixels of the ground-truth frame size, are each mean-centred (the
mouth set by its own mean for M-LMD, the 68 points by theirs for F-LMD, which removes head
translation as the common LMD implementations do); the distance is the mean Euclidean distance
over points, averaged over frames. Frames where either side has no fitted face are skipped.

Landmark sources: ``3ddfa`` (our expression extraction, :mod:`emohead_core.expression`) and
``dlib`` (dlib's HOG face detector + the 68-point shape predictor from the
``face_recognition_models`` sdist), an independent detector so the renderer is not judged only by
the model that conditions it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MOUTH = np.arange(48, 68)
FACE = np.arange(0, 68)


def _centred(pts: np.ndarray) -> np.ndarray:
    return pts - pts.mean(axis=-2, keepdims=True)


def lmd(gen_lm: np.ndarray, gt_lm: np.ndarray, idx: np.ndarray) -> float:
    """Mean over frames of the mean per-point L2 distance of mean-centred (x, y) landmarks."""
    g = np.asarray(gen_lm, np.float64)[:, idx, :2]
    t = np.asarray(gt_lm, np.float64)[:, idx, :2]
    ok = np.isfinite(g).all(axis=(1, 2)) & np.isfinite(t).all(axis=(1, 2))
    if not ok.any():
        return float("nan")
    d = np.linalg.norm(_centred(g[ok]) - _centred(t[ok]), axis=-1)
    return float(d.mean())


def m_lmd(gen_lm, gt_lm) -> float:
    return lmd(gen_lm, gt_lm, MOUTH)


def f_lmd(gen_lm, gt_lm) -> float:
    return lmd(gen_lm, gt_lm, FACE)


class DlibLandmarks:
    """dlib HOG face detector + 68-point shape predictor (``shape_predictor_68_face_landmarks.dat``)."""

    def __init__(self, predictor_path: str | Path, upsample: int = 0):
        import dlib

        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path))
        self.upsample = upsample
        self._dlib = dlib

    def __call__(self, frames_rgb: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB -> (T, 68, 2) landmarks, NaN where no face is found. The largest
        detection is used; a frame without detection reuses the previous frame's box."""
        out = np.full((len(frames_rgb), 68, 2), np.nan)
        prev = None
        for t, f in enumerate(frames_rgb):
            f = np.ascontiguousarray(f)
            dets = self.detector(f, self.upsample)
            box = max(dets, key=lambda r: r.area()) if len(dets) else prev
            if box is None:
                continue
            prev = box
            s = self.predictor(f, box)
            out[t] = [(p.x, p.y) for p in s.parts()]
        return out


def tddfa_fit(face_model, frames_bgr: np.ndarray, detect_every: int = 1) -> dict[str, np.ndarray]:
    """Our 3DDFA_V2 extraction on frames: 'landmarks' (T, 68, 3) and 'exp' (T, 10); frames
    without a fitted face are NaN (not interpolated, so they are skipped by the metrics)."""
    from ..expression import fit_frames

    data = fit_frames(face_model, list(frames_bgr), detect_every=detect_every)
    lm = np.asarray(data["landmarks"], np.float64).reshape(len(frames_bgr), 68, 3)
    exp = np.asarray(data["exp"], np.float64).reshape(len(frames_bgr), -1)
    det = np.asarray(data.get("detected", np.ones(len(lm), bool)), bool)
    roi_src = np.asarray(data.get("roi_source", np.ones(len(lm))), int)
    bad = ~det & (roi_src == 0)  # interpolated frames carry no measurement
    lm[bad] = np.nan
    exp[bad] = np.nan
    return {"landmarks": lm, "exp": exp}
