"""Lip-sync metrics LSE-C / LSE-D (Prajwal et al., 2020) with SyncNet (Chung & Zisserman, 2016).

``SyncNet`` reproduces the public ``syncnet_v2`` architecture of joonson/syncnet_python
(``SyncNetModel.S``) layer for layer (module names ``netcnnaud``, ``netfcaud``, ``netcnnlip``,
``netfclip`` and their Sequential indices). The published ``syncnet_v2.model`` (``download_model.sh``
of that repository) is a ``torch.save``'d state dict (a mapping of those parameter names to tensors,
in PyTorch's legacy non-zip container) saved before BatchNorm had ``num_batches_tracked`` counters:
``SyncNet.load`` reads it with ``torch.load(weights_only=True)`` (no pickled code runs), accepts
exactly the model's keys with only those 14 counters absent, and checks every shape. Inputs follow
the reference evaluation: 224x224 BGR face crops with raw 0..255 values, 5-frame windows at 25 fps;
13 MFCCs at 100 Hz (python_speech_features defaults, computed here in NumPy) of 16 kHz audio in int16 scale,
20-MFCC windows (4 MFCC frames per video frame).

The offset search compares every video window with the audio windows shifted by -vshift..+vshift
frames (vshift = 15), averages the distances over frames per shift, and reports
LSE-D = the minimum mean distance, LSE-C = median(mean distances) - minimum, and the offset.
Offset sign: ``offset = vshift - argmin``; audio delayed by k frames w.r.t. the video gives -k.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.fft import dct

from ..errors import EmoheadInputError

VSHIFT = 15
SAMPLE_RATE = 16000
MFCC_PER_FRAME = 4  # 100 Hz MFCC / 25 fps video
WEIGHTS_URL = "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model"
SYNCNET_FIX = (
    f"set metrics.syncnet.weights to syncnet_v2.model of joonson/syncnet_python ({WEIGHTS_URL}, "
    "fetched by its download_model.sh), or null to skip LSE-C / LSE-D."
)


def _cbr2d(cin, cout, k, s=(1, 1), p=(0, 0)):
    return [nn.Conv2d(cin, cout, k, stride=s, padding=p), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _cbr3d(cin, cout, k, s=(1, 1, 1), p=(0, 0, 0)):
    return [nn.Conv3d(cin, cout, k, stride=s, padding=p), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


def _head(dim):
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, dim))


class SyncNet(nn.Module):
    """Two-stream SyncNet: audio MFCC (N, 1, 13, 20) and lips (N, 3, 5, 224, 224) -> (N, 1024)."""

    def __init__(self, embed_dim: int = 1024):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_cbr2d(1, 64, (3, 3), p=(1, 1)),
            nn.MaxPool2d((1, 1), (1, 1)),
            *_cbr2d(64, 192, (3, 3), p=(1, 1)),
            nn.MaxPool2d((3, 3), (1, 2)),
            *_cbr2d(192, 384, (3, 3), p=(1, 1)),
            *_cbr2d(384, 256, (3, 3), p=(1, 1)),
            *_cbr2d(256, 256, (3, 3), p=(1, 1)),
            nn.MaxPool2d((3, 3), (2, 2)),
            *_cbr2d(256, 512, (5, 4)),
        )
        self.netfcaud = _head(embed_dim)
        self.netfclip = _head(embed_dim)
        self.netcnnlip = nn.Sequential(
            *_cbr3d(3, 96, (5, 7, 7), s=(1, 2, 2)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_cbr3d(96, 256, (1, 5, 5), s=(1, 2, 2), p=(0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), padding=(0, 1, 1)),
            *_cbr3d(256, 256, (1, 3, 3), p=(0, 1, 1)),
            *_cbr3d(256, 256, (1, 3, 3), p=(0, 1, 1)),
            *_cbr3d(256, 256, (1, 3, 3), p=(0, 1, 1)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_cbr3d(256, 512, (1, 6, 6)),
        )

    def forward_aud(self, x):
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x):
        return self.netfclip(self.netcnnlip(x).flatten(1))

    @classmethod
    def load(cls, path: str | Path) -> SyncNet:
        """The network with the weights of ``path`` (``syncnet_v2.model`` or a state dict of this
        module), in eval mode. A file of another layout raises EmoheadInputError naming the key."""
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable / unsafe file is a bad input
            raise EmoheadInputError(
                f"not a SyncNet state dict readable without running pickled code ({e}).",
                path=path,
                fix=SYNCNET_FIX,
            ) from e
        if isinstance(sd, Mapping) and "state_dict" in sd:
            sd = sd["state_dict"]
        if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise EmoheadInputError(
                f"expected a mapping of parameter names to tensors, got {type(sd).__name__}.",
                path=path,
                fix=SYNCNET_FIX,
            )
        m = cls()
        own = m.state_dict()
        unexpected = sorted(set(sd) - set(own))
        missing = sorted(k for k in set(own) - set(sd) if not k.endswith(".num_batches_tracked"))
        shapes = [
            f"{k} {tuple(sd[k].shape)} (want {tuple(own[k].shape)})"
            for k in sorted(set(sd) & set(own))
            if tuple(sd[k].shape) != tuple(own[k].shape)
        ]
        if unexpected or missing or shapes:
            raise EmoheadInputError(
                f"not the syncnet_v2 layout: unexpected keys {unexpected[:4]}, missing keys "
                f"{missing[:4]}, shape mismatches {shapes[:4]}.",
                path=path,
                fix=SYNCNET_FIX,
            )
        # BatchNorm fills the counters a pre-0.4.1 file lacks (unused in eval mode)
        m.load_state_dict(sd, strict=True)
        return m.eval()


# ---- MFCC (python_speech_features.mfcc defaults) -------------------------------------------------


def _hz2mel(hz):
    return 2595 * np.log10(1 + hz / 700.0)


def _mel2hz(mel):
    return 700 * (10 ** (mel / 2595.0) - 1)


def _filterbank(nfilt=26, nfft=512, sr=SAMPLE_RATE, lowfreq=0, highfreq=None):
    highfreq = highfreq or sr / 2
    mels = np.linspace(_hz2mel(lowfreq), _hz2mel(highfreq), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel2hz(mels) / sr).astype(int)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        for i in range(bins[j], bins[j + 1]):
            fb[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(bins[j + 1], bins[j + 2]):
            fb[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    return fb


def mfcc(
    signal: np.ndarray,
    sr: int = SAMPLE_RATE,
    winlen=0.025,
    winstep=0.01,
    numcep=13,
    nfilt=26,
    nfft=512,
    preemph=0.97,
    ceplifter=22,
) -> np.ndarray:
    """(num_frames, numcep) MFCCs with log-energy in c0, as python_speech_features.mfcc."""
    sig = np.asarray(signal, np.float64)
    sig = np.append(sig[0], sig[1:] - preemph * sig[:-1])
    flen, fstep = int(round(winlen * sr)), int(round(winstep * sr))
    n = 1 if len(sig) <= flen else 1 + int(np.ceil((len(sig) - flen) / fstep))
    pad = np.zeros((n - 1) * fstep + flen)
    pad[: len(sig)] = sig
    idx = np.arange(flen)[None, :] + fstep * np.arange(n)[:, None]
    frames = pad[idx]
    pspec = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    eps = np.finfo(float).eps
    energy = pspec.sum(axis=1)
    energy[energy == 0] = eps
    feat = pspec @ _filterbank(nfilt, nfft, sr).T
    feat[feat == 0] = eps
    feat = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :numcep]
    lift = 1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter)
    feat *= lift
    feat[:, 0] = np.log(energy)
    return feat


# ---- offset search ------------------------------------------------------------------------------


@dataclass
class SyncResult:
    offset: int
    lse_c: float  # confidence (higher = better synced)
    lse_d: float  # distance (lower = better)
    mean_dists: np.ndarray  # (2 vshift + 1,)


def offset_search(
    video_emb: np.ndarray | torch.Tensor, audio_emb: np.ndarray | torch.Tensor, vshift: int = VSHIFT
) -> SyncResult:
    """Mean Euclidean distance between video window i and audio window i + s for s in
    [-vshift, vshift] (audio zero-padded at the ends, as the reference calc_pdist)."""
    v = torch.as_tensor(np.asarray(video_emb), dtype=torch.float32)
    a = torch.as_tensor(np.asarray(audio_emb), dtype=torch.float32)
    win = 2 * vshift + 1
    ap = F.pad(a, (0, 0, vshift, vshift))
    dists = torch.stack(
        [F.pairwise_distance(v[i : i + 1].expand(win, -1), ap[i : i + win]) for i in range(len(v))]
    )
    mdist = dists.mean(dim=0)
    minval, minidx = torch.min(mdist, 0)
    return SyncResult(
        offset=int(vshift - minidx),
        lse_c=float(torch.median(mdist) - minval),
        lse_d=float(minval),
        mean_dists=mdist.numpy(),
    )


@torch.no_grad()
def embed(net: SyncNet, frames_bgr: np.ndarray, audio: np.ndarray, batch: int = 16):
    """Video and audio embeddings of aligned 25 fps frames (T, H, W, 3) BGR and 16 kHz float audio."""
    crops = np.stack([cv2.resize(f, (224, 224), interpolation=cv2.INTER_LINEAR) for f in frames_bgr])
    cc = mfcc(np.asarray(audio, np.float64) * 32768.0).T  # (13, M), int16 scale as the reference
    n = min(len(crops), len(audio) // (SAMPLE_RATE // 25))
    last = n - 5
    if last < 1:
        raise ValueError(f"clip too short for SyncNet: {n} frames (need > 5)")
    vid = torch.from_numpy(crops).float().permute(3, 0, 1, 2)  # (3, T, 224, 224)
    cct = torch.from_numpy(cc).float()
    vf, af = [], []
    for i in range(0, last, batch):
        idx = range(i, min(last, i + batch))
        vf.append(net.forward_lip(torch.stack([vid[:, j : j + 5] for j in idx])))
        a_in = []
        for j in idx:
            w = cct[:, j * MFCC_PER_FRAME : j * MFCC_PER_FRAME + 20]
            if w.shape[1] < 20:
                w = F.pad(w, (0, 20 - w.shape[1]))
            a_in.append(w[None])
        af.append(net.forward_aud(torch.stack(a_in)))
    return torch.cat(vf).numpy(), torch.cat(af).numpy()


def lse(net: SyncNet, frames_bgr: np.ndarray, audio: np.ndarray, vshift: int = VSHIFT) -> SyncResult:
    v, a = embed(net, frames_bgr, audio)
    return offset_search(v, a, vshift)
