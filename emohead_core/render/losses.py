"""Refinement losses of the second training stage (eq. 16).

L_cord  = -E_I(I_r)^T E_T(emo): CLIP image / text embeddings (L2-normalised, so the product is
          the cosine similarity), any ``transformers`` CLIPModel by hub id or local path. The
          paper's CLIP-RN50 image tower is not available in ``transformers``; see decisions.md.
          Image preprocessing without torchvision: bicubic resize to the vision tower's input
          size and the processor's mean / std (from ``preprocessor_config.json`` when present,
          else OpenAI's values).
L_shape = ||beta_id - beta_hat_id||_2 with beta_hat_id regressed by the differentiable 3DDFA
          MobileNet (``emohead_core.expression``) from the rendered head crop.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _pooled(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    return out.pooler_output


class ClipEmotionLoss(nn.Module):
    """L_cord of eq. (16). ``prompt`` is formatted with the emotion name."""

    def __init__(self, model: str, prompt: str = "a photo of a {emotion} face", device="cpu"):
        super().__init__()
        from transformers import AutoTokenizer, CLIPModel

        self.model = CLIPModel.from_pretrained(model).to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.prompt = prompt
        self.image_size = int(self.model.config.vision_config.image_size)
        mean, std = OPENAI_MEAN, OPENAI_STD
        cfg = Path(model) / "preprocessor_config.json"
        if cfg.is_file():
            pc = json.loads(cfg.read_text())
            mean, std = pc.get("image_mean", mean), pc.get("image_std", std)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), False)
        self._text: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def text_embedding(self, emotion: str) -> torch.Tensor:
        if emotion not in self._text:
            tok = self.tokenizer([self.prompt.format(emotion=emotion)], padding=True, return_tensors="pt")
            tok = {k: v.to(self.mean.device) for k, v in tok.items()}
            e = _pooled(self.model.get_text_features(**tok))
            self._text[emotion] = F.normalize(e.float(), dim=-1)
        return self._text[emotion]

    def image_embedding(self, img: torch.Tensor) -> torch.Tensor:
        """img (N, 3, h, w) RGB in [0, 1] -> normalised embeddings (N, D), differentiable."""
        x = F.interpolate(img, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False)
        x = (x.clamp(0, 1) - self.mean) / self.std
        return F.normalize(_pooled(self.model.get_image_features(pixel_values=x)).float(), dim=-1)

    def forward(self, img: torch.Tensor, emotion: str) -> torch.Tensor:
        # L_cord = -E_I(I_r)^T E_T(emo)  (eq. 16)
        return -(self.image_embedding(img) * self.text_embedding(emotion)).sum(dim=-1).mean()


class ShapeLoss(nn.Module):
    """L_shape of eq. (16) through the differentiable 3DDFA MobileNet."""

    def __init__(
        self, checkpoint: str | Path, param_stats: str | Path, widen_factor: float | None = None, device="cpu"
    ):
        super().__init__()
        from ..expression.facemodel import widen_from_name
        from ..expression.mobilenet import load_mobilenet
        from ..expression.tddfa import load_param_stats

        wf = widen_factor if widen_factor is not None else widen_from_name(Path(checkpoint).name)
        self.net = load_mobilenet(checkpoint, wf).to(device).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.stats = load_param_stats(param_stats)

    def beta_hat(self, crop_rgb: torch.Tensor) -> torch.Tensor:
        """crop (N, 3, h, w) RGB in [0, 1] (the 3DDFA ROI of the rendered frame) -> (N, 40)."""
        from ..expression.tddfa import N_POSE, N_SHAPE, params_from_crop_tensor

        return params_from_crop_tensor(self.net, crop_rgb, self.stats, rgb=True, value_range=1.0)[
            :, N_POSE : N_POSE + N_SHAPE
        ]

    def forward(self, crop_rgb: torch.Tensor, beta_id: torch.Tensor) -> torch.Tensor:
        # L_shape = ||beta_id - beta_hat_id||_2  (eq. 16)
        return (self.beta_hat(crop_rgb) - beta_id[None]).norm(dim=-1).mean()
