"""3DDFA_V2 expression extraction (paper Sec. III-B, Appendix A): per-frame 3DMM parameters
(pose 12, shape 40, expression 10), 68 landmarks, head pose and mouth aspect ratio.

Public API used by the other stages:

* :class:`FaceModel` - detector + regressor on BGR uint8 images -> :class:`Face` list.
* :func:`load_mobilenet`, :func:`params_from_crop_tensor`, :func:`roi_crop_tensor`,
  :func:`load_param_stats` - the differentiable PyTorch path (renderer's shape loss).
* :func:`extract_clip` - per-clip Parquet; :func:`read_expression` reads it (see ``schema``).
* :func:`mouth_aspect_ratio`.
"""

_EXPORTS = {
    "extract": ("extract_clip", "extract_actor", "face_model_for_job", "fit_frames", "fit_frames_from_boxes"),
    "facemodel": ("Face", "FaceModel"),
    "mobilenet": ("MobileNetV1", "load_mobilenet"),
    "runtime": ("OnnxRegressor", "TorchRegressor", "export_onnx"),
    "schema": ("read_expression", "read_expression_metadata", "write_expression"),
    "tddfa": (
        "load_bfm_keypoints",
        "load_param_stats",
        "mouth_aspect_ratio",
        "params_from_crop_tensor",
        "pose_from_params",
        "reconstruct_landmarks",
        "roi_box_from_bbox",
        "roi_box_from_landmarks",
        "roi_crop_tensor",
    ),
}
_MODULE_OF = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    # Lazy (PEP 562): the Snakefile imports ``emohead_core.expression.plan`` when it is parsed,
    # which must not pull in torch through this package's public names.
    mod = _MODULE_OF.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{mod}", __name__), name)
