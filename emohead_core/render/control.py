"""Emotion control of a trained renderer, measured (``emotion_control.json`` / ``.png``) and shown
(``intensity_sweep.png``).

The renderer is asked for an emotion by editing its expression input along the tag's edit
direction, alpha = alpha_0 + tau d_z (eq. 9; d_z is the hyperplane's normal in the whitened
expression space, or the raw normal w_z with ``hyperplanes.edit_space: raw``, see
:func:`emohead_core.expression.hyperplanes.edit_direction`). Whether the rendered face follows is
measured the way Appendix B defines the emotion of an expression, calibrated and on held-out
frames only (:func:`measure_emotion_control`; docs/decisions.md, "Emotion control"): the
instrument (the subject's real held-out frames, re-extracted at the render resolution and
classified by the hyperplanes), then held-out base frames of the other tags' clips edited by
alpha_0 + tau d_z, rendered, re-extracted by the expression stage's 3DDFA_V2 regressor and
classified, with bootstrap intervals, and the summary over the measurable tags. Units of tau
(``unit``):

* ``person`` (default): tau = 1 raises s_z by the gap between the mean s_z of the person's own
  training frames of tag z and of their other training frames (at least one standard deviation,
  see ``std``): "as emotional as the person's own z clips";
* ``std``: tau d_z has standardised length tau under the subject's training alphas;
* ``raw``: tau as in eq. (9), in alpha units along the unit vector d_z. The raw normal w_z puts
  its weight on low-variance dimensions, so with ``edit_space: raw`` tau = 1 is dozens of
  standard deviations (docs/decisions.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..emotion_edit import edit_directions
from ..errors import EmoheadInputError
from ..io import atomic_path, write_json_atomic
from .data import SubjectData
from .infer import render_frames, std_tau

TAUS = (0.0, 0.5, 1.0, 1.5)
SWEEP_TAUS = (0.0, 0.5, 1.0, 1.5)  # intensity_sweep.png columns (one frame per tag and tau)
MIN_BASE_FRAMES = 48


def _spread(idx: np.ndarray, n: int) -> np.ndarray:
    idx = np.asarray(idx)
    return idx if len(idx) <= n else idx[np.linspace(0, len(idx) - 1, n).round().astype(int)]


def base_pool(data: SubjectData, n: int) -> np.ndarray:
    """The held-out frames that start the edits: spread evenly over every clip's held-out (test)
    frames, so that each tag's base (the pool less the tag's own clips, :func:`base_frames`) keeps
    about ``n`` frames from several clips."""
    per_clip = [data.clip_test_frames(k) for k in range(len(data.clips))]
    per_clip = [f for f in per_clip if len(f)]
    if not per_clip:
        return np.zeros(0, np.int64)
    tags = {c.get("emotion") for c in data.clips}
    share = int(np.ceil(n / max(len(per_clip) - 1, 1))) if len(tags) > 1 else int(np.ceil(n / len(per_clip)))
    return np.concatenate([_spread(f, share) for f in per_clip]).astype(np.int64)


def base_frames(data: SubjectData, pool: np.ndarray, tag: str) -> np.ndarray:
    """Frames of ``pool`` that start the edits towards ``tag``: those of clips with another tag
    (a subject whose clips all carry ``tag``, e.g. a person's own neutral video asked for
    neutral, keeps the whole pool)."""
    keep = np.array([data.clips[int(k)].get("emotion") != tag for k in data.clip_of[pool]], bool)
    return pool[keep] if keep.any() else pool


def tag_frames(data: SubjectData, tag: str, n: int) -> np.ndarray:
    """Up to ``n`` held-out (test) frames of the subject's clips tagged ``tag``."""
    ks = [k for k, c in enumerate(data.clips) if c.get("emotion") == tag]
    if not ks:
        return np.zeros(0, np.int64)
    return _spread(np.concatenate([data.clip_test_frames(k) for k in ks]), n)


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampling frames)."""
    v = np.asarray(values, np.float64)
    if len(v) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(1)
    a = (1.0 - level) / 2.0
    return [float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a))]


class Classifier:
    """The hyperplanes as a classifier: signed distances s_z = w_z . alpha + b_z (Appendix B) and
    the tag of the highest one."""

    def __init__(self, hp: dict):
        self.names = sorted(hp)
        self.W = np.stack([np.asarray(hp[z][0], np.float64) for z in self.names])
        self.b = np.array([float(hp[z][1]) for z in self.names])

    def distances(self, alpha: np.ndarray) -> np.ndarray:
        return np.asarray(alpha, np.float64) @ self.W.T + self.b

    def classify(self, alpha: np.ndarray) -> np.ndarray:
        return np.asarray(self.names, dtype=object)[self.distances(alpha).argmax(1)]

    def chance(self) -> float:
        return 1.0 / len(self.names)


def confusion(classifier: Classifier, alphas_by_tag: dict[str, np.ndarray]) -> dict:
    """{tag: {predicted: share}} of re-extracted real frames, with frame counts."""
    out = {}
    for z, a in alphas_by_tag.items():
        pred = classifier.classify(a) if len(a) else np.zeros(0, object)
        out[z] = {
            "n_frames": int(len(a)),
            "shares": {n: float((pred == n).mean()) if len(a) else float("nan") for n in classifier.names},
        }
    return out


def _stat(values: np.ndarray, seed: int) -> dict:
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()) if len(v) else float("nan"), "ci95": bootstrap_ci(v, seed=seed)}


class Reextractor:
    """3DDFA_V2 alpha of rendered (or real) frames at the render resolution: frames are resized to
    the crop size the expression stage saw, and fitted in two passes from a seed ROI (the pose
    frame's landmarks; then the fitted landmarks), as the expression stage tracks a face."""

    def __init__(self, face_model, crop_size: int):
        self.fm = face_model
        self.size = int(crop_size)

    def __call__(self, frames_rgb: np.ndarray, seed_landmarks: np.ndarray) -> np.ndarray:
        import cv2

        from ..expression.tddfa import split_params

        H = frames_rgb.shape[1]
        s = self.size / float(H)
        imgs = [
            cv2.resize(
                np.ascontiguousarray(f[..., ::-1]), (self.size, self.size), interpolation=cv2.INTER_CUBIC
            )
            for f in frames_rgb
        ]
        seed = (np.asarray(seed_landmarks, np.float64)[..., :2] + 0.5) * s - 0.5
        _, lm1, _ = self.fm.fit_landmarks(imgs, seed)
        params, _, _ = self.fm.fit_landmarks(imgs, lm1)
        return split_params(params)[2].astype(np.float64)


def measure_emotion_control(
    renderer,
    data: SubjectData,
    hyperplanes,
    extractor,
    *,
    tags=None,
    taus=TAUS,
    n_frames: int = MIN_BASE_FRAMES,
    unit: str = "person",
    sweep_taus=SWEEP_TAUS,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict, dict]:
    """Emotion control, calibrated (docs/decisions.md, "Emotion control"). Returns (the
    emotion_control.json document, the sweep renders {(tag, tau): (1, H, W, 3)}).

    (a) The instrument: the subject's real held-out frames of each tag, re-extracted at the render
    resolution and classified by the hyperplanes (confusion matrix); a tag is measurable when its
    real frames are classified as the tag at least twice as often as chance.
    (b) Per tag and tau: held-out base frames of the subject's other tags' clips (about
    ``n_frames``), edited alpha_0 + tau d_z (eq. 9), rendered, re-extracted and classified: the
    share classified as the tag, the mean signed distance s_z, its paired change from tau = 0, and
    the share of the requested alphas themselves classified as the tag, each with a 95 %
    bootstrap interval over frames.
    (c) The summary: the mean over measurable tags of (share at tau = 1 - share at tau = 0).
    """
    from tqdm import tqdm

    from ..expression.hyperplanes import read_hyperplanes

    if isinstance(hyperplanes, (str, Path)):
        hf = read_hyperplanes(hyperplanes)
        hp, dirs, edit_space = hf.classifier, hf.directions, hf.edit_space
    else:  # {z: (w, b)}: edits along w
        hp, dirs, edit_space = hyperplanes, edit_directions(hyperplanes), None
    clf = Classifier(hp)
    own_tags = [z for z in data.emotions() if z in hp]
    labelled = len(set(data.emotions())) > 1
    # a subject with labelled clips is measured on its tags; one without (a person's own video)
    # on every tag of the hyperplanes it borrows
    tags = [z for z in (tags or (own_tags if labelled else clf.names)) if z in hp]
    if not tags:
        raise EmoheadInputError(
            f"none of the tags {data.emotions()} has a hyperplane (have {clf.names}).",
            path=hyperplanes,
            fix="use hyperplanes fitted on this person's emotions.",
        )
    taus = sorted({0.0, 1.0, *(float(t) for t in taus)})
    # (a) the instrument
    real = {}
    for z in own_tags:
        idx = tag_frames(data, z, max(n_frames, 2))
        real[z] = extractor(data.frames(idx), data.landmarks[idx]) if len(idx) else np.zeros((0, 10))
    conf = confusion(clf, real)
    chance = clf.chance()
    measurable = {z: bool(z in conf and conf[z]["shares"][z] >= 2.0 * chance) for z in tags}

    pool = base_pool(data, n_frames)
    if len(pool) == 0:
        raise EmoheadInputError(
            f"render subject {data.subject!r} has no held-out frames to start the edits from.",
            path=data.path,
            fix="give the subject a test split (render.split / the subject's split).",
        )
    scale = tau_units(hp, data, tags, pool, unit, dirs)
    net = renderer.model
    seen = ExpressionSupport(
        data.alpha[data.train_idx], net.alpha_mean.cpu().numpy(), net.alpha_std.cpu().numpy()
    )
    jobs = [(z, t) for z in tags for t in taus if t != 0.0]
    bar = tqdm(
        total=len(pool) + sum(len(base_frames(data, pool, z)) for z, _ in jobs),
        desc="emotion control",
        disable=not progress,
        mininterval=5,
        unit="frame",
    )
    frames0 = render_frames(renderer, data, data.alpha[pool].astype(np.float32), pose_idx=pool)
    bar.update(len(pool))
    alpha0_re = extractor(frames0, data.landmarks[pool])
    # the unedited renders of the base frames (GT alphas): classified as their own clip's tag?
    own_tag = np.array([data.clips[int(k)].get("emotion") for k in data.clip_of[pool]], dtype=object)
    unedited_hits = clf.classify(alpha0_re) == own_tag
    at = {int(i): j for j, i in enumerate(pool)}
    rows, per_tag = [], {}
    sweep: dict = {}
    rng_seed = int(seed)
    for z in tags:
        base = base_frames(data, pool, z)
        sel = np.array([at[int(i)] for i in base])
        k = clf.names.index(z)
        a0 = data.alpha[base].astype(np.float64)
        d0 = clf.distances(alpha0_re[sel])[:, k]
        c0 = clf.classify(alpha0_re[sel]) == z
        per_tag[z] = {
            "base_frames": [int(i) for i in base],
            "n_base_clips": int(len(set(data.clip_of[base].tolist()))),
        }
        for t in taus:
            alpha_in = a0 + t * scale[z] * dirs[z]  # eq. (9)
            if t == 0.0:
                frames, alpha_re = frames0[sel], alpha0_re[sel]
            else:
                frames = render_frames(renderer, data, alpha_in.astype(np.float32), pose_idx=base)
                bar.update(len(base))
                alpha_re = extractor(frames, data.landmarks[base])
            sweep[(z, float(t))] = frames[:1]
            dist = clf.distances(alpha_re)[:, k]
            cls = clf.classify(alpha_re) == z
            req = clf.classify(alpha_in) == z
            rng_seed += 1
            rows.append(
                dict(
                    tag=z,
                    tau=float(t),
                    tau_raw=float(t * scale[z]),
                    n_frames=int(len(base)),
                    classified=_stat(cls, rng_seed),
                    classified_change=_stat(cls.astype(float) - c0, rng_seed),
                    distance=_stat(dist, rng_seed),
                    distance_change=_stat(dist - d0, rng_seed),
                    requested_classified=_stat(req, rng_seed),
                    input_distance=float((alpha_in @ clf.W[k] + clf.b[k]).mean()),
                    input_offset_std=float(seen.offset(alpha_in).mean()),
                    # flat copies for plots and older readers
                    classified_fraction=float(cls.mean()),
                    mean_distance=float(dist.mean()),
                )
            )
            if t == 1.0:
                per_tag[z]["delta_per_frame"] = (cls.astype(float) - c0).tolist()
    bar.close()
    summary_tags = [z for z in tags if measurable[z]]
    summary, summary_ci = None, [float("nan"), float("nan")]
    if summary_tags:
        deltas = [np.asarray(per_tag[z]["delta_per_frame"]) for z in summary_tags]
        summary = float(np.mean([d.mean() for d in deltas]))
        rng = np.random.default_rng(seed)
        boots = np.mean([d[rng.integers(0, len(d), size=(1000, len(d)))].mean(1) for d in deltas], axis=0)
        summary_ci = [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))]
    for z in per_tag:
        per_tag[z].pop("delta_per_frame", None)
    for z in tags:  # one sweep frame per tag at the sweep taus not measured
        base = base_frames(data, pool, z)[:1]
        for t in sweep_taus:
            if (z, float(t)) not in sweep:
                a = data.alpha[base].astype(np.float64) + float(t) * scale[z] * dirs[z]
                sweep[(z, float(t))] = render_frames(renderer, data, a.astype(np.float32), pose_idx=base)
    reference = {
        z: dict(
            classified_fraction=conf[z]["shares"][z],
            mean_distance=float(clf.distances(real[z])[:, clf.names.index(z)].mean())
            if len(real[z])
            else None,
            n_frames=conf[z]["n_frames"],
        )
        for z in own_tags
        if z in tags
    }
    gain = response_gain(rows, tags)
    doc = dict(
        subject=data.subject,
        dataset=data.clips[0].get("dataset", ""),
        tags=tags,
        taus=taus,
        unit=unit,
        edit_space=edit_space,
        tau_scale={z: float(scale[z]) for z in tags},
        hyperplanes=str(hyperplanes) if isinstance(hyperplanes, (str, Path)) else None,
        classes=clf.names,
        chance=chance,
        confusion=conf,
        measurable=measurable,
        summary=summary,
        summary_ci95=summary_ci,
        summary_tags=summary_tags,
        unedited_accuracy=_stat(unedited_hits.astype(float), seed + 7),
        n_base_frames=int(len(pool)),
        base=per_tag,
        rendered=rows,
        reference=reference,
        training_spacing_std=seen.spacing,
        emotion_control=summary,
        rising=rising_tags(rows, tags),
        response_gain=gain,
        response_gain_mean=float(np.mean([g for g in gain.values() if g is not None]))
        if any(g is not None for g in gain.values())
        else None,
        note="docs/decisions.md, 'Emotion control': confusion = the subject's real held-out frames of "
        "each tag re-extracted at the render resolution and classified by the hyperplanes "
        "(measurable: classified as the tag at least twice as often as chance); rendered: held-out "
        "frames of the subject's other tags' clips, alpha_0 + tau d_z rendered at their poses, 3DDFA "
        "alpha re-extracted and classified (classified = share as the tag; *_change = paired change "
        "from tau = 0; requested_classified = the edited input alphas themselves); unedited_accuracy = "
        "share of the unedited base renders (ground-truth alphas) classified as their own clip's tag; "
        "ci95 = percentile "
        "bootstrap over frames; summary = mean over measurable tags of (share at tau = 1 - share at "
        "tau = 0), the Emotion control column of the GT-alpha row.",
    )
    return doc, sweep


