"""Feature jobs: config -> encoders -> cached per-clip Parquet files.

Used by ``workflow/scripts/features_*.py`` (one job per clip and encoder) and by
:func:`extract_clips` (many clips in one process, models loaded once, tqdm over clips).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..errors import EmoheadInputError
from ..media import load_audio
from . import asr as asrmod
from .cache import FeatureStore, audio_sha256, cache_key, canonical_json, encode_vector, link_or_copy
from .encoders import AudioEncoder, Encoder, EncoderSpec, TextEncoder, build_encoder, encode_audio
from .frames import frames_from_words, n_frames_for, reference_frame_count

log = logging.getLogger(__name__)

DEFAULTS = {"profile": "paper", "dtype": "float16", "chunk_s": 20.0, "context_s": 1.0, "threads": 1,
            "store": None, "align_to_crop": True}


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
        raise EmoheadInputError(f"features.profile is {name!r} but features.profiles has {sorted(profiles)}.",
                                path="features.profile", fix="set features.profile to one of those.")
    return name, profiles[name]


def encoder_specs(cfg: dict[str, Any]) -> dict[str, EncoderSpec]:
    """The active profile's encoders by name (the ``{encoder}`` wildcard values)."""
    pname, prof = active_profile(cfg)
    return {n: EncoderSpec.from_config(n, e, f"features.profiles.{pname}.encoders.{n}")
            for n, e in (prof.get("encoders") or {}).items()}


def role_encoders(cfg: dict[str, Any]) -> dict[str, str]:
    """``{"v": name, "e": name, "gamma": name}`` for the audio2exp stage (eq. 1 inputs)."""
    out: dict[str, str] = {}
    for n, s in encoder_specs(cfg).items():
        if s.role in out:
            raise EmoheadInputError(f"two encoders ({out[s.role]!r}, {n!r}) have role {s.role!r}.",
                                    path="features.profiles")
        out[s.role] = n
    return out


def asr_settings(cfg: dict[str, Any]) -> tuple[dict[str, Any], str]:
    pname, prof = active_profile(cfg)
    return dict(prof.get("asr") or {}), f"features.profiles.{pname}.asr"


_LOADED: dict[str, Any] = {}


def get_encoder(cfg: dict[str, Any], name: str, threads: int | None = None) -> Encoder:
    specs = encoder_specs(cfg)
    if name not in specs:
        raise EmoheadInputError(f"unknown encoder {name!r}; the active profile has {sorted(specs)}.",
                                path="features.profiles")
    spec = specs[name]
    k = canonical_json(["enc", spec.kind, spec.model, spec.revision, spec.options])
    if k not in _LOADED:
        _LOADED[k] = build_encoder(spec, threads=threads or settings(cfg)["threads"])
    return _LOADED[k]


def get_asr(cfg: dict[str, Any], threads: int | None = None) -> asrmod.ASR:
    acfg, key = asr_settings(cfg)
    k = canonical_json(["asr", acfg])
    if k not in _LOADED:
        _LOADED[k] = asrmod.build_asr(acfg, key, threads=threads or settings(cfg)["threads"])
    return _LOADED[k]


def target_frames(audio_path: str | Path, frames_ref: str | Path | None, fps: float, sample_rate: int,
                  wave: np.ndarray | None = None) -> int:
    """T of a clip (see ``frames`` module docstring): the crop's frame count when a reference
    (``.boxes.parquet`` or crop video) is given, else from the audio duration."""
    if frames_ref:
        return reference_frame_count(frames_ref)
    if wave is None:
        wave = load_audio(audio_path, sample_rate)
    return n_frames_for(len(wave) / sample_rate, fps)


