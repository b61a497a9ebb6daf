"""onnxruntime sessions for the pipeline's exported models (FaceBoxes, 3DDFA_V2 regressor)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .errors import EmoheadInputError


def providers(device: str | None = "auto") -> list[str]:
    """Execution providers: CUDA first when available (unless ``device='cpu'``), CPU last."""
    import onnxruntime as ort

    out = []
    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        out.append("CUDAExecutionProvider")
    out.append("CPUExecutionProvider")
    return out


def open_session(
    onnx_path: str | os.PathLike,
    *,
    providers_: list[str] | None = None,
    threads: int | None = None,
    what: str,
    fix: str,
):
    """An ``InferenceSession`` for ``onnx_path``; a missing file is an input error naming ``fix``.

    ``threads`` caps intra-op threads (one inter-op thread) so Snakemake's ``threads:`` holds
    (0 / None: onnxruntime's default, all cores). Idle worker threads sleep instead of
    spinning: the pipeline runs ffmpeg (decoding, encoding) beside the models, and spinning
    workers would take its cores.
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


class BatchSplitter:
    """Runs a session on a batch split into ``threads`` parts, one per thread, each part with
    one intra-op thread (open the session with ``threads=1``).

    For these small CNNs splitting the batch keeps the cores busier than intra-op threads,
    which wait for each other after every layer and lose much of their gain when another
    process holds a core. The models treat the samples of a batch independently, so the
    results are the same to the bit for any split (tested). ``threads`` <= 1, a batch smaller
    than two, or a CUDA session run the batch in one call.
    """

    def __init__(self, session, threads: int | None):
        self.session = session
        cuda = "CUDAExecutionProvider" in session.get_providers()
        self.parts = 1 if cuda else max(1, int(threads or 1))
        self._pool: ThreadPoolExecutor | None = None

    def run(self, output_names: list[str], input_name: str, x: np.ndarray) -> list[np.ndarray]:
        parts = min(self.parts, len(x))
        if parts <= 1:
            return self.session.run(output_names, {input_name: x})
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.parts - 1, thread_name_prefix="onnx")
        cuts = np.linspace(0, len(x), parts + 1).astype(int)
        later = [
            self._pool.submit(self.session.run, output_names, {input_name: x[a:b]})
            for a, b in zip(cuts[1:-1], cuts[2:])
        ]
        first = self.session.run(output_names, {input_name: x[cuts[0] : cuts[1]]})
        outs = [first] + [f.result() for f in later]
        return [np.concatenate([o[k] for o in outs]) for k in range(len(output_names))]
