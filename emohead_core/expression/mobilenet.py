"""MobileNetV1 regressor of 3DDFA_V2 (62 normalised 3DMM parameters from a 120x120 BGR crop).

Our own module whose parameter names match the upstream checkpoints ``mb05_120x120.pth``
(widen factor 0.5) and ``mb1_120x120.pth`` (widen factor 1.0) after stripping the ``module.``
prefix of the multi-GPU training wrapper: stem ``conv1``/``bn1``, thirteen depthwise-separable
blocks ``dw2_1 .. dw6`` (each ``conv_dw``/``bn_dw``/``conv_sep``/``bn_sep``), global average pool,
and the linear head ``fc_param`` (62 outputs). Upstream checkpoints also carry an auxiliary
``fc_lm`` head (136 = 68 x 2 landmark outputs, unused at inference); it is loaded when present
so that the state dict matches exactly, but ``forward`` only returns the 62 parameters.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import EmoheadInputError

# (name, out_channels at widen 1.0, stride) of the depthwise-separable blocks
_BLOCKS = [
    ("dw2_1", 64, 1),
    ("dw2_2", 128, 2),
    ("dw3_1", 128, 1),
    ("dw3_2", 256, 2),
    ("dw4_1", 256, 1),
    ("dw4_2", 512, 2),
    ("dw5_1", 512, 1),
    ("dw5_2", 512, 1),
    ("dw5_3", 512, 1),
    ("dw5_4", 512, 1),
    ("dw5_5", 512, 1),
    ("dw5_6", 1024, 2),
    ("dw6", 1024, 1),
]


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv + BN + ReLU, then 1x1 pointwise conv + BN + ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv_dw = nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False)
        self.bn_dw = nn.BatchNorm2d(c_in)
        self.conv_sep = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn_sep = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn_dw(self.conv_dw(x)))
        return torch.relu(self.bn_sep(self.conv_sep(x)))


class MobileNetV1(nn.Module):
    """MobileNetV1 with ``widen_factor`` channel multiplier and a 62-d regression head."""

    def __init__(self, widen_factor: float = 0.5, num_params: int = 62, with_lm_head: bool = True):
        super().__init__()
        self.widen_factor = float(widen_factor)

        def ch(c: int) -> int:
            return int(c * widen_factor)

        self.conv1 = nn.Conv2d(3, ch(32), 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch(32))
        c_in = ch(32)
        for name, c_out, stride in _BLOCKS:
            setattr(self, name, DepthwiseSeparable(c_in, ch(c_out), stride))
            c_in = ch(c_out)
        self.fc_param = nn.Linear(c_in, num_params)
        # auxiliary 68x2 landmark head of the upstream training; kept to match the checkpoint
        self.fc_lm = nn.Linear(c_in, 136) if with_lm_head else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        for name, _, _ in _BLOCKS:
            x = getattr(self, name)(x)
        return x.mean(dim=(2, 3))  # global average pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, 120, 120) normalised BGR -> (N, 62) normalised parameters."""
        return self.fc_param(self.features(x))


def load_mobilenet(pth_path: str | os.PathLike, widen_factor: float = 0.5) -> MobileNetV1:
    """Build :class:`MobileNetV1` and load an upstream 3DDFA_V2 checkpoint (``weights_only``).

    Accepts the upstream layout (``{"state_dict": {"module.<name>": tensor}}``), a bare state
    dict, and the older head name ``fc`` for ``fc_param``. Every tensor of the module must be
    present in the checkpoint and every checkpoint tensor must fit the module (strict load), so a
    widen-factor mismatch fails loudly. Returned in eval mode (BatchNorm uses running stats);
    gradients flow to the input, so the module can be used inside a loss.
    """
    path = Path(pth_path)
    if not path.is_file():
        raise EmoheadInputError(
            "3DDFA_V2 checkpoint not found.",
            path=path,
            fix="resolve the asset (rule fetch_asset) or set expression.checkpoint.",
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise EmoheadInputError(
            "not a 3DDFA_V2 checkpoint (no state dict).",
            path=path,
            fix="give mb05_120x120.pth or mb1_120x120.pth from 3DDFA_V2.",
        )
    clean = {}
    for k, v in sd.items():
        k = k[len("module.") :] if k.startswith("module.") else k
        if k.startswith("fc."):
            k = "fc_param." + k[3:]
        clean[k] = v
    model = MobileNetV1(widen_factor=widen_factor, with_lm_head="fc_lm.weight" in clean)
    try:
        model.load_state_dict(clean, strict=True)
    except RuntimeError as e:
        raise EmoheadInputError(
            f"checkpoint does not match MobileNetV1(widen_factor={widen_factor}): {str(e)[:300]}",
            path=path,
            fix="set expression.widen_factor to the checkpoint's (0.5 for mb05, 1.0 for mb1).",
        ) from e
    return model.eval()
