"""Video and audio I/O through ffmpeg (system binary if present, else imageio-ffmpeg's).

No torchaudio / torchvision: frames are decoded to NumPy through an ffmpeg pipe, audio is
decoded and resampled by ffmpeg and read with soundfile.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from .errors import EmoheadInputError
from .io import atomic_path, output_fault, temp_target


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: ``$EMOHEAD_FFMPEG``, then ``ffmpeg`` on PATH, then imageio-ffmpeg's."""
    env = os.environ.get("EMOHEAD_FFMPEG")
    if env:
        return env
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as e:  # pragma: no cover - dependency is pinned
        raise RuntimeError("no ffmpeg: install imageio-ffmpeg or put ffmpeg on PATH") from e
    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: list[str], *, input_path: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run ffmpeg quietly; on failure raise an error naming the input file and ffmpeg's message
    (:class:`~emohead_core.errors.EmoheadOutputError` naming the output file when ffmpeg could
    not write it: disk full, read-only)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        text = proc.stderr.decode(errors="replace").strip()
        _raise_if_output_fault(text, args[-1] if args else "-")
        msg = text.splitlines()[-5:]
        raise EmoheadInputError(
            "ffmpeg failed: " + " | ".join(msg),
            path=input_path,
            fix="check that the file is a readable audio/video file (try playing it with ffmpeg).",
        )
    return proc


def _raise_if_output_fault(ffmpeg_stderr: str, output: str) -> None:
    """ffmpeg failed: raise the output-side fault if its message says it could not write
    ``output`` (the last argument; "-" / pipe: = stdout, never an output fault)."""
    if output == "-" or output.startswith("pipe:"):
        return
    out = Path(output)
    target = temp_target(out.name)  # an atomic_path temp: name the file it becomes
    fault = output_fault(RuntimeError(ffmpeg_stderr), out.parent / target if target else out, tmp=out)
    if fault is not None:
        raise fault


@dataclass(frozen=True)
class MediaInfo:
    """Container metadata. ``width`` x ``height`` is the DISPLAY size: the size of the frames
    ffmpeg decodes, i.e. after the rotation a phone stores as display-matrix / ``rotate``
    metadata (ffmpeg auto-rotates); ``rotation`` is that rotation in degrees (0 if none)."""

    path: str
    duration_s: float | None
    width: int | None
    height: int | None
    fps: float | None
    has_video: bool
    has_audio: bool
    audio_rate: int | None
    rotation: int = 0


_DUR = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VID = re.compile(r"Stream #\S+.*Video: .*?, (\d{2,5})x(\d{2,5})[, \[]")
_FPS = re.compile(r"(\d+(?:\.\d+)?) (?:fps|tbr)")
_AUD = re.compile(r"Stream #\S+.*Audio: .*?(\d+) Hz")
# "Display Matrix: rotation of -90.00 degrees" (side data; "displaymatrix:" in ffmpeg < 7)
# or "rotate : 90" (stream metadata written by ffmpeg < 6 and some phones)
_ROT = re.compile(r"display ?matrix: rotation of (-?\d+(?:\.\d+)?) degrees|^\s*rotate\s*:\s*(-?\d+)", re.I)


