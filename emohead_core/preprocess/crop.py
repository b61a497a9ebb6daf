"""Per-clip preprocessing (paper Sec. IV-A, Appendix C): 25 fps face crops and 16 kHz audio.

:func:`crop_clip`:

1. decode the clip resampled to a constant ``fps`` (ffmpeg ``fps`` filter), in a reader
   thread so decoding overlaps detection;
2. detect faces with FaceBoxes every ``detect_every`` frames and on the last frame
   (:class:`~emohead_core.preprocess.facedetect.FaceDetector`), follow one face (the detection
   overlapping the previous box most, else the best score), record per frame the box, score
   and a ``detected`` flag, and fill frames without a detection by linear interpolation
   between detected frames (nearest at the ends);
3. fail with :class:`~emohead_core.errors.EmoheadInputError` when a face was found in fewer
   than ``min_face_fraction`` of the frames checked;
4. derive ONE square crop box for the whole clip (no jitter): centre = median of the box
   centres, side = ``crop_scale`` x the 95th percentile of the box size, shifted (and if needed
   shrunk) to lie inside the frame;
5. crop + resize to ``crop_size`` and encode H.264 at ``fps`` CFR with ffmpeg (same ``fps``
   filter as step 1, so the frame count matches the boxes table, checked on the written
   file's packets); write the boxes table as Parquet. Both outputs are written atomically.

The crop box needs every frame's box, so the source is decoded twice (step 1 in Python, step
5 inside ffmpeg); the expression stage reuses the boxes (mapped into the crop) instead of
searching the crop for the face again. ``threads`` is the job's CPU budget: ffmpeg's decoder
and x264 threads and onnxruntime's intra-op threads.

:func:`extract_clip_audio` writes a 16 kHz mono PCM16 wav; for a video sample it is padded
with silence or trimmed to exactly ``n_frames / fps`` seconds of the cropped video.
"""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import media
from ..config import schema_defaults
from ..errors import EmoheadInputError
from ..io import atomic_path
from .facedetect import FaceDetector, box_iou

log = logging.getLogger(__name__)

# options of crop_clip / extract_clip_audio: config/schema.yaml's preprocess section (threads is
# the job's CPU budget, an argument)
DEFAULTS: dict[str, Any] = {k: v for k, v in schema_defaults("preprocess").items() if k != "threads"}

BOX_COLUMNS = [
    "frame",
    "time_s",
    "x1",
    "y1",
    "x2",
    "y2",
    "score",
    "detected",
    "checked",
    "face",
    "crop_x1",
    "crop_y1",
    "crop_x2",
    "crop_y2",
    "crop_size",
    "src_width",
    "src_height",
    "fps",
]


def _opts(opts: dict | None) -> dict[str, Any]:
    out = dict(DEFAULTS)
    out.update({k: v for k, v in (opts or {}).items() if v is not None})
    return out


def providers_for(device: str) -> list[str]:
    """onnxruntime providers for config ``preprocess.device`` (cuda falls back to CPU with a
    warning when onnxruntime has no CUDA provider)."""
    import onnxruntime as ort

    if device == "cuda":
        if "CUDAExecutionProvider" in ort.get_available_providers():
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        log.warning("preprocess.device=cuda but onnxruntime has no CUDA provider; using CPU")
    return ["CPUExecutionProvider"]


