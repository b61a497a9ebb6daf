"""Training data of the person-specific renderer: frames, cameras, expressions, head masks and
the static background, prepared once per subject into ``prepared.npz``.

Head mask (landmarks + colour, see docs/decisions.md): a face polygon from the 68 3DDFA
landmarks (jaw contour + the jaw mirrored above the brows as a dome for forehead and hair),
refined by colour against the static background: ring pixels around the polygon above the
mouth-corner line that differ from the background are added (hair, ears), dome pixels that
match the background are removed. Background: per-pixel temporal median over frames where the
pixel lies outside the dilated head polygon; never-seen pixels are inpainted (Telea).
Torso and everything else outside the head mask are taken from the ground-truth frame when
compositing (``compose_background``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from .. import media
from ..errors import EmoheadInputError
from ..io import atomic_path
from .camera import fit_affine_pose, scale_pose

log = logging.getLogger(__name__)


def canonical_landmarks(shape: np.ndarray, exp: np.ndarray, bfm) -> np.ndarray:
    """BFM keypoints u + W_shp a_shp + W_exp a_exp (T, 68, 3) in canonical micrometres."""
    v = bfm.u_base[None].astype(np.float64) + shape @ bfm.w_shp_base.T.astype(np.float64) \
        + exp @ bfm.w_exp_base.T.astype(np.float64)
    return v.reshape(len(shape), 68, 3)


def poses_from_expression(expr: dict, bfm) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame camera (T, 3, 4) mapping canonical points to crop-image pixels, fitted to the
    stored landmarks (an exact affine image of the canonical keypoints, see camera.py).
    Returns (poses, rms residuals in px)."""
    X = canonical_landmarks(expr["shape"].astype(np.float64), expr["exp"].astype(np.float64), bfm)
    lm = expr["landmarks"].astype(np.float64)
    poses, res = [], []
    for t in range(len(X)):
        P, r = fit_affine_pose(X[t], lm[t])
        poses.append(P)
        res.append(r)
    return np.stack(poses), np.asarray(res)


def face_polygon(lm: np.ndarray, dome: float = 0.9, widen: float = 1.1) -> np.ndarray:
    """(68, 2) landmarks -> (34, 2) polygon: jaw contour + the jaw mirrored across the brow line
    (scaled by ``dome`` along the face's up axis, ``widen`` across) for forehead and hair."""
    jaw = lm[0:17, :2]
    brow = lm[17:27, :2].mean(axis=0)
    chin = lm[8, :2]
    up = brow - chin
    up = up / (np.linalg.norm(up) + 1e-9)
    right = np.array([-up[1], up[0]])
    rel = jaw - brow
    s_up = rel @ up  # negative below the brows
    s_rt = rel @ right
    top = brow[None] + (-dome * s_up)[:, None] * up[None] + (widen * s_rt)[:, None] * right[None]
    return np.concatenate([jaw, top[::-1]], axis=0)


def _poly_mask(poly: np.ndarray, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
    return m.astype(bool)


def estimate_background(frames: np.ndarray, exclude: np.ndarray, max_frames: int = 120) -> np.ndarray:
    """Per-pixel median of frames (T, H, W, 3) uint8 over frames where ``exclude`` (T, H, W) is
    False; pixels never free are inpainted."""
    T = len(frames)
    idx = np.linspace(0, T - 1, min(T, max_frames)).round().astype(int)
    f = frames[idx].astype(np.float32)
    f[exclude[idx]] = np.nan
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            bg = np.nanmedian(f, axis=0)
    hole = np.isnan(bg[..., 0])
    bg = np.nan_to_num(bg, nan=0.0).clip(0, 255).astype(np.uint8)
    if hole.any():
        bg = cv2.inpaint(bg, hole.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    return bg


def head_masks(frames: np.ndarray, landmarks: np.ndarray, *, dome: float = 0.9, widen: float = 1.1,
               ring: float = 0.15, color_threshold: float = 30.0, max_bg_frames: int = 120):
    """Head masks (T, H, W) bool and background (H, W, 3) uint8 from landmarks (T, 68, 2+) and
    colour (see module docstring)."""
    T, H, W = frames.shape[:3]
    polys = [face_polygon(lm, dome, widen) for lm in landmarks]
    poly_m = np.stack([_poly_mask(p, H, W) for p in polys])
    face_w = np.linalg.norm(landmarks[:, 16, :2] - landmarks[:, 0, :2], axis=1)
    excl = np.empty_like(poly_m)
    for t in range(T):
        r = max(int(round(ring * face_w[t])), 1)
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        excl[t] = cv2.dilate(poly_m[t].astype(np.uint8), k).astype(bool)
    bg = estimate_background(frames, excl, max_bg_frames)
    diff = np.abs(frames.astype(np.int16) - bg[None].astype(np.int16)).max(axis=-1) > color_threshold
    yy, xx = np.mgrid[0:H, 0:W]
    masks = np.empty_like(poly_m)
    for t in range(T):
        lm = landmarks[t, :, :2]
        brow = lm[17:27].mean(axis=0)
        up = brow - lm[8]
        up = up / (np.linalg.norm(up) + 1e-9)
        s = (xx - brow[0]) * up[0] + (yy - brow[1]) * up[1]  # height above the brow line
        mouth = 0.5 * (lm[3] + lm[13])
        s_mouth = (mouth - brow) @ up
        ringm = excl[t] & ~poly_m[t] & (s > s_mouth) & diff[t]
        dome_bg = poly_m[t] & (s > 0) & ~diff[t]
        m = ((poly_m[t] & ~dome_bg) | ringm).astype(np.uint8)
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, k)
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, k)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        if n > 2:  # keep the component that holds the nose tip
            nose = np.clip(np.round(lm[30]).astype(int), 0, [W - 1, H - 1])
            keep = lab[nose[1], nose[0]] or 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            m = (lab == keep).astype(np.uint8)
        masks[t] = m.astype(bool) | poly_m[t] & (s <= 0)  # the face below the brows always counts
    return masks, bg


