"""Emotion hyperplanes in the 3DMM expression space (paper Sec. III-B, eq. 9/14; Appendix B).

Training (Appendix B, "Pre-training hyperplane"), per target character (or pooled):

1. every frame's 10-d expression alpha is labelled with its clip's emotion (train split);
2. frames are split into ``n_groups`` = 5 MAR groups of equal width between the minimum and
   maximum mouth aspect ratio;
3. for each emotion z (one-vs-rest), every (MAR group, class) cell is sampled to the same
   quota, so positives (z) and negatives (other emotions) are balanced and evenly spread over
   the groups (see :func:`balanced_indices`);
4. a linear SVM (scikit-learn ``LinearSVC``, hinge loss) is fit on standardised alpha; its
   normal is mapped back to the raw expression space and normalised: w_z (unit), b such that
   the signed distance of alpha to the hyperplane is ``w_z . alpha + b``;
5. the edit direction d_z that eq. (9) moves alpha along (:func:`edit_direction`): the normal of
   the same hyperplane in the whitened expression space of the fitted frames (``Sigma w_z``,
   unit length; ``edit_space: whitened``, the default) or the raw normal w_z itself
   (``edit_space: raw``). docs/decisions.md explains and measures the choice.

Files: :func:`save_hyperplanes` (hyperplanes.json / .parquet, accuracy table, the plots of
:mod:`.hyperplane_plots`), :func:`load_hyperplanes`. Using the normals at run time (eq. 9,
emotion timelines): :mod:`emohead_core.emotion_edit`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import EmoheadInputError
from ..io import atomic_path, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

M_EXP = 10  # Table V: dimension of the emotion hyperplane m
EDIT_SPACES = ("whitened", "raw", "class_mean", "within", "shrunk")


# ----------------------------------------------------------------------------- MAR groups


def mar_group_edges(mar: np.ndarray, n_groups: int = 5) -> np.ndarray:
    """``n_groups + 1`` equally spaced edges between min and max MAR ("arithmetic groups")."""
    mar = np.asarray(mar, np.float64)
    lo, hi = float(np.min(mar)), float(np.max(mar))
    if hi <= lo:
        hi = lo + 1e-9
    return np.linspace(lo, hi, n_groups + 1)


def mar_groups(mar: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Group index 0..n_groups-1 of each frame (the maximum falls in the last group)."""
    n_groups = len(edges) - 1
    g = np.searchsorted(edges, np.asarray(mar, np.float64), side="right") - 1
    return np.clip(g, 0, n_groups - 1).astype(np.int64)


QUOTAS = ("max", "mean", "min")