def select_track(dets_per_frame: list[np.ndarray | None], video=None) -> tuple[np.ndarray, np.ndarray]:
    """One face per frame: the detection with the highest IoU with the last chosen box (when
    > 0.3), else the highest score. Returns boxes (T, 4) (NaN where none) and scores (T,).
    Frames with more than one face are logged (a warning naming ``video`` and the frames)."""
    t = len(dets_per_frame)
    boxes = np.full((t, 4), np.nan, np.float64)
    scores = np.full(t, np.nan, np.float64)
    last = None
    several = [i for i, d in enumerate(dets_per_frame) if d is not None and len(d) > 1]
    if several:
        d0 = dets_per_frame[several[0]]
        log.warning(
            "%s: %d faces in frame %d (%d of the checked frames show more than one: %s): following "
            "the one with the highest score first (box %s, score %.2f; the other: box %s, score "
            "%.2f), then the same face. Fix: nothing if that is the speaker; else crop the video to "
            "the speaker or list it in datasets.<name>.exclude.",
            video,
            len(d0),
            several[0],
            len(several),
            frame_ranges(np.array(several)),
            np.round(d0[0, :4]).astype(int).tolist(),
            d0[0, 4],
            np.round(d0[1, :4]).astype(int).tolist(),
            d0[1, 4],
        )
    for i, d in enumerate(dets_per_frame):
        if d is None or len(d) == 0:
            continue
        j = 0
        if last is not None and len(d) > 1:
            iou = box_iou(last[None], d)[0]
            if iou.max() > 0.3:
                j = int(iou.argmax())
        boxes[i] = d[j, :4]
        scores[i] = d[j, 4]
        last = d[j, :4]
    return boxes, scores


def interpolate_boxes(boxes: np.ndarray, have: np.ndarray) -> np.ndarray:
    """Linear interpolation of the rows of ``boxes`` (T, 4) where ``have`` is False, from the
    rows where it is True (constant extrapolation at the ends)."""
    idx = np.nonzero(have)[0]
    if len(idx) == 0:
        raise ValueError("no box to interpolate from")
    t = np.arange(len(boxes))
    return np.stack([np.interp(t, idx, boxes[idx, c]) for c in range(4)], axis=1)


def stable_crop_box(boxes: np.ndarray, width: int, height: int, crop_scale: float) -> tuple[int, int, int]:
    """One square crop (x, y, side) in source pixels for the whole clip: centre = median box
    centre, side = ``crop_scale`` x the 95th percentile of max(box w, box h); moved (and shrunk
    if larger than the frame) to lie inside the frame. ``side`` is even."""
    cx = np.median((boxes[:, 0] + boxes[:, 2]) / 2)
    cy = np.median((boxes[:, 1] + boxes[:, 3]) / 2)
    size = np.percentile(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]), 95)
    side = int(round(crop_scale * size))
    side = max(2, min(side, width, height))
    side -= side % 2
    x = int(round(cx - side / 2))
    y = int(round(cy - side / 2))
    x = min(max(x, 0), width - side)
    y = min(max(y, 0), height - side)
    return x, y, side


def detect_clip(frames_iter, detector: FaceDetector, *, every: int = 1, batch: int = 8):
    """Run ``detector`` on every ``every``-th frame and on the last frame (batched), so
    interpolation never extrapolates at the end. Returns (n_frames, frame size (w, h), list of
    detections per frame, None for frames not checked)."""
    dets: list[np.ndarray | None] = []
    pending: list[tuple[int, np.ndarray]] = []
    size = None
    last_frame = None

    def flush():
        if pending:
            out = detector.detect_batch(np.stack([f for _, f in pending]))
            for (i, _), d in zip(pending, out):
                dets[i] = d
            pending.clear()

    n = 0
    for i, frame in enumerate(frames_iter):
        n = i + 1
        if size is None:
            size = (frame.shape[1], frame.shape[0])
        dets.append(None)
        last_frame = frame
        if i % every == 0:
            pending.append((i, frame))
            if len(pending) >= batch:
                flush()
    if n and (n - 1) % every != 0:
        pending.append((n - 1, last_frame))
    flush()
    return n, size, dets


def refine_frames(dets: list[np.ndarray | None]) -> list[int]:
    """Frames not checked yet that lie between two checked frames of which one shows a face and
    the other none: where the face appears or leaves, to be checked one by one."""
    checked = [i for i, d in enumerate(dets) if d is not None]
    out: list[int] = []
    for a, b in zip(checked, checked[1:]):
        if b - a > 1 and (len(dets[a]) > 0) != (len(dets[b]) > 0):
            out.extend(range(a + 1, b))
    return out