def _meta(enc: Encoder, sec: dict, a_sha: str, T: int, extra: dict | None = None) -> dict[str, Any]:
    m = {"encoder": enc.name, "role": enc.role, "kind": enc.kind, "model": enc.model_id,
         "revision": enc.revision, "sample_rate": sec["sample_rate"], "fps": sec["fps"], "n_frames": T,
         "audio_sha256": a_sha, "identity": enc.identity(), "silence": encode_vector(enc.silence_vector())}
    if isinstance(enc, AudioEncoder):
        m["native_hz"] = enc.native_hz
    m.update(extra or {})
    return m


def run_audio_features(cfg: dict[str, Any], encoder: str, audio: str | Path, out: str | Path,
                       frames_ref: str | Path | None = None, threads: int | None = None) -> str:
    """One clip, one audio-side encoder (role v or e). Returns "hit" or "computed"."""
    sec = settings(cfg)
    spec = encoder_specs(cfg).get(encoder)
    if spec is None or spec.role == "gamma":
        raise EmoheadInputError(f"{encoder!r} is not an audio encoder of the active profile.", path="features.profiles")
    a_sha = audio_sha256(audio)
    wave = load_audio(audio, sec["sample_rate"])
    T = target_frames(audio, frames_ref, sec["fps"], sec["sample_rate"], wave)
    enc = get_encoder(cfg, encoder, threads)
    store = FeatureStore(sec["store"])
    # chunking changes values at chunk borders of attention models: part of the identity
    ident = {**enc.identity(), "dtype": sec["dtype"], "chunk_s": float(sec["chunk_s"]),
             "context_s": float(sec["context_s"])}
    key = cache_key(a_sha, ident, T, sec["fps"])
    hit = store.lookup(encoder, key)
    if hit is None:
        feats = encode_audio(enc, wave, T, sec["fps"], float(sec["chunk_s"]), float(sec["context_s"]))
        hit = store.put(encoder, key, feats, _meta(enc, sec, a_sha, T), sec["dtype"])
        status = "computed"
    else:
        status = "hit"
    link_or_copy(hit, out)
    log.info("%s %s: %s (T=%d, key %s)", encoder, audio, status, T, key[:12])
    return status


def run_transcript(cfg: dict[str, Any], audio: str | Path, out: str | Path, threads: int | None = None) -> str:
    sec = settings(cfg)
    a_sha = audio_sha256(audio)
    asr = get_asr(cfg, threads)
    store = FeatureStore(sec["store"])
    ident = asr.identity()
    key = cache_key(a_sha, ident, 0, sec["fps"])
    path = store.path("transcripts", key)
    status = "hit"
    if store.lookup("transcripts", key) is None:
        df = asr.transcribe(load_audio(audio, sec["sample_rate"]))
        asrmod.write_transcript(path, df, {"cache_key": key, "audio_sha256": a_sha,
                                           "asr": canonical_json(ident)})
        status = "computed"
    link_or_copy(path, out)
    log.info("transcript %s: %s (key %s)", audio, status, key[:12])
    return status


def text_frame_features(enc: TextEncoder, transcript: pd.DataFrame, T: int, fps: float) -> np.ndarray:
    """Word vectors assigned to frames by timestamp (Fig. 9), silence vector elsewhere."""
    words = [str(t) for t in transcript["token"]]
    vecs = enc.encode_words(words) if words else np.zeros((0, enc.dim), np.float32)
    return frames_from_words(vecs, transcript["start_s"].to_numpy(), transcript["end_s"].to_numpy(), T,
                             enc.silence_vector(), fps)


