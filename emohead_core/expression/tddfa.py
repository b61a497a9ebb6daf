"""3DDFA_V2 geometry: crop boxes, input normalisation, parameter (de)normalisation, sparse
68-landmark reconstruction in image coordinates, head pose and the mouth aspect ratio.

Conventions follow upstream 3DDFA_V2 (commit 1b6c676) so that our parameters and landmarks
are the ones the paper's pipeline sees:

* face box -> ROI: centre shifted down by 0.14 x mean side, side ``int(1.58 x mean side)``;
  landmarks -> ROI (tracking): square around the landmarks' bounding box, side = its diagonal.
* crop: ROI rounded to integers, zero padding outside the image, bilinear resize to 120x120,
  BGR, ``(x - 127.5) / 128``.
* params = net output * std + mean; 62 = 12 pose (3x4 row-major [s R | t]) + 40 shape
  + 10 expression.
* landmarks = P[:, :3] @ (u + W_shp a_shp + W_exp a_exp) + P[:, 3], in the 120x120 crop frame
  (y up), then mapped back into the image: x - 1, z - 1, y -> 120 - y, scaled by the ROI size
  and shifted by its corner; z scaled by the mean scale and shifted to a minimum of 0.
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..errors import EmoheadInputError
from ..io import sha256_file

if TYPE_CHECKING:  # annotations only: the ONNX extraction path never imports torch
    import torch

INPUT_SIZE = 120
N_POSE, N_SHAPE, N_EXP = 12, 40, 10
N_PARAMS = N_POSE + N_SHAPE + N_EXP
N_LANDMARKS = 68
PIXEL_MEAN, PIXEL_STD = 127.5, 128.0

# manifest names (config/assets.yaml) of the files this module reads
PARAM_STATS_ASSET = "3ddfa_v2/param_mean_std_62d_120x120.pkl"
BFM68_ASSET = "3ddfa_v2/bfm_68_landmarks.npz"
BFM_FULL_ASSET = "3ddfa_v2/bfm_noneck_v3.pkl"


def _pinned_sha256(asset_name: str) -> str | None:
    from ..assets import load_manifest

    a = load_manifest().get(asset_name)
    return a.sha256 if a is not None else None


def _check_sha256(path: Path, expected: str | None, asset_name: str) -> str:
    """sha256 of ``path``; raises unless it equals ``expected`` (default: the manifest pin)."""
    expected = expected or _pinned_sha256(asset_name)
    if expected is None:
        raise EmoheadInputError(
            f"refusing to unpickle {path.name}: no sha256 pinned for asset {asset_name!r}.",
            path=path,
            fix="pin its sha256 in config/assets.yaml (pickles are only loaded after a checksum).",
        )
    actual = sha256_file(path)
    if actual != expected:
        raise EmoheadInputError(
            f"sha256 mismatch: expected {expected}, got {actual}.",
            path=path,
            fix="replace the file with the pinned upstream version of " + asset_name + ".",
        )
    return actual


# ----------------------------------------------------------------------------- assets


@dataclass(frozen=True)
class ParamStats:
    mean: np.ndarray  # (62,) float32
    std: np.ndarray  # (62,) float32
    sha256: str


def load_param_stats(path: str | os.PathLike, expected_sha256: str | None = None) -> ParamStats:
    """Load ``param_mean_std_62d_120x120.pkl`` after checking its sha256 (never before)."""
    path = Path(path)
    if not path.is_file():
        raise EmoheadInputError(
            "parameter statistics file not found.", path=path, fix="resolve asset " + PARAM_STATS_ASSET + "."
        )
    digest = _check_sha256(path, expected_sha256, PARAM_STATS_ASSET)
    with open(path, "rb") as f:
        d = pickle.load(f)  # checksum verified above
    mean = np.asarray(d["mean"], np.float32).reshape(-1)
    std = np.asarray(d["std"], np.float32).reshape(-1)
    if mean.shape != (N_PARAMS,) or std.shape != (N_PARAMS,):
        raise EmoheadInputError(f"expected mean/std of length {N_PARAMS}.", path=path)
    return ParamStats(mean, std, digest)


@dataclass(frozen=True)
class BFMKeypoints:
    """The 68 keypoint rows of the BFM: vectors ordered x0, y0, z0, x1, ..."""

    u_base: np.ndarray  # (204,)
    w_shp_base: np.ndarray  # (204, 40)
    w_exp_base: np.ndarray  # (204, 10)
    sha256: str
    source: str


def load_bfm_keypoints(path: str | os.PathLike, expected_sha256: str | None = None) -> BFMKeypoints:
    """``bfm_68_landmarks.npz`` (u_base, w_shp_base, w_exp_base) or upstream's full
    ``bfm_noneck_v3.pkl`` (u, w_shp, w_exp, keypoints; sha256-checked before unpickling)."""
    path = Path(path)
    if not path.is_file():
        raise EmoheadInputError("BFM file not found.", path=path, fix="resolve asset " + BFM68_ASSET + ".")
    if path.suffix == ".npz":
        digest = sha256_file(path)
        pinned = expected_sha256 or _pinned_sha256(BFM68_ASSET)
        if path.name == Path(BFM68_ASSET).name and pinned and digest != pinned:
            raise EmoheadInputError(f"sha256 mismatch: expected {pinned}, got {digest}.", path=path)
        with np.load(path, allow_pickle=False) as z:
            u = z["u_base"].astype(np.float32).reshape(-1)
            ws = z["w_shp_base"].astype(np.float32)[:, :N_SHAPE]
            we = z["w_exp_base"].astype(np.float32)[:, :N_EXP]
    else:
        digest = _check_sha256(path, expected_sha256, BFM_FULL_ASSET)
        with open(path, "rb") as f:
            bfm = pickle.load(f)  # checksum verified above
        kp = np.asarray(bfm["keypoints"]).astype(np.int64).reshape(-1)
        u = np.asarray(bfm["u"], np.float32).reshape(-1)[kp]
        ws = np.asarray(bfm["w_shp"], np.float32)[kp][:, :N_SHAPE]
        we = np.asarray(bfm["w_exp"], np.float32)[kp][:, :N_EXP]
    if (
        u.shape != (3 * N_LANDMARKS,)
        or ws.shape != (3 * N_LANDMARKS, N_SHAPE)
        or we.shape != (3 * N_LANDMARKS, N_EXP)
    ):
        raise EmoheadInputError(f"unexpected BFM keypoint shapes {u.shape} {ws.shape} {we.shape}.", path=path)
    return BFMKeypoints(u, ws, we, digest, path.name)


# ----------------------------------------------------------------------------- crop boxes


def roi_box_from_bbox(box) -> np.ndarray:
    """Upstream ``parse_roi_box_from_bbox``: (x1, y1, x2, y2[, score]) -> square ROI (4,)."""
    left, top, right, bottom = (float(v) for v in box[:4])
    old_size = (right - left + bottom - top) / 2.0
    cx = right - (right - left) / 2.0
    cy = bottom - (bottom - top) / 2.0 + old_size * 0.14
    size = int(old_size * 1.58)
    x0, y0 = cx - size / 2.0, cy - size / 2.0
    return np.array([x0, y0, x0 + size, y0 + size], np.float64)


def roi_box_from_landmarks(pts: np.ndarray) -> np.ndarray:
    """Upstream ``parse_roi_box_from_landmark`` (tracking): landmarks (68, >=2) -> ROI (4,)."""
    pts = np.asarray(pts, np.float64)
    x1, y1 = pts[:, 0].min(), pts[:, 1].min()
    x2, y2 = pts[:, 0].max(), pts[:, 1].max()
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    radius = max(x2 - x1, y2 - y1) / 2.0
    side = math.sqrt(2.0) * 2.0 * radius  # diagonal of the square of side 2r
    return np.array([cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0], np.float64)


def crop_image(img: np.ndarray, roi_box) -> np.ndarray:
    """Crop ``img`` to the ROI rounded to integer pixels, zero-padding what lies outside (a
    view of ``img`` when the ROI lies inside it)."""
    h, w = img.shape[:2]
    sx, sy, ex, ey = (int(round(float(v))) for v in roi_box[:4])
    if 0 <= sx < ex <= w and 0 <= sy < ey <= h:
        return img[sy:ey, sx:ex]
    out = np.zeros((ey - sy, ex - sx) + img.shape[2:], dtype=img.dtype)
    ix0, iy0, ix1, iy1 = max(sx, 0), max(sy, 0), min(ex, w), min(ey, h)
    if ix1 > ix0 and iy1 > iy0:
        out[iy0 - sy : iy1 - sy, ix0 - sx : ix1 - sx] = img[iy0:iy1, ix0:ix1]
    return out


def crop_resize(img: np.ndarray, roi_box, size: int = INPUT_SIZE) -> np.ndarray:
    """Zero-padded ROI crop resized bilinearly to ``size`` x ``size`` (uint8 BGR)."""
    crop = crop_image(img, roi_box)
    if crop.shape[0] < 1 or crop.shape[1] < 1:
        crop = np.zeros((1, 1, 3), img.dtype)
    return cv2.resize(crop, dsize=(size, size), interpolation=cv2.INTER_LINEAR)


def normalize_crops(crops: np.ndarray) -> np.ndarray:
    """uint8 (N, 120, 120, 3) BGR -> float32 (N, 3, 120, 120), (x - 127.5) / 128."""
    x = np.asarray(crops).transpose(0, 3, 1, 2).astype(np.float32, order="C")  # a new array
    x -= PIXEL_MEAN
    x /= PIXEL_STD  # in place: same values, no temporaries
    return x


# ----------------------------------------------------------------------------- parameters


def denormalize(out: np.ndarray, stats: ParamStats) -> np.ndarray:
    """Network output -> 3DMM parameters: params = out * std + mean."""
    return (np.asarray(out, np.float32) * stats.std + stats.mean).astype(np.float32)


def split_params(params: np.ndarray):
    """(..., 62) -> pose (..., 3, 4), shape (..., 40), exp (..., 10)."""
    p = np.asarray(params)
    pose = p[..., :N_POSE].reshape(p.shape[:-1] + (3, 4))
    return pose, p[..., N_POSE : N_POSE + N_SHAPE], p[..., N_POSE + N_SHAPE : N_PARAMS]


def landmarks_in_crop(params: np.ndarray, bfm: BFMKeypoints) -> np.ndarray:
    """(N, 62) -> (N, 68, 3) keypoints in the 120x120 crop frame (y up, before the y flip)."""
    params = np.atleast_2d(np.asarray(params, np.float64))
    pose, a_shp, a_exp = split_params(params)
    verts = (
        bfm.u_base[None].astype(np.float64)
        + a_shp @ bfm.w_shp_base.T.astype(np.float64)
        + a_exp @ bfm.w_exp_base.T.astype(np.float64)
    )  # (N, 204)
    verts = verts.reshape(-1, N_LANDMARKS, 3)  # rows x, y, z per keypoint
    R, t = pose[:, :, :3], pose[:, :, 3]
    return np.einsum("nij,nkj->nki", R, verts) + t[:, None, :]


def to_image_coords(pts_crop: np.ndarray, roi_boxes: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Upstream ``similar_transform``: crop-frame points (N, 68, 3) -> image coordinates."""
    pts = np.array(pts_crop, np.float64, copy=True)
    roi = np.atleast_2d(np.asarray(roi_boxes, np.float64))
    pts[..., 0] -= 1.0
    pts[..., 2] -= 1.0
    pts[..., 1] = size - pts[..., 1]
    sx, sy, ex, ey = (roi[:, i][:, None] for i in range(4))
    scale_x, scale_y = (ex - sx) / size, (ey - sy) / size
    pts[..., 0] = pts[..., 0] * scale_x + sx
    pts[..., 1] = pts[..., 1] * scale_y + sy
    pts[..., 2] *= (scale_x + scale_y) / 2.0
    pts[..., 2] -= pts[..., 2].min(axis=1, keepdims=True)
    return pts.astype(np.float32)


