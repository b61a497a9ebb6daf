"""Audio-expression module (paper Sec. III-A/B/D): FusedAttn over audio, emotion and text
features -> (alpha_tilde, tau), hyperplane refinement alpha_hat = alpha_tilde + tau w_z, and
its contrastive training (eq. 13). Inference: :func:`emohead_core.audio2exp.infer.predict_alpha`."""

from .model import (  # noqa: F401
    EMOTION_INDEX,
    Audio2Exp,
    Audio2ExpTransformer,
    ModelConfig,
    build_model,
    refine,
    renderer_input_without_refinement,
    window_fusion,
)