def _video_stream_block(text: str) -> tuple[str, list[str]] | None:
    """The first (non cover-art) video stream line of ``ffmpeg -i`` and the lines under it
    (metadata, side data) up to the next stream."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "Stream #" in line and "Video:" in line and "attached pic" not in line and _VID.search(line):
            block = []
            for nxt in lines[i + 1 :]:
                if "Stream #" in nxt or not nxt.startswith("    "):
                    break
                block.append(nxt)
            return line, block
    return None


def _rotation(block: list[str]) -> int:
    for line in block:
        m = _ROT.search(line)
        if m:
            return int(round(float(m.group(1) or m.group(2)))) % 360
    return 0


def probe(path: str | Path) -> MediaInfo:
    """Read container metadata by parsing ``ffmpeg -i`` (imageio-ffmpeg ships no ffprobe)."""
    path = Path(path)
    if not path.is_file():
        raise EmoheadInputError("file not found.", path=path, fix="check the dataset root / sample table.")
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True)
    text = proc.stderr.decode(errors="replace")
    if "Invalid data found" in text or "Stream #" not in text:
        raise EmoheadInputError(
            "not a readable audio/video file.", path=path, fix="re-download or re-encode the file."
        )
    dur = None
    m = _DUR.search(text)
    if m:
        h, mi, s = m.groups()
        dur = int(h) * 3600 + int(mi) * 60 + float(s)
    width = height = fps = None
    rotation = 0
    video = _video_stream_block(text)
    if video is not None:
        line, block = video
        mv = _VID.search(line)
        width, height = int(mv.group(1)), int(mv.group(2))
        mf = _FPS.search(line)
        fps = float(mf.group(1)) if mf else None
        rotation = _rotation(block)
        if rotation % 180 == 90:  # ffmpeg decodes the frames turned: display size
            width, height = height, width
    ma = _AUD.search(text)
    return MediaInfo(
        path=str(path),
        duration_s=dur,
        width=width,
        height=height,
        fps=fps,
        has_video=video is not None,
        has_audio=ma is not None,
        audio_rate=int(ma.group(1)) if ma else None,
        rotation=rotation,
    )


def iter_frames(
    path: str | Path,
    *,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    pix_fmt: str = "bgr24",
    threads: int | None = None,
) -> Iterator[np.ndarray]:
    """Decode frames as uint8 HxWx3 arrays (BGR by default, as OpenCV / 3DDFA expect).

    ``fps`` resamples to a constant frame rate (ffmpeg ``fps`` filter: duplicates/drops frames
    on the nearest-timestamp rule); ``size`` = (width, height) rescales. ``threads`` caps
    ffmpeg's decoder threads (default: ffmpeg's choice, all cores).
    """
    info = probe(path)
    if not info.has_video:
        raise EmoheadInputError("has no video stream.", path=path, fix="give a video file for this sample.")
    w, h = (info.width, info.height) if size is None else size
    filters = []
    if fps is not None:
        filters.append(f"fps={fps}")
    if size is not None:
        filters.append(f"scale={w}:{h}")
    args = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error"]
    if threads:
        args += ["-threads", str(int(threads))]
    args += ["-i", str(path)]
    if filters:
        args += ["-vf", ",".join(filters)]
    args += ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-"]
    nbytes = w * h * 3
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    finished = False
    try:
        assert proc.stdout is not None
        while True:
            buf = proc.stdout.read(nbytes)
            if len(buf) < nbytes:
                break
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3).copy()
        finished = True
    finally:
        if not finished:  # the consumer stopped early: stop ffmpeg, no error
            proc.kill()
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        proc.stderr.close()
        rc = proc.wait()
        if finished and rc != 0:
            raise EmoheadInputError(
                "ffmpeg failed while decoding: " + err.strip()[-400:],
                path=path,
                fix="check that the video is readable (re-encode it with ffmpeg).",
            )


# A decode may end this much before the container's duration (track offsets, a shorter audio
# track, encoder priming) before the file counts as truncated: max(0.5 s, 5 % of the duration).
TRUNCATION_SLACK_S = 0.5
TRUNCATION_SLACK_FRACTION = 0.05
# ... and this much before the end its own stream's index declares (mp4 / mov: the index holds
# each stream's duration): resampling to the crop rate and encoder priming stay well inside it
STREAM_SLACK_S = 0.2
STREAM_SLACK_FRACTION = 0.03


def stream_end_s(path: str | os.PathLike, kind: str) -> float | None:
    """End (start + duration, seconds) of the first ``kind`` ("video" / "audio") stream as an
    mp4 / mov index declares it, without decoding; None for other containers (flv, Matroska /
    webm have no per-stream length, an mp3's is estimated) or a file that cannot be opened."""
    try:
        import av
    except ImportError:  # pragma: no cover - pinned in requirements.txt
        return None
    try:
        with av.open(str(path)) as c:
            if "mp4" not in c.format.name and "mov" not in c.format.name:
                return None  # only mp4 / mov indexes state each stream's exact length (mp3: estimated)
            for st in c.streams:
                if st.type == kind and st.duration and st.time_base:
                    return float(((st.start_time or 0) + st.duration) * st.time_base)
    except Exception:  # av raises its own error types for unreadable files: no declaration
        return None
    return None


def check_decoded_duration(path: str | Path, decoded_s: float, declared_s: float | None, what: str) -> None:
    """Fail when decoding ``path`` gave clearly less ``what`` ("video" / "audio") than the file
    declares: a file truncated after its index (an mp4 with the moov atom first, cut short)
    decodes without an error, only shorter. Compared with the stream's own declared end where
    the index has it (:func:`stream_end_s`, :data:`STREAM_SLACK_S`), else with the container's
    duration ``declared_s`` (:data:`TRUNCATION_SLACK_S`)."""
    stream = stream_end_s(path, what) if Path(path).is_file() else None
    if stream:
        declared, slack = stream, max(STREAM_SLACK_S, STREAM_SLACK_FRACTION * stream)
        whose = f"its {what} stream declares"
    elif declared_s and declared_s > 0:
        declared, slack = declared_s, max(TRUNCATION_SLACK_S, TRUNCATION_SLACK_FRACTION * declared_s)
        whose = "the file declares"
    else:
        return
    if decoded_s < declared - slack:
        raise EmoheadInputError(
            f"decoded only {decoded_s:.2f} s of {what} but {whose} {declared:.2f} s "
            f"({decoded_s / declared:.0%}): it is truncated or damaged (e.g. an interrupted download "
            "or copy).",
            path=path,
            fix="re-download or re-copy the file (or re-encode it from a good source), or list it in "
            "datasets.<name>.exclude.",
        )


_T = TypeVar("_T")


def prefetch(items: Iterable[_T], depth: int = 8) -> Iterator[_T]:
    """Iterate ``items`` in a background thread, up to ``depth`` items ahead of the consumer.

    With :func:`iter_frames` the thread reads ffmpeg's pipe while the caller computes (the pipe
    itself buffers only 64 KiB, less than one frame), so decoding and the caller's work
    overlap. Exceptions of ``items`` are raised to the consumer; a consumer that stops early
    stops the thread (and, through the generator's cleanup, ffmpeg)."""
    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()
    end = object()

    def produce() -> None:
        it = iter(items)
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((end, None))
        except BaseException as e:  # handed to the consumer
            q.put((end, e))
        finally:
            close = getattr(it, "close", None)
            if stop.is_set() and close is not None:
                close()  # e.g. kills ffmpeg in iter_frames

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, err = q.get()
            if item is end:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


def count_frames(path: str | Path) -> int:
    """Number of frames of the first video stream, read from the container's packets (no
    decoding: fast even for long videos)."""
    proc = run_ffmpeg(
        [
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-c",
            "copy",
            "-f",
            "null",
            "-",
            "-progress",
            "pipe:1",
            "-nostats",
        ],
        input_path=path,
    )
    counts = re.findall(rb"^frame=(\d+)", proc.stdout, flags=re.M)
    if not counts:
        raise EmoheadInputError("has no video stream.", path=path, fix="give a video file.")
    return int(counts[-1])


def read_frames(path: str | Path, **kw) -> np.ndarray:
    """All frames as one (T, H, W, 3) uint8 array (see :func:`iter_frames`)."""
    frames = list(iter_frames(path, **kw))
    if not frames:
        raise EmoheadInputError(
            "decoded zero frames.", path=path, fix="check the video is not empty or corrupt."
        )
    return np.stack(frames)


def write_video(
    frames: np.ndarray | list[np.ndarray],
    path: str | Path,
    fps: float,
    *,
    audio: str | Path | None = None,
    pix_fmt_in: str = "bgr24",
    crf: int = 18,
) -> None:
    """Encode frames (T, H, W, 3 uint8, BGR by default) as H.264 mp4, optionally muxing audio.

    ``frames`` may be any iterable (e.g. a generator rendering them): each frame is handed to
    ffmpeg as it comes, so memory does not grow with the number of frames. An error raised by
    the iterable stops ffmpeg and leaves no file. Written atomically. Height and width must be
    even (yuv420p).
    """
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError(f"no frames to write to {path}")
    h, w = first.shape[:2]
    with atomic_path(path) as tmp:
        args = [
            ffmpeg_exe(),
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            pix_fmt_in,
            "-s",
            f"{w}x{h}",
            "-r",
            str(fps),
            "-i",
            "-",
        ]
        if audio is not None:
            args += ["-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-shortest"]
        args += [
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-crf",
            str(crf),
            "-preset",
            "veryfast",
            "-r",
            str(fps),
            "-movflags",
            "+faststart",
            str(tmp),
        ]
        # stderr to a file: a pipe nobody reads while frames stream could fill and block ffmpeg
        errlog = tempfile.TemporaryFile()
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=errlog)
        assert proc.stdin is not None
        broken = False
        try:
            for f in itertools.chain([first], it):
                if f.shape[:2] != (h, w):
                    raise ValueError(f"frame of size {f.shape[:2]} after frames of {(h, w)} for {path}")
                proc.stdin.write(np.ascontiguousarray(f, dtype=np.uint8).tobytes())
        except BrokenPipeError:  # ffmpeg stopped (e.g. disk full): its message says why
            broken = True
        except BaseException:  # the frames' producer failed: no file
            proc.kill()
            proc.wait()
            errlog.close()
            raise
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        rc = proc.wait()
        errlog.seek(0)
        err = errlog.read().decode(errors="replace")
        errlog.close()
        if rc != 0 or broken:
            _raise_if_output_fault(err, str(tmp))
            raise RuntimeError(f"ffmpeg failed writing {path}: {err[-400:]}")


