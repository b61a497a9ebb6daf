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

from emohead_core import io as ehio
from emohead_core import media
from emohead_core.batch import BatchBusyError, Clip, run_batch, stash_of
from emohead_core.errors import EmoheadInputError, EmoheadOutputError
from emohead_core.preprocess import crop as pp
from emohead_core.preprocess import datasets as ds
from emohead_core.preprocess import facedetect as fd

REPO = Path(__file__).resolve().parents[2]


def ffmpeg(*args: str) -> None:
    subprocess.run(
        [media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True
    )


@pytest.fixture(scope="module")
def onnx_path(mirror, tmp_path_factory):
    return fd.export_onnx(
        mirror / "models/3ddfa_v2/FaceBoxesProd.pth", tmp_path_factory.mktemp("onnx") / "fb.onnx"
    )


@pytest.fixture(scope="module")
def clip_mp4(crema_clips, tmp_path_factory) -> Path:
    """A real CREMA-D clip (face + speech) as H.264/AAC mp4 with the index (moov) first."""
    out = tmp_path_factory.mktemp("media") / "1001_DFA_HAP_XX.mp4"
    ffmpeg(
        "-i",
        str(crema_clips[3]),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-c:a",
        "aac",
        "-movflags",
        "+faststart",
        str(out),
    )
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
    ffmpeg(
        "-i",
        str(clip_mp4),
        "-vf",
        "transpose=clock",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "12",
        "-c:a",
        "copy",
        str(coded),
    )
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
    ffmpeg(
        "-i",
        str(clip_mp4),
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=44100:cl=mono",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-shortest",
        str(silent),
    )
    with caplog.at_level(logging.WARNING, logger="emohead_core.preprocess.crop"):
        s = pp.extract_clip_audio(silent, tmp_path / "s.wav")
    assert s["silent"] and sf.info(str(tmp_path / "s.wav")).frames > 0  # a warning, not an error
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(silent) in m and "silent" in m and "Fix:" in m for m in warned), warned
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emohead_core.preprocess.crop"):
        s = pp.extract_clip_audio(clip_mp4, tmp_path / "g.wav")
    assert not s["silent"] and not [r for r in caplog.records if r.levelno == logging.WARNING]


# ------------------------------------------------------------------ disk full, read-only results


class FullDisk:
    """From the ``after``+1-th atomic temp file on, every temp is /dev/full, so each write into
    it fails with the kernel's real ENOSPC - in Python, pyarrow and ffmpeg alike. (A real small
    full filesystem needs a mount; this makes the same error at the layer every output goes
    through, emohead_core.io.atomic_path.)"""

    def __init__(self, monkeypatch, after: int = 0):
        import tempfile

        self.after, self.count = after, 0
        real = tempfile.mkstemp

        def mkstemp(*a, **kw):
            fd, name = real(*a, **kw)
            self.count += 1
            if self.count > self.after:
                os.close(fd)
                os.unlink(name)
                os.symlink("/dev/full", name)
                fd = os.open(name, os.O_WRONLY)
            return fd, name

        real_mode = ehio._default_mode

        def default_mode(path, base):
            assert not Path(path).is_symlink(), f"a write into the full disk did not fail: {path}"
            real_mode(path, base)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        monkeypatch.setattr(ehio, "_default_mode", default_mode)


def _assert_output_fault(e: EmoheadOutputError, where: Path, reason: str) -> str:
    msg = str(e)
    assert isinstance(e, EmoheadOutputError) and not isinstance(e, EmoheadInputError)
    assert e.reason == reason and str(where) in msg and "Fix:" in msg
    assert "results_dir" in msg  # the way out: another results directory
    for blame in ("exclude", "readable audio/video", "re-download", "re-encode"):
        assert blame not in msg, (blame, msg)  # never blames or drops an input clip
    return msg


