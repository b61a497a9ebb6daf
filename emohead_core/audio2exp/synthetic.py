"""Synthetic corpora with a known audio -> expression mapping (tests and bench only)."""

from __future__ import annotations

import numpy as np

from .data import Corpus, CorpusClip

EMOS = ("angry", "happy", "sad")


def synthetic_corpus(
    *,
    seed: int = 0,
    dims: tuple[int, int, int] = (6, 5, 4),
    frames: int = 60,
    actors: tuple[str, ...] = ("A", "B"),
    audio_only: tuple[str, ...] = (),
    clips_per_emotion: int = 2,
    m: int = 10,
) -> Corpus:
    """Clips whose target alpha_t depends on the last two audio frames and the emotion.

    Each actor speaks ``clips_per_emotion`` sentences per emotion; the last sentence of each
    emotion is the test split. Actors in ``audio_only`` get no alpha (like CREMA-D 1002)."""
    rng = np.random.default_rng(seed)
    dv, de, dg = dims
    M1 = rng.normal(size=(dv, m)) / np.sqrt(dv)
    M2 = rng.normal(size=(dv, m)) / np.sqrt(dv)
    emo_vec = {z: rng.normal(size=m) * 0.5 for z in EMOS}
    emo_feat = {z: rng.normal(size=de) for z in EMOS}
    w = {z: (lambda x: x / np.linalg.norm(x))(rng.normal(size=m)) for z in EMOS}
    clips = []
    for actor in actors + audio_only:
        for z in EMOS:
            for s in range(clips_per_emotion):
                T = frames + int(rng.integers(-5, 6))
                raw = rng.normal(size=(T + 2, dv))
                v = (0.6 * raw[2:] + 0.4 * raw[1:-1]).astype(np.float32)  # smooth audio
                e = (emo_feat[z] + 0.3 * rng.normal(size=(T, de))).astype(np.float32)
                g = rng.normal(size=(T, dg)).astype(np.float32)
                v_prev = np.vstack([np.zeros((1, dv)), v[:-1]])
                alpha = np.tanh(v @ M1 + v_prev @ M2) + emo_vec[z]
                has = actor not in audio_only
                clips.append(
                    CorpusClip(
                        sample_id=f"{actor}_S{s}_{z}",
                        actor=actor,
                        emotion=z,
                        sentence=f"S{s}",
                        split="test" if s == clips_per_emotion - 1 else "train",
                        feats={"v": v, "e": e, "gamma": g},
                        alpha=alpha.astype(np.float32) if has else None,
                        alpha_mask=np.ones(T, bool) if has else None,
                        w_z=w[z].astype(np.float32),
                    )
                )
    silence = {
        "v": np.zeros(dv, np.float32),
        "e": np.zeros(de, np.float32),
        "gamma": np.zeros(dg, np.float32),
    }
    return Corpus(clips, silence, m=m, meta={"dataset": "synthetic", "encoders": {}})