def reconstruct_landmarks(
    params: np.ndarray, roi_boxes: np.ndarray, bfm: BFMKeypoints, size: int = INPUT_SIZE
) -> np.ndarray:
    """(N, 62) params + (N, 4) ROIs -> (N, 68, 3) landmarks in image coordinates."""
    return to_image_coords(landmarks_in_crop(params, bfm), roi_boxes, size)


def pose_from_params(params: np.ndarray) -> dict[str, np.ndarray]:
    """Head pose from the 3x4 camera matrix (upstream ``P2sRt`` + ``matrix2angle``).

    scale = mean norm of the first two rows; R has rows r1, r2, r1 x r2 (normalised);
    yaw = asin(R[2,0]), pitch = atan2(R[2,1], R[2,2]), roll = atan2(R[1,0], R[0,0]), in degrees
    (gimbal-lock branch of upstream when |R[2,0]| > 0.998).
    """
    pose, _, _ = split_params(np.atleast_2d(np.asarray(params, np.float64)))
    r1, r2 = pose[:, 0, :3], pose[:, 1, :3]
    n1, n2 = np.linalg.norm(r1, axis=1), np.linalg.norm(r2, axis=1)
    scale = (n1 + n2) / 2.0
    r1, r2 = r1 / n1[:, None], r2 / n2[:, None]
    r3 = np.cross(r1, r2)
    R = np.stack([r1, r2, r3], axis=1)
    yaw = np.empty(len(R))
    pitch = np.empty(len(R))
    roll = np.empty(len(R))
    for i, Ri in enumerate(R):
        if Ri[2, 0] > 0.998:
            yaw[i], roll[i] = np.pi / 2, 0.0
            pitch[i] = math.atan2(-Ri[0, 1], -Ri[0, 2])
        elif Ri[2, 0] < -0.998:
            yaw[i], roll[i] = -np.pi / 2, 0.0
            pitch[i] = math.atan2(Ri[0, 1], Ri[0, 2])
        else:
            yaw[i] = math.asin(Ri[2, 0])
            c = math.cos(yaw[i])
            pitch[i] = math.atan2(Ri[2, 1] / c, Ri[2, 2] / c)
            roll[i] = math.atan2(Ri[1, 0] / c, Ri[0, 0] / c)
    return {
        "yaw": np.degrees(yaw),
        "pitch": np.degrees(pitch),
        "roll": np.degrees(roll),
        "scale": scale,
        "R": R,
    }


