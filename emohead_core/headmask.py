"""Per-frame head masks of a rendered test span, stored beside its videos (``test_mask.npz``).

The render stage writes the ground-truth frames' head masks of a test span (the masks the head
is composited into, :mod:`emohead_core.render.data`) next to ``test_render.mp4`` /
``test_gt.mp4``; the metrics stage reads them for the head-region columns (SSIM / PSNR / LPIPS
over the head mask, :mod:`emohead_core.metrics.image`). Format: ``masks`` (T, H, ceil(W / 8))
uint8, bit-packed along the rows, and ``shape`` = (T, H, W).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import EmoheadInputError
from .io import atomic_path

MASK_FILE = "test_mask.npz"


def save_masks(path: str | Path, masks: np.ndarray) -> None:
    """Write (T, H, W) bool masks to ``path`` (atomically)."""
    m = np.asarray(masks, bool)
    if m.ndim != 3:
        raise ValueError(f"expected (T, H, W) masks, got shape {m.shape}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, masks=np.packbits(m, axis=-1), shape=np.asarray(m.shape, np.int64))


def load_masks(path: str | Path) -> np.ndarray:
    """(T, H, W) bool masks written by :func:`save_masks`."""
    path = Path(path)
    if not path.is_file():
        raise EmoheadInputError(
            "head-mask file missing.", path=path, fix="rerun the render rule that writes this test span."
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            packed, shape = z["masks"], tuple(int(s) for s in z["shape"])
    except (OSError, ValueError, KeyError) as e:
        raise EmoheadInputError(
            f"unreadable head-mask file ({e}).", path=path, fix="rerun the render rule that writes it."
        ) from None
    if len(shape) != 3 or packed.shape[:2] != shape[:2]:
        raise EmoheadInputError(
            f"head-mask file holds masks of shape {packed.shape} for frames {shape}.",
            path=path,
            fix="rerun the render rule that writes it.",
        )
    return np.unpackbits(packed, axis=-1, count=shape[2]).astype(bool)