def compose_background(frame: np.ndarray, bg: np.ndarray, head_mask: np.ndarray) -> np.ndarray:
    """What lies behind the rendered head: the static background inside the head mask, the
    ground-truth frame (torso and the rest) elsewhere."""
    return np.where(head_mask[..., None], bg, frame)


def prepare_subject(crop_video: str | Path, expression: str | Path, out_npz: str | Path, *,
                    resolution: int, bfm_path: str | Path, val_fraction: float = 0.1,
                    mask_cfg: dict | None = None, max_residual_px: float = 2.0,
                    max_frames: int | None = None) -> dict:
    """Decode the crop video at ``resolution``, fit cameras, build masks and background, split
    frames (the last ``val_fraction`` is held out), and write ``out_npz``. Returns a summary."""
    from ..expression.schema import read_expression
    from ..expression.tddfa import load_bfm_keypoints

    info = media.probe(crop_video)
    if not info.width or info.width != info.height:
        raise EmoheadInputError(f"expected a square crop video, got {info.width}x{info.height}.", path=crop_video)
    frames = media.read_frames(crop_video, size=(resolution, resolution))[..., ::-1].copy()  # RGB
    expr = read_expression(expression)
    T = min(len(frames), len(expr["exp"]))
    if max_frames:
        T = min(T, int(max_frames))
    if T < 10:
        raise EmoheadInputError(f"only {T} frames with expression parameters.", path=expression,
                                fix="check the crop video and the expression stage output.")
    frames = frames[:T]
    expr = {k: v[:T] for k, v in expr.items()}
    bfm = load_bfm_keypoints(bfm_path)
    poses_crop, resid = poses_from_expression(expr, bfm)
    bad = resid > max_residual_px
    if bad.mean() > 0.5:
        raise EmoheadInputError(f"camera fit residual > {max_residual_px}px on {bad.mean():.0%} of frames.",
                                path=expression, fix="the landmarks do not match the BFM keypoints file.")
    k = resolution / float(info.width)
    poses = scale_pose(poses_crop, k)
    lm = expr["landmarks"].astype(np.float64).copy()
    lm[..., :2] = (lm[..., :2] + 0.5) * k - 0.5
    masks, bg = head_masks(frames, lm, **(mask_cfg or {}))
    usable = expr["detected"].astype(bool) & ~bad
    n_val = max(1, int(round(val_fraction * T)))
    val_idx = np.arange(T - n_val, T)
    train_idx = np.arange(0, T - n_val)
    train_idx = train_idx[usable[train_idx]]
    if len(train_idx) == 0:
        raise EmoheadInputError("no usable training frames (no detected faces).", path=expression)
    arrays = dict(
        frames=frames.astype(np.uint8), bg=bg, head_mask=masks, poses=poses.astype(np.float64),
        alpha=expr["exp"].astype(np.float32), shape=expr["shape"].astype(np.float32),
        landmarks=lm.astype(np.float32), train_idx=train_idx, val_idx=val_idx,
        fps=np.float64(info.fps or 25.0), crop_size=np.int64(info.width), resolution=np.int64(resolution),
    )
    with atomic_path(out_npz) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return dict(n_frames=T, n_train=len(train_idx), n_val=n_val, resolution=resolution,
                camera_residual_px_median=float(np.median(resid)), mask_fraction=float(masks.mean()))


def load_prepared(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise EmoheadInputError("prepared render data not found.", path=path,
                                fix="run the render_prepare rule for this subject.")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
