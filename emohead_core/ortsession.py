"""onnxruntime sessions for the pipeline's exported models (FaceBoxes, 3DDFA_V2 regressor)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import EmoheadInputError


def providers(device: str | None = "auto") -> list[str]:
    """Execution providers: CUDA first when available (unless ``device='cpu'``), CPU last."""
    import onnxruntime as ort

    out = []
    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        out.append("CUDAExecutionProvider")
    out.append("CPUExecutionProvider")
    return out


def open_session(onnx_path: str | os.PathLike, *, providers_: list[str] | None = None,
                 threads: int | None = None, what: str, fix: str):
    """An ``InferenceSession`` for ``onnx_path``; a missing file is an input error naming ``fix``.

    ``threads`` caps intra-op threads (one inter-op thread) so Snakemake's ``threads:`` holds.
    Idle worker threads sleep instead of spinning: the pipeline runs ffmpeg (decoding,
    encoding) beside the models, and spinning workers would take its cores.
    """
    import onnxruntime as ort

    if not Path(onnx_path).is_file():
        raise EmoheadInputError(f"{what} ONNX model not found.", path=onnx_path, fix=fix)
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), sess_options=so, providers=providers_ or providers())
