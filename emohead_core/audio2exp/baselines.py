"""Trivial predictors of the test alphas, scored beside the audio-expression module (eval.json,
Tables IV and VI): nothing is learned from audio, only training-split targets are used.

* ``clip_train_mean``: each test clip's own training-span mean alpha (within-clip split: the
  frames before its test span), held constant over its test frames;
* ``last_train_frame``: the alpha of the clip's last training frame (with a target), held;
* ``emotion_mean``: the mean alpha of every training frame (all clips of the dataset) with the
  clip's emotion tag; a tag without training frames takes the mean of all training frames.

RMSE as :func:`emohead_core.audio2exp.train.evaluate` computes the model's: over every element of
the targets of the split's frames with a detected face, pooled over clips. A test clip without
training frames (split mode ``samples``: test clips are held out whole) has no own-clip baseline;
those frames are left out of the first two (their ``n_frames`` says how many were scored) and a
baseline that covers no frame is None with the reason.
"""

from __future__ import annotations

import numpy as np

from .data import Corpus

BASELINES = {
    "clip_train_mean": "the clip's own training-span mean alpha, held over its test frames",
    "last_train_frame": "the alpha of the clip's last training frame, held over its test frames",
    "emotion_mean": "the mean alpha of the training frames (all clips) with the clip's emotion tag",
}
KEY = "rmse_baseline_{}"


def _train_targets(clip) -> np.ndarray:
    return clip.alpha[: clip.T][clip.target_mask("train")].astype(np.float64)


def baseline_predictions(
    corpus: Corpus, split: str = "test"
) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Baseline name -> [(prediction (n, m), target (n, m))] per clip of ``split`` with targets."""
    train = [c for c in corpus.clips if c.has_alpha and c.target_mask("train").any()]
    by_tag: dict[str, list[np.ndarray]] = {}
    for c in train:
        by_tag.setdefault(c.emotion, []).append(_train_targets(c))
    overall = np.concatenate([x for xs in by_tag.values() for x in xs]).mean(0) if by_tag else None
    tag_mean = {z: np.concatenate(xs).mean(0) for z, xs in by_tag.items()}
    out: dict[str, list] = {k: [] for k in BASELINES}
    for c in corpus.clips:
        if not c.has_alpha:
            continue
        sel = c.target_mask(split)
        if not sel.any():
            continue
        target = c.alpha[: c.T][sel].astype(np.float64)
        own = _train_targets(c)
        if len(own):
            out["clip_train_mean"].append((np.broadcast_to(own.mean(0), target.shape), target))
            out["last_train_frame"].append((np.broadcast_to(own[-1], target.shape), target))
        z = tag_mean.get(c.emotion, overall)
        if z is not None:
            out["emotion_mean"].append((np.broadcast_to(z, target.shape), target))
    return out


def baseline_rmse(corpus: Corpus, split: str = "test") -> dict:
    """eval.json entries: ``rmse_baseline_{name}`` (None when no frame could be scored) and
    ``baselines``: per baseline its definition, RMSE, frames and clips scored."""
    preds = baseline_predictions(corpus, split)
    flat, detail = {}, {}
    for name, parts in preds.items():
        n = int(sum(len(t) for _, t in parts))
        if n:
            err = np.concatenate([(p - t).reshape(-1) for p, t in parts])
            rmse = float(np.sqrt(np.mean(err**2)))
            note = ""
        else:
            rmse = None
            note = (
                f"n/a: no {split} clip has training frames of its own "
                "(split mode samples holds test clips out whole)"
            )
        flat[KEY.format(name)] = rmse
        detail[name] = dict(definition=BASELINES[name], rmse=rmse, n_frames=n, n_clips=len(parts), note=note)
    return dict(flat, baselines=detail)
