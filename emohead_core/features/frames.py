"""The 25 fps frame grid shared by features, preprocessing and audio2exp (paper App. C).

Frame contract
--------------
Video frame ``i`` of a clip covers the time span ``[i/fps, (i+1)/fps)`` seconds from the start
of the audio (the 25 fps crop and the 16 kHz wav both start at t = 0).

The number of frames ``T`` of a clip is, in this order:

1. the frame count of the 25 fps crop when preprocessing wrote one (rows of
   ``crop/{sample}.boxes.parquet``, else the frames of ``crop/{sample}.mp4``);
2. otherwise (audio-only samples) ``n_frames_for(audio_duration_s, fps)``
   = ``floor(duration * fps + 0.5)`` (at least 1): the number of frames ffmpeg's ``fps``
   filter (default ``round=near``) emits for a stream of that duration.

Every feature file of a clip has exactly ``T`` rows; an encoder's native frames are pooled onto
this grid by :func:`pool_to_grid` (frames past the audio's end repeat the last native frame).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import EmoheadInputError


def n_frames_for(duration_s: float, fps: float = 25.0) -> int:
    """Frames of a clip of ``duration_s`` seconds at ``fps`` (round half up, at least 1)."""
    if not duration_s > 0:
        raise EmoheadInputError(f"clip duration must be > 0 s, got {duration_s}.")
    return max(1, int(math.floor(duration_s * fps + 0.5)))


def count_video_frames(path: str | Path) -> int:
    """Frames in a video's first stream (:func:`emohead_core.media.count_frames`: packets, no
    decode), with the fix that suits a crop video."""
    from ..media import count_frames

    path = Path(path)
    if not path.is_file():
        raise EmoheadInputError("video not found.", path=path, fix="re-run preprocessing for this sample.")
    return count_frames(path)


def reference_frame_count(path: str | Path) -> int:
    """T from preprocessing's output: a ``.boxes.parquet`` (one row per crop frame) or a video."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        if not path.is_file():
            raise EmoheadInputError("frame reference not found.", path=path)
        return int(pq.ParquetFile(path).metadata.num_rows)
    return count_video_frames(path)


def native_ranges(n_frames: int, native_hz: float, fps: float = 25.0) -> tuple[np.ndarray, np.ndarray]:
    """For each video frame ``i``, the native frames ``[lo_i, hi_i)`` whose start times fall in
    ``[i/fps, (i+1)/fps)``: ``lo_i = floor(i*r)``, ``hi_i = max(floor((i+1)*r), lo_i+1)`` with
    ``r = native_hz / fps`` (r = 2 for 50 Hz HuBERT / emotion2vec / Whisper encoders: frame i
    averages native frames 2i and 2i+1)."""
    r = native_hz / fps
    i = np.arange(n_frames + 1, dtype=np.float64)
    edges = np.floor(i * r + 1e-9).astype(np.int64)
    lo = edges[:-1]
    hi = np.maximum(edges[1:], lo + 1)
    return lo, hi


def pool_to_grid(native: np.ndarray, native_hz: float, n_frames: int, fps: float = 25.0) -> np.ndarray:
    """Average native-rate features (N, D) onto the video frame grid -> (n_frames, D) float32.

    Native frames past the end (the encoder emitted fewer frames than the grid needs, e.g.
    HuBERT's last partial window) are taken as the last native frame (edge padding)."""
    native = np.asarray(native, dtype=np.float32)
    if native.ndim != 2 or native.shape[0] == 0:
        raise ValueError(f"native features must be (N>0, D), got {native.shape}")
    lo, hi = native_ranges(n_frames, native_hz, fps)
    need = int(hi.max())
    if need > native.shape[0]:
        pad = np.repeat(native[-1:], need - native.shape[0], axis=0)
        native = np.concatenate([native, pad], axis=0)
    csum = np.concatenate(
        [np.zeros((1, native.shape[1]), np.float64), np.cumsum(native, axis=0, dtype=np.float64)]
    )
    return ((csum[hi] - csum[lo]) / (hi - lo)[:, None]).astype(np.float32)


def words_to_frames(
    starts: np.ndarray | list[float],
    ends: np.ndarray | list[float],
    n_frames: int,
    fps: float = 25.0,
) -> np.ndarray:
    """Fig. 9 word-to-frame assignment: index of the word u_j assigned to each frame o_i, or -1
    (silence) where no word is spoken.

    Rule: frame ``i`` gets word ``j`` when the frame centre ``(i + 0.5)/fps`` lies in
    ``[start_j, end_j)``; where words overlap, the later-starting word wins. A word that covers
    no frame centre (shorter than a frame) still takes the frame holding its midpoint if that
    frame is silent, so no spoken word is dropped."""
    starts = np.asarray(starts, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.float64)
    if starts.shape != ends.shape:
        raise ValueError("starts and ends differ in length")
    if np.any(ends < starts):
        bad = int(np.argmax(ends < starts))
        raise EmoheadInputError(f"word {bad} ends before it starts ({starts[bad]} > {ends[bad]}).")
    assign = np.full(n_frames, -1, dtype=np.int64)
    centres = (np.arange(n_frames) + 0.5) / fps
    for j in np.argsort(starts, kind="stable"):
        assign[(centres >= starts[j]) & (centres < ends[j])] = j
    covered = set(assign[assign >= 0].tolist())
    for j in range(len(starts)):
        if j in covered:
            continue
        i = int(math.floor(0.5 * (starts[j] + ends[j]) * fps))
        if 0 <= i < n_frames and assign[i] < 0:
            assign[i] = j
    return assign


def frames_from_words(
    word_vecs: np.ndarray,
    starts,
    ends,
    n_frames: int,
    silence_vec: np.ndarray,
    fps: float = 25.0,
) -> np.ndarray:
    """Per-frame text features (T, D): the vector of the word assigned to each frame (Fig. 9),
    ``silence_vec`` for frames with no word."""
    word_vecs = np.asarray(word_vecs, dtype=np.float32)
    silence_vec = np.asarray(silence_vec, dtype=np.float32).reshape(-1)
    assign = words_to_frames(starts, ends, n_frames, fps)
    out = np.broadcast_to(silence_vec, (n_frames, silence_vec.shape[0])).copy()
    m = assign >= 0
    if m.any():
        out[m] = word_vecs[assign[m]]
    return out


def neighbour_windows(feats: np.ndarray, n: int, silence_vec: np.ndarray) -> np.ndarray:
    """Windows for the fusion F of eq. (2) (n = 5 in the paper): row ``i`` holds frames
    ``i-n+1 .. i`` (oldest first); positions before frame 0 are the silence vector (silence
    segment padding, App. C / Fig. 9). (T, D) -> (T, n, D) float32 (a copy)."""
    feats = np.asarray(feats, dtype=np.float32)
    if n < 1:
        raise ValueError("n must be >= 1")
    T, D = feats.shape
    silence_vec = np.asarray(silence_vec, dtype=np.float32).reshape(-1)
    if silence_vec.shape[0] != D:
        raise ValueError(f"silence vector has dim {silence_vec.shape[0]}, features {D}")
    padded = np.concatenate([np.broadcast_to(silence_vec, (n - 1, D)), feats], axis=0)
    idx = np.arange(T)[:, None] + np.arange(n)[None, :]  # padded index of frame i-n+1+k
    return padded[idx]
