"""Volume rendering (eqs. 11-12) with an occupancy grid that skips empty space.

Discretisation of eq. (11)-(12) on samples t_1 < ... < t_N with spacing delta_i (NeRF's
quadrature): alpha_i = 1 - exp(-sigma_i delta_i), T_i = exp(-sum_{j<i} sigma_j delta_j),
C = sum_i T_i alpha_i c_i; the accumulated opacity sum_i T_i alpha_i composites the head over the
background.

Two samplers over the same sample lattice (``n_samples`` per ray between the ray-cube bounds,
stratified: ``t_k = near + (k + u_k) (far - near) / n_samples``):

* :func:`march_rays` (default) marches as instant-ngp / nerfacc do: only lattice points in
  occupied cells are visited, all live rays advance a few samples per round, evaluated as one
  packed batch, and a ray stops once its transmittance falls below ``T_STOP``; the evaluated
  samples are composited with segment sums. Gradients flow (training uses it too).
* :func:`render_rays` (``sampler="stratified"``, the earlier renderer) evaluates every occupied
  lattice point of every ray and composites densely; kept as the baseline and the reference.

With the same generator state both draw the same ``u`` and so the same points: they differ only by
what lies behind ``T < T_STOP`` (at most ``T_STOP`` per colour channel).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .camera import ray_box

T_STOP = 1e-4  # a marched ray stops once its transmittance is below this (instant-ngp, nerfacc)


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


def _lattice(o, d, n_samples: int, perturb: bool, generator: torch.Generator | None = None):
    """Stratified lattice between the ray-cube near/far bounds: points x (R, N, 3) clamped to the
    cube, sample spacing step (R,) and hit (R,)."""
    near, far, hit = ray_box(o, d)
    near = near.clamp(min=-1e9)
    u = torch.arange(n_samples, dtype=o.dtype, device=o.device)[None].expand(o.shape[0], n_samples)
    if perturb:  # drawn on the generator's device (the trainer's is on the CPU: same stream on any device)
        dev = generator.device if generator is not None else o.device
        u = u + torch.rand(u.shape, generator=generator, dtype=o.dtype, device=dev).to(o.device)
    else:
        u = u + 0.5
    step = (far - near) / n_samples
    t = near[:, None] + u * step[:, None]
    x = o[:, None, :] + t[..., None] * d[:, None, :]
    return x.clamp(-1.0, 1.0), step, hit


def sample_along_rays(o, d, n_samples: int, perturb: bool, generator: torch.Generator | None = None):
    """Stratified samples between the ray-cube near/far bounds.
    Returns x (R, N, 3), deltas (R, N), hit (R,)."""
    x, step, hit = _lattice(o, d, n_samples, perturb, generator)
    return x, (step * hit)[:, None].expand(-1, n_samples).clone(), hit


def render_rays(
    model,
    o,
    d,
    cond,
    *,
    n_samples: int,
    occupancy: OccupancyGrid | None = None,
    perturb: bool = False,
    generator=None,
    bg: torch.Tensor | None = None,
):
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
        sigma = sigma.index_put((sel,), s_sel.to(sigma.dtype))
        rgb = rgb.index_put((sel,), c_sel.to(rgb.dtype))
    rgb_head, acc, weights = composite(sigma.view(R, n_samples), rgb.view(R, n_samples, 3), deltas)
    out = dict(rgb_head=rgb_head, acc=acc, weights=weights, n_eval=int(sel.numel()))
    out["rgb"] = rgb_head + (1.0 - acc[:, None]) * bg if bg is not None else rgb_head
    return out


def composite_packed(
    sigma: torch.Tensor, rgb: torch.Tensor, deltas: torch.Tensor, ray: torch.Tensor, n_rays: int
):
    """Eqs. (11)-(12) on packed samples: ``ray`` (M,) sorted, each ray's samples consecutive and
    in order along it. Segment sums: T_i = exp(-(exclusive cumsum of sigma delta within the
    ray)), taken from one float64 cumsum (no cancellation at float32 scale).
    Returns (rgb premultiplied (n_rays, 3), acc (n_rays,), weights (M,))."""
    sd = (sigma * deltas).clamp(max=1e4)  # exp(-1e4) is 0 in float32 already
    if sd.numel() == 0:
        z = sd.new_zeros(n_rays)
        return sd.new_zeros(n_rays, 3), z, sd
    excl = torch.cumsum(sd.double(), 0) - sd.double()  # exclusive, over all rays
    first = torch.ones_like(ray, dtype=torch.bool)
    first[1:] = ray[1:] != ray[:-1]
    seg_start = torch.cummax(torch.where(first, torch.arange(len(ray), device=ray.device), 0), 0).values
    T = torch.exp(-(excl - excl[seg_start])).to(sd.dtype)  # eq. (12), within each ray
    weights = T * (1.0 - torch.exp(-sd))  # eq. (11) quadrature
    out = sd.new_zeros(n_rays, 3).index_add(0, ray, weights[:, None] * rgb)
    acc = sd.new_zeros(n_rays).index_add(0, ray, weights)
    return out, acc, weights


def _folded_field(model, d, cond):
    """``model.field_for``: one direction and expression when all rays share them (the rays of
    one frame), else per ray; None for a model without it (a plain ``model(x, d, cond)``)."""
    if not hasattr(model, "field_for") or not len(d):
        return None
    if cond.dim() == 1 and bool((d == d[:1]).all()):
        return model.field_for(d[0], cond)
    return model.field_for(d, cond if cond.dim() == 2 else cond[None].expand(len(d), -1))


def march_rays(
    model,
    o,
    d,
    cond,
    *,
    n_samples: int,
    occupancy: OccupancyGrid | None = None,
    perturb: bool = False,
    generator=None,
    bg: torch.Tensor | None = None,
    steps: int = 4,
    t_stop: float = T_STOP,
    eval_batch: int | None = None,
):
    """Ray marching through the occupancy grid with early termination (instant-ngp / nerfacc).

    Each round every live ray takes its next ``k`` lattice points in occupied cells, all of them
    evaluated as one batch by ``model(x, d, cond) -> (sigma, rgb)``; a ray is done when its
    samples run out or its transmittance drops below ``t_stop`` (0: never). ``k`` starts at
    ``steps`` and doubles every round (at least keeping a round as large as the first): every
    round costs a batch of tensor operations, so a ray that is not stopped soon is finished in a
    few rounds. The evaluated samples are then composited with segment sums
    (:func:`composite_packed`); gradients flow to the model.

    ``eval_batch``: the model sees at most this many samples at a time (on a CPU, batches whose
    intermediate tensors stay in cache are faster per sample; None: a round at once).

    cond: (C,) one expression for all rays or (R, C). Returns dict(rgb (R, 3) composited over
    ``bg`` when given, acc (R,), rgb_head (R, 3) premultiplied, n_eval, sample_ray / sample_weights
    of the evaluated samples)."""
    R, N, dev = o.shape[0], n_samples, o.device
    x_all, step, hit = _lattice(o, d, N, perturb, generator)
    rays = hit.nonzero(as_tuple=True)[0]
    lattice = x_all[rays]  # (Rh, N, 3)
    keep = (
        occupancy.query(lattice)
        if occupancy is not None
        else torch.ones(lattice.shape[:2], dtype=torch.bool, device=dev)
    )
    packed = keep.nonzero()  # (M, 2): (ray, k), by ray then k
    count = keep.sum(1)
    start = torch.cumsum(count, 0) - count
    consumed = torch.zeros_like(count)
    tau = torch.zeros(len(rays), dtype=torch.float64, device=dev)  # optical depth so far (no grad)
    tau_stop = -math.log(t_stop) if t_stop > 0 else math.inf  # t_stop 0: never stop early
    live = (count > 0).nonzero(as_tuple=True)[0]
    n_first = max(len(live), 1)
    field = _folded_field(model, d, cond)
    chunks = []  # per round: (ray in 0..Rh-1, sigma, rgb, delta)
    k = min(steps, N)
    while len(live):
        take = (count[live] - consumed[live]).clamp(max=k)
        local = torch.repeat_interleave(torch.arange(len(live), device=dev), take)
        offs = torch.arange(len(local), device=dev) - (torch.cumsum(take, 0) - take)[local]
        sel = packed[(start[live] + consumed[live])[local] + offs]  # (S, 2)
        consumed[live] += take
        rr, kk = sel[:, 0], sel[:, 1]
        ray = rays[rr]
        x = lattice[rr, kk]
        if field is None:
            dr, c = d[ray], (cond[ray] if cond.dim() == 2 else cond[None].expand(len(ray), -1))
        bs = eval_batch or len(x)
        out = [
            field(x[i : i + bs], ray[i : i + bs])
            if field is not None
            else model(x[i : i + bs], dr[i : i + bs], c[i : i + bs])
            for i in range(0, len(x), bs)
        ]
        sigma, rgb = (torch.cat(t).float() for t in zip(*out))
        delta = step[ray]
        chunks.append((rr, sigma, rgb, delta))
        tau.index_add_(0, rr, (sigma.detach() * delta).double())
        live = live[(tau[live] < tau_stop) & (consumed[live] < count[live])]
        k = min(N, max(2 * k, steps * n_first // max(len(live), 1)))  # fewer, larger rounds
    if chunks:
        rr, sigma, rgb, delta = (torch.cat(t) for t in zip(*chunks))
        order = torch.sort(rr, stable=True).indices  # rounds -> each ray's samples in order
        rr, sigma, rgb, delta = rr[order], sigma[order], rgb[order], delta[order]
        head, acc_h, weights = composite_packed(sigma, rgb, delta, rr, len(rays))
        ray = rays[rr]
    else:
        head = o.new_zeros(len(rays), 3)
        acc_h = o.new_zeros(len(rays))
        weights, ray = o.new_zeros(0), rays[:0]
    rgb_head = o.new_zeros(R, 3).index_copy(0, rays, head)
    acc = o.new_zeros(R).index_copy(0, rays, acc_h)
    out = dict(rgb_head=rgb_head, acc=acc, n_eval=int(ray.numel()), sample_ray=ray, sample_weights=weights)
    out["rgb"] = rgb_head + (1.0 - acc[:, None]) * bg if bg is not None else rgb_head
    return out


def alpha_to_sigma_threshold(alpha: float, n_samples: int) -> float:
    """Density whose opacity over one sample step (cube diagonal / n) equals ``alpha``."""
    step = 2.0 * math.sqrt(3.0) / n_samples
    return -math.log(1.0 - alpha) / step
