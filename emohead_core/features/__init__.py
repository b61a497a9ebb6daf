"""Audio, emotion and text features on the 25 fps video grid, cached to Parquet (issue 4).

Reader API for the audio-expression stage::

    from emohead_core.features import read_features, neighbour_windows, role_encoders
    frames, feats, meta = read_features("results/cremad/features/whisper/1001/1001_DFA_ANG_XX.parquet")
    windows = neighbour_windows(feats, 5, meta["silence"])        # (T, 5, D), eq. (2)'s F

See ``frames`` (the frame grid contract), ``encoders`` (the encoder interface), ``cache``
(file format and cache key), ``asr`` (transcripts) and ``pipeline`` (jobs).
"""

from .asr import read_transcript
from .cache import open_dataset, read_features, read_meta, write_features
from .frames import (
    frames_from_words,
    n_frames_for,
    neighbour_windows,
    pool_to_grid,
    reference_frame_count,
    words_to_frames,
)
from .pipeline import encoder_specs, role_encoders, settings


def transcript_to_frames(transcript, n_frames: int, fps: float = 25.0):
    """Word index per frame (-1 = silence) for a transcript table or file (Fig. 9)."""
    import pandas as pd

    df = transcript if isinstance(transcript, pd.DataFrame) else read_transcript(transcript)
    return words_to_frames(df["start_s"].to_numpy(), df["end_s"].to_numpy(), n_frames, fps)


__all__ = [
    "encoder_specs",
    "frames_from_words",
    "n_frames_for",
    "neighbour_windows",
    "open_dataset",
    "pool_to_grid",
    "read_features",
    "read_meta",
    "read_transcript",
    "reference_frame_count",
    "role_encoders",
    "settings",
    "transcript_to_frames",
    "words_to_frames",
    "write_features",
]
