"""FaceBoxes (Zhang et al., "FaceBoxes: A CPU Real-time Face Detector with High Accuracy",
IJCB 2017), written to load 3DDFA_V2's ``FaceBoxesProd.pth`` state dict unchanged.

Network (input: BGR image minus the mean (104, 117, 123), NCHW float32, any size):

- Rapidly Digested Convolutional Layers: ``conv1`` CReLU 7x7/4 (24 -> 48 ch), max-pool 3x3/2,
  ``conv2`` CReLU 5x5/2 (64 -> 128 ch), max-pool 3x3/2;
- Multiple Scale Convolutional Layers: three Inception blocks (128 ch, stride 32: detection
  source 1), ``conv3_1/3_2`` (256 ch, stride 64: source 2), ``conv4_1/4_2`` (256 ch, stride 128:
  source 3);
- multibox heads (3x3 conv): 21 anchors per cell on source 1 (anchor densification: 16 of
  size 32, 4 of size 64, 1 of size 128), one anchor (256, 512) on sources 2 and 3.

Outputs ``loc`` (N, A, 4) box offsets and ``conf`` (N, A, 2) softmax scores (index 1 = face),
A anchors ordered as :func:`emohead_core.preprocess.facedetect.boxes.prior_boxes`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# anchors per cell of each detection source (anchor densification of the 32 / 64 px anchors)
ANCHORS_PER_CELL = (21, 1, 1)


class BasicConv2d(nn.Module):
    """conv (no bias) -> batch norm -> ReLU."""

    def __init__(self, cin: int, cout: int, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


class CRelu(nn.Module):
    """conv -> batch norm -> concat(x, -x) -> ReLU (doubles the channels)."""

    def __init__(self, cin: int, cout: int, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5)

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(torch.cat([x, -x], dim=1), inplace=True)


class Inception(nn.Module):
    """128 -> 128 channels: 1x1 | avg-pool + 1x1 | 1x1 + 3x3 | 1x1 + 3x3 + 3x3 (32 each)."""

    def __init__(self):
        super().__init__()
        self.branch1x1 = BasicConv2d(128, 32, kernel_size=1, padding=0)
        self.branch1x1_2 = BasicConv2d(128, 32, kernel_size=1, padding=0)
        self.branch3x3_reduce = BasicConv2d(128, 24, kernel_size=1, padding=0)
        self.branch3x3 = BasicConv2d(24, 32, kernel_size=3, padding=1)
        self.branch3x3_reduce_2 = BasicConv2d(128, 24, kernel_size=1, padding=0)
        self.branch3x3_2 = BasicConv2d(24, 32, kernel_size=3, padding=1)
        self.branch3x3_3 = BasicConv2d(32, 32, kernel_size=3, padding=1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b2 = self.branch1x1_2(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        b3 = self.branch3x3(self.branch3x3_reduce(x))
        b4 = self.branch3x3_3(self.branch3x3_2(self.branch3x3_reduce_2(x)))
        return torch.cat([b1, b2, b3, b4], dim=1)


class FaceBoxesNet(nn.Module):
    """The FaceBoxes network (test phase: ``conf`` is softmax-normalised)."""

    def __init__(self, num_classes: int = 2):
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = CRelu(3, 24, kernel_size=7, stride=4, padding=3)
        self.conv2 = CRelu(48, 64, kernel_size=5, stride=2, padding=2)
        self.inception1 = Inception()
        self.inception2 = Inception()
        self.inception3 = Inception()
        self.conv3_1 = BasicConv2d(128, 128, kernel_size=1, stride=1, padding=0)
        self.conv3_2 = BasicConv2d(128, 256, kernel_size=3, stride=2, padding=1)
        self.conv4_1 = BasicConv2d(256, 128, kernel_size=1, stride=1, padding=0)
        self.conv4_2 = BasicConv2d(128, 256, kernel_size=3, stride=2, padding=1)
        chans = (128, 256, 256)
        self.loc = nn.ModuleList(
            nn.Conv2d(c, a * 4, kernel_size=3, padding=1) for c, a in zip(chans, ANCHORS_PER_CELL)
        )
        self.conf = nn.ModuleList(
            nn.Conv2d(c, a * num_classes, kernel_size=3, padding=1) for c, a in zip(chans, ANCHORS_PER_CELL)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)
        x = F.max_pool2d(self.conv2(x), kernel_size=3, stride=2, padding=1)
        x = self.inception3(self.inception2(self.inception1(x)))
        s1 = x
        x = self.conv3_2(self.conv3_1(x))
        s2 = x
        x = self.conv4_2(self.conv4_1(x))
        s3 = x
        n = x.shape[0]
        locs, confs = [], []
        for src, lh, ch in zip((s1, s2, s3), self.loc, self.conf):
            # (N, C, H, W) -> (N, H, W, C): anchors ordered row-major over cells, then per cell
            locs.append(lh(src).permute(0, 2, 3, 1).reshape(n, -1, 4))
            confs.append(ch(src).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes))
        loc = torch.cat(locs, dim=1)
        conf = F.softmax(torch.cat(confs, dim=1), dim=-1)
        return loc, conf


def load_faceboxes(weights: str, *, device: str = "cpu") -> FaceBoxesNet:
    """FaceBoxesNet in eval mode with the weights of ``FaceBoxesProd.pth`` (``weights_only=True``;
    a ``module.`` prefix from DataParallel training is stripped)."""
    sd = torch.load(weights, map_location=device, weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    sd = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in sd.items()}
    net = FaceBoxesNet()
    net.load_state_dict(sd, strict=True)
    return net.eval().to(device)
