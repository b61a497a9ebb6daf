"""Feature jobs: config -> encoders -> cached per-clip Parquet files.

Used by ``workflow/scripts/features_*.py`` (one job per clip and encoder) and by
:func:`extract_clips` (many clips in one process, models loaded once, tqdm over clips).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import layout as L
from ..config import schema_defaults
from ..errors import EmoheadInputError
from ..media import load_audio
from . import asr as asrmod
from .cache import FeatureStore, audio_sha256, cache_key, canonical_json, encode_vector, link_or_copy
from .encoders import (
    AudioEncoder,
    Encoder,
    EncoderSpec,
    TextEncoder,
    build_encoder,
    encode_audio,
    identity_of,
    resolve_source,
)
from .frames import frames_from_words, n_frames_for, reference_frame_count

log = logging.getLogger(__name__)

DEFAULTS = schema_defaults("features")  # config/schema.yaml


def settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``features`` section with defaults, plus fps / sample_rate from ``preprocess``."""
    sec = {**DEFAULTS, **(cfg.get("features") or {})}
    pre = cfg.get("preprocess") or {}
    sec["fps"] = float(pre.get("fps", 25))
    sec["sample_rate"] = int(pre.get("sample_rate", 16000))
    if not sec.get("store"):
        sec["store"] = str(Path(cfg.get("results_dir", "results")) / ".cache" / "features")
    return sec


