"""Audio-expression module (paper Sec. III-A/B/D): FusedAttn over audio, emotion and text
features -> (alpha_tilde, tau), hyperplane refinement alpha_hat = alpha_tilde + tau w_z, and
its contrastive training (eq. 13). Inference: :func:`emohead_core.audio2exp.infer.predict_alpha`."""

_MODEL_NAMES = (
    "EMOTION_INDEX",
    "Audio2Exp",
    "Audio2ExpTransformer",
    "ModelConfig",
    "build_model",
    "refine",
    "renderer_input_without_refinement",
    "window_fusion",
)
__all__ = list(_MODEL_NAMES)


def __getattr__(name):
    # Lazy (PEP 562): importing a submodule such as ``.pipeline`` (done by the Snakefile at
    # parse time) must not import torch.
    if name in _MODEL_NAMES:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
