"""The per-clip expression Parquet (``results/{dataset}/expression/{actor}/{sample}.parquet``).

One row per video frame (the 25 fps crop video of preprocessing). The ONE definition of the
columns, their dtypes and meaning; other stages read the file with :func:`read_expression`.

| column | Arrow type | reader key / NumPy shape | meaning |
| --- | --- | --- | --- |
| frame | int32 | frame (T,) | frame index in the video |
| time_s | float64 | time_s (T,) | frame / fps |
| detected | bool | detected (T,) | the frame shows a face and was fitted (per-frame detection, see expression/extract.py); False: no face (parameters interpolated from neighbours, or a tracked fit kept for reference): left out of every fit and training set |
| roi_source | int8 | roi_source (T,) | 0 interpolated, 1 face detector box (on this frame), 2 tracked from the previous frame's landmarks, 3 preprocessing's face box of this frame, 4 preprocessing's box interpolated between its detections |
| box | fixed_size_list<float32>[5] | box (T, 5) | face box x1, y1, x2, y2, score the fit started from (detector or preprocessing box; tracked frames: bbox of the previous landmarks; score NaN unless detected on this frame) |
| roi_box | fixed_size_list<float32>[4] | roi_box (T, 4) | the square crop box the final parameters were regressed from |
| pose | fixed_size_list<float32>[12] | pose (T, 12) | 3x4 camera matrix row-major [s R \\| t] |
| shape | fixed_size_list<float32>[40] | shape (T, 40) | BFM identity coefficients (beta_id) |
| exp | fixed_size_list<float32>[10] | exp (T, 10) | BFM expression coefficients alpha (m = 10) |
| landmarks | fixed_size_list<float32>[204] | landmarks (T, 68, 3) | 68 keypoints, image pixels, row-major x, y, z |
| yaw, pitch, roll | float32 | (T,) | degrees (upstream matrix2angle) |
| scale | float32 | scale (T,) | scale of the camera matrix |
| mar | float32 | mar (T,) | mouth aspect ratio of the inner lips |

File metadata (key ``emohead.expression``, JSON): schema_version, fps, detect_every, backend,
widen_factor, source video name, and ``assets``: {file name: sha256} of every model file used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import EmoheadInputError
from ..io import atomic_path

SCHEMA_VERSION = 1
META_KEY = b"emohead.expression"

# name -> (arrow type, per-row width or None for scalars, numpy dtype)
COLUMNS: dict[str, tuple[pa.DataType, int | None, str]] = {
    "frame": (pa.int32(), None, "int32"),
    "time_s": (pa.float64(), None, "float64"),
    "detected": (pa.bool_(), None, "bool"),
    "roi_source": (pa.int8(), None, "int8"),
    "box": (pa.list_(pa.float32(), 5), 5, "float32"),
    "roi_box": (pa.list_(pa.float32(), 4), 4, "float32"),
    "pose": (pa.list_(pa.float32(), 12), 12, "float32"),
    "shape": (pa.list_(pa.float32(), 40), 40, "float32"),
    "exp": (pa.list_(pa.float32(), 10), 10, "float32"),
    "landmarks": (pa.list_(pa.float32(), 204), 204, "float32"),
    "yaw": (pa.float32(), None, "float32"),
    "pitch": (pa.float32(), None, "float32"),
    "roll": (pa.float32(), None, "float32"),
    "scale": (pa.float32(), None, "float32"),
    "mar": (pa.float32(), None, "float32"),
}
ROI_INTERPOLATED, ROI_DETECTED, ROI_TRACKED, ROI_BOX_DETECTED, ROI_BOX_INTERPOLATED = 0, 1, 2, 3, 4


def arrow_schema(metadata: dict | None = None) -> pa.Schema:
    fields = [pa.field(name, typ, nullable=False) for name, (typ, _, _) in COLUMNS.items()]
    meta = {META_KEY: json.dumps(metadata or {}, sort_keys=True).encode()}
    return pa.schema(fields, metadata=meta)


def write_expression(path: str | os.PathLike, data: dict[str, np.ndarray], metadata: dict) -> None:
    """Write the per-frame arrays (reader layout, see the table) atomically."""
    n = len(data["frame"])
    arrays = []
    for name, (typ, width, dtype) in COLUMNS.items():
        a = np.asarray(data[name], dtype=dtype)
        if width is None:
            if a.shape != (n,):
                raise ValueError(f"column {name}: expected shape ({n},), got {a.shape}")
            arrays.append(pa.array(a, type=typ))
        else:
            a = a.reshape(n, width)
            arrays.append(
                pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1), type=typ.value_type), width)
            )
    meta = dict(metadata)
    meta.setdefault("schema_version", SCHEMA_VERSION)
    table = pa.Table.from_arrays(arrays, schema=arrow_schema(meta))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_expression_metadata(path: str | os.PathLike) -> dict:
    raw = pq.read_schema(path).metadata or {}
    return json.loads(raw.get(META_KEY, b"{}"))


def read_expression(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an expression Parquet into NumPy arrays: 'exp' (T, 10), 'pose' (T, 12),
    'shape' (T, 40), 'landmarks' (T, 68, 3), 'mar' (T,), 'frame', 'time_s', 'detected',
    'roi_source', 'box' (T, 5), 'roi_box' (T, 4), 'yaw', 'pitch', 'roll', 'scale'."""
    path = Path(path)
    if not path.is_file():
        raise EmoheadInputError(
            "expression file not found.",
            path=path,
            fix="run the expression stage (snakemake results/<dataset>/expression/<actor>/<sample>.parquet).",
        )
    table = pq.read_table(path)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise EmoheadInputError(
            f"not an expression file: missing columns {missing}.",
            path=path,
            fix="re-run the expression stage to regenerate it.",
        )
    out: dict[str, np.ndarray] = {}
    n = table.num_rows
    for name, (_, width, dtype) in COLUMNS.items():
        col = table.column(name).combine_chunks()
        if width is None:
            out[name] = col.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
        else:
            out[name] = (
                col.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(n, width)
            )
    out["landmarks"] = out["landmarks"].reshape(n, 68, 3)
    return out