def detect_frames(
    frames_iter, detector: FaceDetector, wanted: list[int], dets: list, *, batch: int = 8
) -> None:
    """Run ``detector`` on the frames ``wanted`` of a second decode of the clip (in place into
    ``dets``); stops decoding after the last wanted frame."""
    want = set(wanted)
    last = max(want) if want else -1
    pending: list[tuple[int, np.ndarray]] = []

    def flush():
        if pending:
            for (i, _), d in zip(pending, detector.detect_batch(np.stack([f for _, f in pending]))):
                dets[i] = d
            pending.clear()

    for i, frame in enumerate(frames_iter):
        if i in want:
            pending.append((i, frame))
            if len(pending) >= batch:
                flush()
        if i >= last:
            break
    flush()


def face_per_frame(detected: np.ndarray, checked: np.ndarray) -> np.ndarray:
    """Whether each frame shows a face: a checked frame its detection; a frame between checks
    when the checks on both sides found one (after :func:`refine_frames` they agree; at the ends
    the one check there is)."""
    detected, checked = np.asarray(detected, bool), np.asarray(checked, bool)
    idx = np.nonzero(checked)[0]
    if len(idx) == 0:
        return np.zeros(len(detected), bool)
    t = np.arange(len(detected))
    before = idx[np.clip(np.searchsorted(idx, t, side="right") - 1, 0, len(idx) - 1)]
    after = idx[np.clip(np.searchsorted(idx, t, side="left"), 0, len(idx) - 1)]
    return np.where(checked, detected, detected[before] & detected[after])


def frame_ranges(frames: np.ndarray) -> str:
    """ "3, 50-74" for frame indices [3, 50, 51, ..., 74] (at most 10 ranges shown)."""
    frames = np.asarray(frames, int)
    if len(frames) == 0:
        return "none"
    cuts = np.nonzero(np.diff(frames) != 1)[0]
    starts, ends = np.r_[frames[0], frames[cuts + 1]], np.r_[frames[cuts], frames[-1]]
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in zip(starts, ends)]
    return ", ".join(parts[:10]) + (f" ... ({len(parts)} ranges)" if len(parts) > 10 else "")


def make_detector(onnx_path: str | os.PathLike, opts: dict | None = None, threads: int = 1) -> FaceDetector:
    """The FaceBoxes detector of the ``preprocess`` options (device, threshold, max side)."""
    o = _opts(opts)
    return FaceDetector(
        onnx_path,
        providers_for(o["device"]),
        threshold=float(o["detect_threshold"]),
        max_side=int(o["detect_max_side"]) if o["detect_max_side"] else None,
        threads=threads,
    )


def crop_clip(
    video: str | os.PathLike,
    onnx_path: str | os.PathLike,
    out_video: str | os.PathLike,
    out_boxes: str | os.PathLike,
    *,
    crop_size: int,
    opts: dict | None = None,
    threads: int = 1,
    detector: FaceDetector | None = None,
) -> dict[str, Any]:
    """Crop one clip (see the module docstring). Returns a summary dict."""
    o = _opts(opts)
    fps = float(o["fps"])
    if crop_size % 2:
        raise EmoheadInputError(
            f"crop_size {crop_size} must be even (H.264 yuv420p).", path="config datasets.<name>.crop_size"
        )
    if detector is None:
        detector = make_detector(onnx_path, o, threads)
    info = media.probe(video)
    if not info.has_video:
        raise EmoheadInputError("has no video stream.", path=video, fix="give a video file for this sample.")
    t0 = time.perf_counter()
    frames = media.prefetch(
        media.iter_frames(video, fps=fps, threads=threads), depth=2 * int(o["detect_batch"])
    )
    n, _, dets = detect_clip(frames, detector, every=int(o["detect_every"]), batch=int(o["detect_batch"]))
    if n == 0:
        raise EmoheadInputError(
            "decoded zero frames.", path=video, fix="check the video is not empty or corrupt."
        )
    media.check_decoded_duration(video, n / fps, info.duration_s, "video")
    _warn_short(video, n, fps)
    width, height = info.width, info.height  # the decoded frames' size (media.probe: display size)
    between = refine_frames(dets)  # where the face appears / leaves: every frame checked
    if between:
        frames = media.iter_frames(video, fps=fps, threads=threads)
        detect_frames(frames, detector, between, dets, batch=int(o["detect_batch"]))
    checked = np.array([d is not None for d in dets])
    boxes, scores = select_track(dets, video)
    detected = ~np.isnan(scores)
    face = face_per_frame(detected, checked)
    _check_face_fraction(video, int(face.sum()), n, float(o["min_face_fraction"]))
    if not face.all():
        log.warning(
            "%s: no face in %d of %d frames (%s, at %g fps): they are kept in the crop but excluded "
            "from the expression fits and every training set. Fix: nothing if that is right (the face "
            "leaves the picture); else trim the clip or list it in datasets.<name>.exclude.",
            video,
            int((~face).sum()),
            n,
            frame_ranges(np.nonzero(~face)[0]),
            fps,
        )
    filled = interpolate_boxes(boxes, detected)
    x, y, side = stable_crop_box(filled[detected], width, height, float(o["crop_scale"]))

    t1 = time.perf_counter()
    encode_crop(video, out_video, (x, y, side), crop_size, fps, str(o["x264_preset"]), threads, n)
    box = (x, y, side)
    table = boxes_table(filled, scores, detected, checked, box, crop_size, (width, height), fps, face)
    with atomic_path(out_boxes) as tmp:
        table.to_parquet(tmp, index=False)
    summary = {
        "video": str(video),
        "frames": n,
        "checked": int(checked.sum()),
        "detected": int(detected.sum()),
        "face_frames": int(face.sum()),
        "refined": len(between),
        "crop_box": [x, y, x + side, y + side],
        "crop_size": crop_size,
        "providers": getattr(detector, "providers", None),
        "seconds": {"detect": round(t1 - t0, 2), "encode": round(time.perf_counter() - t1, 2)},
    }
    log.info("cropped %s: %s", video, summary)
    return summary


