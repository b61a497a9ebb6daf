"""Per-(clip, encoder) feature files and the content-addressed cache behind them.

File format (``results/{dataset}/features/{encoder}/{actor}/{sample}.parquet``)
-------------------------------------------------------------------------
Columns ``frame`` (int32, 0..T-1) and ``feature`` (fixed-size list<float16|float32>[D]);
schema metadata (``emohead.*`` keys, UTF-8 strings): encoder name, role, kind, model id,
revision (hub commit or weight sha256), sample rate, fps, dim, dtype, code version, cache key,
audio sha256, and the encoder's silence vector (base64 float32) used for Fig. 9 padding.
All clips of one encoder share one schema, so ``pyarrow.dataset.dataset(dir)`` reads them as
one table (files starting with ``.``/``_`` such as in-flight temp files are ignored).

Cache key
---------
``key = sha256(audio content sha256, encoder identity, T, fps)``, where the encoder identity is
the canonical JSON of (kind, model id, revision/weight hash, layer, pooling, dtype, and for text
features the ASR identity). Changing the audio bytes or the encoder recomputes; nothing else
does (paths, sample ids, unrelated config, code edits that keep CODE_VERSION). Computed files
are kept in a content-addressed store ``{store}/{encoder}/{key}.parquet`` and hard-linked (or
copied) to the output path: Snakemake deletes a job's outputs before re-running it, so the
store, not the output, is what makes a re-triggered job cheap.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import EmoheadInputError
from ..io import atomic_path, sha256_file

# Bump when the feature computation changes in a way that invalidates cached files.
CODE_VERSION = "features-1"
META_PREFIX = "emohead."


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def cache_key(audio_sha256: str, identity: dict, n_frames: int, fps: float) -> str:
    payload = canonical_json(
        {
            "audio": audio_sha256,
            "encoder": identity,
            "T": int(n_frames),
            "fps": float(fps),
            "code": CODE_VERSION,
        }
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def audio_sha256(path: str | Path) -> str:
    return sha256_file(path)


def _pa_dtype(dtype: str):
    if dtype not in ("float16", "float32"):
        raise EmoheadInputError(
            f"feature dtype must be float16 or float32, got {dtype!r}.", path="features.dtype"
        )
    return pa.float16() if dtype == "float16" else pa.float32()


def encode_vector(v: np.ndarray) -> str:
    return base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4").copy()


def features_table(feats: np.ndarray, meta: dict[str, Any], dtype: str = "float16") -> pa.Table:
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 2:
        raise ValueError(f"features must be (T, D), got {feats.shape}")
    T, D = feats.shape
    if not np.all(np.isfinite(feats)):
        raise ValueError("features contain NaN/inf")
    np_dtype = np.float16 if dtype == "float16" else np.float32
    if dtype == "float16" and feats.size and float(np.abs(feats).max()) > 65504.0:
        raise EmoheadInputError(
            f"feature values up to {float(np.abs(feats).max()):.3g} overflow float16.",
            path=str(meta.get("encoder", "features")),
            fix="set features.dtype: float32.",
        )
    values = pa.array(feats.astype(np_dtype).reshape(-1), type=_pa_dtype(dtype))
    col = pa.FixedSizeListArray.from_arrays(values, D)
    md = {f"{META_PREFIX}{k}": (v if isinstance(v, str) else canonical_json(v)) for k, v in meta.items()}
    md[f"{META_PREFIX}dim"] = str(D)
    md[f"{META_PREFIX}dtype"] = dtype
    md[f"{META_PREFIX}code_version"] = CODE_VERSION
    schema = pa.schema([("frame", pa.int32()), ("feature", col.type)], metadata=md)
    return pa.Table.from_arrays([pa.array(np.arange(T, dtype=np.int32)), col], schema=schema)


def write_features(path: str | Path, feats: np.ndarray, meta: dict[str, Any], dtype: str = "float16") -> None:
    """Write one clip's features atomically (temp file + rename)."""
    table = features_table(feats, meta, dtype)
    with atomic_path(path) as tmp:
        # no dictionary pages: feature values rarely repeat, and dictionary fallback pages
        # read ~2x slower (bench/bench_features.py)
        pq.write_table(
            table, tmp, compression="zstd", use_dictionary=False, row_group_size=max(1, table.num_rows)
        )


def _decode_meta(md: dict | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (md or {}).items():
        k, v = k.decode(), v.decode()
        if not k.startswith(META_PREFIX):
            continue
        k = k[len(META_PREFIX) :]
        if k == "silence":
            out[k] = decode_vector(v)
            continue
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def read_meta(path: str | Path) -> dict[str, Any]:
    """The ``emohead.*`` schema metadata of a feature file (values JSON-decoded where possible;
    ``silence`` decoded to a float32 vector)."""
    return _decode_meta(pq.read_schema(path).metadata)


def read_features(path: str | Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(frames int32 (T,), feats float32 (T, D), meta)`` of one feature file."""
    path = Path(path)
    if not path.is_file():
        raise EmoheadInputError(
            "feature file not found.",
            path=path,
            fix="run the features stage (snakemake ... features) for this sample.",
        )
    table = pq.read_table(path, use_threads=False)
    frames = table.column("frame").to_numpy().astype(np.int32, copy=False)
    col = table.column("feature")
    D = col.type.list_size
    chunks = [c.values.to_numpy(zero_copy_only=False) for c in col.chunks]
    flat = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    feats = flat.reshape(-1, D).astype(np.float32)
    return frames, feats, _decode_meta(table.schema.metadata)


def open_dataset(directory: str | Path):
    """All clips of one (dataset, encoder) as one ``pyarrow.dataset`` (add ``__filename`` to
    the columns to know which clip a row came from)."""
    import pyarrow.dataset as pads

    return pads.dataset(str(directory), format="parquet")


class FeatureStore:
    """Content-addressed store: ``{root}/{encoder}/{key[:2]}/{key}.parquet``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, encoder: str, key: str) -> Path:
        return self.root / encoder / key[:2] / f"{key}.parquet"

    def lookup(self, encoder: str, key: str) -> Path | None:
        p = self.path(encoder, key)
        if not p.is_file():
            return None
        try:
            if read_meta(p).get("cache_key") != key:
                return None
        except Exception:  # noqa: BLE001 - a corrupt entry is just a miss
            return None
        return p

    def put(self, encoder: str, key: str, feats: np.ndarray, meta: dict, dtype: str) -> Path:
        p = self.path(encoder, key)
        write_features(p, feats, {**meta, "cache_key": key}, dtype)
        return p


def link_or_copy(src: str | Path, dst: str | Path) -> None:
    """Materialise ``src`` at ``dst`` atomically: hard link when on one filesystem, else copy."""
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        # fresh mtime: Snakemake's mtime trigger compares the output with its inputs
        os.utime(tmp)
