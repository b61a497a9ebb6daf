"""Action-unit intensity error (AUE): mean absolute difference of AU intensities (OpenFace
``AU*_r`` columns, 0-5) between aligned generated and ground-truth frames, averaged over the AUs
both sides have and over frames.

AU intensities come from OpenFace 2 CSVs the user supplies (``FeatureExtraction -f clip.mp4``
writes one row per frame with ``frame``, ``success``, ``AU01_r`` ...), or from an AU estimator by
model path: a TorchScript module mapping (N, 3, S, S) RGB in [0, 1] to (N, K) intensities, with
``metrics.aue.au_names`` naming its K outputs.

"AUE (blendshape proxy)", a separate column that works offline: the same mean absolute difference
over the MediaPipe face landmarker's blendshape coefficients (0-1, :mod:`.face_landmarker`) that
correspond to FACS action units (``AU_BLENDSHAPES``; left/right pairs averaged). Blendshapes are
ARKit-style shape weights, not FACS intensities: the proxy ranks methods by how closely their
facial actions follow the ground truth, but its values are not comparable with OpenFace AUE.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..errors import EmoheadInputError


def read_openface_csv(path: str | Path) -> pd.DataFrame:
    """Frame-indexed DataFrame of the AU*_r columns (failed frames NaN)."""
    path = Path(path)
    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except Exception as e:
        raise EmoheadInputError(f"unreadable OpenFace CSV ({e}).", path=path) from e
    df.columns = [c.strip() for c in df.columns]
    au = [c for c in df.columns if c.startswith("AU") and c.endswith("_r")]
    if not au:
        raise EmoheadInputError(
            "no AU*_r columns.", path=path, fix="run OpenFace FeatureExtraction with AU output (-aus)."
        )
    out = df[au].astype(float)
    if "success" in df.columns:
        out.loc[df["success"].astype(float) < 0.5, :] = np.nan
    return out.reset_index(drop=True)


def aue(gen: pd.DataFrame, gt: pd.DataFrame) -> float:
    cols = [c for c in gen.columns if c in gt.columns]
    n = min(len(gen), len(gt))
    if not cols or n == 0:
        return float("nan")
    d = np.abs(gen[cols].to_numpy()[:n] - gt[cols].to_numpy()[:n])
    ok = np.isfinite(d).all(axis=1)
    return float(d[ok].mean()) if ok.any() else float("nan")


class TorchScriptAU:
    def __init__(self, path: str | Path, au_names: list[str], size: int = 224):
        self.model = torch.jit.load(str(path), map_location="cpu").eval()
        self.au_names = list(au_names)
        self.size = size

    @torch.no_grad()
    def __call__(self, frames_rgb: np.ndarray, batch: int = 16) -> pd.DataFrame:
        out = []
        for i in range(0, len(frames_rgb), batch):
            x = (
                torch.from_numpy(np.ascontiguousarray(frames_rgb[i : i + batch])).permute(0, 3, 1, 2).float()
                / 255
            )
            x = F.interpolate(
                x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
            )
            out.append(self.model(x).float().numpy())
        y = np.concatenate(out)
        if y.shape[1] != len(self.au_names):
            raise EmoheadInputError(
                f"AU model outputs {y.shape[1]} values but metrics.aue.au_names has {len(self.au_names)}.",
                fix="make au_names match the model outputs.",
            )
        return pd.DataFrame(y, columns=self.au_names)


# FACS action unit -> MediaPipe / ARKit blendshapes measuring the same facial action (left and right
# averaged). OpenFace's AU23 (lip tightener) and AU25 (lips part) have no blendshape counterpart;
# mouthPress is the lip pressor (AU24).
AU_BLENDSHAPES = {
    "AU01": ["browInnerUp"],  # inner brow raiser
    "AU02": ["browOuterUpLeft", "browOuterUpRight"],  # outer brow raiser
    "AU04": ["browDownLeft", "browDownRight"],  # brow lowerer
    "AU05": ["eyeWideLeft", "eyeWideRight"],  # upper lid raiser
    "AU06": ["cheekSquintLeft", "cheekSquintRight"],  # cheek raiser
    "AU07": ["eyeSquintLeft", "eyeSquintRight"],  # lid tightener
    "AU09": ["noseSneerLeft", "noseSneerRight"],  # nose wrinkler
    "AU10": ["mouthUpperUpLeft", "mouthUpperUpRight"],  # upper lip raiser
    "AU12": ["mouthSmileLeft", "mouthSmileRight"],  # lip corner puller
    "AU14": ["mouthDimpleLeft", "mouthDimpleRight"],  # dimpler
    "AU15": ["mouthFrownLeft", "mouthFrownRight"],  # lip corner depressor
    "AU17": ["mouthShrugLower"],  # chin raiser
    "AU20": ["mouthStretchLeft", "mouthStretchRight"],  # lip stretcher
    "AU24": ["mouthPressLeft", "mouthPressRight"],  # lip pressor
    "AU26": ["jawOpen"],  # jaw drop
    "AU45": ["eyeBlinkLeft", "eyeBlinkRight"],  # blink
}


def blendshape_aus(blendshapes: np.ndarray) -> pd.DataFrame:
    """(T, 52) blendshape coefficients (NaN rows: no face) -> (T, 16) action-unit proxies, columns
    ``AU01_bs`` ... in [0, 1]."""
    from .face_landmarker import BLENDSHAPES

    b = np.asarray(blendshapes, np.float64)
    if b.ndim != 2 or b.shape[1] != len(BLENDSHAPES):
        raise ValueError(f"expected (T, {len(BLENDSHAPES)}) blendshapes, got {b.shape}")
    idx = {n: i for i, n in enumerate(BLENDSHAPES)}
    return pd.DataFrame(
        {f"{au}_bs": b[:, [idx[n] for n in names]].mean(axis=1) for au, names in AU_BLENDSHAPES.items()}
    )
