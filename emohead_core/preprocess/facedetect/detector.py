"""Face detection API used by the pipeline: FaceBoxes through onnxruntime (or torch)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...io import atomic_path
from ...ortsession import BatchSplitter, open_session, providers
from .boxes import MEAN_BGR, decode, nms, prior_boxes

# 3DDFA_V2 FaceBoxes test settings
CONF_THRESHOLD = 0.05  # candidates kept before NMS
TOP_K = 5000
NMS_THRESHOLD = 0.3
KEEP_TOP_K = 750


def preprocess_bgr(images: np.ndarray) -> np.ndarray:
    """(H, W, 3) or (N, H, W, 3) uint8 BGR -> (N, 3, H, W) float32 minus the BGR mean."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) or (N, H, W, 3) BGR images, got shape {x.shape}")
    out = np.empty((x.shape[0], 3) + x.shape[1:3], np.float32)
    for c in range(3):  # one pass per channel straight into NCHW (3x faster than cast, subtract, transpose)
        np.subtract(x[..., c], np.float32(MEAN_BGR[c]), out=out[:, c], dtype=np.float32)
    return out


class _Detector:
    """Shared post-processing: decode, threshold, NMS, scale back to input pixels."""

    def __init__(
        self, threshold: float = 0.5, nms_threshold: float = NMS_THRESHOLD, max_side: int | None = None
    ):
        self.threshold = float(threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_side = max_side

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _resize(self, frames: np.ndarray) -> tuple[np.ndarray, float]:
        h, w = frames.shape[1:3]
        if not self.max_side or max(h, w) <= self.max_side:
            return frames, 1.0
        import cv2

        s = self.max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        return np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]), s

    def detect_batch(self, frames: np.ndarray) -> list[np.ndarray]:
        """Detections of each frame of a (N, H, W, 3) uint8 BGR batch (same size)."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 BGR images, got {frames.dtype}")
        small, scale = self._resize(frames)
        h, w = small.shape[1:3]
        loc, conf = self._forward(preprocess_bgr(small))
        priors = prior_boxes(h, w)
        out = []
        for b in range(loc.shape[0]):
            scores = conf[b, :, 1]
            idx = np.nonzero(scores > CONF_THRESHOLD)[0]
            idx = idx[np.argsort(-scores[idx], kind="stable")][:TOP_K]
            boxes = decode(loc[b, idx], priors[idx]) * np.array([w, h, w, h], np.float32)
            dets = np.concatenate([boxes, scores[idx, None]], axis=1).astype(np.float32)
            dets = dets[nms(dets, self.nms_threshold)][:KEEP_TOP_K]
            dets = dets[dets[:, 4] >= self.threshold]
            dets[:, :4] /= scale
            out.append(np.ascontiguousarray(dets, dtype=np.float32))
        return out

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Faces in one uint8 BGR image: (N, 5) float32 [x1, y1, x2, y2, score] in the image's
        pixel coordinates, sorted by score (descending), score >= ``threshold``."""
        image = np.asarray(image)
        if image.ndim != 3:
            raise ValueError(f"expected one (H, W, 3) BGR image, got shape {image.shape}")
        return self.detect_batch(image[None])[0]


default_providers = providers  # CUDA first when available (unless device='cpu'), CPU last


class FaceDetector(_Detector):
    """FaceBoxes exported to ONNX (:func:`export_onnx`), run with onnxruntime.

    ``providers`` defaults to CUDA when onnxruntime offers it, else CPU. ``threads``: a batch
    of frames runs as ``threads`` parts in parallel, one thread each
    (:class:`~emohead_core.ortsession.BatchSplitter`; 0 = one call with onnxruntime's default
    threads). ``max_side`` downscales larger inputs before detection (boxes are returned in
    the input's coordinates).
    """

    def __init__(
        self,
        onnx_path: str | os.PathLike,
        providers: list[str] | None = None,
        *,
        threshold: float = 0.5,
        nms_threshold: float = NMS_THRESHOLD,
        max_side: int | None = None,
        threads: int = 0,
    ):
        super().__init__(threshold, nms_threshold, max_side)
        self.session = open_session(
            onnx_path,
            providers_=providers,
            threads=1 if threads else 0,
            what="FaceBoxes",
            fix="run rule export_faceboxes_onnx (or facedetect.export_onnx).",
        )
        self.input_name = self.session.get_inputs()[0].name
        self._runner = BatchSplitter(self.session, threads)

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def _forward(self, x):
        loc, conf = self._runner.run(["loc", "conf"], self.input_name, x)
        return loc, conf


class TorchFaceDetector(_Detector):
    """The same detector running the PyTorch module (reference for tests and benchmarks)."""

    def __init__(
        self,
        weights_or_net,
        *,
        threshold: float = 0.5,
        nms_threshold: float = NMS_THRESHOLD,
        max_side: int | None = None,
        device: str = "cpu",
    ):
        super().__init__(threshold, nms_threshold, max_side)
        from .model import FaceBoxesNet, load_faceboxes

        self.device = device
        self.net = (
            weights_or_net
            if isinstance(weights_or_net, FaceBoxesNet)
            else load_faceboxes(str(weights_or_net), device=device)
        )
        self.net.eval()

    def _forward(self, x):
        import torch

        with torch.inference_mode():
            loc, conf = self.net(torch.from_numpy(x).to(self.device))
        return loc.cpu().numpy(), conf.cpu().numpy()


def export_onnx(
    weights: str | os.PathLike, onnx_path: str | os.PathLike, *, opset: int = 17, check: bool = True
) -> Path:
    """Export FaceBoxes (weights ``FaceBoxesProd.pth``) to ONNX with dynamic batch and image
    size (atomic write). With ``check`` the exported model is run once with onnxruntime on a
    random image and compared with torch."""
    import torch

    from .model import load_faceboxes

    net = load_faceboxes(str(weights))
    dummy = torch.randn(1, 3, 256, 320) * 50
    with atomic_path(onnx_path) as tmp:
        torch.onnx.export(
            net,
            (dummy,),
            str(tmp),
            input_names=["input"],
            output_names=["loc", "conf"],
            dynamic_axes={
                "input": {0: "batch", 2: "height", 3: "width"},
                "loc": {0: "batch", 1: "anchors"},
                "conf": {0: "batch", 1: "anchors"},
            },
            opset_version=opset,
            dynamo=False,
        )
        if check:
            import onnxruntime as ort

            sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            x = (torch.rand(1, 3, 200, 300) * 255 - 117).numpy()
            loc, conf = sess.run(["loc", "conf"], {"input": x})
            with torch.inference_mode():
                tl, tc = net(torch.from_numpy(x))
            err = max(float(np.abs(loc - tl.numpy()).max()), float(np.abs(conf - tc.numpy()).max()))
            if err > 1e-3:
                raise RuntimeError(f"ONNX export of FaceBoxes disagrees with torch (max abs err {err})")
    return Path(onnx_path)
