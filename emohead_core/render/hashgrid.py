"""Multiresolution hash-grid encoding (instant-ngp, Mueller et al. 2022), two backends.

Both backends follow tiny-cuda-nn's (tcnn) ``HashGrid`` encoding (``hash: CoherentPrime``):

* level ``l`` has scale ``s_l = fma(exp2f(l * log2f(b)), N_min, -1)`` (float32, as tcnn's
  ``grid_scale``) and resolution ``r_l = ceil(s_l) + 1``;
* its table holds ``n_l = min(next_multiple(r_l**3, 8), 2**log2_T)`` entries of ``F`` features;
  the flat parameter vector is the concatenation of levels, entry-major (``[offset_l + i*F + f]``);
* a point ``x`` in [0, 1]^3 maps to ``p = fmaf(s_l, x, 0.5)`` (one rounding); ``floor(p)`` is the
  lower corner and ``p - floor(p)`` the trilinear weight;
* a corner ``c`` is indexed densely (``c0 + c1 r + c2 r^2``) when ``r_l**3 <= n_l`` (coarse levels
  that fit the table), else by the spatial hash ``(c0 * 1) ^ (c1 * 2654435761) ^ (c2 *
  805459861)`` in uint32 arithmetic; either index is taken modulo ``n_l``;
* the output is level-major: ``out[..., l*F + f]``.

One state-dict layout for both: the table is ``params`` (``encoder.params`` in the NeRF).
Checkpoints written by earlier versions with the tinycudann backend call it ``enc.params``; both
modules accept either name in ``load_state_dict`` (any caller: resume, ``load_renderer``, ...).

The remaining float32 difference between the backends: CUDA's ``exp2f`` is accurate to 2 ulp,
not correctly rounded, so a level's scale on the GPU may differ from ours (correctly rounded)
by a few ulp; :func:`parity_tolerance` turns that into a per-output bound.

``TorchHashGrid`` runs on CPU and CUDA; ``TcnnHashGrid`` wraps ``tinycudann.Encoding`` and is
only built when tinycudann imports (``make_hash_grid(backend="auto")`` picks it on CUDA).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

PRIMES = (1, 2654435761, 805459861)  # tcnn's CoherentPrime hash (instant-ngp)
LEGACY_TCNN_KEY = "enc.params"  # the table's name in checkpoints of the old tcnn wrapper
EPS32 = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class HashGridConfig:
    n_levels: int = 16
    n_features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    per_level_scale: float = 1.447269237440378  # 16 -> 2048 over 16 levels (instant-ngp)

    @staticmethod
    def from_dict(d: dict | None) -> HashGridConfig:
        d = dict(d or {})
        if "finest_resolution" in d:
            fin = float(d.pop("finest_resolution"))
            L = int(d.get("n_levels", 16))
            base = float(d.get("base_resolution", 16))
            d["per_level_scale"] = math.exp(math.log(fin / base) / max(L - 1, 1))
        return HashGridConfig(**d)

    @property
    def out_dim(self) -> int:
        return self.n_levels * self.n_features_per_level


def _round32(v: float) -> float:
    return float(np.float32(v))


def level_exp2(cfg: HashGridConfig) -> list[float]:
    """exp2f(l * log2f(b)) per level, correctly rounded to float32 (tcnn's device exp2f may be
    up to 2 ulp away)."""
    l2 = _round32(math.log2(_round32(cfg.per_level_scale)))  # log2f of the float per_level_scale
    return [_round32(2.0 ** _round32(lvl * l2)) for lvl in range(cfg.n_levels)]


def level_layout(cfg: HashGridConfig) -> list[dict]:
    """Per-level scale, resolution, table size, offset (in entries) and dense flag (tcnn's)."""
    out, offset = [], 0
    T = 1 << cfg.log2_hashmap_size
    for e in level_exp2(cfg):
        # fma(e, N_min, -1): e * N_min is exact in float64, one rounding to float32
        scale = _round32(e * cfg.base_resolution - 1.0)
        res = int(math.ceil(scale)) + 1
        dense_size = res**3
        n = min(((dense_size + 7) // 8) * 8, T)
        out.append(dict(scale=scale, exp2=e, resolution=res, size=n, offset=offset, dense=dense_size <= n))
        offset += n
    return out


def n_params(cfg: HashGridConfig) -> int:
    lay = level_layout(cfg)
    return (lay[-1]["offset"] + lay[-1]["size"]) * cfg.n_features_per_level


def _accept_legacy_table_name(module, state_dict, prefix, *args) -> None:
    """load_state_dict pre-hook: a table saved as ``enc.params`` loads as ``params``."""
    old, new = prefix + LEGACY_TCNN_KEY, prefix + "params"
    if old in state_dict and new not in state_dict:
        state_dict[new] = state_dict.pop(old)


def grid_positions(x: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Grid coordinates p = fmaf(s_l, x, 0.5) (L, 3, N) of points x (N, 3), float32 rounded once
    as tcnn's fmaf: x * s_l is exact in float64 and so is the sum when x * s_l >= 2**-6 (below, the
    float64 rounding could change the float32 result only at an exact float32 tie).
    ``scales``: (L,) float64."""
    return torch.addcmul(
        torch.full((), 0.5, dtype=torch.float64, device=x.device),
        x.t().to(torch.float64).unsqueeze(0),
        scales[:, None, None],
    ).to(torch.float32)


class _GridInterp(torch.autograd.Function):
    """Trilinear interpolation of gathered table entries, feature by feature:
    out[l, f, n] = sum_c w[l, c, n] table[idx[l, c, n], f].

    Laid out level/corner-major with the points innermost (contiguous, vectorised on CPU); the
    backward pass scatters with 1-D ``index_add_`` (several times faster on CPU than the 2-D one
    autograd would use for ``index_select``). No gradient for the positions (not trained)."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, idx: torch.Tensor, w: torch.Tensor, F: int):
        L, _, n = w.shape
        rows = table.view(-1, F)
        flat = idx.view(-1)
        out = torch.empty(L, F, n, dtype=w.dtype, device=w.device)
        for f in range(F):
            v = rows[:, f].contiguous().index_select(0, flat).view(L, 8, n)
            torch.sum(v.mul_(w), dim=1, out=out[:, f])
        ctx.save_for_backward(idx, w)
        ctx.F, ctx.n_rows = F, rows.shape[0]
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        idx, w = ctx.saved_tensors
        flat = idx.view(-1)
        grads = [
            torch.zeros(ctx.n_rows, dtype=g.dtype, device=g.device).index_add_(
                0, flat, (w * g[:, f].unsqueeze(1)).view(-1)
            )
            for f in range(ctx.F)
        ]
        return torch.stack(grads, 1).view(-1), None, None, None


class TorchHashGrid(nn.Module):
    """Pure-PyTorch hash grid with tcnn's layout, hashing and trilinear interpolation.

    ``forward(x)``: x (N, 3) in [0, 1]^3 -> (N, n_levels * F), float32. All levels in one gather
    with int32 indices; gradients reach the flat ``params`` table (not x).
    """

    def __init__(self, cfg: HashGridConfig, init_scale: float = 1e-4):
        super().__init__()
        self.cfg = cfg
        lay = level_layout(cfg)
        self.params = nn.Parameter(torch.empty(n_params(cfg)).uniform_(-init_scale, init_scale))
        dense = [l["dense"] for l in lay]
        # coarse levels are dense and fine ones hashed (resolution grows with the level)
        self.n_dense = sum(dense)
        if dense != [True] * self.n_dense + [False] * (len(lay) - self.n_dense):
            raise ValueError("hash grid levels must grow in resolution (per_level_scale >= 1)")
        self.register_buffer("_scale64", torch.tensor([l["scale"] for l in lay], dtype=torch.float64), False)
        i32 = dict(dtype=torch.int32)
        res = torch.tensor([l["resolution"] for l in lay], **i32)
        self.register_buffer("_res", res, False)
        self.register_buffer("_res2", res * res, False)
        self.register_buffer("_size", torch.tensor([l["size"] for l in lay], **i32), False)
        self.register_buffer("_offset", torch.tensor([l["offset"] for l in lay], **i32), False)
        self._hmask = (1 << cfg.log2_hashmap_size) - 1
        self.reference = False  # True: forward_reference (tests, benchmark baseline)
        self.register_load_state_dict_pre_hook(_accept_legacy_table_name)

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def corners(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Table entries (L, 8, N) int32 and trilinear weights (L, 8, N) float32 of points x
        (N, 3); corner k = 4 bz + 2 by + bx (tcnn's order, bit 0 = x)."""
        n, L, D = x.shape[0], self.cfg.n_levels, self.n_dense
        pos = grid_positions(x, self._scale64)
        lo = torch.floor(pos)
        frac = pos - lo  # (L, 3, N)
        lo = lo.to(torch.int32)
        wx, wy, wz = (torch.stack([1.0 - frac[:, d], frac[:, d]], 1) for d in range(3))  # (L, 2, N)
        # tcnn: weight = (w_x * w_y) * w_z
        w = ((wx[:, None] * wy[:, :, None]).view(L, 1, 4, n) * wz[:, :, None]).view(L, 8, n)
        c = torch.stack([lo, lo + 1], 2)  # (L, 3, 2, N): lower / upper corner per axis
        idx = torch.empty(L, 2, 2, 2, n, dtype=torch.int32, device=x.device)  # (L, bz, by, bx, N)
        if D:
            cd = c[:D]
            i = (cd[:, 2] * self._res2[:D, None, None])[:, :, None, None] + (
                (cd[:, 1] * self._res[:D, None, None])[:, None, :, None] + cd[:, 0][:, None, None]
            )
            idx[:D] = torch.remainder(i, self._size[:D, None, None, None, None])
        if D < L:
            ch, m = c[D:], self._hmask
            # uint32 products in int64 (no signed overflow), reduced to the table's bits first
            hy = ((ch[:, 1].long() * PRIMES[1]) & m).to(torch.int32)
            hz = ((ch[:, 2].long() * PRIMES[2]) & m).to(torch.int32)
            idx[D:] = (hz[:, :, None, None] ^ hy[:, None, :, None] ^ ch[:, 0][:, None, None]) & m
        idx += self._offset[:, None, None, None, None]
        return idx.view(L, 8, n), w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reference:
            return self.forward_reference(x)
        idx, w = self.corners(x)
        out = _GridInterp.apply(self.params, idx, w, self.cfg.n_features_per_level)  # (L, F, N)
        return out.permute(2, 0, 1).reshape(x.shape[0], self.cfg.out_dim)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The same encoding written plainly (the implementation before the vectorised one):
        point-major tensors, int64 indices, dense and hashed indices for every level, autograd
        through ``index_select``. Kept as the reference of tests and the baseline of
        bench/bench_render.py."""
        F, L, N = self.cfg.n_features_per_level, self.cfg.n_levels, x.shape[0]
        pos = grid_positions(x, self._scale64).permute(2, 0, 1)  # (N, L, 3)
        pos_grid = torch.floor(pos)
        frac = pos - pos_grid
        lo = pos_grid.long()
        c = torch.stack([lo, lo + 1], dim=-1)  # (N, L, 3, 2)
        w1 = torch.stack([1.0 - frac, frac], dim=-1)
        w = (w1[:, :, 0, None, None, :] * w1[:, :, 1, None, :, None]) * w1[:, :, 2, :, None, None]
        res = self._res.long()[None, :, None]
        dense = (
            c[:, :, 2, :, None, None] * (res * res)[..., None, None]
            + c[:, :, 1, None, :, None] * res[..., None, None]
            + c[:, :, 0, None, None, :]
        )
        size = self._size.long()[None, :, None, None, None]
        dense = dense - size * (dense >= size)  # index % size (dense index < 2 * size)
        h = (c * torch.tensor(PRIMES, device=x.device)[None, None, :, None]) & 0xFFFFFFFF  # uint32 products
        hashed = (
            h[:, :, 2, :, None, None] ^ h[:, :, 1, None, :, None] ^ h[:, :, 0, None, None, :]
        ) & self._hmask
        is_dense = torch.arange(L, device=x.device) < self.n_dense
        idx = (
            torch.where(is_dense[None, :, None, None, None], dense, hashed)
            + self._offset.long()[None, :, None, None, None]
        )
        feats = self.params.view(-1, F).index_select(0, idx.reshape(-1)).view(N, L, 8, F)
        return torch.einsum("nlc,nlcf->nlf", w.reshape(N, L, 8), feats).reshape(N, L * F)


def _tcnn_importable() -> bool:
    try:
        import tinycudann  # noqa: F401
    except Exception:
        return False
    return True


def tcnn_available() -> bool:
    return torch.cuda.is_available() and _tcnn_importable()


def tcnn_encoding_config(cfg: HashGridConfig) -> dict:
    return {
        "otype": "HashGrid",
        "n_levels": cfg.n_levels,
        "n_features_per_level": cfg.n_features_per_level,
        "log2_hashmap_size": cfg.log2_hashmap_size,
        "base_resolution": cfg.base_resolution,
        "per_level_scale": cfg.per_level_scale,
        "interpolation": "Linear",
        "hash": "CoherentPrime",
    }


class TcnnHashGrid(nn.Module):
    """tinycudann ``HashGrid`` encoding with the same config and parameter layout (CUDA only).

    The table is registered here as ``params`` (the canonical layout shared with
    :class:`TorchHashGrid`); the tcnn module itself is kept out of the module tree so it adds no
    ``enc.`` prefix, and is re-pointed at ``params`` before each call."""

    def __init__(self, cfg: HashGridConfig):
        super().__init__()
        import tinycudann as tcnn  # import-guarded: only when the backend is requested

        self.cfg = cfg
        enc = tcnn.Encoding(3, tcnn_encoding_config(cfg), dtype=torch.float32)
        if enc.params.numel() != n_params(cfg):
            raise RuntimeError(
                f"tcnn hash grid has {enc.params.numel()} params, layout expects {n_params(cfg)}"
            )
        object.__setattr__(self, "_enc", enc)  # not a submodule: no 'enc.params' key
        self.params = enc.params
        self.register_load_state_dict_pre_hook(_accept_legacy_table_name)

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._enc.params is not self.params:  # after .to(), load_state_dict(assign=True), ...
            self._enc.params = self.params
        return self._enc(x.contiguous()).float()


def make_hash_grid(cfg: HashGridConfig | dict, backend: str = "auto") -> nn.Module:
    """``backend``: 'torch', 'tcnn', or 'auto' (tcnn when importable on CUDA, else torch). A
    'tcnn' model on a machine without tinycudann (a GPU-trained checkpoint rendered on a laptop)
    gets the PyTorch grid, with a warning: same encoding, same table."""
    if isinstance(cfg, dict):
        cfg = HashGridConfig.from_dict(cfg)
    if backend == "auto":
        backend = "tcnn" if tcnn_available() else "torch"
    elif backend == "tcnn" and not _tcnn_importable():
        log.warning(
            "tinycudann is not importable here: the PyTorch hash grid is used (same encoding and table)"
        )
        backend = "torch"
    if backend == "tcnn":
        return TcnnHashGrid(cfg)
    if backend == "torch":
        return TorchHashGrid(cfg)
    raise ValueError(f"unknown hash grid backend {backend!r} (torch | tcnn | auto)")


def copy_table(src: nn.Module, dst: nn.Module) -> None:
    """Copy hash-table contents between backends (same layout)."""
    with torch.no_grad():
        dst.params.copy_(src.params.detach().to(dst.params.device, dst.params.dtype))


def _ulp(v: np.ndarray) -> np.ndarray:
    """float32 spacing at |v| (the larger one at a power of two)."""
    return np.spacing(np.abs(np.asarray(v, np.float32)) * np.float32(1 + EPS32))


def parity_tolerance(
    cfg: HashGridConfig, x: torch.Tensor, params: torch.Tensor, exp2_ulps: float = 2.0
) -> torch.Tensor:
    """Per-output bound (N, L*F) on |tcnn - TorchHashGrid| for the same table ``params``.

    Scales: CUDA's exp2f is within ``exp2_ulps`` ulp (CUDA C Programming Guide, single-precision
    functions), ours within 0.5 ulp, so ``|d exp2| <= (exp2_ulps + 0.5) ulp(e)`` and, with both
    fma roundings, ``|d s_l| <= N_min |d exp2| + ulp(s_l)``. Positions: ``|d p_d| <= x_d |d s_l| +
    ulp(p)``. Trilinear interpolation is continuous and changes by at most ``2 max|theta_l|`` per
    unit of p along an axis, and each side rounds its 8-term sum (``8 eps max|theta_l|``)."""
    lay = level_layout(cfg)
    F = cfg.n_features_per_level
    tab = params.detach().float().abs().cpu()
    xs = x.detach().float().abs().sum(dim=1, keepdim=True).cpu()  # sum_d x_d (N, 1)
    cols = []
    for l in lay:
        theta = float(tab[l["offset"] * F : (l["offset"] + l["size"]) * F].max())
        d_scale = cfg.base_resolution * (exp2_ulps + 0.5) * float(_ulp(l["exp2"])) + float(_ulp(l["scale"]))
        d_pos = xs * d_scale + 3 * float(_ulp(l["scale"] + 1.0))
        cols.append((2.0 * theta * d_pos + 16 * EPS32 * theta).expand(-1, F))
    return torch.cat(cols, dim=1)


__all__ = [
    "HashGridConfig",
    "TorchHashGrid",
    "TcnnHashGrid",
    "make_hash_grid",
    "tcnn_available",
    "tcnn_encoding_config",
    "level_layout",
    "level_exp2",
    "grid_positions",
    "n_params",
    "copy_table",
    "parity_tolerance",
    "PRIMES",
    "LEGACY_TCNN_KEY",
    "asdict",
]
