"""FaceBoxes face detector: PyTorch module (loads 3DDFA_V2's FaceBoxesProd.pth), ONNX export,
onnxruntime inference (CPU / CUDA providers), NumPy anchors, decoding and NMS.

``FaceDetector(onnx_path).detect(bgr_uint8) -> (N, 5) float32 [x1, y1, x2, y2, score]``.
"""

from .boxes import MEAN_BGR, MIN_SIZES, STEPS, VARIANCE, box_iou, decode, nms, prior_boxes
from .detector import FaceDetector, TorchFaceDetector, default_providers, export_onnx, preprocess_bgr

# The torch module is imported on first use only: detection with onnxruntime (the pipeline's
# path) and audio extraction do not pay for importing torch.
_LAZY = {"FaceBoxesNet": "model", "load_faceboxes": "model"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FaceBoxesNet",
    "FaceDetector",
    "MEAN_BGR",
    "MIN_SIZES",
    "STEPS",
    "TorchFaceDetector",
    "VARIANCE",
    "box_iou",
    "decode",
    "default_providers",
    "export_onnx",
    "load_faceboxes",
    "nms",
    "preprocess_bgr",
    "prior_boxes",
]
