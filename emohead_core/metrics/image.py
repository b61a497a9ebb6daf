"""Frame-level reconstruction metrics: alignment of a (generated, ground-truth) pair, PSNR, SSIM.

Conventions (docs/decisions.md, "Metrics and tables"):
- frames are compared in RGB, uint8 range (data range 255), over the whole aligned frame, i.e. the
  preprocessing face crop (``results/{dataset}/crop``) or the renderer's output frame;
- the pair is aligned by frame index at 25 fps (both videos resampled to ``fps``), truncated to the
  shorter one; a generated video of another size is resized (bilinear) to the ground-truth size;
- PSNR is computed per frame and averaged over frames (a frame identical to its ground truth gives
  +inf, so a clip against itself scores inf); SSIM is the Gaussian-window SSIM of Wang et al. (2004)
  (11x11 window, sigma 1.5, K1 0.01, K2 0.03, valid region) on each RGB channel, averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import EmoheadInputError


@dataclass
class AlignedPair:
    """Aligned frames of a generated and a ground-truth video, RGB uint8 (T, H, W, 3)."""

    gen: np.ndarray
    gt: np.ndarray
    fps: float
    n_gen: int  # frames before truncation
    n_gt: int


def bgr_to_rgb(frames: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frames[..., ::-1])


def align_frames(gen_bgr: np.ndarray, gt_bgr: np.ndarray, fps: float = 25.0) -> AlignedPair:
    """Align two BGR (T, H, W, 3) uint8 arrays: truncate to the shorter, resize gen to gt size."""
    if gen_bgr.ndim != 4 or gt_bgr.ndim != 4:
        raise ValueError("expected (T, H, W, 3) frame arrays")
    n = min(len(gen_bgr), len(gt_bgr))
    if n == 0:
        raise EmoheadInputError("one of the videos of the pair has no frames.")
    gen, gt = gen_bgr[:n], gt_bgr[:n]
    h, w = gt.shape[1:3]
    if gen.shape[1:3] != (h, w):
        gen = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in gen])
    return AlignedPair(gen=bgr_to_rgb(gen), gt=bgr_to_rgb(gt), fps=fps, n_gen=len(gen_bgr), n_gt=len(gt_bgr))


def load_pair(generated: str | Path, ground_truth: str | Path, fps: float = 25.0) -> AlignedPair:
    from ..media import read_frames

    return align_frames(read_frames(generated, fps=fps), read_frames(ground_truth, fps=fps), fps=fps)


def psnr_frames(gen: np.ndarray, gt: np.ndarray, data_range: float = 255.0) -> np.ndarray:
    """Per-frame PSNR in dB of (T, H, W, C) arrays (inf where a frame is identical)."""
    d = gen.astype(np.float64) - gt.astype(np.float64)
    mse = (d * d).reshape(len(d), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)


def psnr(gen: np.ndarray, gt: np.ndarray, data_range: float = 255.0) -> float:
    return float(np.mean(psnr_frames(gen, gt, data_range)))


def _gauss(img: np.ndarray, ksize: int, sigma: float) -> np.ndarray:
    # 'valid' Gaussian filtering: filter with any border, then drop the border
    out = cv2.GaussianBlur(img, (ksize, ksize), sigma, borderType=cv2.BORDER_REFLECT)
    r = ksize // 2
    return out[r:-r, r:-r]


def ssim_image(
    x: np.ndarray,
    y: np.ndarray,
    data_range: float = 255.0,
    ksize: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    """Mean SSIM of two single-channel images (float64)."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mu_x, mu_y = _gauss(x, ksize, sigma), _gauss(y, ksize, sigma)
    sxx = _gauss(x * x, ksize, sigma) - mu_x**2
    syy = _gauss(y * y, ksize, sigma) - mu_y**2
    sxy = _gauss(x * y, ksize, sigma) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return float(np.mean(num / den))


def ssim_frames(gen: np.ndarray, gt: np.ndarray, data_range: float = 255.0) -> np.ndarray:
    """Per-frame SSIM of (T, H, W, C) arrays, channels averaged."""
    out = np.empty(len(gen))
    for t in range(len(gen)):
        out[t] = np.mean(
            [ssim_image(gen[t, ..., c], gt[t, ..., c], data_range) for c in range(gen.shape[-1])]
        )
    return out


def ssim(gen: np.ndarray, gt: np.ndarray, data_range: float = 255.0) -> float:
    return float(np.mean(ssim_frames(gen, gt, data_range)))
