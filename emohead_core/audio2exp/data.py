"""Training data for the audio-expression module: clips of (v~, e~, gamma~, alpha) at 25 fps,
the train/test split (per clip from the sample table, or per frame in time inside each clip),
the eq. (13) cross-individual pairing, and fast window gathering for frame batches.

The in-memory :class:`Corpus` is what training and evaluation consume; :func:`load_corpus`
builds it from the pipeline's ``results/`` (sample table, expression Parquet, feature cache,
hyperplanes), and tests build it directly from synthetic arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..emotion_edit import emotion_directions
from ..errors import EmoheadInputError
from ..expression.schema import read_expression
from ..features.cache import read_features
from ..layout import clip_file
from ..splits import held_out_count

MODALITIES = ("v", "e", "gamma")
SPLIT_MODES = ("samples", "within_clip")


@dataclass
class CorpusClip:
    """One clip of the audio-expression corpus: its features, 3DDFA alpha and split (not
    :class:`emohead_core.batch.Clip`, one clip of a per-actor batch job)."""

    sample_id: str
    actor: str
    emotion: str
    sentence: str
    split: str  # split of the clip (with test_from set: of its frames before test_from)
    feats: dict[str, np.ndarray]  # modality -> (T, D) float32, or float16 (as cached)
    alpha: np.ndarray | None = None  # (T, m) targets (3DDFA expression); None for audio-only
    alpha_mask: np.ndarray | None = None  # (T,) bool: frame has a detected face
    w_z: np.ndarray | None = None  # (m,) eq. (9) direction of this clip's emotion (hyperplanes d_z)
    test_from: int | None = None  # within-clip time split: frames >= test_from are "test"

    @property
    def T(self) -> int:
        return int(next(iter(self.feats.values())).shape[0])

    @property
    def has_alpha(self) -> bool:
        return self.alpha is not None and bool(np.any(self.alpha_mask))

    def frames_in(self, split: str) -> np.ndarray:
        """(T,) bool: the frames of this clip that belong to ``split``."""
        if self.test_from is None:
            return np.full(self.T, self.split == split)
        t = np.arange(self.T)
        return t >= self.test_from if split == "test" else (t < self.test_from) & (self.split == split)

    def in_split(self, split: str) -> bool:
        return bool(self.frames_in(split).any())

    def target_mask(self, split: str | None = None) -> np.ndarray:
        """(T,) bool: frames with an expression target (detected face), within ``split`` if given."""
        if self.alpha is None:
            return np.zeros(self.T, bool)
        m = np.asarray(self.alpha_mask[: self.T], bool)
        return m & self.frames_in(split) if split is not None else m


@dataclass
class Corpus:
    clips: list[CorpusClip]
    silence: dict[str, np.ndarray]  # modality -> (D,) silence-padding vector
    m: int = 10
    meta: dict = field(default_factory=dict)

    def dims(self) -> dict[str, int]:
        return {k: int(v.shape[0]) for k, v in self.silence.items()}


def split_corpus(corpus: Corpus, mode: str = "samples", test_fraction: float = 0.33) -> Corpus:
    """Apply the train/test split mode (``audio2exp.split``) and return a new corpus.

    ``samples``: the sample table's clip-level split, unchanged. ``within_clip``: a time split
    inside every clip with expression targets (the paper splits each person's footage by time):
    its first T - n_test frames are train, its last n_test = floor(test_fraction * T + 0.5)
    frames (at least 1, at most T - 1) are test, whatever the sample table says; clips without
    targets (audio-only) are train only (they feed eq. (13)'s cross-individual term). The causal
    window of the first test frames looks back into the train frames' audio (features only,
    never targets); train windows never see test frames (they look back only)."""
    from dataclasses import replace

    if mode not in SPLIT_MODES:
        raise EmoheadInputError(
            f"unknown audio2exp.split.mode {mode!r}", fix=f"use one of {list(SPLIT_MODES)}"
        )
    meta = {
        **corpus.meta,
        "split": {"mode": mode}
        if mode == "samples"
        else {"mode": mode, "test_fraction": float(test_fraction)},
    }
    if mode == "samples":
        return Corpus(list(corpus.clips), corpus.silence, m=corpus.m, meta=meta)
    if not 0.0 < float(test_fraction) < 1.0:
        raise EmoheadInputError(f"audio2exp.split.test_fraction must be in (0, 1), got {test_fraction}")
    clips = []
    for c in corpus.clips:
        if c.has_alpha and c.T >= 2:
            n_test = held_out_count(c.T, test_fraction)
            clips.append(replace(c, split="train", test_from=c.T - n_test))
        else:
            clips.append(replace(c, split="train", test_from=None))
    return Corpus(clips, corpus.silence, m=corpus.m, meta=meta)


def partners_of(clip: CorpusClip, clips: list[CorpusClip], split: str | None = None) -> list[int]:
    """Eq. (13) pairing rule: indices of clips of ANOTHER individual with the SAME emotion tag
    that have expression targets in the same split (``split``, default the clip's); those that
    also share the sentence are preferred (if any exist, only they are returned)."""
    split = clip.split if split is None else split
    cand = [
        j
        for j, c in enumerate(clips)
        if c.actor != clip.actor and c.emotion == clip.emotion and c.has_alpha and c.target_mask(split).any()
    ]
    same = [j for j in cand if clips[j].sentence == clip.sentence]
    return same if same else cand


def aligned_frame(i: np.ndarray, t_src: int, t_dst: int) -> np.ndarray:
    """Frame of the partner clip at the same relative time (clips of the same sentence)."""
    if t_src <= 1:
        return np.zeros_like(i)
    return np.clip(np.rint(i * (t_dst - 1) / (t_src - 1)).astype(np.int64), 0, t_dst - 1)


class FrameTable:
    """All frames of a set of clips, flattened, with per-frame causal windows (silence-padded)
    and targets, as torch tensors for fast batch gathering.

    Global feature row 0 of each modality is the silence vector; clip c's frame t is row
    1 + offset[c] + t.

    ``split``: only the frames of that split are targets (``own``), partner targets (eq. 13)
    and sampled (``usable``); windows still read the whole clip's features (a test frame's
    window may look back into train frames' audio). None: every frame of the given clips, with
    partners from each clip's own split."""

    def __init__(
        self,
        corpus: Corpus,
        clip_ids: list[int],
        context: int,
        *,
        pairing_pool: list[int] | None = None,
        split: str | None = None,
    ):
        clips = corpus.clips
        self.corpus = corpus
        self.clip_ids = list(clip_ids)
        self.context = context
        self.split = split
        offsets, total = [], 0
        for c in self.clip_ids:
            offsets.append(total)
            total += clips[c].T
        self.offsets = offsets
        self.n_frames = total
        self._stack_features()
        self._frame_arrays()
        self._partners(self.clip_ids if pairing_pool is None else pairing_pool)
        local = np.repeat(np.arange(len(self.clip_ids)), [clips[c].T for c in self.clip_ids])
        self.local_of = torch.from_numpy(local.astype(np.int64))
        self.T_of = torch.tensor([clips[c].T for c in self.clip_ids], dtype=torch.int64)[self.local_of]
        self.frame_t = torch.from_numpy(self.frame_of)
        self.partner_n = (self.partner_ptr[1:] - self.partner_ptr[:-1])[self.local_of]
        # frames usable for training: in the split, with an own target or at least one partner
        self.usable = torch.nonzero(self.own | (self.in_split & (self.partner_n > 0))).squeeze(1)

    def _stack_features(self) -> None:
        """``feats[k]``: the silence vector, then every clip's features, one row per frame."""
        clips = self.corpus.clips
        self.feats = {}
        for k in MODALITIES:
            # kept in the clips' dtype (float16 caches stay float16: half the memory at MEAD
            # scale); windows() returns float32
            dt = np.result_type(*[clips[c].feats[k].dtype for c in self.clip_ids])
            rows = [self.corpus.silence[k][None].astype(dt)] + [
                clips[c].feats[k].astype(dt, copy=False) for c in self.clip_ids
            ]
            self.feats[k] = torch.from_numpy(np.concatenate(rows, 0))

    def _frame_arrays(self) -> None:
        """Per frame: its causal window of feature rows, target alpha, own-target and split flags,
        w_z, clip and frame index."""
        clips, context, split, total = self.corpus.clips, self.context, self.split, self.n_frames
        m = self.corpus.m
        win = np.zeros((total, context), dtype=np.int64)
        alpha = np.zeros((total, m), dtype=np.float32)
        own = np.zeros(total, dtype=bool)
        sel = np.zeros(total, dtype=bool)  # frame belongs to the table's split
        w_z = np.zeros((total, m), dtype=np.float32)
        clip_of = np.zeros(total, dtype=np.int64)
        frame_of = np.zeros(total, dtype=np.int64)
        rel = np.arange(-context + 1, 1)
        for c, off in zip(self.clip_ids, self.offsets):
            clip = clips[c]
            T = clip.T
            t = np.arange(T)
            j = t[:, None] + rel[None, :]
            win[off : off + T] = np.where(j >= 0, 1 + off + j, 0)
            sel[off : off + T] = clip.frames_in(split) if split is not None else True
            if clip.alpha is not None:
                alpha[off : off + T] = clip.alpha[:T]
                own[off : off + T] = clip.alpha_mask[:T] & sel[off : off + T]
            if clip.w_z is not None:
                w_z[off : off + T] = clip.w_z
            clip_of[off : off + T] = c
            frame_of[off : off + T] = t
        self.win = torch.from_numpy(win)
        self.alpha = torch.from_numpy(alpha)
        self.own = torch.from_numpy(own)
        self.w_z = torch.from_numpy(w_z)
        self.clip_of = clip_of
        self.frame_of = frame_of
        self.in_split = torch.from_numpy(sel)

    def _partners(self, pool: list[int]) -> None:
        """eq. (13) partners, stored per clip (CSR: partner clip lists) so memory grows with the
        number of clip pairs, not frames x partners; the partner frame is aligned at sampling.
        Partner targets are restricted to the table's split (within-clip mode: the partner's
        train frames only; the aligned frame may fall in its test part, then no partner term)."""
        clips, split, m = self.corpus.clips, self.split, self.corpus.m
        with_alpha = [p for p in pool if clips[p].has_alpha]
        bank_off = {}
        bank_alpha, bank_mask, o = [], [], 0
        for p in with_alpha:
            bank_off[p] = o
            bank_alpha.append(clips[p].alpha[: clips[p].T].astype(np.float32))
            bank_mask.append(clips[p].target_mask(split if split is not None else clips[p].split))
            o += clips[p].T
        groups: dict[str, list[int]] = {}
        for p in with_alpha:
            groups.setdefault(clips[p].emotion, []).append(p)
        ptr, ids, offs, lens = [0], [], [], []
        for c in self.clip_ids:
            clip = clips[c]
            grp = groups.get(clip.emotion, [])
            partners = [grp[j] for j in partners_of(clip, [clips[p] for p in grp], split)]
            ids += partners
            offs += [bank_off[p] for p in partners]
            lens += [clips[p].T for p in partners]
            ptr.append(len(ids))
        self.partner_ptr = torch.tensor(ptr, dtype=torch.int64)
        self.partner_off = torch.tensor(offs, dtype=torch.int64)
        self.partner_len = torch.tensor(lens, dtype=torch.int64)
        self.partner_ids = ids
        self.partner_bank = torch.from_numpy(
            np.concatenate(bank_alpha, 0) if bank_alpha else np.zeros((1, m), np.float32)
        )
        self.partner_mask = torch.from_numpy(np.concatenate(bank_mask, 0) if bank_mask else np.zeros(1, bool))

    def windows(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w = self.win[idx]  # (B, L)
        return tuple(self.feats[k][w].float() for k in MODALITIES)  # type: ignore[return-value]

    def sample_batch(self, batch_size: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        pick = torch.randint(len(self.usable), (batch_size,), generator=gen)
        idx = self.usable[pick]
        u = torch.rand(batch_size, generator=gen)
        n = self.partner_n[idx]
        has_partner = n > 0
        k = torch.clamp((u * n).long(), max=torch.clamp(n - 1, min=0))
        slot = torch.clamp(self.partner_ptr[self.local_of[idx]] + k, max=max(len(self.partner_ids) - 1, 0))
        if len(self.partner_ids):
            t_src, t_dst = self.T_of[idx], self.partner_len[slot]
            # same relative time in the partner clip (aligned_frame)
            f = torch.round(self.frame_t[idx] * (t_dst - 1) / torch.clamp(t_src - 1, min=1)).long()
            rows = self.partner_off[slot] + torch.minimum(torch.clamp(f, min=0), t_dst - 1)
            has_partner = has_partner & self.partner_mask[rows]
            partner_alpha = self.partner_bank[rows]
        else:
            partner_alpha = torch.zeros(batch_size, self.alpha.shape[1])
        v, e, g = self.windows(idx)
        return {
            "idx": idx,
            "v": v,
            "e": e,
            "gamma": g,
            "alpha": self.alpha[idx],
            "own": self.own[idx],
            "alpha_bar": partner_alpha,
            "has_partner": has_partner,
            "w_z": self.w_z[idx],
        }


def feature_stats(
    corpus: Corpus, clip_ids: list[int], split: str | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-dimension mean/std of each raw feature over the given clips' frames (of ``split``)."""
    out = {}
    for k in MODALITIES:
        n, s1, s2 = 0, 0.0, 0.0
        for c in clip_ids:  # streaming sums (no float64 copy of the whole corpus)
            clip = corpus.clips[c]
            x = clip.feats[k][: clip.T].astype(np.float64)
            if split is not None:
                x = x[clip.frames_in(split)]
            n, s1, s2 = n + len(x), s1 + x.sum(0), s2 + (x * x).sum(0)
        mean = s1 / n
        var = np.maximum(s2 / n - mean * mean, 0.0)
        out[k] = (mean.astype(np.float32), np.sqrt(var).astype(np.float32))
    return out


def alpha_mean(corpus: Corpus, clip_ids: list[int], split: str | None = None) -> np.ndarray:
    """Mean target alpha over the detected frames (of ``split``) of the given clips (the
    constant-mean predictor)."""
    xs = [
        corpus.clips[c].alpha[: corpus.clips[c].T][corpus.clips[c].target_mask(split)]
        for c in clip_ids
        if corpus.clips[c].has_alpha
    ]
    xs = [x for x in xs if len(x)]
    if not xs:
        raise EmoheadInputError("no training clip has expression targets (video frames with a detected face)")
    return np.concatenate(xs, 0).mean(0).astype(np.float32)


# --------------------------------------------------------------------------- results/ readers


def read_alpha(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames (T,), alpha (T, 10), detected (T,) bool) from an expression Parquet."""
    path = Path(path)
    if not path.is_file():
        raise EmoheadInputError("expression Parquet missing", path=path, fix="run the expression rule first")
    d = read_expression(path)
    exp = np.asarray(d["exp"], dtype=np.float32)
    return np.asarray(d["frame"], dtype=np.int64), exp, np.asarray(d["detected"], dtype=bool)


def read_feature(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(frames (T,), feats (T, D) float32, meta) from a feature-cache Parquet."""
    path = Path(path)
    if not path.is_file():
        raise EmoheadInputError("feature cache file missing", path=path, fix="run the features rule first")
    frames, feats, meta = read_features(path)
    return np.asarray(frames, np.int64), np.asarray(feats, np.float32), dict(meta or {})


def silence_vector(modality_meta: dict, dim: int, encoder: str | None = None) -> np.ndarray:
    """Silence-padding vector for one feature stream: the features stage's silence embedding
    when it provides one (meta key ``silence`` or its ``silence_vector`` helper), else zeros."""
    s = modality_meta.get("silence")
    if s is not None:
        import json

        arr = np.asarray(json.loads(s) if isinstance(s, (str, bytes)) else s, dtype=np.float32)
        if arr.shape == (dim,):
            return arr
    return np.zeros(dim, dtype=np.float32)


def load_corpus(
    results_dir: str | Path,
    dataset: str,
    encoders: dict[str, str],
    *,
    samples=None,
    hyperplane_actor: str | None = None,
    split: dict | None = None,
) -> Corpus:
    """Build the corpus of one dataset from ``results/``.

    encoders: modality ('v', 'e', 'gamma') -> encoder name, the ``{encoder}`` directory of
    ``results/{dataset}/features/{encoder}/{actor}/{sample}.parquet``. Samples with split ``unused``
    are dropped. Every video sample's alpha comes from
    ``results/{dataset}/expression/{actor}/{sample}.parquet``
    (frames with no detected face are masked out). w_z of a clip: the edit direction d_z (eq. 9)
    of its emotion from its own actor's ``hyperplanes/{actor}/hyperplanes.json``, or (audio-only
    actors, or when ``hyperplane_actor`` is set) from ``hyperplane_actor`` / the first actor that has them.
    ``split``: the ``audio2exp.split`` section ({mode, test_fraction}; see :func:`split_corpus`).
    """
    import pandas as pd

    root = Path(results_dir) / dataset
    if samples is None:
        p = root / "samples.parquet"
        if not p.is_file():
            raise EmoheadInputError("sample table missing", path=p, fix="run the preprocess rule first")
        samples = pd.read_parquet(p)
    samples = samples[samples["split"].isin(["train", "test"])]
    hp_by_actor: dict[str, dict[str, np.ndarray]] = {}
    for actor in sorted(samples["actor"].astype(str).unique()):
        p = root / "hyperplanes" / actor / "hyperplanes.json"
        if p.is_file():
            hp_by_actor[actor] = emotion_directions(p)
    if hyperplane_actor is not None and str(hyperplane_actor) not in hp_by_actor:
        p = root / "hyperplanes" / str(hyperplane_actor) / "hyperplanes.json"  # e.g. the pooled "all"
        if p.is_file():
            hp_by_actor[str(hyperplane_actor)] = emotion_directions(p)
    if hyperplane_actor is not None and str(hyperplane_actor) not in hp_by_actor:
        raise EmoheadInputError(
            f"no hyperplanes for actor {hyperplane_actor}",
            path=root / "hyperplanes" / str(hyperplane_actor) / "hyperplanes.json",
            fix="set audio2exp.hyperplane_actor to an actor with video, or null",
        )
    fallback_actor = (
        str(hyperplane_actor)
        if hyperplane_actor is not None
        else (sorted(hp_by_actor)[0] if hp_by_actor else None)
    )
    clips, silence = [], {}
    m = 10
    for r in samples.sort_values("sample_id").itertuples(index=False):
        sid = str(r.sample_id)
        feats, frames_k = {}, {}
        for k in MODALITIES:
            frames, f, meta = read_feature(
                clip_file(str(results_dir), dataset, "features", str(r.actor), sid, encoders[k])
            )
            if meta.get("dtype") == "float16":
                f = f.astype(np.float16)  # lossless: the cache holds float16
            feats[k], frames_k[k] = f, frames
            if k not in silence:
                silence[k] = silence_vector(meta, f.shape[1], encoders[k])
        T = min(len(f) for f in feats.values())
        feats = {k: v[:T] for k, v in feats.items()}
        alpha = mask = None
        if str(r.video_path):
            fr, exp, det = read_alpha(clip_file(str(results_dir), dataset, "expression", str(r.actor), sid))
            m = exp.shape[1]
            alpha = np.zeros((T, m), np.float32)
            mask = np.zeros(T, bool)
            ok = (fr >= 0) & (fr < T)
            alpha[fr[ok]] = exp[ok]
            mask[fr[ok]] = det[ok]
        actor = str(r.actor)
        hp = hp_by_actor.get(str(hyperplane_actor) if hyperplane_actor is not None else actor)
        if hp is None and fallback_actor is not None:
            hp = hp_by_actor[fallback_actor]
        w_z = None if hp is None else hp.get(str(r.emotion))
        clips.append(
            CorpusClip(
                sid,
                actor,
                str(r.emotion),
                str(r.sentence),
                str(r.split),
                feats,
                alpha,
                mask,
                None if w_z is None else np.asarray(w_z, np.float32),
            )
        )
    if not clips:
        raise EmoheadInputError("no train/test samples", path=root / "samples.parquet")
    corpus = Corpus(
        clips,
        silence,
        m=m,
        meta={"dataset": dataset, "encoders": dict(encoders), "hyperplane_actors": sorted(hp_by_actor)},
    )
    split = dict(split or {})
    return split_corpus(corpus, split.get("mode", "samples"), split.get("test_fraction", 0.33))