def run_text_features(cfg: dict[str, Any], encoder: str, audio: str | Path, transcript: str | Path,
                      out: str | Path, frames_ref: str | Path | None = None, threads: int | None = None) -> str:
    sec = settings(cfg)
    spec = encoder_specs(cfg).get(encoder)
    if spec is None or spec.role != "gamma":
        raise EmoheadInputError(f"{encoder!r} is not the text encoder of the active profile.", path="features.profiles")
    a_sha = audio_sha256(audio)
    T = target_frames(audio, frames_ref, sec["fps"], sec["sample_rate"])
    df = asrmod.read_transcript(transcript)
    enc = get_encoder(cfg, encoder, threads)
    store = FeatureStore(sec["store"])
    tdig = asrmod.transcript_digest(df)
    key = cache_key(a_sha, {**enc.identity(), "dtype": sec["dtype"], "transcript": tdig}, T, sec["fps"])
    hit = store.lookup(encoder, key)
    status = "hit"
    if hit is None:
        feats = text_frame_features(enc, df, T, sec["fps"])
        hit = store.put(encoder, key, feats, _meta(enc, sec, a_sha, T, {"transcript_sha256": tdig}), sec["dtype"])
        status = "computed"
    link_or_copy(hit, out)
    log.info("%s %s: %s (T=%d, %d words, key %s)", encoder, audio, status, T, len(df), key[:12])
    return status


def extract_clips(cfg: dict[str, Any], dataset: str, clips: Iterable[dict[str, Any]],
                  encoders: list[str] | None = None, threads: int | None = None) -> dict[str, int]:
    """Features of many clips in one process (models loaded once), with a progress bar over
    clips. ``clips``: dicts with ``sample``, ``audio`` and optional ``frames_ref``. Writes the
    same files as the Snakemake rules. Returns counts of computed / cache hits."""
    from tqdm import tqdm

    res = Path(cfg.get("results_dir", "results")) / dataset
    specs = encoder_specs(cfg)
    names = encoders or list(specs)
    counts = {"computed": 0, "hit": 0}
    clips = list(clips)
    need_text = any(specs[n].role == "gamma" for n in names)
    for c in tqdm(clips, desc=f"features {dataset}", unit="clip"):
        tr = res / "transcripts" / f"{c['sample']}.parquet"
        if need_text:
            counts[run_transcript(cfg, c["audio"], tr, threads)] += 1
        for n in names:
            out = res / "features" / n / f"{c['sample']}.parquet"
            if specs[n].role == "gamma":
                st = run_text_features(cfg, n, c["audio"], tr, out, c.get("frames_ref"), threads)
            else:
                st = run_audio_features(cfg, n, c["audio"], out, c.get("frames_ref"), threads)
            counts[st] += 1
    return counts


# ---- Snakemake helpers (rules/features.smk) ----

def smk_job_config(cfg: dict[str, Any], results: str, encoder: str | None = None, asr: bool = False) -> dict:
    """The part of the config one feature job depends on, passed as its ``params`` so that
    editing another encoder's entry does not re-trigger this job."""
    sec = settings(cfg)
    pname, prof = active_profile(cfg)
    keep = {k: sec[k] for k in ("profile", "dtype", "chunk_s", "context_s", "threads", "store")}
    sub: dict[str, Any] = {"encoders": {encoder: prof["encoders"][encoder]} if encoder else {}}
    if asr:
        sub["asr"] = prof.get("asr")
    pre = cfg.get("preprocess") or {}
    return {"results_dir": results,
            "preprocess": {"fps": pre.get("fps", 25), "sample_rate": pre.get("sample_rate", 16000)},
            "features": {**keep, "profiles": {pname: sub}}}


def smk_inputs(cfg: dict[str, Any], samples: dict, results: str, dataset: str, sample: str) -> dict[str, str]:
    """Inputs of a feature job: the 16 kHz wav, plus the crop's boxes (T) for video samples."""
    inputs = {"audio": f"{results}/{dataset}/audio/{sample}.wav"}
    df = samples[dataset]
    row = df[df["sample_id"] == sample]
    if len(row) != 1:
        raise EmoheadInputError(f"unknown sample {sample!r} of dataset {dataset!r}.")
    if settings(cfg)["align_to_crop"] and row.iloc[0]["video_path"]:
        inputs["frames"] = f"{results}/{dataset}/crop/{sample}.boxes.parquet"
    return inputs