def extract_audio(src: str | Path, dst_wav: str | Path, *, sample_rate: int = 16000) -> None:
    """Decode the audio of ``src`` to a mono PCM16 wav at ``sample_rate`` (atomic)."""
    info = probe(src)
    if not info.has_audio:
        raise EmoheadInputError("has no audio stream.", path=src, fix="give a clip with speech audio.")
    with atomic_path(dst_wav) as tmp:
        run_ffmpeg(
            [
                "-i",
                str(src),
                "-vn",
                "-ac",
                "1",
                "-ar",
                str(sample_rate),
                "-c:a",
                "pcm_s16le",
                "-f",
                "wav",
                str(tmp),
            ],
            input_path=src,
        )


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 waveform in [-1, 1] at ``sample_rate``. Wavs at the right rate are read
    directly with soundfile; anything else is decoded/resampled by ffmpeg."""
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise EmoheadInputError("audio file not found.", path=path)
    if path.suffix.lower() in {".wav", ".flac"}:
        try:
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as e:
            raise EmoheadInputError(f"unreadable audio ({e}).", path=path, fix="re-encode as PCM wav.") from e
        if sr == sample_rate:
            return data.mean(axis=1).astype(np.float32)
    proc = run_ffmpeg(
        ["-i", str(path), "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-"], input_path=path
    )
    return np.frombuffer(proc.stdout, np.float32).copy()
