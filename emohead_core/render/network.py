"""Implicit function theta: (alpha_hat, d, x) -> (c, sigma)  (Sec. III-C).

x (normalised head frame, [-1, 1]^3) is encoded by the multiresolution hash grid, d by real
spherical harmonics up to degree 3 (instant-ngp). The density MLP sees [enc(x), alpha_hat] and
outputs sigma (truncated exponential activation) and a geometry feature; the colour MLP sees
[feature, SH(d), alpha_hat]. Depth, width and skip connections are configurable: the paper
profile uses NeRF's MLP (8 x 256, skip into layer 5, 128-wide view branch); the demo profile a
small instant-ngp-sized MLP. alpha_hat is standardised with the training-set mean / std
(buffers saved with the model) and clamped to +-alpha_clip standard deviations: a
person-specific field cannot extrapolate far outside the expressions of its training video.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .hashgrid import HashGridConfig, make_hash_grid


class _TruncExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return _TruncExp.apply(x)


def sh_encode(d: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics of degree <= 3 (16 coefficients) of unit vectors d (N, 3)."""
    x, y, z = d.unbind(-1)
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    return torch.stack(
        [
            torch.full_like(x, 0.28209479177387814),
            -0.48860251190291987 * y,
            0.48860251190291987 * z,
            -0.48860251190291987 * x,
            1.0925484305920792 * xy,
            -1.0925484305920792 * yz,
            0.94617469575755997 * zz - 0.31539156525251999,
            -1.0925484305920792 * xz,
            0.54627421529603959 * (xx - yy),
            0.59004358992664352 * y * (-3.0 * xx + yy),
            2.8906114426405538 * xy * z,
            0.45704579946446572 * y * (1.0 - 5.0 * zz),
            0.3731763325901154 * z * (5.0 * zz - 3.0),
            0.45704579946446572 * x * (1.0 - 5.0 * zz),
            1.4453057213202769 * z * (xx - yy),
            0.59004358992664352 * x * (-xx + 3.0 * yy),
        ],
        dim=-1,
    )


@dataclass
class NeRFConfig:
    grid: dict = field(default_factory=dict)
    backend: str = "auto"
    alpha_dim: int = 10
    hidden: int = 64
    sigma_layers: int = 2
    skips: tuple = ()
    geo_feat: int = 15
    color_hidden: int = 64
    color_layers: int = 2
    alpha_clip: float = 4.0  # standardised alpha is clamped to +-alpha_clip (no extrapolation)

    @staticmethod
    def from_dict(d: dict | None) -> NeRFConfig:
        d = dict(d or {})
        if "skips" in d:
            d["skips"] = tuple(d["skips"])
        return NeRFConfig(**d)


