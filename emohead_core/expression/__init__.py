"""3DDFA_V2 expression extraction (paper Sec. III-B, Appendix A): per-frame 3DMM parameters
(pose 12, shape 40, expression 10), 68 landmarks, head pose and mouth aspect ratio.

Public API used by the other stages:

* :class:`FaceModel` - detector + regressor on BGR uint8 images -> :class:`Face` list.
* :func:`load_mobilenet`, :func:`params_from_crop_tensor`, :func:`roi_crop_tensor`,
  :func:`load_param_stats` - the differentiable PyTorch path (renderer's shape loss).
* :func:`extract_clip` - per-clip Parquet; :func:`read_expression` reads it (see ``schema``).
* :func:`mouth_aspect_ratio`.
"""

from .extract import extract_clip, fit_frames
from .facemodel import Face, FaceModel
from .mobilenet import MobileNetV1, load_mobilenet
from .runtime import OnnxRegressor, TorchRegressor, export_onnx
from .schema import read_expression, read_expression_metadata, write_expression
from .tddfa import (
    load_bfm_keypoints,
    load_param_stats,
    mouth_aspect_ratio,
    params_from_crop_tensor,
    pose_from_params,
    reconstruct_landmarks,
    roi_box_from_bbox,
    roi_box_from_landmarks,
    roi_crop_tensor,
)

__all__ = [
    "Face", "FaceModel", "MobileNetV1", "OnnxRegressor", "TorchRegressor", "export_onnx", "extract_clip",
    "fit_frames", "load_bfm_keypoints", "load_mobilenet", "load_param_stats", "mouth_aspect_ratio",
    "params_from_crop_tensor", "pose_from_params", "read_expression", "read_expression_metadata",
    "reconstruct_landmarks", "roi_box_from_bbox", "roi_box_from_landmarks", "roi_crop_tensor",
    "write_expression",
]
