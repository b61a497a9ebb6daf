"""Multiresolution hash-grid encoding (instant-ngp, Mueller et al. 2022), two backends.

Both backends share one parameter layout, the one tiny-cuda-nn (tcnn) uses, so a table can be
copied between them verbatim:

* level ``l`` has scale ``s_l = N_min * b**l - 1`` and resolution ``r_l = ceil(s_l) + 1``;
* its table holds ``n_l = min(next_multiple(r_l**3, 8), 2**log2_T)`` entries of ``F`` features;
  the flat parameter vector is the concatenation of levels, entry-major (``[offset_l + i*F + f]``);
* a point ``x`` in [0, 1]^3 maps to ``p = x * s_l + 0.5``; ``floor(p)`` is the lower corner and
  ``p - floor(p)`` the trilinear weight;
* a corner ``c`` is indexed densely (``c0 + c1 r + c2 r^2``) when ``r_l**3 <= n_l`` (coarse levels
  that fit the table), else by the spatial hash ``(c0 * 1) ^ (c1 * 2654435761) ^ (c2 *
  805459861)`` in uint32 arithmetic; either index is taken modulo ``n_l``;
* the output is level-major: ``out[..., l*F + f]``.

``TorchHashGrid`` runs on CPU and CUDA; ``TcnnHashGrid`` wraps ``tinycudann.Encoding`` and is
only built when tinycudann imports and CUDA is available (``make_hash_grid(backend="auto")``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

PRIMES = (1, 2654435761, 805459861)  # instant-ngp spatial hash primes
_U32 = 0xFFFFFFFF


@dataclass(frozen=True)
class HashGridConfig:
    n_levels: int = 16
    n_features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    per_level_scale: float = 1.447269237440378  # 16 -> 2048 over 16 levels (instant-ngp)

    @staticmethod
    def from_dict(d: dict | None) -> "HashGridConfig":
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


def level_layout(cfg: HashGridConfig) -> list[dict]:
    """Per-level scale, resolution, table size, offset (in entries) and dense flag (tcnn's)."""
    out, offset = [], 0
    T = 1 << cfg.log2_hashmap_size
    for lvl in range(cfg.n_levels):
        # float32 like tcnn: exp2f(level * log2f(b)) * N_min - 1
        l2 = np.float32(math.log2(np.float32(cfg.per_level_scale)))
        scale = float(np.exp2(np.float32(lvl) * l2, dtype=np.float32) * np.float32(cfg.base_resolution)
                      - np.float32(1.0))
        res = int(math.ceil(scale)) + 1
        dense_size = res**3
        n = min(((dense_size + 7) // 8) * 8, T)
        out.append(dict(scale=scale, resolution=res, size=n, offset=offset, dense=dense_size <= n))
        offset += n
    return out


def n_params(cfg: HashGridConfig) -> int:
    lay = level_layout(cfg)
    return (lay[-1]["offset"] + lay[-1]["size"]) * cfg.n_features_per_level


class TorchHashGrid(nn.Module):
    """Pure-PyTorch hash grid with tcnn's layout, hashing and trilinear interpolation.

    ``forward(x)``: x (N, 3) in [0, 1]^3 -> (N, n_levels * F). All levels are processed in one
    vectorised gather; gradients reach the flat ``params`` table through autograd.
    """

    def __init__(self, cfg: HashGridConfig, init_scale: float = 1e-4):
        super().__init__()
        self.cfg = cfg
        lay = level_layout(cfg)
        self.params = nn.Parameter(torch.empty(n_params(cfg)).uniform_(-init_scale, init_scale))
        self.register_buffer("_scale", torch.tensor([l["scale"] for l in lay], dtype=torch.float32), False)
        self.register_buffer("_res", torch.tensor([l["resolution"] for l in lay], dtype=torch.int64), False)
        self.register_buffer("_size", torch.tensor([l["size"] for l in lay], dtype=torch.int64), False)
        self.register_buffer("_offset", torch.tensor([l["offset"] for l in lay], dtype=torch.int64), False)
        self.register_buffer("_dense", torch.tensor([l["dense"] for l in lay], dtype=torch.bool), False)
        self.register_buffer("_primes", torch.tensor(PRIMES, dtype=torch.int64), False)
        self._hmask = (1 << cfg.log2_hashmap_size) - 1

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        F = self.cfg.n_features_per_level
        L = self.cfg.n_levels
        N = x.shape[0]
        pos = x.float()[:, None, :] * self._scale[None, :, None] + 0.5  # (N, L, 3)
        pos_grid = torch.floor(pos)
        frac = pos - pos_grid  # trilinear weights
        lo = pos_grid.long()
        c = torch.stack([lo, lo + 1], dim=-1)  # (N, L, 3, 2): lower / upper corner per axis
        w1 = torch.stack([1.0 - frac, frac], dim=-1)  # (N, L, 3, 2)
        # corners enumerated as (z, y, x) in a 2x2x2 block
        w = w1[:, :, 2, :, None, None] * w1[:, :, 1, None, :, None] * w1[:, :, 0, None, None, :]
        res = self._res[None, :, None]
        dense = c[:, :, 2, :, None, None] * (res * res)[..., None, None] + c[:, :, 1, None, :, None] * res[..., None, None] \
            + c[:, :, 0, None, None, :]
        size = self._size[None, :, None, None, None]
        dense = dense - size * (dense >= size)  # index % size (dense index < 2 * size)
        h = (c * self._primes[None, None, :, None]) & _U32  # uint32 products of the spatial hash
        # hashed levels always have size 2**log2_hashmap_size: modulo = mask
        hashed = (h[:, :, 2, :, None, None] ^ h[:, :, 1, None, :, None] ^ h[:, :, 0, None, None, :]) & self._hmask
        idx = torch.where(self._dense[None, :, None, None, None], dense, hashed) + self._offset[None, :, None, None, None]
        table = self.params.view(-1, F)
        feats = table.index_select(0, idx.reshape(-1)).view(N, L, 8, F)
        out = torch.einsum("nlc,nlcf->nlf", w.reshape(N, L, 8), feats)
        return out.reshape(N, L * F)


def tcnn_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import tinycudann  # noqa: F401
    except Exception:
        return False
    return True


class TcnnHashGrid(nn.Module):
    """tinycudann ``HashGrid`` encoding with the same config and parameter layout (CUDA only)."""

    def __init__(self, cfg: HashGridConfig):
        super().__init__()
        import tinycudann as tcnn  # import-guarded: only when the backend is requested

        self.cfg = cfg
        self.enc = tcnn.Encoding(
            3,
            {
                "otype": "HashGrid",
                "n_levels": cfg.n_levels,
                "n_features_per_level": cfg.n_features_per_level,
                "log2_hashmap_size": cfg.log2_hashmap_size,
                "base_resolution": cfg.base_resolution,
                "per_level_scale": cfg.per_level_scale,
                "interpolation": "Linear",
            },
            dtype=torch.float32,
        )
        if self.enc.params.numel() != n_params(cfg):
            raise RuntimeError(
                f"tcnn hash grid has {self.enc.params.numel()} params, layout expects {n_params(cfg)}"
            )

    @property
    def params(self) -> torch.Tensor:
        return self.enc.params

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x.contiguous()).float()


def make_hash_grid(cfg: HashGridConfig | dict, backend: str = "auto") -> nn.Module:
    """``backend``: 'torch', 'tcnn', or 'auto' (tcnn when importable on CUDA, else torch)."""
    if isinstance(cfg, dict):
        cfg = HashGridConfig.from_dict(cfg)
    if backend == "auto":
        backend = "tcnn" if tcnn_available() else "torch"
    if backend == "tcnn":
        return TcnnHashGrid(cfg)
    if backend == "torch":
        return TorchHashGrid(cfg)
    raise ValueError(f"unknown hash grid backend {backend!r} (torch | tcnn | auto)")


def copy_table(src: nn.Module, dst: nn.Module) -> None:
    """Copy hash-table contents between backends (same layout)."""
    with torch.no_grad():
        dst.params.copy_(src.params.detach().to(dst.params.device, dst.params.dtype))


__all__ = [
    "HashGridConfig",
    "TorchHashGrid",
    "TcnnHashGrid",
    "make_hash_grid",
    "tcnn_available",
    "level_layout",
    "n_params",
    "copy_table",
    "PRIMES",
    "asdict",
]
