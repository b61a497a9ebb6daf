"""The renderer: trained field + occupancy grid + canonical head box -> rays, patches, frames.

Used by training (:mod:`.train`, rays drawn over training frames) and inference (:mod:`.infer`).
"""

from __future__ import annotations

import numpy as np
import torch

from .camera import DEFAULT_BOX_CENTER, DEFAULT_BOX_HALF, HeadCamera, pixel_grid, ray_box
from .network import EmoNeRF
from .volume import OccupancyGrid, render_rays


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Renderer:
    """Model + occupancy grid + head box: renders rays, patches and frames."""

    def __init__(self, model: EmoNeRF, occ: OccupancyGrid, box_center=DEFAULT_BOX_CENTER,
                 box_half=DEFAULT_BOX_HALF, n_samples: int = 32):
        self.model, self.occ = model, occ
        self.box_center, self.box_half = tuple(box_center), float(box_half)
        self.n_samples = n_samples

    @property
    def device(self):
        return self.occ.density.device

    def camera(self, pose) -> HeadCamera:
        return HeadCamera(pose, self.box_center, self.box_half)

    def render_rays(self, o, d, cond, bg=None, *, perturb=False, generator=None, use_occupancy=True) -> dict:
        """Rays o, d (R, 3) in the normalised head frame, expression ``cond`` (C,) for all rays
        or (R, C) per ray, background ``bg`` (R, 3) -> dict(rgb (R, 3), acc (R,), n_eval, ...)."""
        o, d = o.to(self.device), d.to(self.device)
        a = torch.as_tensor(cond, dtype=torch.float32, device=self.device)
        return render_rays(self.model, o, d, a, n_samples=self.n_samples,
                           occupancy=self.occ if use_occupancy else None, perturb=perturb,
                           generator=generator, bg=bg)

    def render_uv(self, pose, uv, alpha, bg, *, perturb=False, generator=None, use_occupancy=True):
        o, d = self.camera(pose).rays(uv)
        return self.render_rays(o, d, alpha, bg, perturb=perturb, generator=generator,
                                use_occupancy=use_occupancy)

    @torch.no_grad()
    def render_frame(self, pose, alpha, behind: np.ndarray, *, chunk: int = 16384,
                     use_occupancy: bool = True, region: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Full frame: the head rendered over ``behind`` (H, W, 3) uint8/float RGB. ``region``
        (H, W) bool limits the rays cast (elsewhere the field was trained empty: ``behind``).
        Returns (image float RGB in [0, 1], accumulated opacity (H, W))."""
        H, W = behind.shape[:2]
        beh = torch.as_tensor(np.asarray(behind, np.float32) / (255.0 if behind.dtype == np.uint8 else 1.0))
        beh = beh.reshape(-1, 3).to(self.device)
        uv = pixel_grid(H, W)
        cam = self.camera(pose)
        o, d = cam.rays(uv)
        hit = ray_box(o, d)[2]
        if region is not None:
            hit = hit & torch.as_tensor(np.asarray(region, bool).reshape(-1))
        hit = hit.nonzero(as_tuple=True)[0]
        img = beh.clone()
        acc = torch.zeros(H * W, device=self.device)
        a = torch.as_tensor(alpha, dtype=torch.float32, device=self.device)
        for sl in hit.split(chunk):
            sl_d = sl.to(self.device)
            out = render_rays(self.model, o[sl].to(self.device), d[sl].to(self.device), a,
                              n_samples=self.n_samples, occupancy=self.occ if use_occupancy else None,
                              bg=beh[sl_d])
            img[sl_d] = out["rgb"]
            acc[sl_d] = out["acc"]
        return img.reshape(H, W, 3).clamp(0, 1).cpu().numpy(), acc.reshape(H, W).cpu().numpy()