@pytest.mark.parametrize("writer", ["python", "parquet", "ffmpeg"])
def test_disk_full_is_an_output_error_naming_the_file(writer, monkeypatch, tmp_path):
    FullDisk(monkeypatch)
    target = tmp_path / "out" / {"python": "a.json", "parquet": "a.parquet", "ffmpeg": "a.mp4"}[writer]
    with pytest.raises(EmoheadOutputError) as e:
        if writer == "python":
            ehio.write_json_atomic(target, {"x": list(range(1000))})
        elif writer == "parquet":
            with ehio.atomic_path(target) as tmp:
                pd.DataFrame({"x": np.arange(100_000)}).to_parquet(tmp)
        else:
            media.write_video(np.zeros((10, 64, 64, 3), np.uint8), target, 25)
    msg = _assert_output_fault(e.value, target, "no_space")
    assert "no space left" in msg and "free space" in msg
    assert os.listdir(target.parent) == []  # no temp, no partial target


@pytest.fixture
def preprocess_batch(crema_clips, onnx_path):
    """preprocess_actor over two real clips of actor 1001 into ``root``."""
    clips = [(c.stem, str(c), str(c)) for c in crema_clips[:2]]

    def run(root: Path):
        return pp.preprocess_actor(
            clips, onnx_path, root / "crop" / "1001", root / "audio" / "1001", crop_size=128
        )

    return run


def test_disk_full_in_an_actor_batch_stops_it_without_blaming_clips(preprocess_batch, monkeypatch, tmp_path):
    """Issue 16 finding 4: every clip after the disk filled was listed as bad input with "fix or
    exclude the clips above". Now the batch stops at the first failed write with one output-side
    message; the clip finished before is kept and reused; after space is freed the rerun gives
    the outputs of an undisturbed run."""
    from tests.cluster.test_slurm import assert_same_outputs

    ref = tmp_path / "ref" / "results"
    preprocess_batch(ref)

    run = tmp_path / "run" / "results"
    full = FullDisk(monkeypatch, after=4)  # clip 1 writes crop, boxes, wav, marker; then the disk is full
    with pytest.raises(EmoheadOutputError) as e:
        preprocess_batch(run)
    stash = stash_of(run / "crop" / "1001")
    msg = _assert_output_fault(e.value, stash, "no_space")
    assert "stopped at clip 1001_DFA_DIS_XX" in msg and "1 clip(s) finished before are kept" in msg
    assert full.count == 5  # nothing was tried after the first failed write
    first = "1001_DFA_ANG_XX"
    assert {p.name for p in stash.iterdir()} == {f"{first}.mp4", f"{first}.boxes.parquet", ".batch"}
    assert [p.name for p in (stash / ".batch").iterdir()] == [f"{first}.json"]

    monkeypatch.undo()  # space freed
    counts = preprocess_batch(run)
    assert (counts["reused"], counts["computed"], counts["failed"]) == (1, 1, 0)
    assert assert_same_outputs(ref.parent, run.parent) == 6


def _read_only(monkeypatch, d: Path) -> None:
    """Make ``d`` read-only. As root permission bits do not apply, so creating anything in it
    then fails with EACCES as the kernel reports it for a non-root user (os.mkdir / os.open, the
    calls every directory and temp file is created with)."""
    d.mkdir(parents=True, exist_ok=True)
    d.chmod(0o555)
    if os.geteuid() != 0:
        return
    inside = str(d.resolve()) + os.sep

    def denied(path) -> bool:
        return os.path.abspath(os.fspath(path)).startswith(inside)

    real_mkdir, real_open = os.mkdir, os.open

    def mkdir(path, *a, **kw):
        if denied(path) and not os.path.isdir(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_mkdir(path, *a, **kw)

    def open_(path, flags, *a, **kw):
        if denied(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, *a, **kw)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)