def measure_tag_accuracy(videos: dict, data: SubjectData, hyperplanes, extractor, *, seed: int = 0) -> dict:
    """The share of rendered test frames whose re-extracted alpha the hyperplanes classify as the
    clip's tag: ``videos`` {clip sample: test_render.mp4 of its test span}; the same for the real
    held-out frames (the instrument) beside it. The Emotion control column of the audio-driven row."""
    from .. import media
    from ..expression.hyperplanes import read_hyperplanes

    clf = Classifier(read_hyperplanes(hyperplanes).classifier)
    per_clip, hits, real_hits = {}, [], []
    for sample, path in sorted(videos.items()):
        k = data.clip_index(sample)
        tag = data.clips[k].get("emotion")
        idx = data.clip_test_frames(k)
        frames = media.read_frames(path, pix_fmt="rgb24")
        n = min(len(frames), len(idx))
        if tag not in clf.names or n == 0:
            per_clip[sample] = dict(tag=tag, n_frames=int(n), accuracy=None, note="tag has no hyperplane")
            continue
        pred = clf.classify(extractor(frames[:n], data.landmarks[idx[:n]]))
        real = clf.classify(extractor(data.frames(idx[:n]), data.landmarks[idx[:n]]))
        hits += list(pred == tag)
        real_hits += list(real == tag)
        per_clip[sample] = dict(
            tag=tag,
            n_frames=int(n),
            accuracy=float((pred == tag).mean()),
            real_accuracy=float((real == tag).mean()),
            predicted={z: int((pred == z).sum()) for z in clf.names if (pred == z).any()},
        )
    return dict(
        subject=data.subject,
        dataset=data.clips[0].get("dataset", ""),
        accuracy=_stat(np.asarray(hits, float), seed),
        real_accuracy=_stat(np.asarray(real_hits, float), seed + 1),
        chance=clf.chance(),
        clips=per_clip,
        note="share of the rendered test frames (and of the real ones, the instrument) whose 3DDFA "
        "alpha, re-extracted at the render resolution, the hyperplanes classify as the clip's tag; "
        "ci95 = percentile bootstrap over frames",
    )


