"""Run-time emotion edit (paper eq. 9, Appendix B (3)), used by the audio-expression module and
the renderer: ``alpha_hat = alpha_tilde + tau * w_z`` (:func:`refine`), per-frame directions
for an emotion timeline that switches w_1 -> w_2 with a linear ramp (:func:`timeline_directions`),
and the edit directions of a hyperplanes file (:func:`emotion_directions`; the file is written
by the expression stage, :mod:`emohead_core.expression.hyperplanes`). The direction eq. (9)
moves along is the file's d_z: the hyperplane's normal in the whitened expression space by
default, the raw unit normal w_z with ``hyperplanes.edit_space: raw`` (docs/decisions.md)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import EmoheadInputError


def emotion_directions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{emotion: unit edit direction d_z (m,) float32} of a hyperplanes.json / .parquet (or their
    folder)."""
    from .expression.hyperplanes import load_edit_directions

    return {str(emo): np.asarray(d, dtype=np.float32) for emo, d in load_edit_directions(path).items()}


def edit_directions(hyperplanes) -> dict[str, np.ndarray]:
    """{emotion: direction (m,) float64} of a hyperplanes file (its d_z), or of a dict whose
    values are directions or ``(w, b)`` pairs (then w: the raw normal)."""
    if isinstance(hyperplanes, (str, os.PathLike)):
        return {z: np.asarray(d, np.float64) for z, d in emotion_directions(hyperplanes).items()}
    return {
        str(z): np.asarray(v[0] if isinstance(v, (tuple, list)) else v, np.float64)
        for z, v in hyperplanes.items()
    }


def refine(alpha_tilde, tau, w_z):
    """Eq. (9): alpha_hat = alpha_tilde + tau * w_z^T.

    alpha_tilde: (..., 10) (NumPy or torch); tau: scalar, (...,) per frame or (..., 1);
    w_z: (10,) or per-frame (..., 10)."""
    ndim = getattr(alpha_tilde, "ndim", np.ndim(alpha_tilde))
    if getattr(tau, "ndim", 0) == ndim - 1 and ndim >= 1 and getattr(tau, "ndim", 0) > 0:
        tau = tau[..., None]
    return alpha_tilde + tau * w_z


_TIMELINE_ITEM = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(?:s)?\s*:\s*([A-Za-z_]+)\s*$")


def parse_timeline(spec: str) -> list[tuple[float, str]]:
    """ "0:happy,2.5:sad" -> [(0.0, 'happy'), (2.5, 'sad')] (sorted, times in seconds)."""
    items = []
    for part in [p for p in spec.split(",") if p.strip()]:
        m = _TIMELINE_ITEM.match(part)
        if not m:
            raise EmoheadInputError(
                f"bad emotion timeline item {part!r} in {spec!r}.",
                fix='write "<seconds>:<emotion>,..." e.g. "0:happy,2.5:sad".',
            )
        items.append((float(m.group(1)), m.group(2).lower()))
    if not items:
        raise EmoheadInputError(f"empty emotion timeline {spec!r}.", fix='e.g. "0:happy".')
    items.sort(key=lambda x: x[0])
    return items


@dataclass
class TimelineDirections:
    W: np.ndarray  # (T, 10) per-frame direction sum_k weights[:, k] * w_k
    weights: np.ndarray  # (T, K) per-frame weight of each emotion (rows sum to 1)
    emotions: list[str]


def timeline_directions(
    timeline: Sequence[tuple[float, str]] | str,
    n_frames: int,
    fps: float,
    hyperplanes,
    ramp_s: float = 0.5,
) -> TimelineDirections:
    """Per-frame emotion direction for a timeline (Appendix B (3)). ``hyperplanes``: a
    hyperplanes file or a dict (:func:`edit_directions`).

    At each switch time t_s from w_1 to w_2, the weight of w_2 ramps linearly from 0 to 1 over
    ``ramp_s`` seconds centred on t_s (ramp_s = 0: hard switch at t_s); w_1 gets 1 minus that.
    Before the first entry its emotion holds. Refine with ``refine(alpha, tau, W)``.
    """
    if isinstance(timeline, str):
        timeline = parse_timeline(timeline)
    timeline = sorted(timeline, key=lambda x: x[0])
    hyperplanes = edit_directions(hyperplanes)
    missing = [z for _, z in timeline if z not in hyperplanes]
    if missing:
        raise EmoheadInputError(
            f"no hyperplane for emotion(s) {sorted(set(missing))}; have {sorted(hyperplanes)}.",
            fix="use an emotion of the target character's hyperplanes.json.",
        )
    emotions = list(dict.fromkeys(z for _, z in timeline))
    t = np.arange(n_frames, dtype=np.float64) / float(fps)
    weights = np.zeros((n_frames, len(emotions)))
    weights[:, emotions.index(timeline[0][1])] = 1.0
    for t_s, z_new in timeline[1:]:
        if ramp_s > 0:
            lam = np.clip((t - t_s) / ramp_s + 0.5, 0.0, 1.0)
        else:
            lam = (t >= t_s).astype(np.float64)
        weights *= (1.0 - lam)[:, None]
        weights[:, emotions.index(z_new)] += lam
    Wz = np.stack([hyperplanes[z] for z in emotions])
    return TimelineDirections(weights @ Wz, weights, emotions)