def test_read_only_results_dir_is_an_output_error_not_a_traceback(preprocess_batch, monkeypatch, tmp_path):
    results = tmp_path / "results"
    _read_only(monkeypatch, results)
    try:
        with pytest.raises(EmoheadOutputError) as e:
            preprocess_batch(results)
        msg = _assert_output_fault(e.value, results, "read_only")
        assert "read-only or not writable" in msg and "writable" in msg
        with pytest.raises(EmoheadOutputError) as e:  # a single output the same way
            ehio.write_json_atomic(results / "x" / "a.json", {})
        _assert_output_fault(e.value, results, "read_only")
    finally:
        results.chmod(0o755)
    assert os.listdir(results) == []


def test_unrelated_errors_stay_what_they_are(tmp_path):
    """An input error raised while an output is open, or a bug, is not turned into an output error."""
    with pytest.raises(EmoheadInputError, match="bad clip"):
        with ehio.atomic_path(tmp_path / "a.mp4"):
            raise EmoheadInputError("bad clip", path="x.mp4")
    with pytest.raises(KeyError):
        with ehio.atomic_path(tmp_path / "a.mp4"):
            raise KeyError("bug")
    unreadable = PermissionError(errno.EACCES, "Permission denied", "/data/in.mp4")  # an input
    assert ehio.output_fault(unreadable, tmp_path / "out" / "a.mp4") is None
    assert (
        ehio.output_fault(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "a").reason
        == "no_space"
    )
    assert os.listdir(tmp_path) == []