class EmoNeRF(nn.Module):
    def __init__(self, cfg: NeRFConfig | dict | None = None):
        super().__init__()
        cfg = cfg if isinstance(cfg, NeRFConfig) else NeRFConfig.from_dict(cfg)
        self.cfg = cfg
        self.encoder = make_hash_grid(HashGridConfig.from_dict(cfg.grid), cfg.backend)
        in_dim = self.encoder.out_dim + cfg.alpha_dim
        layers, dim = [], in_dim
        for i in range(cfg.sigma_layers):
            if i in cfg.skips:
                dim += in_dim
            layers.append(nn.Linear(dim, cfg.hidden))
            dim = cfg.hidden
        self.sigma_net = nn.ModuleList(layers)
        self.sigma_out = nn.Linear(dim, 1 + cfg.geo_feat)
        cl, dim = [], cfg.geo_feat + 16 + cfg.alpha_dim
        for _ in range(cfg.color_layers):
            cl += [nn.Linear(dim, cfg.color_hidden), nn.ReLU(inplace=True)]
            dim = cfg.color_hidden
        cl.append(nn.Linear(dim, 3))
        self.color_net = nn.Sequential(*cl)
        self.register_buffer("alpha_mean", torch.zeros(cfg.alpha_dim))
        self.register_buffer("alpha_std", torch.ones(cfg.alpha_dim))

    def set_alpha_stats(self, mean, std) -> None:
        self.alpha_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.alpha_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp(min=1e-6))

    def _norm_alpha(self, a: torch.Tensor) -> torch.Tensor:
        a = (a - self.alpha_mean) / self.alpha_std
        c = float(self.cfg.alpha_clip)
        return a.clamp(-c, c) if c > 0 else a

    def _sigma_feat(self, x, a):
        h = torch.cat([self.encoder((x + 1.0) * 0.5), a], dim=-1)
        inp = h
        for i, lin in enumerate(self.sigma_net):
            if i in self.cfg.skips:
                h = torch.cat([h, inp], dim=-1)
            h = torch.relu(lin(h))
        out = self.sigma_out(h)
        return trunc_exp(out[..., 0].float()), out[..., 1:]  # exp in float32 (also under autocast)

    def density(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        a = self._norm_alpha(alpha)
        a = a[None].expand(x.shape[0], -1) if a.dim() == 1 else a
        return self._sigma_feat(x, a)[0]

    def forward(self, x: torch.Tensor, d: torch.Tensor, alpha: torch.Tensor):
        """x (N, 3) in [-1, 1], d (N, 3) unit, alpha (N, 10) -> sigma (N,), rgb (N, 3)."""
        a = self._norm_alpha(alpha)
        sigma, feat = self._sigma_feat(x, a)
        rgb = torch.sigmoid(self.color_net(torch.cat([feat, sh_encode(d), a], dim=-1)))
        return sigma, rgb

    def field_for(self, d: torch.Tensor, alpha: torch.Tensor):
        """The field with the inputs that do not depend on x fixed: one direction d (3,) and one
        expression alpha (C,) shared by all samples (the rays of a frame are parallel), or one
        per ray, d (G, 3) and alpha (G, C). Returns ``field(x, g=None) -> (sigma, rgb)``, x (N, 3),
        g (N,) the ray of each sample in the per-ray case; equal to ``forward(x, d, alpha)`` (per
        sample) up to float rounding. alpha_hat and SH(d) contribute a constant to their layers,
        folded into the biases once (per ray: a gathered bias); gradients flow as in ``forward``."""
        per_ray = d.dim() == 2
        if 0 in self.cfg.skips:  # the input fed twice to layer 0: no folding
            if per_ray:
                return lambda x, g: self.forward(x, d[g], alpha[g])
            return lambda x, g=None: self.forward(x, d.expand(len(x), -1), alpha.expand(len(x), -1))
        a = self._norm_alpha(alpha)
        C = a.shape[-1]
        first = self.sigma_net[0] if len(self.sigma_net) else self.sigma_out
        cin = self.color_net[0]
        geo = self.cfg.geo_feat
        const = torch.cat([sh_encode(d if per_ray else d[None]), a if per_ray else a[None]], dim=-1)
        color_const = cin.bias + const @ cin.weight[:, geo:].T  # (G or 1, hidden)

        def folded(lin, h, const_bias, g):  # lin(h) with the constant columns' share in the bias
            if not per_ray:
                return F.linear(h, lin.weight[:, : h.shape[-1]], const_bias[0])
            return F.linear(h, lin.weight[:, : h.shape[-1]]) + const_bias[g]

        def alpha_bias(lin):  # [h..., alpha_hat]: bias + the alpha_hat columns
            return lin.bias + (a if per_ray else a[None]) @ lin.weight[:, -C:].T

        def field(x: torch.Tensor, g: torch.Tensor | None = None):
            enc = self.encoder((x + 1.0) * 0.5)
            h = enc
            for i, lin in enumerate(self.sigma_net):
                if i in self.cfg.skips:
                    h = torch.cat([h, enc], dim=-1)
                h = torch.relu(
                    folded(lin, h, alpha_bias(lin), g) if (i == 0 or i in self.cfg.skips) else lin(h)
                )
            out = folded(first, h, alpha_bias(first), g) if first is self.sigma_out else self.sigma_out(h)
            c = folded(cin, out[..., 1:], color_const, g)
            for layer in list(self.color_net)[1:]:
                c = layer(c)
            return trunc_exp(out[..., 0].float()), torch.sigmoid(c)

        return field
