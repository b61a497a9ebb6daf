"""Emotion control of a trained renderer, measured (``emotion_control.json`` / ``.png``) and shown
(``intensity_sweep.png``).

The renderer is asked for an emotion by editing its expression input along the tag's edit
direction, alpha = alpha_0 + tau d_z (eq. 9; d_z is the hyperplane's normal in the whitened
expression space, or the raw normal w_z with ``hyperplanes.edit_space: raw``, see
:func:`emohead_core.expression.hyperplanes.edit_direction`). Whether the rendered face follows is
measured the way Appendix B defines the emotion of an expression: the expression stage's 3DDFA_V2
regressor re-extracts alpha from the rendered frames, and every hyperplane scores it (signed
distance s_z = w_z . alpha + b_z). Per target tag z and intensity tau we report the mean s_z of
the re-extracted alphas and the fraction of frames whose highest-scoring hyperplane is z; the
same numbers for the subject's real frames of each tag are the reference (same resolution, same
extraction). A renderer that follows its expression input shows s_z rising with tau.

alpha_0: the ground-truth alphas of frames of the subject's neutral clips (test frames first),
so the edit starts from a neutral face; poses of the same frames. Units of tau (``unit``):

* ``person`` (default): tau = 1 moves alpha_0 along d_z until its mean s_z has risen as far as
  the person's own frames of tag z lie from alpha_0 (the gap of their mean signed distances, in
  the expression stage's alphas; at least one standard deviation, see ``std``): "as emotional as
  the person's own z clips";
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


def _spread(idx: np.ndarray, n: int) -> np.ndarray:
    idx = np.asarray(idx)
    return idx if len(idx) <= n else idx[np.linspace(0, len(idx) - 1, n).round().astype(int)]


def base_frames(data: SubjectData, n: int) -> np.ndarray:
    """Up to ``n`` frames whose alphas and poses start the edits: neutral clips' test frames,
    then their training frames; a subject without a neutral clip uses all its test frames."""
    neutral = [k for k, c in enumerate(data.clips) if c.get("emotion") == "neutral"]
    if neutral:
        test = np.concatenate([data.clip_test_frames(k) for k in neutral])
        train = np.concatenate([data.clip_train_frames(k) for k in neutral])
        pool = test if len(test) >= n else np.concatenate([test, _spread(train, n - len(test))])
    else:
        pool = data.test_idx
    return _spread(pool, n)


def tag_frames(data: SubjectData, tag: str, n: int) -> np.ndarray:
    """Up to ``n`` real frames of the subject's clips tagged ``tag`` (test frames first)."""
    ks = [k for k, c in enumerate(data.clips) if c.get("emotion") == tag]
    if not ks:
        return np.zeros(0, np.int64)
    test = np.concatenate([data.clip_test_frames(k) for k in ks])
    allf = np.concatenate([data.clip_frames(k) for k in ks])
    return _spread(test if len(test) >= n else allf, n)


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


def _scores(alpha: np.ndarray, names: list[str], W: np.ndarray, b: np.ndarray, z: str) -> dict:
    d = alpha @ W.T + b  # signed distance to every hyperplane (Appendix B)
    k = names.index(z)
    return dict(
        mean_distance=float(d[:, k].mean()),
        classified_fraction=float((d.argmax(1) == k).mean()),
        n_frames=int(len(alpha)),
    )