def test_read_only_duration_cache_is_a_warning(mirror, monkeypatch, tmp_path, caplog):
    cache_dir = tmp_path / "resources" / "cache"
    _read_only(monkeypatch, cache_dir)
    spec = {"kind": "folder", "root": "asset:data/talking-heads", "include": ["uncrop_Obama.mp4"]}
    try:
        with caplog.at_level(logging.WARNING, logger="emohead_core.preprocess.datasets"):
            df = ds.build_table("obama", spec, mirror=mirror, cache_path=cache_dir / "durations_obama.json")
    finally:
        cache_dir.chmod(0o755)
    assert list(df["sample_id"]) == ["uncrop_Obama"]
    assert any("duration cache" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ concurrent runs: actor batches

HOLD_BATCH = """
import sys
from pathlib import Path
from emohead_core.batch import batch_lock
with batch_lock(Path(sys.argv[1]), "preprocess 1001"):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_second_run_of_an_actor_batch_is_refused_while_the_first_runs(tmp_path):
    """Two runs on the same results (Snakemake's lock is gone once any run ends): the second
    run's job for the same actor fails at once instead of writing into, or renaming away, the
    stash the first one fills; afterwards the batch runs normally."""
    out = tmp_path / "crop" / "1001"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_BATCH, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        stash_of(out).mkdir(parents=True)
        (stash_of(out) / "first-run.mp4").write_bytes(b"being written")
        calls = []
        with pytest.raises(BatchBusyError) as e:
            run_batch(
                [out],
                [Clip("a", {}, {"v": (0, "a.mp4")})],
                lambda c, t: calls.append(c),
                params={},
                desc="preprocess 1001",
            )
        msg = str(e.value)
        assert str(out) in msg and "another process" in msg and "Fix: wait for that run" in msg
        assert calls == [] and (stash_of(out) / "first-run.mp4").read_bytes() == b"being written"
    finally:
        holder.communicate("done\n", timeout=60)
    assert holder.returncode == 0

    def work(clip, targets):
        targets["v"].write_bytes(b"ok")

    run_batch([out], [Clip("a", {}, {"v": (0, "a.mp4")})], work, params={}, desc="preprocess 1001")
    assert (out / "a.mp4").read_bytes() == b"ok" and sorted(os.listdir(out.parent)) == ["1001"]


def test_actor_batch_runs_unlocked_where_the_filesystem_has_no_locks(monkeypatch, tmp_path, caplog):
    import fcntl

    def no_locks(*a):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    out = tmp_path / "crop" / "1001"
    with caplog.at_level(logging.WARNING, logger="emohead_core.batch"):
        run_batch(
            [out],
            [Clip("a", {}, {"v": (0, "a.mp4")})],
            lambda c, t: t["v"].write_bytes(b"ok"),
            params={},
            desc="preprocess 1001",
        )
    assert (out / "a.mp4").read_bytes() == b"ok"
    assert any("without the concurrent-run guard" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ config keys and values


def _cfg(**sections) -> dict:
    from emohead_core.config import deep_update

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return deep_update(cfg, sections)


@pytest.mark.parametrize(
    "override, key, suggestion",
    [
        (
            {"datasets": {"crema": {"kind": "crema_d", "root": "/data", "crop_sise": 128}}},
            "datasets.crema.crop_sise",
            "datasets.crema.crop_size",
        ),
        ({"preprocesss": {"fps": 30}}, "preprocesss", "preprocess"),
        (
            {"preprocess": {"min_face_fration": 0.3}},
            "preprocess.min_face_fration",
            "preprocess.min_face_fraction",
        ),
        (
            {"audio2exp": {"variants": {"mine": {"rhoo": 0.3}}}},
            "audio2exp.variants.mine.rhoo",
            "audio2exp.variants.mine.rho",
        ),
        (
            {
                "render": {
                    "subjects": {
                        "me": {"dataset": "d", "sample": "s", "hyperplanes": "h.json", "emotoin": "sad"}
                    }
                }
            },
            "render.subjects.me.emotoin",
            "render.subjects.me.emotion",
        ),
        (
            {"features": {"profiles": {"paper": {"encoders": {"hubert": {"layr": 3}}}}}},
            "features.profiles.paper.encoders.hubert.layr",
            "features.profiles.paper.encoders.hubert.layer",
        ),
    ],
)
def test_unknown_config_key_fails_naming_it_and_the_close_match(override, key, suggestion):
    from emohead_core.config import validate_config

    with pytest.raises(EmoheadInputError) as e:
        validate_config(_cfg(**override))
    msg = str(e.value)
    assert f"{key}: unknown key; did you mean {suggestion}?" in msg and "Fix: rename" in msg


def test_unknown_keys_follow_refs_and_alternatives():
    from emohead_core.config import unknown_keys

    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "split": {"$ref": "#/$defs/split"},
            "subject": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"split": {"oneOf": [{"type": "string"}, {"$ref": "#/$defs/split"}]}},
            },
        },
        "$defs": {
            "split": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"mode": {}, "test_fraction": {}},
            }
        },
    }
    cfg = {
        "split": {"mode": "clips", "tets_fraction": 0.1},
        "subject": {"split": {"mdoe": "clips"}},
        "spilt": {},
    }
    found = {".".join(map(str, path)): known for path, known in unknown_keys(cfg, schema)}
    assert sorted(found) == ["spilt", "split.tets_fraction", "subject.split.mdoe"]
    assert found["subject.split.mdoe"] == ["mode", "test_fraction"]
    assert list(unknown_keys({"subject": {"split": "clips"}}, schema)) == []


def test_bad_config_values_fail_naming_the_key():
    from emohead_core.config import validate_config

    with pytest.raises(EmoheadInputError) as e:
        validate_config(
            _cfg(datasets={"c": {"kind": "crema_d", "root": "/d", "crop_size": 127, "on_bad_file": "ignore"}})
        )
    msg = str(e.value)
    assert "datasets.c.crop_size: 127 is not a multiple of 2" in msg
    assert "datasets.c.on_bad_file: 'ignore' is not one of ['fail', 'skip']" in msg


def _schema_keys(node: dict) -> set[str]:
    return set(node.get("properties") or {})


def test_schema_is_strict_and_described_and_matches_the_code():
    import dataclasses
    import inspect

    from emohead_core.audio2exp.config import MODEL_KEYS, TRAIN_KEYS
    from emohead_core.config import load_config, load_schema, schema_defaults
    from emohead_core.features.pipeline import DEFAULTS as FEATURE_DEFAULTS
    from emohead_core.render.data import head_masks
    from emohead_core.render.hashgrid import HashGridConfig
    from emohead_core.render.network import NeRFConfig
    from emohead_core.render.train import DEFAULT_TRAIN

    schema = load_schema()

    def walk(node, path):
        if not isinstance(node, dict):
            return
        props = node.get("properties")
        if props:
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
            for k, sub in props.items():
                assert isinstance(sub, dict) and sub.get("description"), f"{path}.{k} has no description"
                walk(sub, f"{path}.{k}")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}.<name>")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(schema, "config")
    for name, node in (schema.get("$defs") or {}).items():
        walk(node, f"$defs.{name}")
    p = schema["properties"]

    # defaults live in the schema only: every key of these sections has one there, the code's
    # default dicts are the schema's, and a validated config holds every key
    def no_default(node):
        return {
            k for k, sub in node["properties"].items() if "default" not in sub and not sub.get("properties")
        }

    assert not no_default(p["preprocess"])
    assert no_default(p["features"]) == {"profiles"}
    assert not no_default(p["render"]["properties"]["train"])
    assert not no_default(p["render"]["properties"]["train"]["properties"]["occupancy"])
    assert {"results_dir", "resources_dir", "logs_dir", "benchmarks_dir"} <= set(schema_defaults())
    # threads is the job's CPU budget (the rule's threads:), passed as an argument, not an option
    assert _schema_keys(p["preprocess"]) == set(pp.DEFAULTS) | {"threads"}
    assert pp.DEFAULTS == {k: v for k, v in schema_defaults("preprocess").items() if k != "threads"}
    assert FEATURE_DEFAULTS == schema_defaults("features")
    validated = load_config()
    assert set(validated["preprocess"]) == _schema_keys(p["preprocess"])
    assert validated["logs_dir"] == "logs" and validated["benchmarks_dir"] == "benchmarks"
    assert _schema_keys(p["audio2exp"]["properties"]["model"]) == MODEL_KEYS
    assert _schema_keys(p["audio2exp"]["properties"]["train"]) == TRAIN_KEYS
    r = p["render"]["properties"]
    assert _schema_keys(r["train"]) == set(DEFAULT_TRAIN) - {"emotion", "shape_net", "param_stats"}
    assert {k: DEFAULT_TRAIN[k] for k in _schema_keys(r["train"])} == schema_defaults("render.train")
    assert _schema_keys(r["train"]["properties"]["occupancy"]) == set(DEFAULT_TRAIN["occupancy"])
    assert _schema_keys(r["model"]) == {f.name for f in dataclasses.fields(NeRFConfig)}
    assert _schema_keys(r["model"]["properties"]["grid"]) == {
        f.name for f in dataclasses.fields(HashGridConfig)
    } | {"finest_resolution"}
    assert _schema_keys(r["mask"]) == set(list(inspect.signature(head_masks).parameters)[2:])
    for extra in ([], [REPO / "config" / "demo.yaml"]):
        load_config(*extra)  # the shipped configs pass


# ------------------------------------------------------------------ emohead render arguments


@pytest.fixture
def subject_dir(tmp_path, monkeypatch):
    """A subject directory as the workflow writes it; loading its model must never be reached."""
    import emohead_core.render.train as rt

    d = tmp_path / "render" / "me"
    d.mkdir(parents=True)
    (d / "model.pt").write_bytes(b"not loaded")
    (d / "prepared.npz").write_bytes(b"not loaded")
    (d / "prepared").mkdir()
    w = np.eye(10)
    hyper = tmp_path / "hyperplanes.json"
    hyper.write_text(
        json.dumps(
            {
                "hyperplanes": {
                    z: {"w_z": w[i].tolist(), "b": 0.0} for i, z in enumerate(["happy", "sad", "neutral"])
                }
            }
        )
    )
    (d / "subject.json").write_text(json.dumps({"hyperplanes": str(hyper)}))
    wav = tmp_path / "speech.wav"
    sf.write(str(wav), np.zeros(1600, np.float32), 16000)

    def no_work(*a, **kw):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(rt, "load_renderer", no_work)
    return {"dir": d, "audio": wav, "hyper": hyper}


def _render(capsys, *args) -> tuple[int, str]:
    from emohead_core.cli import main

    rc = main(["render", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


@pytest.mark.parametrize("value", ["1e9", "-1", "nan"])
def test_render_intensity_out_of_range_fails_before_any_work(subject_dir, capsys, tmp_path, value):
    rc, err = _render(
        capsys,
        "--subject-dir",
        str(subject_dir["dir"]),
        "--audio",
        str(subject_dir["audio"]),
        "--out",
        str(tmp_path / "o.mp4"),
        "--intensity",
        value,
    )
    assert rc == 2 and "--intensity" in err and "[0, 4]" in err and "Fix:" in err
    curve = tmp_path / "tau.txt"
    np.savetxt(curve, [1.0, 2.0, 7.5])
    rc, err = _render(
        capsys,
        "--subject-dir",
        str(subject_dir["dir"]),
        "--audio",
        str(subject_dir["audio"]),
        "--out",
        str(tmp_path / "o.mp4"),
        "--intensity",
        str(curve),
    )
    assert rc == 2 and "--intensity" in err and "7.5" in err
    assert not (tmp_path / "o.mp4").exists()


def test_render_unknown_timeline_emotion_fails_before_any_work(subject_dir, capsys, tmp_path):
    rc, err = _render(
        capsys,
        "--subject-dir",
        str(subject_dir["dir"]),
        "--audio",
        str(subject_dir["audio"]),
        "--out",
        str(tmp_path / "o.mp4"),
        "--timeline",
        "0:happy,1.5:furious",
    )
    assert rc == 2 and "furious" in err and str(subject_dir["hyper"]) in err
    assert "['happy', 'neutral', 'sad']" in err and "Fix:" in err
    rc, err = _render(
        capsys,
        "--subject-dir",
        str(subject_dir["dir"]),
        "--audio",
        str(subject_dir["audio"]),
        "--out",
        str(tmp_path / "o.mp4"),
        "--timeline",
        "zero:happy",
    )
    assert rc == 2 and "bad emotion timeline item" in err


def test_render_missing_subject_dir_or_audio_is_a_clear_error(subject_dir, capsys, tmp_path):
    missing = tmp_path / "render" / "nobody"
    rc, err = _render(
        capsys,
        "--subject-dir",
        str(missing),
        "--audio",
        str(subject_dir["audio"]),
        "--out",
        str(tmp_path / "o.mp4"),
    )
    assert rc == 2 and str(missing) in err and "results/render/<subject>" in err and "Fix:" in err
    rc, err = _render(
        capsys,
        "--subject-dir",
        str(subject_dir["dir"]),
        "--audio",
        str(tmp_path / "none.wav"),
        "--out",
        str(tmp_path / "o.mp4"),
    )
    assert rc == 2 and "audio file not found" in err and str(tmp_path / "none.wav") in err
    (subject_dir["dir"] / "model.pt").unlink()
    rc, err = _render(
        capsys,
        "--subject-dir",
        str(subject_dir["dir"]),
        "--audio",
        str(subject_dir["audio"]),
        "--out",
        str(tmp_path / "o.mp4"),
    )
    assert rc == 2 and str(subject_dir["dir"]) in err and "model.pt" in err


# ------------------------------------------------------------------ unusable dataset files at start


def _crema_root(mirror, root: Path, broken: list[str], empty: tuple[str, ...] = ()) -> Path:
    root.mkdir(parents=True)
    for f in ["1001_DFA_ANG_XX.flv", "1001_DFA_HAP_XX.flv", "1002_DFA_ANG_XX.mp3"]:
        (root / f).symlink_to(mirror / "data" / "crema-d" / f)
    for name in broken:
        (root / name).write_bytes(os.urandom(2048))
    for name in empty:
        (root / name).write_bytes(b"")
    return root


def test_every_unusable_file_is_listed_at_once_with_a_ready_exclude_list(mirror, tmp_path):
    """What a user of a 30,000-clip dataset gets (docs/reliability.md): ALL unusable files of all
    datasets in one message (not one per run), and bad_files_<name>.yaml to paste as exclude."""
    a = _crema_root(
        mirror, tmp_path / "a", ["1001_DFA_SAD_XX.flv", "1003_DFA_NEU_XX.wav", "1001_DFA_XYZ_XX.flv"]
    )
    b = _crema_root(mirror, tmp_path / "b", ["1004_DFA_SAD_XX.flv"])
    cfg = {
        "resources_dir": str(tmp_path / "res"),
        "datasets": {"a": {"kind": "crema_d", "root": str(a)}, "b": {"kind": "crema_d", "root": str(b)}},
    }
    with pytest.raises(ds.BadFilesError) as e:
        ds.build_tables(cfg)
    msg = str(e.value)
    assert "4 unusable file(s) in dataset(s) a, b" in msg
    for root, name in [
        (a, "1001_DFA_SAD_XX.flv"),
        (a, "1003_DFA_NEU_XX.wav"),
        (a, "1001_DFA_XYZ_XX.flv"),
        (b, "1004_DFA_SAD_XX.flv"),
    ]:
        assert str(root / name) in msg
    assert "datasets.a.exclude" in msg and "on_bad_file: skip" in msg
    listing = tmp_path / "res" / "cache" / "bad_files_a.yaml"
    assert str(listing) in msg
    exclude = yaml.safe_load(listing.read_text())["exclude"]
    assert sorted(exclude) == ["1001_DFA_SAD_XX.flv", "1001_DFA_XYZ_XX.flv", "1003_DFA_NEU_XX.wav"]
    cfg["datasets"]["a"]["exclude"] = exclude  # pasted as the message says
    cfg["datasets"]["b"]["exclude"] = yaml.safe_load((listing.parent / "bad_files_b.yaml").read_text())[
        "exclude"
    ]
    tables = ds.build_tables(cfg)
    assert list(tables["a"]["sample_id"]) == ["1001_DFA_ANG_XX", "1001_DFA_HAP_XX", "1002_DFA_ANG_XX"]


def test_on_bad_file_skip_leaves_them_out_with_a_warning(mirror, tmp_path, caplog):
    good = ds.build_table("c", {"kind": "crema_d", "root": str(_crema_root(mirror, tmp_path / "good", []))})
    root = _crema_root(mirror, tmp_path / "c", ["1001_DFA_SAD_XX.flv"], empty=("1001_DFA_FEA_XX.flv",))
    with caplog.at_level(logging.WARNING, logger="emohead_core.preprocess.datasets"):
        df = ds.build_table(
            "c",
            {"kind": "crema_d", "root": str(root), "on_bad_file": "skip"},
            cache_path=tmp_path / "cache" / "d.json",
        )
    for col in ("video_path", "audio_path"):
        good[col] = good[col].str.replace(str(tmp_path / "good"), str(root))
    pd.testing.assert_frame_equal(df, good)  # the good clips' rows (and splits) are unchanged
    warned = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "left out 2 unusable file(s)" in warned and str(root / "1001_DFA_SAD_XX.flv") in warned
    assert f"{root / '1001_DFA_FEA_XX.flv'}: empty file" in warned
    assert "bad_files_c.yaml" in warned


# ------------------------------------------------------------------ the workflow itself

SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"
FOLDER_ONLY = {
    "datasets": {
        "obama": {
            "kind": "folder",
            "root": "asset:data/talking-heads",
            "include": ["uncrop_Obama.mp4"],
            "crop_size": 256,
        }
    }
}


def _snakemake(cwd: Path, mirror, config: dict, *args: str) -> subprocess.CompletedProcess:
    (cwd / "my.yaml").write_text(yaml.safe_dump(config))
    cmd = [
        str(SNAKEMAKE),
        "-s",
        str(REPO / "Snakefile"),
        "--configfile",
        str(REPO / "config" / "config.yaml"),
        str(cwd / "my.yaml"),
        "--cores",
        "1",
        *args,
    ]
    return subprocess.run(
        cmd,
        cwd=cwd,
        env=dict(os.environ, EMOHEAD_MIRROR=str(mirror)),
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_workflow_start_names_an_unknown_config_key(mirror, tmp_path):
    import copy

    cfg = {**copy.deepcopy(FOLDER_ONLY), "preprocesss": {"fps": 30}}
    cfg["datasets"]["obama"]["crop_sise"] = 128
    r = _snakemake(tmp_path, mirror, cfg, "-n")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "datasets.obama.crop_sise: unknown key; did you mean datasets.obama.crop_size?" in out
    assert "preprocesss: unknown key; did you mean preprocess?" in out
    assert not (tmp_path / "results").exists()


def test_workflow_start_hook_keeps_a_live_writers_temp(mirror, tmp_path):
    """Issue 16 finding 1, end to end: a second run starts while a job of the first one writes
    (a live writer's temp of the same output); its start hook removes only the dead writer's temp,
    and the live writer finishes."""
    from test_interrupt import _killed_writer, _start_writer  # tests/workflow/

    target = tmp_path / "results" / "obama" / "samples.parquet"
    writer, live = _start_writer(target)
    try:
        dead = _killed_writer(target)
        r = _snakemake(tmp_path, mirror, FOLDER_ONLY, "--rerun-incomplete", "results/obama/samples.parquet")
        out = r.stdout + r.stderr
        assert r.returncode == 0, out[-3000:]
        assert "removed 1 temp file(s) of interrupted jobs" in out and dead.name in out
        assert "kept 1 temp file(s)" in out and live.name in out
        assert live.is_file() and not dead.exists()
        assert list(ds.read_table(target)["sample_id"]) == ["uncrop_Obama"]
    finally:
        writer.communicate("go\n", timeout=60)
    assert writer.returncode == 0 and not live.exists()


def test_folder_only_config_gets_metrics_sheet_and_tables(mirror, tmp_path):
    """Issue 16 finding 8: a config with only a folder dataset crashed metrics_human_sheet
    (KeyError); it now writes an empty sheet that says why, and the tables."""
    r = _snakemake(
        tmp_path, mirror, FOLDER_ONLY, "results/metrics/human/sheet.csv", "results/tables/summary.csv"
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    sheet = pd.read_csv(tmp_path / "results" / "metrics" / "human" / "sheet.csv")
    assert (
        list(sheet.columns) == ["item", "video", "emotion", "Fidelity", "Coherence", "Empathy"]
        and sheet.empty
    )
    assert "No clips to rate yet" in (tmp_path / "results" / "metrics" / "human" / "sheet.html").read_text()
    assert (tmp_path / "results" / "tables" / "table_I.md").is_file()


def test_reliability_doc_rows_name_existing_tests():
    """docs/reliability.md: every row names the tests that keep it true, and they exist."""
    import re

    doc = (REPO / "docs" / "reliability.md").read_text()
    rows = [
        line
        for line in doc.splitlines()
        if line.startswith("| ")
        and not line.startswith("| ---")
        and not line.startswith(("| bad input", "| fault"))
    ]
    assert len(rows) >= 25
    refs = set()
    for row in rows:
        found = re.findall(r"([a-z0-9_]+\.py)::([a-z0-9_]+)", row)
        assert found or row.rstrip(" |").endswith("TODO"), f"row without a test: {row}"
        refs.update(found)
    for file, name in sorted(refs):
        found = sorted((REPO / "tests").rglob(file))  # tests/<stage>/, tests/workflow/, tests/
        assert len(found) == 1, (
            f"{file} named in docs/reliability.md: {len(found)} files of that name under tests/"
        )
        source = found[0].read_text()
        assert re.search(rf"^def {name}\(", source, re.M), (
            f"{file}::{name} named in docs/reliability.md is not a test"
        )