# inner-lip landmarks (0-based, iBUG 68 scheme): corners 60 and 64, upper 61-63, lower 65-67
def mouth_aspect_ratio(landmarks: np.ndarray) -> np.ndarray:
    """MAR = (|61-67| + |62-66| + |63-65|) / (2 |60-64|), on the image-plane (x, y) coordinates.

    landmarks: (..., 68, >=2) -> (...,)
    """
    p = np.asarray(landmarks, np.float64)[..., :2]

    def d(i, j):
        return np.linalg.norm(p[..., i, :] - p[..., j, :], axis=-1)

    return ((d(61, 67) + d(62, 66) + d(63, 65)) / (2.0 * d(60, 64))).astype(np.float32)


# ----------------------------------------------------------------------------- differentiable path
# (torch is imported inside: the ONNX extraction path never loads it)


def roi_crop_tensor(images: torch.Tensor, roi_boxes: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Differentiable ROI crop + bilinear resize with zero padding (the torch analogue of
    :func:`crop_resize`, up to the integer rounding of the ROI and OpenCV's resize kernel).

    images: (N, C, H, W) float; roi_boxes: (N, 4) pixel boxes (x1, y1, x2, y2) -> (N, C, size, size)
    """
    import torch
    import torch.nn.functional as F

    n, _, h, w = images.shape
    roi = roi_boxes.to(images.dtype)
    # pixel centres of the output grid in source pixel coordinates
    t = (torch.arange(size, dtype=images.dtype, device=images.device) + 0.5) / size
    xs = roi[:, 0:1] + t[None] * (roi[:, 2:3] - roi[:, 0:1]) - 0.5
    ys = roi[:, 1:2] + t[None] * (roi[:, 3:4] - roi[:, 1:2]) - 0.5
    gx = (2.0 * xs + 1.0) / w - 1.0  # align_corners=False normalisation
    gy = (2.0 * ys + 1.0) / h - 1.0
    grid = torch.stack([gx[:, None, :].expand(n, size, size), gy[:, :, None].expand(n, size, size)], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def params_from_crop_tensor(
    model: torch.nn.Module,
    crops: torch.Tensor,
    stats: ParamStats,
    *,
    rgb: bool = False,
    value_range: float = 255.0,
) -> torch.Tensor:
    """Differentiable 3DMM parameters of face crops (the renderer's shape loss, eq. 16).

    crops: (N, 3, H, W) float, channel order BGR (``rgb=True`` for RGB), values in
    [0, value_range] (255 for 8-bit scale, 1.0 for [0, 1] images); resized bilinearly to
    120x120 when needed. Returns (N, 62) = out * std + mean; ``[:, 12:52]`` is the shape
    (identity) coefficient beta_id, ``[:, 52:62]`` the expression alpha.
    """
    import torch
    import torch.nn.functional as F

    x = crops
    if rgb:
        x = x.flip(1)
    if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    x = (x * (255.0 / value_range) - PIXEL_MEAN) / PIXEL_STD
    out = model(x)
    std = torch.as_tensor(stats.std, dtype=out.dtype, device=out.device)
    mean = torch.as_tensor(stats.mean, dtype=out.dtype, device=out.device)
    return out * std + mean
