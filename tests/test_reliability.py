"""Bad inputs and faults (issue "Reliability"): each gets the right message naming the file or
config key and the fix, and no good output changes. docs/reliability.md lists every case with
the test that keeps it true; media cases use real files made with ffmpeg.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml

from emohead_core import datasets as ds
from emohead_core import facedetect as fd
from emohead_core import io as ehio
from emohead_core import media
from emohead_core import preprocess as pp
from emohead_core.batch import BatchBusyError, Clip, run_batch, stash_of
from emohead_core.errors import EmoheadInputError, EmoheadOutputError

REPO = Path(__file__).resolve().parent.parent


def ffmpeg(*args: str) -> None:
    subprocess.run([media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def onnx_path(mirror, tmp_path_factory):
    return fd.export_onnx(mirror / "models/3ddfa_v2/FaceBoxesProd.pth", tmp_path_factory.mktemp("onnx") / "fb.onnx")


@pytest.fixture(scope="module")
def clip_mp4(crema_clips, tmp_path_factory) -> Path:
    """A real CREMA-D clip (face + speech) as H.264/AAC mp4 with the index (moov) first."""
    out = tmp_path_factory.mktemp("media") / "1001_DFA_HAP_XX.mp4"
    ffmpeg("-i", str(crema_clips[3]), "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac",
           "-movflags", "+faststart", str(out))
    return out


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ rotated phone videos


@pytest.fixture(scope="module")
def rotated(clip_mp4, tmp_path_factory) -> dict[int, Path]:
    """The clip with display-matrix rotation metadata (how phones store portrait video): the
    coded frames are unchanged, players (and ffmpeg) show them turned."""
    d = tmp_path_factory.mktemp("rotated")
    out = {}
    for deg in (90, -90, 180):
        p = d / f"rot{deg}.mp4"
        ffmpeg("-display_rotation", str(deg), "-i", str(clip_mp4), "-c", "copy", str(p))
        out[deg] = p
    return out


def test_probe_reports_the_display_size_of_rotated_video(clip_mp4, rotated):
    plain = media.probe(clip_mp4)
    assert (plain.width, plain.height, plain.rotation) == (480, 360, 0)
    for deg, p in rotated.items():
        info = media.probe(p)
        assert info.rotation == deg % 360
        assert (info.width, info.height) == ((360, 480) if deg % 180 else (480, 360)), deg


def test_rotated_frames_decode_turned_not_striped(clip_mp4, rotated):
    """Every frame reader reshapes with the display size: the frames are the plain clip's turned
    (exactly, the rotation is lossless), not garbage from a wrong reshape."""
    plain = media.read_frames(clip_mp4)
    assert np.array_equal(media.read_frames(rotated[90]), np.rot90(plain, k=1, axes=(1, 2)))
    assert np.array_equal(media.read_frames(rotated[-90]), np.rot90(plain, k=-1, axes=(1, 2)))
    assert np.array_equal(media.read_frames(rotated[180]), plain[:, ::-1, ::-1])
    resized = media.read_frames(rotated[90], fps=25, size=(90, 120))
    assert resized.shape[1:] == (120, 90, 3)


@pytest.fixture(scope="module")
def phone_clip(clip_mp4, tmp_path_factory) -> Path:
    """A phone recording: the sensor stores the frames turned by 90 degrees (the face lies on its
    side in the coded frames) plus display-matrix metadata that turns them upright on display."""
    d = tmp_path_factory.mktemp("phone")
    coded = d / "coded.mp4"
    ffmpeg("-i", str(clip_mp4), "-vf", "transpose=clock", "-c:v", "libx264", "-preset", "veryfast", "-crf", "12",
           "-c:a", "copy", str(coded))
    phone = d / "phone.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(coded), "-c", "copy", str(phone))
    return phone


def test_phone_video_crops_like_the_upright_clip(clip_mp4, phone_clip, onnx_path, tmp_path):
    """Used to decode as striped garbage ("face found in only 0 of 57 checked frames")."""
    info = media.probe(phone_clip)
    assert (info.width, info.height, info.rotation) == (480, 360, 90)
    up = pp.crop_clip(clip_mp4, onnx_path, tmp_path / "up.mp4", tmp_path / "up.boxes.parquet", crop_size=128)
    s = pp.crop_clip(phone_clip, onnx_path, tmp_path / "p.mp4", tmp_path / "p.boxes.parquet", crop_size=128)
    assert s["detected"] == s["checked"] == up["checked"]  # the face is found in every frame
    boxes = pp.read_boxes(tmp_path / "p.boxes.parquet")
    assert (boxes["src_width"].iloc[0], boxes["src_height"].iloc[0]) == (480, 360)
    assert np.abs(np.array(s["crop_box"]) - np.array(up["crop_box"])).max() <= 4
    out = media.probe(tmp_path / "p.mp4")
    assert (out.width, out.height, out.rotation) == (128, 128, 0)  # the crop is upright, no metadata
    a = media.read_frames(tmp_path / "up.mp4").astype(np.float32)
    b = media.read_frames(tmp_path / "p.mp4").astype(np.float32)
    assert a.shape == b.shape and np.abs(a - b).mean() < 6


# ------------------------------------------------------------------ truncated files


@pytest.fixture(scope="module")
def truncated(clip_mp4, tmp_path_factory) -> Path:
    """The faststart mp4 cut at half its bytes: the index still declares the full duration."""
    p = tmp_path_factory.mktemp("trunc") / "1001_DFA_HAP_XX.mp4"
    data = clip_mp4.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def test_truncated_mp4_fails_naming_the_file_without_outputs(truncated, clip_mp4, onnx_path, tmp_path):
    assert media.probe(truncated).duration_s == pytest.approx(media.probe(clip_mp4).duration_s)
    out_v, out_b, out_w = tmp_path / "c.mp4", tmp_path / "c.boxes.parquet", tmp_path / "c.wav"
    with pytest.raises(EmoheadInputError) as e:
        pp.crop_clip(truncated, onnx_path, out_v, out_b, crop_size=128)
    msg = str(e.value)
    assert str(truncated) in msg and "truncated" in msg and "of video" in msg and "re-download" in msg
    with pytest.raises(EmoheadInputError) as e:  # its audio: not padded with silence
        pp.extract_clip_audio(truncated, out_w)
    assert str(truncated) in str(e.value) and "of audio" in str(e.value)
    assert not out_v.exists() and not out_b.exists() and not out_w.exists()
    assert os.listdir(tmp_path) == []
    # the complete file passes both checks
    pp.crop_clip(clip_mp4, onnx_path, out_v, out_b, crop_size=128)
    pp.extract_clip_audio(clip_mp4, out_w, boxes_path=out_b)
    assert len(pp.read_boxes(out_b)) == round(media.probe(clip_mp4).duration_s * 25)


def test_decoded_duration_check_tolerance():
    media.check_decoded_duration("a.mp4", 2.0, 2.27, "video")  # within max(0.5 s, 5 %)
    media.check_decoded_duration("a.mp4", 57.5, 60.0, "video")
    media.check_decoded_duration("a.mp4", 0.1, None, "video")  # no declared duration: no check
    for decoded, declared in [(1.7, 2.27), (56.9, 60.0)]:
        with pytest.raises(EmoheadInputError, match="a.mp4: decoded only"):
            media.check_decoded_duration("a.mp4", decoded, declared, "video")


# ------------------------------------------------------------------ audio: missing, silent


def test_clip_without_audio_fails_at_start_naming_it(clip_mp4, tmp_path):
    """A video without an audio track is rejected when the sample table is built, i.e. before
    any crop is written (it used to fail only after its crop)."""
    root = tmp_path / "talks"
    root.mkdir()
    shutil.copy(clip_mp4, root / "good.mp4")
    ffmpeg("-i", str(clip_mp4), "-an", "-c", "copy", str(root / "mute.mp4"))
    with pytest.raises(ds.BadFilesError) as e:
        ds.build_table("talks", {"kind": "folder", "root": str(root)})
    msg = str(e.value)
    assert f"{root / 'mute.mp4'}: has no audio stream" in msg and "exclude" in msg and "good.mp4" not in msg
    df = ds.build_table("talks", {"kind": "folder", "root": str(root), "exclude": ["mute.mp4"]})
    assert list(df["sample_id"]) == ["good"]


def test_silent_audio_is_warned_naming_the_file(clip_mp4, tmp_path, caplog):
    silent = tmp_path / "silent.mp4"
    ffmpeg("-i", str(clip_mp4), "-f", "lavfi", "-i", "anullsrc=r=44100:cl=mono", "-map", "0:v", "-map", "1:a",
           "-c:v", "copy", "-c:a", "aac", "-shortest", str(silent))
    with caplog.at_level(logging.WARNING, logger="emohead_core.preprocess"):
        s = pp.extract_clip_audio(silent, tmp_path / "s.wav")
    assert s["silent"] and sf.info(str(tmp_path / "s.wav")).frames > 0  # a warning, not an error
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(silent) in m and "silent" in m and "Fix:" in m for m in warned), warned
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emohead_core.preprocess"):
        s = pp.extract_clip_audio(clip_mp4, tmp_path / "g.wav")
    assert not s["silent"] and not [r for r in caplog.records if r.levelno == logging.WARNING]