def measure_emotion_control(
    renderer,
    data: SubjectData,
    hyperplanes,
    extractor,
    *,
    tags=None,
    taus=TAUS,
    n_frames: int = 12,
    unit: str = "person",
    progress: bool = True,
) -> tuple[dict, dict]:
    """Returns (the emotion_control.json document, the rendered frames {(tag, tau): (n, H, W, 3)})."""
    from tqdm import tqdm

    from ..expression.hyperplanes import read_hyperplanes

    if isinstance(hyperplanes, (str, Path)):
        hf = read_hyperplanes(hyperplanes)
        hp, dirs, edit_space = hf.classifier, hf.directions, hf.edit_space
    else:  # {z: (w, b)}: edits along w
        hp, dirs, edit_space = hyperplanes, edit_directions(hyperplanes), None
    # eq. (9) moves along d_z; w_z scores
    names = sorted(hp)
    W = np.stack([np.asarray(hp[z][0], np.float64) for z in names])
    b = np.array([float(hp[z][1]) for z in names])
    tags = [z for z in (tags or data.emotions()) if z in hp]
    if not tags:
        raise EmoheadInputError(
            f"none of the subject's tags {data.emotions()} has a hyperplane (have {names}).",
            path=hyperplanes,
            fix="use hyperplanes fitted on this person's emotions.",
        )
    base = base_frames(data, n_frames)
    scale = tau_units(hp, data, tags, base, unit, dirs)
    a0 = data.alpha[base].astype(np.float64)
    seed = data.landmarks[base]
    net = renderer.model
    seen = ExpressionSupport(
        data.alpha[data.train_idx], net.alpha_mean.cpu().numpy(), net.alpha_std.cpu().numpy()
    )
    renders: dict = {}
    rows = []
    jobs = [(z, t) for z in tags for t in taus]
    unedited = None  # tau = 0 is the same render for every tag
    for z, t in tqdm(jobs, desc="emotion control", disable=not progress, mininterval=5):
        k = names.index(z)
        alpha_in = a0 + t * scale[z] * dirs[z]  # eq. (9)
        if t == 0 and unedited is not None:
            frames, alpha_re = unedited
        else:
            frames = render_frames(renderer, data, alpha_in.astype(np.float32), pose_idx=base)
            alpha_re = extractor(frames, seed)
            if t == 0:
                unedited = frames, alpha_re
        renders[(z, float(t))] = frames
        rows.append(
            dict(
                tag=z,
                tau=float(t),
                tau_raw=float(t * scale[z]),
                input_distance=float((alpha_in @ W[k] + b[k]).mean()),
                input_offset_std=float(seen.offset(alpha_in).mean()),
                **_scores(alpha_re, names, W, b, z),
            )
        )
    reference = {}
    for z in tags:
        idx = tag_frames(data, z, max(n_frames, 2 * n_frames))
        alpha_re = extractor(data.frames(idx), data.landmarks[idx])
        reference[z] = dict(
            **_scores(alpha_re, names, W, b, z),
            expression_stage_distance=float((data.alpha[idx] @ W[names.index(z)] + b[names.index(z)]).mean()),
        )
    at1 = [r["classified_fraction"] for r in rows if r["tau"] == 1.0]
    gain = response_gain(rows, tags)
    doc = dict(
        subject=data.subject,
        dataset=data.clips[0].get("dataset", ""),
        tags=tags,
        taus=[float(t) for t in taus],
        unit=unit,
        edit_space=edit_space,
        tau_scale={z: float(scale[z]) for z in tags},
        base_frames=[int(i) for i in base],
        hyperplanes=str(hyperplanes) if isinstance(hyperplanes, (str, Path)) else None,
        rendered=rows,
        reference=reference,
        training_spacing_std=seen.spacing,
        emotion_control=float(np.mean(at1)) if at1 else None,
        rising=rising_tags(rows, tags),
        response_gain=gain,
        response_gain_mean=float(np.mean([g for g in gain.values() if g is not None]))
        if any(g is not None for g in gain.values())
        else None,
        note="rendered: alpha_0 (ground-truth alphas of neutral frames) + tau d_z (the edit direction, "
        "edit_space) rendered at those frames' "
        "poses; 3DDFA alpha re-extracted from the renders; mean_distance = mean signed distance to "
        "w_z, classified_fraction = share of frames whose highest-scoring hyperplane is z; "
        "reference: the subject's real frames of each tag, extracted the same way; "
        "emotion_control = mean over tags of classified_fraction at tau = 1; "
        "response_gain = per tag, the change of the re-extracted mean distance over the taus "
        "divided by the change of the input's (1: the render moves as far as asked); "
        "input_offset_std = mean distance of the edited alphas to the nearest training alpha in "
        "training standard deviations (training_spacing_std: the same between training frames), "
        "how far the edit asks the field to extrapolate.",
    )
    return doc, renders


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
    for z in tags:
        w, b = np.asarray(hp[z][0], np.float64), float(hp[z][1])
        ks = [k for k, c in enumerate(data.clips) if c.get("emotion") == z]
        own = np.concatenate([data.clip_frames(k) for k in ks]) if ks else np.zeros(0, int)
        gap = float((data.alpha[own] @ w + b).mean() - (data.alpha[base] @ w + b).mean()) if len(own) else 0.0
        # the score rises by w_z . d_z per unit of tau along d_z (1 when d_z = w_z)
        out[z] = max(gap / float(w @ np.asarray(dirs[z], np.float64)), std[z])
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(16, 4))
    for n, z in enumerate(doc["tags"]):
        col = plt.cm.tab10(n % 10)
        rows = sorted((r for r in doc["rendered"] if r["tag"] == z), key=lambda r: r["tau"])
        taus = [r["tau"] for r in rows]
        ax[0].plot(taus, [r["mean_distance"] for r in rows], "o-", color=col, label=z)
        ax[0].plot(taus, [r["input_distance"] for r in rows], ":", color=col, lw=0.8)
        ax[1].plot(taus, [r["classified_fraction"] for r in rows], "o-", color=col, label=z)
        if all("input_offset_std" in r for r in rows):
            ax[2].plot(taus, [r["input_offset_std"] for r in rows], "o-", color=col, label=z)
        ref = doc["reference"].get(z)
        if ref:
            ax[0].axhline(ref["mean_distance"], color=col, ls="--", lw=0.8)
            ax[1].plot([taus[-1] + 0.12 + 0.05 * n], [ref["classified_fraction"]], "*", color=col, ms=9)
    ax[0].set_title("re-extracted distance to w_z (dotted: requested; dashed: real frames)")
    ax[0].set_xlabel(f"tau ({doc['unit']})")
    ax[0].set_ylabel("mean signed distance")
    ax[1].set_title("fraction classified as z (star: real frames)")
    ax[1].set_xlabel(f"tau ({doc['unit']})")
    ax[1].set_ylim(-0.02, 1.02)
    ax[1].legend(fontsize=8)
    if doc.get("training_spacing_std") is not None:
        ax[2].axhline(doc["training_spacing_std"], color="k", ls="--", lw=0.8)
    ax[2].set_title("edited alpha to nearest training alpha (dashed: between training frames)", fontsize=9)
    ax[2].set_xlabel(f"tau ({doc['unit']})")
    ax[2].set_ylabel("training std")
    title = f"Emotion control of {doc['subject']}"
    if doc.get("emotion_control") is not None:
        title += f": {doc['emotion_control']:.2f} classified at tau = 1"
    if doc.get("response_gain_mean") is not None:
        title += f"; response gain {doc['response_gain_mean']:.2f} (1 = as far as asked)"
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
    intensity_sweep_png(renders, doc["tags"], doc["taus"], out["intensity_sweep"])
    return doc
