"""Volume rendering (eqs. 11-12) with an occupancy grid that skips empty space.

Discretisation of eq. (11)-(12) on samples t_1 < ... < t_N with spacing delta_i (NeRF's
quadrature): alpha_i = 1 - exp(-sigma_i delta_i), T_i = exp(-sum_{j<i} sigma_j delta_j),
C = sum_i T_i alpha_i c_i; the accumulated opacity sum_i T_i alpha_i composites the head over the
background.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .camera import ray_box


def composite(sigma: torch.Tensor, rgb: torch.Tensor, deltas: torch.Tensor):
    """sigma (R, N), rgb (R, N, 3), deltas (R, N) -> (rgb premultiplied (R, 3), acc (R,), weights)."""
    sd = sigma * deltas
    alpha = 1.0 - torch.exp(-sd)  # eq. (11) quadrature
    # T_i = exp(-sum_{j<i} sigma_j delta_j)  (eq. 12)
    T = torch.exp(-torch.cat([torch.zeros_like(sd[:, :1]), torch.cumsum(sd, dim=1)[:, :-1]], dim=1))
    weights = T * alpha
    return (weights[..., None] * rgb).sum(dim=1), weights.sum(dim=1), weights


class OccupancyGrid(nn.Module):
    """Density grid over [-1, 1]^3 (res^3 cells), EMA-updated as in instant-ngp; a cell is
    occupied when its density exceeds min(mean density, threshold)."""

    def __init__(self, res: int = 32, decay: float = 0.95, threshold: float = 0.01):
        super().__init__()
        self.res = res
        self.decay = decay
        self.threshold = threshold
        self.register_buffer("density", torch.zeros(res, res, res))
        self.register_buffer("occupied", torch.ones(res, res, res, dtype=torch.bool))
        # cells no training ray can reach stay empty (instant-ngp's "untrained" cells)
        self.register_buffer("trainable", torch.ones(res, res, res, dtype=torch.bool))

    def cell_index(self, x: torch.Tensor) -> torch.Tensor:
        i = ((x + 1.0) * 0.5 * self.res).long().clamp_(0, self.res - 1)
        return (i[..., 0] * self.res + i[..., 1]) * self.res + i[..., 2]

    def query(self, x: torch.Tensor) -> torch.Tensor:
        return self.occupied.reshape(-1)[self.cell_index(x)]

    @torch.no_grad()
    def update(self, density_fn, generator: torch.Generator | None = None, n_cond: int = 1) -> None:
        """density_fn(x (M, 3)) -> sigma (M,), called ``n_cond`` times (e.g. random expressions);
        the cell keeps the max, decayed EMA-style."""
        r = self.res
        idx = torch.arange(r, device=self.density.device)
        g = torch.stack(torch.meshgrid(idx, idx, idx, indexing="ij"), dim=-1).reshape(-1, 3).float()
        new = torch.zeros(r**3, device=self.density.device)
        for _ in range(n_cond):
            jitter = torch.rand(g.shape, generator=generator, device=g.device)
            x = (g + jitter) / r * 2.0 - 1.0
            sig = torch.cat([density_fn(chunk) for chunk in x.split(65536)])
            new = torch.maximum(new, sig)
        self.density.copy_(torch.maximum(self.density * self.decay, new.reshape(r, r, r)))
        self.refresh()

    def refresh(self) -> None:
        thr = min(float(self.density[self.trainable].mean()) if self.trainable.any() else 0.0, self.threshold)
        self.occupied.copy_((self.density > thr) & self.trainable)

    def cell_centers(self) -> torch.Tensor:
        r = self.res
        idx = torch.arange(r, device=self.density.device, dtype=torch.float32)
        g = torch.stack(torch.meshgrid(idx, idx, idx, indexing="ij"), dim=-1).reshape(-1, 3)
        return (g + 0.5) / r * 2.0 - 1.0

    def fraction(self) -> float:
        return float(self.occupied.float().mean())


def sample_along_rays(o, d, n_samples: int, perturb: bool, generator: torch.Generator | None = None):
    """Stratified samples between the ray-cube near/far bounds.
    Returns x (R, N, 3), deltas (R, N), hit (R,)."""
    near, far, hit = ray_box(o, d)
    near = near.clamp(min=-1e9)
    u = torch.arange(n_samples, dtype=o.dtype, device=o.device)[None].expand(o.shape[0], n_samples)
    if perturb:
        u = u + torch.rand(u.shape, generator=generator, dtype=o.dtype, device=o.device)
    else:
        u = u + 0.5
    step = (far - near) / n_samples
    t = near[:, None] + u * step[:, None]
    deltas = step[:, None].expand_as(t).clone()
    x = o[:, None, :] + t[..., None] * d[:, None, :]
    return x.clamp(-1.0, 1.0), deltas * hit[:, None], hit


def render_rays(model, o, d, cond, *, n_samples: int, occupancy: OccupancyGrid | None = None,
                perturb: bool = False, generator=None, bg: torch.Tensor | None = None):
    """Render rays through ``model(x, d, cond) -> (sigma, rgb)``; samples in empty cells of the
    occupancy grid are never evaluated (sigma = 0 there).

    cond: (C,) one expression for all rays or (R, C). Returns dict(rgb (R, 3) composited over
    ``bg`` when given, acc (R,), rgb_head (R, 3) premultiplied, n_eval).
    """
    R = o.shape[0]
    x, deltas, hit = sample_along_rays(o, d, n_samples, perturb, generator)
    keep = hit[:, None].expand(R, n_samples)
    if occupancy is not None:
        keep = keep & occupancy.query(x)
    flat = keep.reshape(-1)
    sel = flat.nonzero(as_tuple=True)[0]
    sigma = torch.zeros(R * n_samples, dtype=o.dtype, device=o.device)
    rgb = torch.zeros(R * n_samples, 3, dtype=o.dtype, device=o.device)
    if sel.numel() > 0:
        ray_id = sel // n_samples
        c = cond[ray_id] if cond.dim() == 2 else cond[None].expand(sel.numel(), -1)
        s_sel, c_sel = model(x.reshape(-1, 3)[sel], d[ray_id], c)
        sigma = sigma.index_put((sel,), s_sel)
        rgb = rgb.index_put((sel,), c_sel)
    rgb_head, acc, weights = composite(sigma.view(R, n_samples), rgb.view(R, n_samples, 3), deltas)
    out = dict(rgb_head=rgb_head, acc=acc, weights=weights, n_eval=int(sel.numel()))
    out["rgb"] = rgb_head + (1.0 - acc[:, None]) * bg if bg is not None else rgb_head
    return out


def alpha_to_sigma_threshold(alpha: float, n_samples: int) -> float:
    """Density whose opacity over one sample step (cube diagonal / n) equals ``alpha``."""
    step = 2.0 * math.sqrt(3.0) / n_samples
    return -math.log(1.0 - alpha) / step
