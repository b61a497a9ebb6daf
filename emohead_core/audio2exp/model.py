"""Audio-expression module (paper Sec. III-A, eqs. 1-9; Appendix C; ablation Appendix D).

One training/inference example is frame i of a clip. Its input is a causal window of
``L = 2n - 1`` frames (i-2n+2 .. i, silence-padded at the clip start) of the three raw
features v~ (audio), e~ (emotion), gamma~ (text). The fusion F (eq. 2's text) sums v_j + e_j
over the n neighbouring frames j-n+1..j, so the n attention positions i-n+1..i each get a full
n-frame sum; attention (eqs. 2-7) runs over those n window positions, and the output at the
last position (frame i) feeds the two FFNs (eq. 8). See docs/decisions.md.

Parameter names follow the paper: E_1, E_2, E_3 (eq. 1); W_q1, W_k1, W_q2, W_k2 (eqs. 2-3);
W_v1, W_v2, W_v3 (eqs. 5-7); FFN_1, FFN_2 (eq. 8).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

# eq. (9)/(14): alpha_hat = alpha_tilde + tau * w_z^T: emohead_core.emotion_edit.refine (works on
# torch tensors, per-frame tau and per-frame w_z).

M_EXP = 10  # alpha in R^10 (3DDFA expression, Table V)


@dataclass
class ModelConfig:
    dim_v: int  # raw audio-feature dim (HuBERT 768; offline Whisper tiny.en 384)
    dim_e: int  # raw emotion-feature dim (emotion2vec 768; offline log-mel)
    dim_gamma: int  # raw text-feature dim (LLaMA2-7B 4096; offline MiniLM 384)
    d: int = 512  # Table V
    d_h: int = 512  # Table V
    n: int = 5  # Appendix C
    ffn: tuple[int, ...] = (512, 256, 256, 128)  # Appendix C, then k
    m: int = M_EXP
    architecture: str = "fused_attn"  # fused_attn | transformer (w/o audio expression alignment)
    transformer_heads: int = 8
    transformer_layers: int = 1
    transformer_ff: int = 2048
    refinement: bool = True  # False: w/o hyperplane refinement (alpha_hat := alpha_tilde)
    extra: dict = field(default_factory=dict)

    @property
    def context(self) -> int:
        """Raw frames per example: n attention positions, each with an n-frame fusion sum."""
        return 2 * self.n - 1 if self.architecture == "fused_attn" else self.n

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ffn"] = list(self.ffn)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["ffn"] = tuple(d.get("ffn", (512, 256, 256, 128)))
        return cls(**d)


def ffn(d_in: int, widths: tuple[int, ...], k: int) -> nn.Sequential:
    """Feed-forward network with hidden widths ``widths`` and output size k (Appendix C:
    (512, 256, 256, 128, k)); ReLU between layers, linear output."""
    layers: list[nn.Module] = []
    prev = d_in
    for w in widths:
        layers += [nn.Linear(prev, w), nn.ReLU()]
        prev = w
    layers.append(nn.Linear(prev, k))
    return nn.Sequential(*layers)


def _param(rows: int, cols: int) -> nn.Parameter:
    # Glorot-uniform init for the paper's right-multiplied matrices x @ W.
    p = torch.empty(rows, cols)
    nn.init.xavier_uniform_(p)
    return nn.Parameter(p)


def window_fusion(s: torch.Tensor, n: int) -> torch.Tensor:
    """F: (B, 2n-1, d) per-frame v_j + e_j -> (B, n, d), position p = sum of the n frames ending
    at raw frame p + n - 1 (i.e. F_j = sum_{j'=j-n+1}^{j} (v_j' + e_j'))."""
    c = torch.cumsum(s, dim=1)
    zero = torch.zeros_like(c[:, :1])
    c = torch.cat([zero, c], dim=1)  # c[:, t] = sum of s[:, :t]
    return c[:, n:] - c[:, : c.shape[1] - n]


class InputNorm(nn.Module):
    """Per-dimension standardisation of a raw feature with training-set statistics (buffers)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(torch.clamp(std, min=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class _InputsAndHeads(nn.Module):
    """What both architectures share: input standardisation and the projections of eq. (1),
    and the FFN heads of eq. (8). Subclasses build their core between the two (parameters are
    created, and randomly initialised, in the same order as in a flat class) and define ``hidden``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d
        self.norm_v, self.norm_e, self.norm_gamma = (
            InputNorm(cfg.dim_v),
            InputNorm(cfg.dim_e),
            InputNorm(cfg.dim_gamma),
        )
        # eq. (1)
        self.E_1 = _param(cfg.dim_v, d)
        self.E_2 = _param(cfg.dim_e, d)
        self.E_3 = _param(cfg.dim_gamma, d)

    def _add_heads(self) -> None:
        # eq. (8)
        self.FFN_1 = ffn(3 * self.cfg.d, tuple(self.cfg.ffn), self.cfg.m)
        self.FFN_2 = ffn(3 * self.cfg.d, tuple(self.cfg.ffn), 1)

    def project(self, v_raw, e_raw, g_raw):
        """eq. (1): v = v~ E_1, e = e~ E_2, gamma = gamma~ E_3 (after input standardisation)."""
        v = self.norm_v(v_raw) @ self.E_1
        e = self.norm_e(e_raw) @ self.E_2
        gamma = self.norm_gamma(g_raw) @ self.E_3
        return v, e, gamma

    def hidden(self, v_raw, e_raw, g_raw) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, v_raw, e_raw, g_raw):
        """Windows (B, 2n-1, D_*) -> alpha_tilde (B, m), tau (B,)  (eq. 8)."""
        x = self.hidden(v_raw, e_raw, g_raw)
        return self.FFN_1(x), self.FFN_2(x).squeeze(-1)


class Audio2Exp(_InputsAndHeads):
    """FusedAttn audio-expression module: (v~, e~, gamma~) windows -> (alpha_tilde, tau)."""

    def __init__(self, cfg: ModelConfig):
        if cfg.architecture != "fused_attn":
            raise ValueError(f"Audio2Exp needs architecture fused_attn, got {cfg.architecture}")
        super().__init__(cfg)
        d, d_h = cfg.d, cfg.d_h
        # eqs. (2), (3): W_q, W_k in R^{d x d_h}
        self.W_q1 = _param(d, d_h)
        self.W_k1 = _param(d, d_h)
        self.W_q2 = _param(d, d_h)
        self.W_k2 = _param(d, d_h)
        # eqs. (5)-(7): W_v in R^{d x d}
        self.W_v1 = _param(d, d)
        self.W_v2 = _param(d, d)
        self.W_v3 = _param(d, d)
        self._add_heads()

    # -- the equations, exposed for tests ---------------------------------------------------
    def fused_attn(self, v, e, gamma):
        """eqs. (2)-(7) on projected windows (B, 2n-1, d). Returns dict of all intermediates,
        each over the n attention positions."""
        n = self.cfg.n
        F = window_fusion(v + e, n)  # F(v, e), (B, n, d)
        v_w, g_w = v[:, -n:], gamma[:, -n:]
        C_ve = (F @ self.W_q1) @ (F @ self.W_k1).transpose(1, 2)  # eq. (2)
        C_gamma = (g_w @ self.W_q2) @ (g_w @ self.W_k2).transpose(1, 2)  # eq. (3)
        scale = math.sqrt(self.cfg.d_h)
        h_v = torch.softmax((C_ve + C_gamma) / scale, dim=-1) @ (v_w @ self.W_v1)  # eqs. (4)-(5)
        h_e = torch.softmax(C_ve / scale, dim=-1) @ (F @ self.W_v2)  # eq. (6)
        h_gamma = torch.softmax(C_gamma / scale, dim=-1) @ (g_w @ self.W_v3)  # eq. (7)
        return {"F": F, "C_ve": C_ve, "C_gamma": C_gamma, "h_v": h_v, "h_e": h_e, "h_gamma": h_gamma}

    def hidden(self, v_raw, e_raw, g_raw) -> torch.Tensor:
        v, e, gamma = self.project(v_raw, e_raw, g_raw)
        h = self.fused_attn(v, e, gamma)
        # [h_v; h_e; h_gamma] at the window's last position (frame i)
        return torch.cat([h["h_v"][:, -1], h["h_e"][:, -1], h["h_gamma"][:, -1]], dim=-1)


class Audio2ExpTransformer(_InputsAndHeads):
    """Ablation "w/o audio expression alignment" (Appendix D): [v; e; gamma] per frame into a
    standard self-attention transformer encoder over the n-frame window; same FFN heads."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        d = cfg.d
        self.pos = nn.Parameter(torch.zeros(cfg.n, 3 * d))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=3 * d,
            nhead=cfg.transformer_heads,
            dim_feedforward=cfg.transformer_ff,
            dropout=0.0,
            batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.transformer_layers, enable_nested_tensor=False)
        self._add_heads()

    def hidden(self, v_raw, e_raw, g_raw) -> torch.Tensor:
        v, e, gamma = self.project(v_raw, e_raw, g_raw)
        x = torch.cat([v, e, gamma], dim=-1) + self.pos
        return self.encoder(x)[:, -1]


def build_model(cfg: ModelConfig) -> nn.Module:
    if cfg.architecture == "fused_attn":
        return Audio2Exp(cfg)
    if cfg.architecture == "transformer":
        return Audio2ExpTransformer(cfg)
    raise ValueError(f"unknown audio2exp architecture {cfg.architecture!r} (fused_attn | transformer)")


def renderer_input_without_refinement(z: int | torch.Tensor, alpha_tilde: torch.Tensor) -> torch.Tensor:
    """Ablation "w/o hyperplane refinement" (Appendix D): the renderer input is [z; alpha_tilde],
    z a positive integer emotion tag (see EMOTION_INDEX), repeated per frame: (T, 1 + m)."""
    alpha_tilde = torch.as_tensor(alpha_tilde, dtype=torch.float32)
    z = torch.as_tensor(z, dtype=alpha_tilde.dtype)
    if z.dim() == 0:
        z = z.expand(alpha_tilde.shape[0])
    return torch.cat([z.unsqueeze(-1).to(alpha_tilde.dtype), alpha_tilde], dim=-1)


# Canonical emotions (CONTRIBUTING) -> z in N+ for the [z; alpha_tilde] ablation input.
EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
EMOTION_INDEX = {e: i + 1 for i, e in enumerate(EMOTIONS)}