# a clip shorter than this carries too little speech and motion to learn from (1-frame videos)
MIN_CLIP_S = 0.5


def _warn_short(video, n: int, fps: float) -> None:
    if n / fps < MIN_CLIP_S:
        log.warning(
            "%s: only %d frame(s) (%.2f s at %g fps): too short to learn lip motion from (its "
            "transcript and features are near empty). Fix: list it in datasets.<name>.exclude "
            "unless that is intended.",
            video,
            n,
            n / fps,
            fps,
        )


def _check_face_fraction(video, n_found: int, n_frames: int, min_fraction: float) -> None:
    """Step 3: fail when fewer than ``min_fraction`` of the frames show a face
    (:func:`face_per_frame`)."""
    frac = n_found / max(n_frames, 1)
    if n_found == 0 or frac < min_fraction:
        raise EmoheadInputError(
            f"a face is in only {n_found} of {n_frames} frames ({frac:.0%}); "
            f"preprocess.min_face_fraction is {min_fraction:.0%}.",
            path=video,
            fix="remove this clip from the dataset, or lower preprocess.min_face_fraction / "
            "preprocess.detect_threshold if the face is small or partly hidden.",
        )


def encode_crop(
    video,
    out_video,
    box: tuple[int, int, int],
    crop_size: int,
    fps: float,
    preset: str,
    threads: int,
    n_frames: int,
) -> None:
    """Step 5: crop ``box`` (x, y, side) + resize to ``crop_size`` + encode H.264 at ``fps`` CFR
    with ffmpeg, the same fps filter as the decode; the written file must have ``n_frames``."""
    x, y, side = box
    with atomic_path(out_video) as tmp:
        media.run_ffmpeg(
            [
                "-threads",
                str(max(1, threads)),
                "-i",
                str(video),
                "-an",
                "-vf",
                f"fps={fps},crop={side}:{side}:{x}:{y},scale={crop_size}:{crop_size}:flags=bicubic,setsar=1",
                "-c:v",
                "libx264",
                "-preset",
                preset,
                "-crf",
                "18",
                "-pix_fmt",
                "yuv420p",
                "-r",
                str(fps),
                "-fps_mode",
                "cfr",
                "-threads",
                str(max(1, threads)),
                "-movflags",
                "+faststart",
                str(tmp),
            ],
            input_path=video,
        )
        n_out = media.count_frames(tmp)
        if n_out != n_frames:
            raise RuntimeError(f"{video}: cropped video has {n_out} frames, detection saw {n_frames}")


