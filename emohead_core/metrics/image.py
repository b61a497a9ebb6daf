"""Frame-level reconstruction metrics: alignment of a (generated, ground-truth) pair, PSNR, SSIM.

Conventions (docs/decisions.md, "Metrics and tables"):
- frames are compared in RGB, uint8 range (data range 255), over the whole aligned frame, i.e. the
  preprocessing face crop (``results/{dataset}/crop``) or the renderer's output frame;
- the pair is aligned by frame index at 25 fps (both videos resampled to ``fps``), truncated to the
  shorter one; a generated video of another size is resized (bilinear) to the ground-truth size;
- PSNR is computed per frame and averaged over frames (a frame identical to its ground truth gives
  +inf, so a clip against itself scores inf); SSIM is the Gaussian-window SSIM of Wang et al. (2004)
  (11x11 window, sigma 1.5, K1 0.01, K2 0.03, valid region) on each RGB channel, averaged;
- the head-region variants (:func:`psnr_region_frames`, :func:`ssim_region_frames`) use only the
  ground-truth frame's head mask: the generated frame equals the ground truth outside it and
  every average is over mask pixels (docs/decisions.md, "Head-region SSIM / PSNR / LPIPS").
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


# ---------------------------------------------------------------------------- head region
# The head-region columns (docs/decisions.md, "Head-region metrics"): the region of a frame is
# its ground-truth head mask (the mask the renderer composites the head into). Differences
# outside it never count: the generated frame's pixels outside the mask are replaced by the
# ground truth's (:func:`equalise_outside`) and every average is taken over mask pixels only.


def region_masks(masks: np.ndarray, n: int, size: tuple[int, int]) -> np.ndarray:
    """(n, H, W) bool head masks for ``n`` aligned frames of size ``size`` = (H, W): the first
    ``n`` of ``masks`` (the pair is truncated to its shorter video), resized (nearest) when the
    masks were stored at another size."""
    m = np.asarray(masks, bool)
    if m.ndim != 3 or len(m) < n:
        raise EmoheadInputError(
            f"{len(m) if m.ndim == 3 else 0} head masks for {n} aligned frames.",
            fix="rerun the render rule of this test span (its test_mask.npz is out of date).",
        )
    m = m[:n]
    h, w = size
    if m.shape[1:] != (h, w):
        m = np.stack([cv2.resize(x.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) for x in m])
        m = m.astype(bool)
    return m


def equalise_outside(gen: np.ndarray, gt: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``gen`` with every pixel outside ``masks`` (T, H, W) replaced by ``gt``'s."""
    return np.where(masks[..., None], gen, gt)


def psnr_region_frames(
    gen: np.ndarray, gt: np.ndarray, masks: np.ndarray, data_range: float = 255.0
) -> np.ndarray:
    """Per-frame PSNR in dB over the pixels of ``masks`` (T, H, W) only (all channels); NaN for a
    frame with an empty mask, inf where the region is identical."""
    out = np.full(len(gen), np.nan)
    for t in range(len(gen)):
        m = masks[t]
        if not m.any():
            continue
        d = gen[t][m].astype(np.float64) - gt[t][m].astype(np.float64)
        mse = float((d * d).mean())
        out[t] = np.inf if mse == 0 else 10.0 * np.log10(data_range**2 / mse)
    return out


def ssim_map(
    x: np.ndarray,
    y: np.ndarray,
    data_range: float = 255.0,
    ksize: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> np.ndarray:
    """SSIM map (H, W) of two single-channel images, one value per window centre ('same' size:
    windows at the image border are reflected), the window and constants of :func:`ssim_image`."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2

    def g(img):
        return cv2.GaussianBlur(img, (ksize, ksize), sigma, borderType=cv2.BORDER_REFLECT)

    mu_x, mu_y = g(x), g(y)
    sxx = g(x * x) - mu_x**2
    syy = g(y * y) - mu_y**2
    sxy = g(x * y) - mu_x * mu_y
    return (2 * mu_x * mu_y + c1) * (2 * sxy + c2) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


def ssim_region_frames(
    gen: np.ndarray, gt: np.ndarray, masks: np.ndarray, data_range: float = 255.0
) -> np.ndarray:
    """Per-frame SSIM over the head region: ``gen`` with the ground truth outside the mask
    (:func:`equalise_outside`), the SSIM map of each RGB channel on the mask's bounding box
    (grown by the window radius, so every window centred in the box is computed as on the whole
    frame), averaged over the window centres inside the mask, channels averaged. NaN for a frame
    with an empty mask."""
    r = 11 // 2
    eq = equalise_outside(gen, gt, masks)
    out = np.full(len(gen), np.nan)
    H, W = masks.shape[1:]
    for t in range(len(gen)):
        m = masks[t]
        ys, xs = np.nonzero(m)
        if len(ys) == 0:
            continue
        y0, y1 = max(int(ys.min()) - r, 0), min(int(ys.max()) + r + 1, H)
        x0, x1 = max(int(xs.min()) - r, 0), min(int(xs.max()) + r + 1, W)
        sub = m[y0:y1, x0:x1]
        out[t] = np.mean(
            [
                ssim_map(eq[t, y0:y1, x0:x1, c], gt[t, y0:y1, x0:x1, c], data_range)[sub].mean()
                for c in range(gen.shape[-1])
            ]
        )
    return out