def active_profile(cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    sec = settings(cfg)
    name = sec["profile"]
    profiles = sec.get("profiles") or {}
    if name not in profiles:
        raise EmoheadInputError(
            f"features.profile is {name!r} but features.profiles has {sorted(profiles)}.",
            path="features.profile",
            fix="set features.profile to one of those.",
        )
    return name, profiles[name]


def encoder_specs(cfg: dict[str, Any]) -> dict[str, EncoderSpec]:
    """The active profile's encoders by name (the ``{encoder}`` wildcard values)."""
    pname, prof = active_profile(cfg)
    return {
        n: EncoderSpec.from_config(n, e, f"features.profiles.{pname}.encoders.{n}")
        for n, e in (prof.get("encoders") or {}).items()
    }


def role_encoders(cfg: dict[str, Any]) -> dict[str, str]:
    """``{"v": name, "e": name, "gamma": name}`` for the audio2exp stage (eq. 1 inputs)."""
    out: dict[str, str] = {}
    for n, s in encoder_specs(cfg).items():
        if s.role in out:
            raise EmoheadInputError(
                f"two encoders ({out[s.role]!r}, {n!r}) have role {s.role!r}.", path="features.profiles"
            )
        out[s.role] = n
    return out


def asr_settings(cfg: dict[str, Any]) -> tuple[dict[str, Any], str]:
    pname, prof = active_profile(cfg)
    return dict(prof.get("asr") or {}), f"features.profiles.{pname}.asr"


_LOADED: dict[str, Any] = {}


def _spec(cfg: dict[str, Any], name: str) -> EncoderSpec:
    specs = encoder_specs(cfg)
    if name not in specs:
        raise EmoheadInputError(
            f"unknown encoder {name!r}; the active profile has {sorted(specs)}.", path="features.profiles"
        )
    return specs[name]


def _memo(k: str, make):
    if k not in _LOADED:
        _LOADED[k] = make()
    return _LOADED[k]


def encoder_identity(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """Encoder identity for the cache key, without loading the model (weights are only
    located and hashed, memoised), so that a cache hit never loads a model."""
    spec = _spec(cfg, name)
    k = canonical_json(["src", spec.kind, spec.model, spec.revision])
    source = _memo(k, lambda: resolve_source(spec))
    return identity_of(spec, source)


def get_encoder(cfg: dict[str, Any], name: str, threads: int | None = None) -> Encoder:
    spec = _spec(cfg, name)
    k = canonical_json(["enc", spec.kind, spec.model, spec.revision, spec.options])
    return _memo(k, lambda: build_encoder(spec, threads=threads or settings(cfg)["threads"]))


def asr_identity(cfg: dict[str, Any]) -> dict[str, Any]:
    acfg, key = asr_settings(cfg)
    source = _memo(canonical_json(["asrsrc", acfg]), lambda: asrmod.resolve_asr_source(acfg, key))
    return asrmod.asr_identity_of(acfg, source)


def get_asr(cfg: dict[str, Any], threads: int | None = None) -> asrmod.ASR:
    acfg, key = asr_settings(cfg)
    return _memo(
        canonical_json(["asr", acfg]),
        lambda: asrmod.build_asr(acfg, key, threads=threads or settings(cfg)["threads"]),
    )


def target_frames(
    audio_path: str | Path,
    frames_ref: str | Path | None,
    fps: float,
    sample_rate: int,
    wave: np.ndarray | None = None,
) -> int:
    """T of a clip (see ``frames`` module docstring): the crop's frame count when a reference
    (``.boxes.parquet`` or crop video) is given, else from the audio duration."""
    if frames_ref:
        return reference_frame_count(frames_ref)
    if wave is None:
        wave = load_audio(audio_path, sample_rate)
    return n_frames_for(len(wave) / sample_rate, fps)


def _meta(enc: Encoder, sec: dict, a_sha: str, T: int, extra: dict | None = None) -> dict[str, Any]:
    m = {
        "encoder": enc.name,
        "role": enc.role,
        "kind": enc.kind,
        "model": enc.model_id,
        "revision": enc.revision,
        "sample_rate": sec["sample_rate"],
        "fps": sec["fps"],
        "n_frames": T,
        "audio_sha256": a_sha,
        "identity": enc.identity(),
        "silence": encode_vector(enc.silence_vector()),
    }
    if isinstance(enc, AudioEncoder):
        m["native_hz"] = enc.native_hz
    m.update(extra or {})
    return m


def run_audio_features(
    cfg: dict[str, Any],
    encoder: str,
    audio: str | Path,
    out: str | Path | None,
    frames_ref: str | Path | None = None,
    threads: int | None = None,
) -> str:
    """One clip, one audio-side encoder (role v or e): the store entry for (audio content,
    encoder identity, T), computed on a miss, then linked to ``out`` (None: only fill the
    store). Returns "hit" or "computed"."""
    sec = settings(cfg)
    spec = _spec(cfg, encoder)
    if spec.role == "gamma":
        raise EmoheadInputError(
            f"{encoder!r} is not an audio encoder of the active profile.", path="features.profiles"
        )
    a_sha = audio_sha256(audio)
    wave = load_audio(audio, sec["sample_rate"])
    T = target_frames(audio, frames_ref, sec["fps"], sec["sample_rate"], wave)
    store = FeatureStore(sec["store"])
    # chunking changes values at chunk borders of attention models: part of the identity
    ident = {
        **encoder_identity(cfg, encoder),
        "dtype": sec["dtype"],
        "chunk_s": float(sec["chunk_s"]),
        "context_s": float(sec["context_s"]),
    }
    key = cache_key(a_sha, ident, T, sec["fps"])
    hit = store.lookup(encoder, key)
    if hit is None:
        enc = get_encoder(cfg, encoder, threads)
        feats = encode_audio(enc, wave, T, sec["fps"], float(sec["chunk_s"]), float(sec["context_s"]))
        hit = store.put(encoder, key, feats, _meta(enc, sec, a_sha, T), sec["dtype"])
        status = "computed"
    else:
        status = "hit"
    if out is not None:
        link_or_copy(hit, out)
    log.info("%s %s: %s (T=%d, key %s)", encoder, audio, status, T, key[:12])
    return status


def run_transcript(
    cfg: dict[str, Any], audio: str | Path, out: str | Path | None, threads: int | None = None
) -> str:
    """One clip's transcript through the store (``out`` None: only fill the store)."""
    sec = settings(cfg)
    a_sha = audio_sha256(audio)
    store = FeatureStore(sec["store"])
    ident = asr_identity(cfg)
    key = cache_key(a_sha, ident, 0, sec["fps"])
    path = store.path("transcripts", key)
    status = "hit"
    if store.lookup("transcripts", key) is None:
        df = get_asr(cfg, threads).transcribe(load_audio(audio, sec["sample_rate"]))
        asrmod.write_transcript(
            path, df, {"cache_key": key, "audio_sha256": a_sha, "asr": canonical_json(ident)}
        )
        status = "computed"
    if out is not None:
        link_or_copy(path, out)
    log.info("transcript %s: %s (key %s)", audio, status, key[:12])
    return status


def text_frame_features(enc: TextEncoder, transcript: pd.DataFrame, T: int, fps: float) -> np.ndarray:
    """Word vectors assigned to frames by timestamp (Fig. 9), silence vector elsewhere."""
    words = [str(t) for t in transcript["token"]]
    vecs = enc.encode_words(words) if words else np.zeros((0, enc.dim), np.float32)
    return frames_from_words(
        vecs, transcript["start_s"].to_numpy(), transcript["end_s"].to_numpy(), T, enc.silence_vector(), fps
    )


def run_text_features(
    cfg: dict[str, Any],
    encoder: str,
    audio: str | Path,
    transcript: str | Path,
    out: str | Path | None,
    frames_ref: str | Path | None = None,
    threads: int | None = None,
) -> str:
    """One clip's text features (role gamma) through the store (``out`` None: fill only)."""
    sec = settings(cfg)
    spec = _spec(cfg, encoder)
    if spec.role != "gamma":
        raise EmoheadInputError(
            f"{encoder!r} is not the text encoder of the active profile.", path="features.profiles"
        )
    a_sha = audio_sha256(audio)
    T = target_frames(audio, frames_ref, sec["fps"], sec["sample_rate"])
    df = asrmod.read_transcript(transcript)
    store = FeatureStore(sec["store"])
    tdig = asrmod.transcript_digest(df)
    key = cache_key(
        a_sha, {**encoder_identity(cfg, encoder), "dtype": sec["dtype"], "transcript": tdig}, T, sec["fps"]
    )
    hit = store.lookup(encoder, key)
    status = "hit"
    if hit is None:
        enc = get_encoder(cfg, encoder, threads)
        feats = text_frame_features(enc, df, T, sec["fps"])
        hit = store.put(
            encoder, key, feats, _meta(enc, sec, a_sha, T, {"transcript_sha256": tdig}), sec["dtype"]
        )
        status = "computed"
    if out is not None:
        link_or_copy(hit, out)
    log.info("%s %s: %s (T=%d, %d words, key %s)", encoder, audio, status, T, len(df), key[:12])
    return status


def extract_clips(
    cfg: dict[str, Any],
    dataset: str,
    clips: Iterable[dict[str, Any]],
    encoders: list[str] | None = None,
    threads: int | None = None,
) -> dict[str, int]:
    """Features of many clips in one process (models loaded once), with a progress bar over
    clips. ``clips``: dicts with ``sample``, ``actor``, ``audio`` and optional ``frames_ref``.
    Writes the same files as the Snakemake rules. Returns counts of computed / cache hits."""
    from tqdm import tqdm

    res = str(cfg.get("results_dir", "results"))
    specs = encoder_specs(cfg)
    names = encoders or list(specs)
    counts = {"computed": 0, "hit": 0}
    clips = list(clips)
    need_text = any(specs[n].role == "gamma" for n in names)
    for c in tqdm(clips, desc=f"features {dataset}", unit="clip"):
        tr = L.clip_file(res, dataset, "transcript", c["actor"], c["sample"])
        if need_text:
            counts[run_transcript(cfg, c["audio"], tr, threads)] += 1
        for n in names:
            out = L.clip_file(res, dataset, "features", c["actor"], c["sample"], n)
            if specs[n].role == "gamma":
                st = run_text_features(cfg, n, c["audio"], tr, out, c.get("frames_ref"), threads)
            else:
                st = run_audio_features(cfg, n, c["audio"], out, c.get("frames_ref"), threads)
            counts[st] += 1
    return counts


def prefill(
    cfg: dict[str, Any],
    encoder: str,
    audio: list[str],
    manifest: str | Path,
    frames: list[str] | None = None,
    transcripts: list[str] | None = None,
    threads: int | None = None,
) -> dict[str, int]:
    """Fill the store for many clips of one actor in one process (the model is loaded once),
    with a progress bar over clips; ``encoder`` "asr" fills transcripts. The per-clip jobs
    then only hash and link. Frame references are matched to clips by file stem."""
    from tqdm import tqdm

    from ..io import write_json_atomic

    refs = {Path(f).name.removesuffix(".boxes.parquet"): f for f in (frames or [])}
    trs = {Path(f).stem: f for f in (transcripts or [])}
    counts = {"computed": 0, "hit": 0}
    for a in tqdm(audio, desc=f"prefill {encoder}", unit="clip"):
        sid = Path(a).stem
        if encoder == "asr":
            st = run_transcript(cfg, a, None, threads)
        elif _spec(cfg, encoder).role == "gamma":
            st = run_text_features(cfg, encoder, a, trs[sid], None, refs.get(sid), threads)
        else:
            st = run_audio_features(cfg, encoder, a, None, refs.get(sid), threads)
        counts[st] += 1
    write_json_atomic(manifest, {"encoder": encoder, "clips": len(audio), **counts})
    return counts


def features_actor(
    cfg: dict[str, Any],
    encoder: str,
    clips: list[dict[str, str]],
    out_dir: str | Path,
    threads: int | None = None,
) -> dict:
    """One actor's clips for one encoder ("asr": transcripts) in one job
    (``datasets.<name>.batch: actor``): writes ``out_dir/{sample}.parquet``, the per-clip
    files, through the feature store (model loaded once). ``clips``: dicts with ``sample``,
    ``audio`` and optional ``frames`` (crop boxes) and ``transcript``. Resumable, see
    :mod:`emohead_core.batch` (and every result is in the store anyway)."""
    from ..batch import Clip, run_batch

    gamma = encoder != "asr" and _spec(cfg, encoder).role == "gamma"
    roles = (
        ("audio", "frames", "transcript")
        if gamma
        else ("audio",)
        if encoder == "asr"
        else ("audio", "frames")
    )
    batch = [
        Clip(c["sample"], {k: c.get(k) or "" for k in roles}, {"out": (0, f"{c['sample']}.parquet")})
        for c in clips
    ]

    def work(clip: Clip, targets: dict) -> None:
        i = clip.inputs
        if encoder == "asr":
            run_transcript(cfg, i["audio"], targets["out"], threads)
        elif gamma:
            run_text_features(
                cfg, encoder, i["audio"], i["transcript"], targets["out"], i["frames"] or None, threads
            )
        else:
            run_audio_features(cfg, encoder, i["audio"], targets["out"], i.get("frames") or None, threads)

    ident = asr_identity(cfg) if encoder == "asr" else encoder_identity(cfg, encoder)
    sec = settings(cfg)
    params = {
        "encoder": encoder,
        "identity": ident,
        **{k: sec[k] for k in ("dtype", "chunk_s", "context_s", "fps", "sample_rate", "align_to_crop")},
    }
    return run_batch([out_dir], batch, work, params=params, desc=f"{encoder} {Path(out_dir).name}")