def boxes_table(
    filled: np.ndarray,
    scores: np.ndarray,
    detected: np.ndarray,
    checked: np.ndarray,
    box: tuple[int, int, int],
    crop_size: int,
    source_size: tuple[int, int],
    fps: float,
    face: np.ndarray | None = None,
) -> pd.DataFrame:
    """The boxes table (``{sample}.boxes.parquet``, :data:`BOX_COLUMNS`): per frame the face box
    in source pixels, its score, detected / checked flags, whether the frame shows a face
    (:func:`face_per_frame`), and the clip's crop box."""
    n = len(filled)
    face = face_per_frame(detected, checked) if face is None else np.asarray(face, bool)
    x, y, side = box
    width, height = source_size
    return pd.DataFrame(
        {
            "frame": np.arange(n, dtype=np.int32),
            "time_s": np.arange(n, dtype=np.float64) / fps,
            "x1": filled[:, 0].astype(np.float32),
            "y1": filled[:, 1].astype(np.float32),
            "x2": filled[:, 2].astype(np.float32),
            "y2": filled[:, 3].astype(np.float32),
            "score": scores.astype(np.float32),
            "detected": detected,
            "checked": checked,
            "face": face,
            "crop_x1": np.int32(x),
            "crop_y1": np.int32(y),
            "crop_x2": np.int32(x + side),
            "crop_y2": np.int32(y + side),
            "crop_size": np.int32(crop_size),
            "src_width": np.int32(width),
            "src_height": np.int32(height),
            "fps": np.float32(fps),
        },
        columns=BOX_COLUMNS,
    )


def read_boxes(path: str | os.PathLike) -> pd.DataFrame:
    df = pd.read_parquet(path)
    if "face" not in df.columns and {"detected", "checked"} <= set(df.columns):  # written before "face"
        df.insert(
            list(df.columns).index("checked") + 1,
            "face",
            face_per_frame(df["detected"].to_numpy(bool), df["checked"].to_numpy(bool)),
        )
    missing = [c for c in BOX_COLUMNS if c not in df.columns]
    if missing:
        raise EmoheadInputError(
            f"boxes table lacks columns {missing}.", path=path, fix="rerun rule crop_video."
        )
    return df


def crop_to_source(points_xy: np.ndarray, boxes: pd.DataFrame) -> np.ndarray:
    """Map (..., 2) pixel coordinates of the cropped video back to source-video pixels."""
    r = boxes.iloc[0]
    s = (r["crop_x2"] - r["crop_x1"]) / r["crop_size"]
    return np.asarray(points_xy, np.float64) * s + np.array([r["crop_x1"], r["crop_y1"]], np.float64)


def source_to_crop(points_xy: np.ndarray, boxes: pd.DataFrame) -> np.ndarray:
    """Map (..., 2) source-video pixel coordinates into the cropped video's pixels."""
    r = boxes.iloc[0]
    s = r["crop_size"] / (r["crop_x2"] - r["crop_x1"])
    return (np.asarray(points_xy, np.float64) - np.array([r["crop_x1"], r["crop_y1"]], np.float64)) * s


# audio quieter than this (RMS over the clip) is reported as silent; speech is around -20 to -35
SILENCE_DBFS = -60.0