def balanced_indices(
    positive: np.ndarray, groups: np.ndarray, n_groups: int, rng: np.random.Generator, quota: str = "max"
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a training set with equal counts in every (MAR group, class) cell.

    Usable groups are those with at least one positive and one negative frame. The quota per
    cell is q = max (default) / mean / min over usable groups of min(#pos, #neg) (at least 1).
    A cell with at least q frames is subsampled without replacement, a smaller one is
    oversampled with replacement. With "max" no frame of the best-filled group's smaller class
    is dropped (least variance, see docs/decisions.md); "min" never duplicates frames but can
    leave only a handful of frames when one MAR group is sparse. Returns (indices, per-group
    counts of the training set (pos + neg), length n_groups; 0 for unusable groups).
    """
    positive = np.asarray(positive, bool)
    usable = [
        g for g in range(n_groups) if (positive & (groups == g)).any() and (~positive & (groups == g)).any()
    ]
    counts = np.zeros(n_groups, np.int64)
    if not usable:
        return np.zeros(0, np.int64), counts
    if quota not in QUOTAS:
        raise EmoheadInputError(
            f"unknown quota rule {quota!r}; expected one of {QUOTAS}.", fix="set hyperplanes.quota."
        )
    smaller = [min((positive & (groups == g)).sum(), (~positive & (groups == g)).sum()) for g in usable]
    q = max(1, int(round({"max": np.max, "mean": np.mean, "min": np.min}[quota](smaller))))
    out = []
    for g in usable:
        for cls in (True, False):
            cell = np.flatnonzero((positive == cls) & (groups == g))
            out.append(rng.choice(cell, size=q, replace=len(cell) < q))
        counts[g] = 2 * q
    return np.concatenate(out), counts


# ----------------------------------------------------------------------------- SVM


def fit_linear_svm(X: np.ndarray, y: np.ndarray, C: float = 1.0, seed: int = 0) -> tuple[np.ndarray, float]:
    """Linear SVM on standardised features; returns (w_z unit normal, b) in the RAW space so
    that ``w_z . x + b`` is the signed distance to the hyperplane (positive side = y True)."""
    from sklearn.svm import LinearSVC

    X = np.asarray(X, np.float64)
    mu = X.mean(0)
    sigma = X.std(0)
    sigma[sigma < 1e-12] = 1.0
    Xs = (X - mu) / sigma
    clf = LinearSVC(C=C, loss="hinge", dual=True, max_iter=20000, random_state=seed)
    clf.fit(Xs, np.asarray(y, bool))
    w_s, b_s = clf.coef_[0], float(clf.intercept_[0])
    # w_s . (x - mu) / sigma + b_s = (w_s / sigma) . x + (b_s - (w_s / sigma) . mu)
    w_raw = w_s / sigma
    b_raw = b_s - float(w_raw @ mu)
    norm = float(np.linalg.norm(w_raw))
    if norm == 0.0:
        raise EmoheadInputError("the SVM found no separating direction (all weights zero).")
    return w_raw / norm, b_raw / norm


def check_edit_space(space: str) -> str:
    if space not in EDIT_SPACES:
        raise EmoheadInputError(
            f"unknown hyperplane edit space {space!r}.",
            path="config hyperplanes.edit_space",
            fix=f"use one of {list(EDIT_SPACES)}.",
        )
    return space


def edit_direction(w_z: np.ndarray, cov: np.ndarray | None, space: str = "whitened") -> np.ndarray:
    """The unit direction d_z that eq. (9) moves alpha along for the hyperplane with unit normal
    w_z (raw alpha space), for the spaces made from w_z and a covariance ``cov``.

    ``raw``: d_z = w_z. ``whitened`` / ``within`` / ``shrunk`` (``cov`` = the total, the pooled
    within-class or the Ledoit-Wolf shrunk covariance of the fitted frames, see
    :class:`ExpressionStats`): the hyperplane's normal in the whitened coordinates
    u = Sigma^(-1/2) (alpha - mu) is Sigma^(1/2) w_z; a step along it, mapped back to alpha, is
    Sigma w_z. Of all steps that raise ``w_z . alpha + b`` by a given amount it is the shortest in
    Mahalanobis length under Sigma (for classes with a shared covariance Sigma_W it is the
    class-mean difference)."""
    w = np.asarray(w_z, np.float64)
    if check_edit_space(space) == "raw":
        return w / float(np.linalg.norm(w))
    if space == "class_mean":
        raise EmoheadInputError("the class_mean direction needs the class means: use direction_for().")
    d = np.asarray(cov, np.float64) @ w
    return _unit(d, "the expression frames have no variance along the hyperplane normal.")


def _unit(d: np.ndarray, why: str) -> np.ndarray:
    norm = float(np.linalg.norm(d))
    if not np.isfinite(norm) or norm == 0.0:
        raise EmoheadInputError(why)
    return d / norm


class ExpressionStats:
    """Second-order statistics of the labelled frames a hyperplane fit saw (X (N, 10), one tag
    per frame), from which the edit directions are made: the total covariance (``whitened``), the
    pooled within-class covariance (``within``: each frame minus its class mean, so the shared
    variation inside every emotion, mostly speech, and none of the emotion shifts), its
    Ledoit-Wolf shrunk form (``shrunk``), and the class means (``class_mean``)."""

    NEUTRAL = "neutral"

    def __init__(self, X: np.ndarray, labels: Sequence[str]):
        self.X = np.asarray(X, np.float64)
        self.labels = np.asarray(labels, dtype=object)
        self.tags = sorted(set(self.labels.tolist()))
        self.means = {z: self.X[self.labels == z].mean(0) for z in self.tags}
        self._cache: dict[str, np.ndarray] = {}

    def covariance(self, space: str) -> np.ndarray:
        if space not in self._cache:
            X = self.X
            if len(X) < 2:
                c = np.eye(X.shape[1])
            elif space == "whitened":
                c = np.cov(X.T)
            elif space == "within":
                R = X - np.stack([self.means[z] for z in self.labels])
                c = R.T @ R / max(len(X) - len(self.tags), 1)
            elif space == "shrunk":
                from sklearn.covariance import LedoitWolf

                c = LedoitWolf().fit(X).covariance_
            else:
                raise EmoheadInputError(f"no covariance for edit space {space!r}.")
            self._cache[space] = np.atleast_2d(c)
        return self._cache[space]

    def mean_shift(self, z: str) -> np.ndarray:
        """mu_z - mu_neutral; for neutral itself (or without neutral frames) mu_z minus the mean
        of the other tags' means."""
        others = [t for t in self.tags if t != z]
        if z != self.NEUTRAL and self.NEUTRAL in self.means:
            ref = self.means[self.NEUTRAL]
        elif others:
            ref = np.mean([self.means[t] for t in others], axis=0)
        else:
            ref = self.X.mean(0)
        return self.means[z] - ref


def direction_for(space: str, z: str, w_z: np.ndarray, stats: ExpressionStats | None) -> np.ndarray:
    """The unit eq. (9) direction d_z of tag ``z`` in edit space ``space`` (docs/decisions.md)."""
    check_edit_space(space)
    if space == "raw" or stats is None:
        return edit_direction(w_z, None, "raw")
    if space == "class_mean":
        return _unit(stats.mean_shift(z), f"tag {z!r} has the same mean expression as its reference.")
    return edit_direction(w_z, stats.covariance(space), space)


def direction_cosines(directions: dict[str, np.ndarray]) -> dict:
    """Pairwise cosines of unit edit directions: {"tags", "cos" (K, K) list, "max_abs_cos" over
    pairs of different tags (None with fewer than two), "closest_pair"}."""
    tags = list(directions)
    D = (
        np.stack([_unit(np.asarray(directions[z], np.float64), "zero direction") for z in tags])
        if tags
        else None
    )
    cos = D @ D.T if D is not None else np.zeros((0, 0))
    off = np.abs(cos) - 2.0 * np.eye(len(tags))
    if len(tags) >= 2:
        i, j = np.unravel_index(np.argmax(off), off.shape)
        worst, pair = float(off[i, j]), [tags[int(min(i, j))], tags[int(max(i, j))]]
    else:
        worst, pair = None, None
    return {"tags": tags, "cos": np.round(cos, 6).tolist(), "max_abs_cos": worst, "closest_pair": pair}


def requested_agreement(
    classifier: dict[str, tuple[np.ndarray, float]],
    directions: dict[str, np.ndarray],
    X: np.ndarray,
    labels: Sequence[str],
    tau: float = 1.0,
) -> dict[str, float]:
    """Per tag z: the share of the REQUESTED alphas (no renderer involved) that the hyperplanes
    classify as z, when every frame of the other tags is moved by ``tau`` person units along d_z
    (tau = 1 raises its mean score s_z = w_z . alpha + b_z by the gap between the tag's own frames
    and these base frames, eq. 9). NaN where d_z does not raise s_z."""
    X = np.asarray(X, np.float64)
    labels = np.asarray(labels, dtype=object)
    names = sorted(classifier)
    W = np.stack([np.asarray(classifier[n][0], np.float64) for n in names])
    b = np.array([float(classifier[n][1]) for n in names])
    out = {}
    for z in directions:
        if z not in classifier:
            continue
        w = np.asarray(classifier[z][0], np.float64)
        d = np.asarray(directions[z], np.float64)
        own, base = X[labels == z], X[labels != z]
        rate = float(w @ d)
        if not len(own) or not len(base) or rate <= 1e-12:
            out[z] = float("nan")
            continue
        gap = max(float((own @ w).mean() - (base @ w).mean()), 0.0)
        req = base + tau * (gap / rate) * d
        out[z] = float(((req @ W.T + b).argmax(1) == names.index(z)).mean())
    return out


def edit_space_report(result: dict, stats: ExpressionStats, spaces: Sequence[str] = EDIT_SPACES) -> dict:
    """Every edit space's directions for the fitted hyperplanes, measured on the fitted frames:
    {space: {"max_abs_cos", "closest_pair", "agreement" {z: share}, "agreement_mean"}}
    (:func:`direction_cosines`, :func:`requested_agreement`)."""
    hp = result["hyperplanes"]
    classifier = {z: (h.w_z, h.b) for z, h in hp.items()}
    out = {}
    for space in spaces:
        dirs = {z: direction_for(space, z, h.w_z, stats) for z, h in hp.items()}
        cos = direction_cosines(dirs)
        agree = requested_agreement(classifier, dirs, stats.X, stats.labels)
        vals = [v for v in agree.values() if np.isfinite(v)]
        out[space] = {
            "max_abs_cos": cos["max_abs_cos"],
            "closest_pair": cos["closest_pair"],
            "agreement": agree,
            "agreement_mean": float(np.mean(vals)) if vals else None,
        }
    return out


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """(accuracy, balanced accuracy = mean of the per-class recalls)."""
    y_true, y_pred = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    acc = float((y_true == y_pred).mean())
    recalls = [float((y_pred[y_true == c] == c).mean()) for c in (True, False) if (y_true == c).any()]
    return acc, float(np.mean(recalls))


def blocked_folds(clip_ids: np.ndarray, n_folds: int) -> np.ndarray:
    """Fold of each frame: each clip is cut into ``n_folds`` contiguous time blocks, block j of
    every clip goes to fold j (neighbouring, nearly identical frames rarely straddle folds)."""
    clip_ids = np.asarray(clip_ids)
    folds = np.zeros(len(clip_ids), np.int64)
    for c in np.unique(clip_ids):
        idx = np.flatnonzero(clip_ids == c)
        folds[idx] = np.minimum((np.arange(len(idx)) * n_folds) // max(len(idx), 1), n_folds - 1)
    return folds


@dataclass
class Hyperplane:
    emotion: str
    w_z: np.ndarray  # (10,) unit normal, raw expression space
    b: float
    n_pos: int
    n_neg: int
    group_counts: list[int]
    cv: dict = field(default_factory=dict)  # acc/bacc for balanced/unbalanced sampling
    train_acc: float = float("nan")
    d_z: np.ndarray | None = None  # (10,) unit edit direction of eq. (9) (edit_direction); None = w_z

    @property
    def direction(self) -> np.ndarray:
        return self.w_z if self.d_z is None else self.d_z

    def distance(self, alpha: np.ndarray) -> np.ndarray:
        return np.asarray(alpha, np.float64) @ self.w_z + self.b


def train_hyperplanes(
    X: np.ndarray,
    mar: np.ndarray,
    labels: Sequence[str],
    clip_ids: Sequence[str],
    *,
    emotions: Sequence[str] | None = None,
    n_groups: int = 5,
    C: float = 1.0,
    cv_folds: int = 5,
    seed: int = 0,
    quota: str = "max",
    edit_space: str = "whitened",
) -> dict:
    """One-vs-rest hyperplane per emotion with MAR-balanced sampling (Appendix B).

    X: (N, 10) expression alpha; mar: (N,); labels: emotion per frame; clip_ids: clip per
    frame (for the blocked cross-validation). ``edit_space``: how each hyperplane's eq. (9)
    direction d_z is made (:func:`edit_direction`; the covariance is that of all of X). Returns
    {"hyperplanes": {emotion: Hyperplane}, "mar_edges": (n_groups + 1,), "skipped": {emotion:
    reason}, "edit_space", "n_frames"}.
    """
    X = np.asarray(X, np.float64)
    if X.ndim != 2 or X.shape[1] != M_EXP:
        raise EmoheadInputError(f"expected expression frames of shape (N, {M_EXP}), got {X.shape}.")
    mar = np.asarray(mar, np.float64)
    labels = np.asarray(labels, dtype=object)
    clip_ids = np.asarray(clip_ids, dtype=object)
    finite = np.isfinite(X).all(1) & np.isfinite(mar)
    X, mar, labels, clip_ids = X[finite], mar[finite], labels[finite], clip_ids[finite]
    edges = mar_group_edges(mar, n_groups)
    groups = mar_groups(mar, edges)
    emos = list(emotions) if emotions is not None else sorted(set(labels))
    folds = blocked_folds(clip_ids, cv_folds) if cv_folds >= 2 else None
    check_edit_space(edit_space)
    stats = ExpressionStats(X, labels)
    out, skipped = {}, {}
    for z in emos:
        pos = labels == z
        if pos.sum() < 2 or (~pos).sum() < 2:
            skipped[z] = f"{int(pos.sum())} positive / {int((~pos).sum())} negative frames"
            log.warning("hyperplane %s skipped: %s", z, skipped[z])
            continue
        rng = np.random.default_rng([seed, emos.index(z)])
        idx, counts = balanced_indices(pos, groups, n_groups, rng, quota)
        if len(idx) == 0:
            skipped[z] = "no MAR group holds both positives and negatives"
            continue
        w_z, b = fit_linear_svm(X[idx], pos[idx], C=C, seed=seed)
        train_acc = _scores(pos[idx], X[idx] @ w_z + b > 0)[0]
        cv = {}
        if folds is not None:
            res = {"balanced": [], "unbalanced": []}
            for f in range(cv_folds):
                tr, te = folds != f, folds == f
                if not te.any() or pos[tr].sum() < 1 or (~pos[tr]).sum() < 1:
                    continue
                tr_idx = np.flatnonzero(tr)
                b_idx, _ = balanced_indices(pos[tr_idx], groups[tr_idx], n_groups, rng, quota)
                for scheme, sel in (("balanced", tr_idx[b_idx]), ("unbalanced", tr_idx)):
                    if len(sel) == 0 or len(set(pos[sel])) < 2:
                        continue
                    w, bb = fit_linear_svm(X[sel], pos[sel], C=C, seed=seed)
                    res[scheme].append(_scores(pos[te], X[te] @ w + bb > 0))
            for scheme, vals in res.items():
                if vals:
                    cv[f"acc_{scheme}"] = float(np.mean([v[0] for v in vals]))
                    cv[f"bacc_{scheme}"] = float(np.mean([v[1] for v in vals]))
        out[z] = Hyperplane(
            z,
            w_z,
            float(b),
            int(pos.sum()),
            int((~pos).sum()),
            counts.tolist(),
            cv,
            train_acc,
            d_z=direction_for(edit_space, z, w_z, stats),
        )
    result = {
        "hyperplanes": out,
        "mar_edges": edges,
        "skipped": skipped,
        "n_frames": int(len(X)),
        "edit_space": edit_space,
    }
    result["direction_cosines"] = direction_cosines({z: h.direction for z, h in out.items()})
    result["edit_spaces"] = edit_space_report(result, stats) if len(out) >= 2 else {}
    return result


# ----------------------------------------------------------------------------- frames of a dataset


def collect_frames(
    samples,
    expression_paths: dict[str, str | os.PathLike],
    *,
    actor: str | None = None,
    splits: Iterable[str] = ("train",),
    held_out: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Gather labelled frames: samples is the sample table (DataFrame); expression_paths maps
    sample_id -> expression Parquet. ``actor`` None / 'all' pools every actor. ``held_out``
    {sample_id: test fraction}: the last frames of those clips that a later stage tests on
    (:func:`emohead_core.splits.held_out_count` of the clip's frame count) never enter the fit;
    the returned ``held_out_frames`` {sample_id: count} says how many were left out."""
    from ..splits import held_out_count
    from .schema import read_expression

    held_out = held_out or {}
    df = samples
    df = df[df["split"].isin(list(splits)) & (df["video_path"] != "") & (df["emotion"] != "unknown")]
    if actor not in (None, "all"):
        df = df[df["actor"].astype(str) == str(actor)]
    X, M, L, C = [], [], [], []
    dropped: dict[str, int] = {}
    for _, r in df.iterrows():
        sid = r["sample_id"]
        if sid not in expression_paths:
            continue
        e = read_expression(expression_paths[sid])
        keep = np.asarray(e["detected"], bool).copy()
        n_out = held_out_count(len(keep), held_out.get(str(sid), 0.0))
        if n_out:
            keep[len(keep) - n_out :] = False
            dropped[str(sid)] = n_out
        X.append(e["exp"][keep])
        M.append(e["mar"][keep])
        L += [r["emotion"]] * int(keep.sum())
        C += [sid] * int(keep.sum())
    if not X or not sum(len(x) for x in X):
        raise EmoheadInputError(
            f"no labelled video frames for actor {actor!r} in splits {list(splits)}"
            + (f" outside the held-out spans of {len(dropped)} clip(s)" if dropped else "")
            + ".",
            fix="check the dataset's sample table and hyperplanes.splits / actors.",
        )
    return {
        "exp": np.concatenate(X),
        "mar": np.concatenate(M),
        "emotion": np.array(L, dtype=object),
        "clip": np.array(C, dtype=object),
        "held_out_frames": dropped,
    }


# ----------------------------------------------------------------------------- persistence


def accuracy_table(result: dict) -> list[dict]:
    rows = []
    for z, h in result["hyperplanes"].items():
        rows.append(
            {
                "emotion": z,
                "n_pos": h.n_pos,
                "n_neg": h.n_neg,
                "bacc_balanced": h.cv.get("bacc_balanced", float("nan")),
                "bacc_unbalanced": h.cv.get("bacc_unbalanced", float("nan")),
                "acc_balanced": h.cv.get("acc_balanced", float("nan")),
                "acc_unbalanced": h.cv.get("acc_unbalanced", float("nan")),
            }
        )
    return rows


def accuracy_markdown(rows: list[dict], title: str = "") -> str:
    head = (
        "| emotion | frames (+/-) | CV balanced acc., MAR-balanced | CV balanced acc., unbalanced "
        "| CV acc., MAR-balanced | CV acc., unbalanced |\n| --- | --- | --- | --- | --- | --- |\n"
    )
    body = "".join(
        f"| {r['emotion']} | {r['n_pos']}/{r['n_neg']} "
        f"| {r['bacc_balanced']:.3f} | {r['bacc_unbalanced']:.3f} "
        f"| {r['acc_balanced']:.3f} | {r['acc_unbalanced']:.3f} |\n"
        for r in rows
    )
    if rows:
        mean = {
            k: np.nanmean([r[k] for r in rows])
            for k in ("bacc_balanced", "bacc_unbalanced", "acc_balanced", "acc_unbalanced")
        }
        body += (
            f"| **mean** | | {mean['bacc_balanced']:.3f} | {mean['bacc_unbalanced']:.3f} "
            f"| {mean['acc_balanced']:.3f} | {mean['acc_unbalanced']:.3f} |\n"
        )
    return (f"{title}\n\n" if title else "") + head + body


def save_hyperplanes(
    result: dict,
    out_dir: str | os.PathLike,
    *,
    meta: dict | None = None,
    frames: dict | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write hyperplanes.json, hyperplanes.parquet, accuracy.csv/.md and the plots."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hp = result["hyperplanes"]
    doc = {
        "meta": meta or {},
        "m": M_EXP,
        "mar_edges": np.asarray(result["mar_edges"]).tolist(),
        "n_frames": result.get("n_frames"),
        "skipped": result.get("skipped", {}),
        "edit_space": result["edit_space"],
        "direction_cosines": result.get("direction_cosines"),
        "edit_spaces": result.get("edit_spaces", {}),
        "hyperplanes": {
            z: {
                "w_z": h.w_z.tolist(),
                "b": h.b,
                "d_z": np.asarray(h.direction).tolist(),
                "n_pos": h.n_pos,
                "n_neg": h.n_neg,
                "group_counts": h.group_counts,
                "cv": h.cv,
                "train_acc": h.train_acc,
            }
            for z, h in hp.items()
        },
    }
    paths = {
        "json": out_dir / "hyperplanes.json",
        "parquet": out_dir / "hyperplanes.parquet",
        "csv": out_dir / "accuracy.csv",
        "md": out_dir / "accuracy.md",
    }
    write_json_atomic(paths["json"], doc)
    zs = list(hp)
    table = pa.table(
        {
            "emotion": pa.array(zs, pa.string()),
            "w_z": pa.FixedSizeListArray.from_arrays(
                pa.array(np.concatenate([hp[z].w_z for z in zs]) if zs else np.zeros(0), pa.float64()), M_EXP
            ),
            "b": pa.array([hp[z].b for z in zs], pa.float64()),
            "d_z": pa.FixedSizeListArray.from_arrays(
                pa.array(np.concatenate([hp[z].direction for z in zs]) if zs else np.zeros(0), pa.float64()),
                M_EXP,
            ),
            "n_pos": pa.array([hp[z].n_pos for z in zs], pa.int64()),
            "n_neg": pa.array([hp[z].n_neg for z in zs], pa.int64()),
            "group_counts": pa.array([hp[z].group_counts for z in zs], pa.list_(pa.int64())),
            **{
                f"cv_{k}": pa.array([hp[z].cv.get(k, float("nan")) for z in zs], pa.float64())
                for k in ("acc_balanced", "acc_unbalanced", "bacc_balanced", "bacc_unbalanced")
            },
        }
    ).replace_schema_metadata(
        {
            b"emohead.hyperplanes": json.dumps(
                {"mar_edges": doc["mar_edges"], "meta": doc["meta"], "edit_space": doc["edit_space"]}
            ).encode()
        }
    )
    with atomic_path(paths["parquet"]) as tmp:
        pq.write_table(table, tmp)
    rows = accuracy_table(result)
    with atomic_path(paths["csv"]) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, float_format="%.4f")
    title = "Cross-validated accuracy of the emotion hyperplanes"
    if meta:
        title += f" ({meta.get('dataset', '')} actor {meta.get('actor', '')})"
    write_text_atomic(paths["md"], accuracy_markdown(rows, title))
    if plots:
        from .hyperplane_plots import plot_hyperplanes

        paths.update(plot_hyperplanes(result, out_dir, frames))
    return paths


@dataclass
class HyperplanesFile:
    """A hyperplanes.json / .parquet as read: per emotion the classifier (w_z, b) and the eq. (9)
    edit direction d_z (w_z in files written before edit directions existed: their edits moved
    along the raw normal), and the ``edit_space`` the d_z were made in ("raw" for such files)."""

    classifier: dict[str, tuple[np.ndarray, float]]
    directions: dict[str, np.ndarray]
    edit_space: str


def read_hyperplanes(path: str | os.PathLike) -> HyperplanesFile:
    """Read a hyperplanes.json / .parquet (or the folder holding hyperplanes.json) once."""
    path = Path(path)
    if path.is_dir():
        path = path / "hyperplanes.json"
    if not path.is_file():
        raise EmoheadInputError(
            "hyperplanes file not found.",
            path=path,
            fix="run the expression stage's hyperplanes rule for this actor.",
        )
    try:
        rows, meta = _parse_hyperplanes(path)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise EmoheadInputError(
            f"not a readable hyperplanes file ({type(e).__name__}: {str(e)[:200]}).",
            path=path,
            fix="pass the hyperplanes.json / .parquet the expression stage wrote (rerun its hyperplanes "
            "rule to regenerate it).",
        ) from e
    _check_finite_rows(path, rows)
    return HyperplanesFile(
        classifier={z: (w, b) for z, (w, b, _) in rows.items()},
        directions={z: d for z, (_, _, d) in rows.items()},
        edit_space=str(meta.get("edit_space", "raw")),
    )


def _check_finite_rows(path: Path, rows: dict) -> None:
    """Every emotion's w_z, b, d_z: finite, d_z and w_z of length m (a NaN would render a black
    head without an error)."""
    if not rows:
        raise EmoheadInputError(
            "the hyperplanes file holds no emotion.",
            path=path,
            fix="rerun the expression stage's hyperplanes rule.",
        )
    for z, (w, b, d) in rows.items():
        for name, v in (("w_z", w), ("b", b), ("d_z", d)):
            v = np.asarray(v, np.float64)
            if (name != "b" and v.shape != (M_EXP,)) or not np.all(np.isfinite(v)):
                want = "a finite number" if name == "b" else f"{M_EXP} finite numbers"
                got = np.array2string(v.reshape(-1)[:M_EXP], precision=3)
                raise EmoheadInputError(
                    f"emotion {z!r}: {name} is not {want} (got {got}).",
                    path=path,
                    fix="the file is damaged or was edited: rerun the expression stage's hyperplanes rule "
                    "(or restore the file).",
                )


def _parse_hyperplanes(path: Path) -> tuple[dict, dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(path)

        def column(name):
            return t.column(name).combine_chunks().flatten().to_numpy().reshape(-1, M_EXP).astype(np.float64)

        zs = t.column("emotion").to_pylist()
        W = column("w_z")
        D = column("d_z") if "d_z" in t.column_names else W
        bs = t.column("b").to_pylist()
        meta = json.loads((t.schema.metadata or {}).get(b"emohead.hyperplanes", b"{}"))
        rows = {z: (W[i], float(bs[i]), D[i]) for i, z in enumerate(zs)}
    else:
        meta = json.loads(path.read_text())
        rows = {
            z: (
                np.asarray(h["w_z"], np.float64),
                float(h["b"]),
                np.asarray(h.get("d_z", h["w_z"]), np.float64),
            )
            for z, h in meta["hyperplanes"].items()
        }
    return rows, meta


def load_hyperplanes(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, float]]:
    """{emotion: (w_z (10,) unit normal, b)}: the classifier (signed distance ``w_z . alpha + b``)
    of hyperplanes.json / .parquet or their folder. Edits use :func:`load_edit_directions`."""
    return read_hyperplanes(path).classifier


def load_edit_directions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{emotion: d_z (10,) unit edit direction of eq. (9)} (see :func:`edit_direction`)."""
    return read_hyperplanes(path).directions
