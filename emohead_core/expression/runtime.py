"""Inference backends for the 3DDFA_V2 regressor: ONNX export (cached asset) and batched
onnxruntime / PyTorch execution of normalised 120x120 crops (torch is imported only by the
export and the PyTorch backend)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io import atomic_path, sha256_file
from ..ortsession import BatchSplitter, open_session, providers
from .tddfa import INPUT_SIZE

ONNX_OPSET = 17


def export_onnx(pth_path: str | os.PathLike, onnx_path: str | os.PathLike, widen_factor: float = 0.5) -> Path:
    """Export the regressor (input ``input`` (N, 3, 120, 120) normalised BGR, output ``param``
    (N, 62) normalised) with a dynamic batch axis; the checkpoint hash goes into the metadata."""
    import onnx
    import torch

    from .mobilenet import load_mobilenet

    model = load_mobilenet(pth_path, widen_factor)
    dummy = torch.zeros(2, 3, INPUT_SIZE, INPUT_SIZE)
    onnx_path = Path(onnx_path)
    with atomic_path(onnx_path) as tmp:
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            input_names=["input"],
            output_names=["param"],
            dynamic_axes={"input": {0: "batch"}, "param": {0: "batch"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
        m = onnx.load(str(tmp))
        for k, v in {
            "source_checkpoint": Path(pth_path).name,
            "source_sha256": sha256_file(pth_path),
            "widen_factor": str(widen_factor),
        }.items():
            entry = m.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(m, str(tmp))
    return onnx_path


onnx_providers = providers  # CUDA first when available, CPU last


class OnnxRegressor:
    """Batched onnxruntime execution: normalised (N, 3, 120, 120) -> raw (N, 62). Each batch
    runs as ``threads`` parts in parallel, one thread each
    (:class:`~emohead_core.ortsession.BatchSplitter`; None / 0: one call, onnxruntime's default
    threads)."""

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        providers: list[str] | None = None,
        batch_size: int = 64,
        threads: int | None = None,
    ):
        onnx_path = Path(onnx_path)
        self.session = open_session(
            onnx_path,
            providers_=providers,
            threads=1 if threads else 0,
            what="3DDFA_V2",
            fix="run the rule export_3ddfa_onnx (or FaceModel with a writable onnx_dir).",
        )
        self._runner = BatchSplitter(self.session, threads)
        self.path = onnx_path
        self.batch_size = int(batch_size)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        outs = [
            self._runner.run(["param"], "input", x[i : i + self.batch_size])[0]
            for i in range(0, len(x), self.batch_size)
        ]
        return np.concatenate(outs, 0) if outs else np.zeros((0, 62), np.float32)


class TorchRegressor:
    """Same contract as :class:`OnnxRegressor` with the PyTorch module (no autograd)."""

    def __init__(self, model, batch_size: int = 64):
        self.model = model.eval()
        self.batch_size = int(batch_size)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        with torch.no_grad():
            outs = [self.model(x[i : i + self.batch_size]).numpy() for i in range(0, len(x), self.batch_size)]
        return np.concatenate(outs, 0) if outs else np.zeros((0, 62), np.float32)
