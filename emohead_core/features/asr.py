"""Timestamped transcripts (paper App. C: "we employ FunASR to transcribe audio to text ...
timestamped"). One table per clip: ``token`` (a word), ``start_s``, ``end_s``.

Engines (``features.profiles.<profile>.asr.engine``):
- ``paraformer``: FunASR ``AutoModel`` (Paraformer-en), timestamps in ms per output token;
- ``faster_whisper``: CTranslate2 Whisper (offline profile), word timestamps from
  cross-attention alignment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import EmoheadInputError
from ..io import atomic_path
from .sources import ModelSource, load_funasr_model, resolve_model_dir

TRANSCRIPT_SCHEMA = pa.schema([("token", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64())])


def empty_transcript() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "token": pd.Series([], dtype=object),
            "start_s": pd.Series([], dtype=np.float64),
            "end_s": pd.Series([], dtype=np.float64),
        }
    )


def _check(df: pd.DataFrame, origin: str) -> pd.DataFrame:
    df = df.reset_index(drop=True)
    if (df["end_s"] < df["start_s"]).any():
        i = int(np.argmax((df["end_s"] < df["start_s"]).to_numpy()))
        raise EmoheadInputError(f"token {i} ({df.token[i]!r}) ends before it starts.", path=origin)
    return df


_BPE_CONT = "@@"


def parse_funasr_result(
    results: list[dict[str, Any]] | dict[str, Any], origin: str = "funasr"
) -> pd.DataFrame:
    """FunASR ``generate`` output -> transcript table.

    Accepts the plain form ``{"text": "w1 w2 ...", "timestamp": [[ms, ms], ...]}`` (one pair per
    token; English Paraformer emits words, possibly split as BPE pieces ending in ``@@``, which
    are merged into their word spanning first start .. last end), and the form with
    ``sentence_info`` (list of such dicts, one per sentence, when a VAD/punctuation model runs).
    Punctuation-only tokens with no timestamp are dropped."""
    if isinstance(results, dict):
        results = [results]
    rows: list[tuple[str, float, float]] = []
    for res in results:
        items = res.get("sentence_info") or [res]
        for item in items:
            text = (item.get("text") or "").strip()
            ts = item.get("timestamp") or []
            tokens = [t for t in text.split() if t]
            if not tokens:
                continue
            if len(tokens) != len(ts):
                # drop punctuation-only tokens (added by a punctuation model without timestamps)
                words = [t for t in tokens if re.search(r"\w", t)]
                if len(words) == len(ts):
                    tokens = words
                else:
                    raise EmoheadInputError(
                        f"FunASR returned {len(tokens)} tokens but {len(ts)} timestamps for {text!r}.",
                        path=origin,
                        fix="use an ASR model that outputs per-token timestamps (Paraformer).",
                    )
            word, w0, w1 = "", None, None
            for tok, (a, b) in zip(tokens, ts):
                a, b = float(a) / 1000.0, float(b) / 1000.0
                if w0 is None:
                    w0 = a
                w1 = b
                if tok.endswith(_BPE_CONT):
                    word += tok[: -len(_BPE_CONT)]
                    continue
                rows.append((word + tok, w0, w1))
                word, w0, w1 = "", None, None
            if word:
                rows.append((word, w0, w1))
    if not rows:
        return empty_transcript()
    return _check(pd.DataFrame(rows, columns=["token", "start_s", "end_s"]), origin)


def parse_whisper_words(segments, origin: str = "faster-whisper") -> pd.DataFrame:
    """faster-whisper segments (with ``word_timestamps=True``) -> transcript table (words
    stripped of surrounding whitespace; empty words dropped)."""
    rows = []
    for seg in segments:
        for w in seg.words or []:
            tok = w.word.strip()
            if tok:
                rows.append((tok, float(w.start), float(w.end)))
    if not rows:
        return empty_transcript()
    return _check(pd.DataFrame(rows, columns=["token", "start_s", "end_s"]), origin)


class ASR:
    engine = "?"

    def __init__(self, cfg: dict[str, Any], source: ModelSource, config_key: str):
        self.cfg = dict(cfg)
        self.source = source
        self.config_key = config_key

    def identity(self) -> dict[str, Any]:
        return asr_identity_of(self.cfg, self.source)

    def transcribe(self, wave: np.ndarray) -> pd.DataFrame:
        raise NotImplementedError


class WhisperASR(ASR):
    engine = "faster_whisper"

    def __init__(self, cfg, source, config_key, threads=1):
        super().__init__(cfg, source, config_key)
        from .encoders import load_faster_whisper

        self.fw = load_faster_whisper(
            str(source.local_dir), cfg.get("compute_type", "float32"), int(threads or 1)
        )

    def transcribe(self, wave):
        segments, _ = self.fw.transcribe(
            np.asarray(wave, np.float32),
            language=self.cfg.get("language", "en"),
            beam_size=int(self.cfg.get("beam_size", 5)),
            word_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return parse_whisper_words(list(segments))


class ParaformerASR(ASR):
    engine = "paraformer"

    def __init__(self, cfg, source, config_key, threads=1):
        super().__init__(cfg, source, config_key)
        self.model = load_funasr_model(
            source.local_dir,
            threads=threads,
            config_key=config_key,
            what="the ASR model",
            fix="point it at a FunASR Paraformer directory (config.yaml + model.pt + tokens).",
        )

    def transcribe(self, wave):
        # output_timestamp: Paraformer's CIF-peak token timestamps (off by default in FunASR)
        res = self.model.generate(
            input=np.asarray(wave, np.float32),
            disable_pbar=True,
            output_timestamp=True,
            batch_size_s=int(self.cfg.get("batch_size_s", 300)),
        )
        return parse_funasr_result(res, origin=str(self.source.local_dir))


ENGINES = {"faster_whisper": WhisperASR, "paraformer": ParaformerASR}


def asr_identity_of(cfg: dict[str, Any], source: ModelSource) -> dict[str, Any]:
    """The ASR part of a cache key (computable without loading the model)."""
    opts = {k: v for k, v in sorted(cfg.items()) if k not in ("engine", "model", "revision")}
    return {
        "engine": cfg.get("engine"),
        "model": cfg.get("model"),
        "revision": source.revision,
        "options": opts,
    }


def resolve_asr_source(cfg: dict[str, Any], config_key: str) -> ModelSource:
    engine = cfg.get("engine")
    if engine not in ENGINES:
        raise EmoheadInputError(
            f"unknown ASR engine {engine!r}; expected one of {sorted(ENGINES)}.", path=f"{config_key}.engine"
        )
    return resolve_model_dir(
        cfg.get("model") or "", config_key=f"{config_key}.model", revision=cfg.get("revision")
    )


def build_asr(
    cfg: dict[str, Any], config_key: str, threads: int | None = 1, source: ModelSource | None = None
) -> ASR:
    source = source or resolve_asr_source(cfg, config_key)
    return ENGINES[cfg["engine"]](cfg, source, config_key, threads=threads)


def write_transcript(path: str | Path, df: pd.DataFrame, meta: dict[str, str]) -> None:
    table = pa.Table.from_pandas(
        df[["token", "start_s", "end_s"]], schema=TRANSCRIPT_SCHEMA, preserve_index=False
    )
    table = table.replace_schema_metadata({f"emohead.{k}": str(v) for k, v in meta.items()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_transcript(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise EmoheadInputError(
            "transcript not found.", path=path, fix="run the features stage's transcript rule."
        )
    return pq.read_table(path).to_pandas()


def transcript_digest(df: pd.DataFrame) -> str:
    import hashlib

    h = hashlib.sha256()
    for tok, a, b in zip(df["token"], df["start_s"], df["end_s"]):
        h.update(f"{tok}\t{float(a):.6f}\t{float(b):.6f}\n".encode())
    return h.hexdigest()
