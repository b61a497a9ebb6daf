"""Cameras from 3DDFA poses: scaled-orthographic projection, parallel rays in the head frame.

3DDFA's 3DMM projection is affine: a canonical BFM point ``X`` (micrometres, the frame of
``u + W_shp a_shp + W_exp a_exp``) lands in crop-image coordinates as

    p = M X + t,    p = (u, v, z),  u right, v down (pixels), z towards the viewer,

with ``M = s R`` composed with 3DDFA's ROI mapping (x - 1, y flip, scale, shift). Hence a pixel
``(u, v)`` sees the line ``{(u, v, z)}`` of image space, which in the head's canonical frame is

    X(z) = M^-1 ((u, v, z) - t),   direction  d = M^-1 (0, 0, -1)  (away from the viewer):

all rays of a frame are parallel in the canonical frame. The radiance field lives in a
canonical cube (centre ``c``, half side ``h``, micrometres), normalised to [-1, 1]^3; rays are
clipped to it (near/far = ray-box intersection). A novel view rotates the head about ``c``
(equivalently the camera about the head): ``M' = M R_yaw``, ``t' = t + M (c - R_yaw c)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Canonical head cube in BFM micrometres (see docs/decisions.md): the 68 BFM keypoints span
# x [-74k, 73k], y [-86k (chin), 49k (brows)], z [18k, 132k (nose tip)]; a head adds hair
# above the brows (~ +120k), ears (x +-85k) and the skull behind (z down to ~ -90k).
DEFAULT_BOX_CENTER = (0.0, 25000.0, 30000.0)
DEFAULT_BOX_HALF = 145000.0


def scale_pose(pose: np.ndarray, k: float) -> np.ndarray:
    """Pose for an image resized by factor ``k`` (pixel centres at integer coordinates):
    u' = (u + 0.5) k - 0.5 for u and v; z scaled by k."""
    P = np.array(pose, np.float64)
    out = P * k
    out[..., 0, 3] += 0.5 * k - 0.5
    out[..., 1, 3] += 0.5 * k - 0.5
    return out


def fit_affine_pose(canonical: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares 3x4 affine map ``image ~ P @ [canonical; 1]`` from point pairs (K, 3).

    3DDFA's landmarks are exactly an affine image of the canonical keypoints (projection plus
    the ROI mapping), so this recovers the composed camera. Returns (P, rms residual in px of u, v).
    """
    X = np.concatenate([canonical, np.ones((len(canonical), 1))], axis=1)
    P, *_ = np.linalg.lstsq(X, image, rcond=None)
    P = P.T
    res = image[:, :2] - (X @ P.T)[:, :2]
    return P, float(np.sqrt((res**2).mean()))


def yaw_matrix(yaw_deg: float) -> np.ndarray:
    a = math.radians(yaw_deg)
    return np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])


def rotate_pose(pose: np.ndarray, yaw_deg: float, center=DEFAULT_BOX_CENTER) -> np.ndarray:
    """Novel view: the head rotated by ``yaw_deg`` about the vertical canonical axis through
    ``center`` (M' = M R, t' = t + M (c - R c))."""
    P = np.array(pose, np.float64)
    R = yaw_matrix(yaw_deg)
    c = np.asarray(center, np.float64)
    M, t = P[:3, :3], P[:3, 3]
    out = np.empty_like(P)
    out[:3, :3] = M @ R
    out[:3, 3] = t + M @ (c - R @ c)
    return out


class HeadCamera:
    """Ray generator for one frame: pose (3, 4) in image pixels of the render resolution."""

    def __init__(self, pose, box_center=DEFAULT_BOX_CENTER, box_half=DEFAULT_BOX_HALF):
        P = torch.as_tensor(np.asarray(pose, np.float64))
        M, t = P[:3, :3], P[:3, 3]
        Minv = torch.linalg.inv(M)
        c = torch.as_tensor(np.asarray(box_center, np.float64))
        # normalised head frame: x_n = (X - c) / h = A p + b
        self.A = Minv / box_half
        self.b = -(Minv @ t + c) / box_half
        d = self.A @ torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)
        self.dir_norm = d.norm()
        self.direction = d / self.dir_norm

    def rays(self, uv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uv (R, 2) pixel coordinates -> origins (R, 3) on the plane z = 0 and unit directions
        (R, 3), both in the normalised head frame (float32)."""
        uv = uv.to(torch.float64)
        p = torch.cat([uv, torch.zeros_like(uv[:, :1])], dim=1)
        o = p @ self.A.T + self.b
        d = self.direction.expand_as(o)
        return o.float(), d.float().contiguous()


def ray_box(o: torch.Tensor, d: torch.Tensor, lo: float = -1.0, hi: float = 1.0):
    """Slab intersection of rays with the cube [lo, hi]^3 -> (near, far, hit)."""
    inv = 1.0 / torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t0 = (lo - o) * inv
    t1 = (hi - o) * inv
    near = torch.minimum(t0, t1).amax(dim=-1)
    far = torch.maximum(t0, t1).amin(dim=-1)
    hit = far > near
    return near, torch.where(hit, far, near), hit


def pixel_grid(h: int, w: int) -> torch.Tensor:
    """(h*w, 2) pixel-centre coordinates (u = column, v = row), row-major."""
    v, u = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    return torch.stack([u.reshape(-1), v.reshape(-1)], dim=1)