class ExpressionSupport:
    """The expressions a subject's field was trained on, in standardised units: per-component
    ``mean`` / ``std`` (pass the renderer's own, ``EmoNeRF.alpha_mean`` / ``alpha_std``; default:
    those of ``alpha_train``). ``offset(alpha)`` is each row's Euclidean distance to the nearest
    training alpha; ``spacing`` the median of the same distance between training frames (how
    densely the training expressions cover their region)."""

    def __init__(self, alpha_train: np.ndarray, mean=None, std=None):
        a = np.asarray(alpha_train, np.float64)
        self.mean = a.mean(0) if mean is None else np.asarray(mean, np.float64)
        self.std = np.maximum(a.std(0) if std is None else np.asarray(std, np.float64), 1e-6)
        self.points = (a - self.mean) / self.std
        d = self._dist(self.points[:: max(1, len(self.points) // 256)], self.points)
        d.sort(axis=1)
        self.spacing = float(np.median(d[:, 1])) if d.shape[1] > 1 else 0.0

    def _dist(self, q: np.ndarray, p: np.ndarray) -> np.ndarray:
        d2 = (q**2).sum(1)[:, None] + (p**2).sum(1)[None] - 2.0 * q @ p.T
        return np.sqrt(np.maximum(d2, 0.0))

    def offset(self, alpha: np.ndarray) -> np.ndarray:
        q = (np.asarray(alpha, np.float64) - self.mean) / self.std
        return self._dist(q, self.points).min(1)


def tau_units(
    hp: dict, data: SubjectData, tags: list[str], base: np.ndarray, unit: str, dirs: dict | None = None
) -> dict[str, float]:
    """Raw tau of tau = 1 per tag (see the module docstring for the units); ``hp`` {z: (w_z, b)}
    scores, ``dirs`` {z: d_z} are the edit directions (default: w_z)."""
    dirs = dirs or {z: np.asarray(hp[z][0], np.float64) for z in tags}
    if unit == "raw":
        return {z: 1.0 for z in tags}
    std = std_tau(dirs, data, tags, 1.0)
    if unit == "std":
        return std
    if unit != "person":
        raise EmoheadInputError(
            f"unknown tau unit {unit!r}.",
            path="config render.emotion_control.unit",
            fix="use person, std or raw.",
        )
    out = {}
    train = np.zeros(len(data.alpha), bool)
    train[data.train_idx] = True
    tag_of = np.array([data.clips[int(k)].get("emotion") for k in data.clip_of])
    for z in tags:
        w = np.asarray(hp[z][0], np.float64)
        # training frames only: held-out frames never set the unit
        own, rest = data.alpha[train & (tag_of == z)], data.alpha[train & (tag_of != z)]
        gap = float((own @ w).mean() - (rest @ w).mean()) if len(own) and len(rest) else 0.0
        rate = float(w @ np.asarray(dirs[z], np.float64))
        # the score rises by w_z . d_z per unit of tau along d_z (1 when d_z = w_z)
        out[z] = max(gap / rate, std[z]) if rate > 1e-12 else std[z]
    return out


def response_gain(rows: list[dict], tags: list[str]) -> dict[str, float | None]:
    """Per tag: how much of the requested change the renders show, (re-extracted mean distance
    at the largest tau - at the smallest) / (the same for the edited input alphas). 1: the
    re-extraction moves as far as the input; 0: not at all; < 0: the opposite way. None when the
    input does not move."""
    out = {}
    for z in tags:
        rr = sorted((r for r in rows if r["tag"] == z), key=lambda r: r["tau"])
        d_in = rr[-1]["input_distance"] - rr[0]["input_distance"] if len(rr) > 1 else 0.0
        out[z] = (rr[-1]["mean_distance"] - rr[0]["mean_distance"]) / d_in if abs(d_in) > 1e-12 else None
    return out


def rising_tags(rows: list[dict], tags: list[str]) -> dict[str, bool]:
    """Per tag: does the re-extracted mean distance to w_z rise with tau (monotone over the
    measured taus, and the last above the first)?"""
    out = {}
    for z in tags:
        d = [r["mean_distance"] for r in sorted((r for r in rows if r["tag"] == z), key=lambda r: r["tau"])]
        out[z] = bool(len(d) > 1 and all(b >= a for a, b in zip(d, d[1:])) and d[-1] > d[0])
    return out


def plot_emotion_control(doc: dict, path) -> None:
    """emotion_control.png: (left) share of the re-extracted renders classified as the tag
    against tau, with 95 % intervals (solid: measurable tags, dotted: not); (middle) the
    instrument, the confusion matrix of the real held-out frames; (right) at tau = 1, the share
    of the requested alphas and of the renders classified as the tag, and the renders' share at
    tau = 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(17, 4.6))
    for n, z in enumerate(doc["tags"]):
        col = plt.cm.tab10(n % 10)
        rows = sorted((r for r in doc["rendered"] if r["tag"] == z), key=lambda r: r["tau"])
        taus = np.array([r["tau"] for r in rows]) + 0.015 * (n - len(doc["tags"]) / 2)
        m = np.array([r["classified"]["mean"] for r in rows])
        lo = m - np.array([r["classified"]["ci95"][0] for r in rows])
        hi = np.array([r["classified"]["ci95"][1] for r in rows]) - m
        ls = "-" if doc["measurable"].get(z) else ":"
        ax[0].errorbar(taus, m, yerr=[lo, hi], fmt="o" + ls, color=col, label=z, capsize=2, lw=1.2)
    ax[0].axhline(doc["chance"], color="k", lw=0.6, ls="--")
    ax[0].set_xlabel(f"tau ({doc['unit']})")
    ax[0].set_ylabel("share of renders classified as the tag")
    ax[0].set_ylim(-0.02, 1.02)
    ax[0].set_title("renders (solid: measurable tag; dashed: chance)", fontsize=9)
    ax[0].legend(fontsize=7)
    conf = doc["confusion"]
    rows_t = [z for z in doc["classes"] if z in conf]
    if rows_t:
        M = np.array([[conf[z]["shares"][c] for c in doc["classes"]] for z in rows_t])
        ax[1].imshow(M, vmin=0, vmax=1, cmap="Blues")
        for i in range(M.shape[0]):
            for j in range(M.shape[1]):
                ax[1].text(j, i, f"{M[i, j]:.2f}", ha="center", va="center", fontsize=6)
        ax[1].set_yticks(range(len(rows_t)), [f"{z} (n={conf[z]['n_frames']})" for z in rows_t], fontsize=7)
        ax[1].set_xticks(range(len(doc["classes"])), doc["classes"], rotation=45, ha="right", fontsize=7)
    ax[1].set_title("instrument: real held-out frames (rows) classified as (columns)", fontsize=9)
    x = np.arange(len(doc["tags"]))
    at = {r["tag"]: r for r in doc["rendered"] if r["tau"] == 1.0}
    at0 = {r["tag"]: r for r in doc["rendered"] if r["tau"] == 0.0}
    ax[2].bar(
        x - 0.27,
        [at[z]["requested_classified"]["mean"] for z in doc["tags"]],
        0.27,
        label="requested alpha, tau 1",
    )
    ax[2].bar(x, [at[z]["classified"]["mean"] for z in doc["tags"]], 0.27, label="renders, tau 1")
    ax[2].bar(x + 0.27, [at0[z]["classified"]["mean"] for z in doc["tags"]], 0.27, label="renders, tau 0")
    ax[2].set_xticks(
        x, [z + ("" if doc["measurable"].get(z) else "*") for z in doc["tags"]], rotation=30, fontsize=8
    )
    ax[2].set_ylim(0, 1.02)
    ax[2].set_title("classified as the tag (* = not measurable at this resolution)", fontsize=9)
    ax[2].legend(fontsize=7)
    title = f"Emotion control of {doc['subject']} ({doc.get('edit_space')} edits)"
    if doc.get("summary") is not None:
        lo, hi = doc["summary_ci95"]
        n = len(doc["summary_tags"])
        title += f": summary {doc['summary']:.2f} [{lo:.2f}, {hi:.2f}] over {n} measurable tags"
    else:
        title += ": no measurable tag"
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def intensity_sweep_png(renders: dict, tags: list[str], taus, path) -> None:
    """A grid: one row per tag, one column per tau, the first edited frame of each."""
    import cv2

    rows = []
    for z in tags:
        tiles = []
        for t in taus:
            im = np.ascontiguousarray(renders[(z, float(t))][0][..., ::-1])
            cv2.putText(
                im, f"{z} {t:g}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA
            )
            tiles.append(im)
        rows.append(np.concatenate(tiles, axis=1))
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), np.concatenate(rows, axis=0))


def write_emotion_control(renderer, data: SubjectData, hyperplanes, extractor, out: dict, **kw) -> dict:
    """emotion_control.json, emotion_control.png and intensity_sweep.png (``out`` paths by key)."""
    doc, renders = measure_emotion_control(renderer, data, hyperplanes, extractor, **kw)
    write_json_atomic(out["emotion_control"], doc)
    plot_emotion_control(doc, out["emotion_control_png"])
    intensity_sweep_png(renders, doc["tags"], SWEEP_TAUS, out["intensity_sweep"])
    return doc