def rms_dbfs(wav: np.ndarray) -> float:
    """RMS level of a float waveform in dB relative to full scale (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if len(wav) else 0.0
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def extract_clip_audio(
    src: str | os.PathLike,
    dst_wav: str | os.PathLike,
    *,
    sample_rate: int = 16000,
    fps: float = 25.0,
    boxes_path: str | os.PathLike | None = None,
    n_frames: int | None = None,
) -> dict[str, Any]:
    """16 kHz mono PCM16 wav of ``src``. For a video sample (``boxes_path`` or ``n_frames``
    given) the audio is zero-padded or trimmed at the end to ``n_frames / fps`` seconds, the
    exact length of the cropped video."""
    import soundfile as sf

    info = media.probe(src)
    if not info.has_audio:
        raise EmoheadInputError("has no audio stream.", path=src, fix="give a clip with speech audio.")
    wav = media.load_audio(src, sample_rate)
    if wav.size == 0:
        raise EmoheadInputError("decoded zero audio samples.", path=src, fix="check the audio track.")
    orig = len(wav)
    media.check_decoded_duration(src, orig / sample_rate, info.duration_s, "audio")
    level = rms_dbfs(wav)
    if level < SILENCE_DBFS:
        log.warning(
            "%s: the audio is silent (RMS %.1f dBFS, below %.0f dBFS): its speech features and lip "
            "sync will be meaningless. Fix: check the recording (muted microphone, wrong audio track) "
            "or list the clip in datasets.<name>.exclude.",
            src,
            level,
            SILENCE_DBFS,
        )
    if boxes_path is not None and n_frames is None:
        n_frames = len(read_boxes(boxes_path))
    if n_frames is not None:
        target = int(round(n_frames / fps * sample_rate))
        if orig >= target:
            wav = wav[:target]
        else:
            wav = np.concatenate([wav, np.zeros(target - orig, np.float32)])
    buf = io.BytesIO()  # encoded in memory: a failed write then raises OSError with its errno
    sf.write(buf, np.clip(wav, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    with atomic_path(dst_wav) as tmp:
        tmp.write_bytes(buf.getvalue())
    summary = {
        "src": str(src),
        "samples": len(wav),
        "decoded_samples": orig,
        "sample_rate": sample_rate,
        "n_frames": n_frames,
        "rms_dbfs": level,
        "silent": level < SILENCE_DBFS,
    }
    log.info("audio %s", summary)
    return summary


def preprocess_actor(
    clips: list[tuple[str, str, str]],
    onnx_path: str | os.PathLike,
    crop_dir: str | os.PathLike,
    audio_dir: str | os.PathLike,
    *,
    crop_size: int,
    opts: dict | None = None,
    sample_rate: int = 16000,
    fps: float = 25.0,
    threads: int = 1,
) -> dict[str, Any]:
    """All of one actor's samples in one job (``datasets.<name>.batch: actor``): the crop and
    boxes of each video sample into ``crop_dir``, the wav of every sample into ``audio_dir``,
    the same files :func:`crop_clip` + :func:`extract_clip_audio` write per clip. ``clips``:
    (sample id, video path or "", audio path). Resumable, see :mod:`emohead_core.batch`."""
    from ..batch import Clip, run_batch

    o = _opts(opts)
    detector = None
    batch = []
    video_only = [sample for sample, video, audio in clips if video and not audio]
    if video_only:
        log.info(
            "%d video-only clip(s) have no speech: no wav is written for them and the stages that "
            "need audio (features, audio2exp, audio-driven renders) leave them out: %s",
            len(video_only),
            ", ".join(video_only[:10]) + (" ..." if len(video_only) > 10 else ""),
        )
    for sample, video, audio in clips:
        outputs = {"audio": (1, f"{sample}.wav")} if audio else {}
        if video:
            outputs.update(video=(0, f"{sample}.mp4"), boxes=(0, f"{sample}.boxes.parquet"))
        batch.append(Clip(sample, {"video": video, "audio": audio}, outputs))

    def work(clip: Clip, targets: dict) -> None:
        nonlocal detector
        boxes = None
        if clip.inputs["video"]:
            if detector is None:  # loaded once per batch
                detector = make_detector(onnx_path, o, threads)
            crop_clip(
                clip.inputs["video"],
                onnx_path,
                targets["video"],
                targets["boxes"],
                crop_size=crop_size,
                opts=o,
                threads=threads,
                detector=detector,
            )
            boxes = targets["boxes"]
        if clip.inputs["audio"]:
            extract_clip_audio(
                clip.inputs["audio"], targets["audio"], sample_rate=sample_rate, fps=fps, boxes_path=boxes
            )

    params = {"crop_size": int(crop_size), "opts": o, "sample_rate": int(sample_rate), "fps": float(fps)}
    return run_batch(
        [crop_dir, audio_dir], batch, work, params=params, desc=f"preprocess {Path(crop_dir).name}"
    )
