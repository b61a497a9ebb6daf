"""The renderer: trained field + occupancy grid + canonical head box -> rays, patches, frames.

Used by training (:mod:`.train`, rays drawn over training frames) and inference (:mod:`.infer`).
Rays are marched through the occupancy grid with early termination (``sampler="march"``,
:func:`.volume.march_rays`); ``sampler="stratified"`` is the earlier fixed-sample renderer
(:func:`.volume.render_rays`), kept as the baseline. Frames are rendered under
``torch.inference_mode`` in chunks of rays (bounded memory), with the MLPs in float16 on CUDA.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from .camera import DEFAULT_BOX_CENTER, DEFAULT_BOX_HALF, HeadCamera, pixel_grid, ray_box
from .network import EmoNeRF
from .volume import OccupancyGrid, march_rays, render_rays

SAMPLERS = ("march", "stratified")
DEFAULT_CHUNK = {"cpu": 16384, "cuda": 65536}  # rays per chunk of a frame
EVAL_BATCH = {"cpu": 16384}  # samples per model call when marching (CPU: cache-sized; CUDA: a round)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Renderer:
    """Model + occupancy grid + head box: renders rays, patches and frames.

    ``sampler``: 'march' (default) or 'stratified'; ``march_steps``: samples each live ray takes
    per marching round; ``half``: float16 MLPs for frames on CUDA (None: on CUDA only)."""

    def __init__(
        self,
        model: EmoNeRF,
        occ: OccupancyGrid,
        box_center=DEFAULT_BOX_CENTER,
        box_half=DEFAULT_BOX_HALF,
        n_samples: int = 32,
        *,
        sampler: str = "march",
        march_steps: int = 4,
        half: bool | None = None,
    ):
        self.model, self.occ = model, occ
        self.box_center, self.box_half = tuple(box_center), float(box_half)
        self.n_samples = n_samples
        self.sampler = self._check_sampler(sampler)
        self.march_steps = int(march_steps)
        self.half = half

    @staticmethod
    def _check_sampler(sampler: str) -> str:
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r} (one of {', '.join(SAMPLERS)})")
        return sampler

    @property
    def device(self):
        return self.occ.density.device

    def camera(self, pose) -> HeadCamera:
        return HeadCamera(pose, self.box_center, self.box_half)

    def render_rays(
        self,
        o,
        d,
        cond,
        bg=None,
        *,
        perturb=False,
        generator=None,
        use_occupancy=True,
        sampler: str | None = None,
    ) -> dict:
        """Rays o, d (R, 3) in the normalised head frame, expression ``cond`` (C,) for all rays
        or (R, C) per ray, background ``bg`` (R, 3) -> dict(rgb (R, 3), acc (R,), n_eval, ...)."""
        o, d = o.to(self.device), d.to(self.device)
        a = torch.as_tensor(cond, dtype=torch.float32, device=self.device)
        occ = self.occ if use_occupancy else None
        if self._check_sampler(sampler or self.sampler) == "stratified":
            return render_rays(
                self.model,
                o,
                d,
                a,
                n_samples=self.n_samples,
                occupancy=occ,
                perturb=perturb,
                generator=generator,
                bg=bg,
            )
        return march_rays(
            self.model,
            o,
            d,
            a,
            n_samples=self.n_samples,
            occupancy=occ,
            perturb=perturb,
            generator=generator,
            bg=bg,
            steps=self.march_steps,
            eval_batch=EVAL_BATCH.get(self.device.type),
        )

    def render_uv(
        self,
        pose,
        uv,
        alpha,
        bg,
        *,
        perturb=False,
        generator=None,
        use_occupancy=True,
        sampler: str | None = None,
    ):
        o, d = self.camera(pose).rays(uv)
        return self.render_rays(
            o,
            d,
            alpha,
            bg,
            perturb=perturb,
            generator=generator,
            use_occupancy=use_occupancy,
            sampler=sampler,
        )

    def _precision(self):
        half = self.half if self.half is not None else self.device.type == "cuda"
        if half and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def render_frame(
        self,
        pose,
        alpha,
        behind: np.ndarray,
        *,
        chunk: int | None = None,
        use_occupancy: bool = True,
        region: np.ndarray | None = None,
        sampler: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Full frame: the head rendered over ``behind`` (H, W, 3) uint8/float RGB. ``region``
        (H, W) bool limits the rays cast (elsewhere the field was trained empty: ``behind``).
        ``chunk``: rays per batch (default 16384 on CPU, 65536 on CUDA).
        Returns (image float RGB in [0, 1], accumulated opacity (H, W))."""
        H, W = behind.shape[:2]
        chunk = int(chunk or DEFAULT_CHUNK.get(self.device.type, DEFAULT_CHUNK["cpu"]))
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
        with self._precision():
            for sl in hit.split(chunk):
                sl_d = sl.to(self.device)
                out = self.render_rays(
                    o[sl], d[sl], a, beh[sl_d], use_occupancy=use_occupancy, sampler=sampler
                )
                img[sl_d] = out["rgb"].float()
                acc[sl_d] = out["acc"].float()
        return img.reshape(H, W, 3).clamp(0, 1).cpu().numpy(), acc.reshape(H, W).cpu().numpy()
