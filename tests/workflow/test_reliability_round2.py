"""Reliability, round two (issue 23): no silent wrong result, no live run's file deleted, bounded
everything. Each test makes its input the way the trial did (real files with ffmpeg, a trained
tiny render subject, real Snakemake runs) and checks the clear error naming the file or key and
the fix, or the correct result. docs/reliability.md names these tests in its rows.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import yaml

from emohead_core import media
from emohead_core.errors import EmoheadInputError, EmoheadOutputError
from emohead_core.preprocess import crop as pp

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "render"))


def ffmpeg(*args: str) -> None:
    subprocess.run(
        [media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args], check=True
    )


def _render(capsys, *args) -> tuple[int, str]:
    from emohead_core.cli import main

    rc = main(["render", *args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def _wav(path: Path, seconds: float) -> Path:
    sr = 16000
    t = np.arange(int(sr * seconds)) / sr
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr)
    return path


# ------------------------------------------------------------------ a trained tiny render subject


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    """A render subject directory as render_train writes it (tiny model trained on a synthetic
    32x32 head, prepared store, hyperplanes, subject.json), copied per test."""
    from test_render_pipeline import _subject_dir  # tests/render/

    root = tmp_path_factory.mktemp("subject")
    sdir, data = _subject_dir(root)
    (sdir / "subject.json").write_text(json.dumps({"hyperplanes": "hyperplanes.json"}))
    return sdir, data


@pytest.fixture
def sdir(subject, tmp_path):
    d = tmp_path / "render" / "synth"
    shutil.copytree(subject[0], d)
    return d


def _alpha(tmp_path, data, n: int) -> Path:
    p = tmp_path / f"alpha{n}.npy"
    np.save(p, np.repeat(data.alpha[:1], n, 0))
    return p


# ------------------------------------------------------------------ 1: NaN in a hyperplanes file


def _nan_hyperplanes(sdir: Path, fmt: str) -> Path:
    hp = json.loads((sdir / "hyperplanes.json").read_text())
    if fmt == "json":  # Python's json writes NaN as the NaN literal, as a damaged file may hold
        hp["hyperplanes"]["sad"]["d_z"] = [float("nan")] + [0.0] * 9
        p = sdir / "nan_hyperplanes.json"
        p.write_text(json.dumps(hp))
        return p
    import pyarrow as pa
    import pyarrow.parquet as pq

    zs = list(hp["hyperplanes"])
    w = np.array([hp["hyperplanes"][z]["w_z"] for z in zs], np.float32)
    w[1, 3] = np.nan
    t = pa.table(
        {
            "emotion": zs,
            "w_z": pa.FixedSizeListArray.from_arrays(pa.array(w.reshape(-1)), 10),
            "b": [0.0] * len(zs),
        }
    )
    p = sdir / "nan_hyperplanes.parquet"
    pq.write_table(t, p)
    return p


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_nan_hyperplanes_fail_naming_the_file_with_or_without_timeline(subject, sdir, capsys, tmp_path, fmt):
    """The trial rendered a black head with exit status 0 (only a numpy cast warning)."""
    bad = _nan_hyperplanes(sdir, fmt)
    wav = _wav(tmp_path / "a.wav", 1.0)
    alpha = _alpha(tmp_path, subject[1], 25)
    out = tmp_path / "o.mp4"
    common = ["--subject-dir", str(sdir), "--audio", str(wav), "--alpha", str(alpha), "--out", str(out)]
    for extra in (["--timeline", "0:happy,0.5:sad"], []):
        rc, err = _render(capsys, *common, "--hyperplanes", str(bad), *extra)
        assert rc == 2 and str(bad) in err and "'sad'" in err and "finite" in err and "Fix:" in err
        assert not out.exists()
    # the subject's own hyperplanes (subject.json) damaged the same way, used by the audio
    # model's neutral edit (no --alpha): refused before the model is looked for
    (sdir / "subject.json").write_text(json.dumps({"hyperplanes": bad.name}))
    rc, err = _render(capsys, *[a for a in common if a not in ("--alpha", str(alpha))])
    assert rc == 2 and str(bad.resolve()) in err and "finite" in err and not out.exists()


def test_non_finite_expression_codes_or_weights_never_render_a_black_head(subject, sdir, capsys, tmp_path):
    from emohead_core.render.data import load_prepared
    from emohead_core.render.infer import render_clip
    from emohead_core.render.train import load_renderer

    data = load_prepared(sdir / "prepared")
    alphas = np.repeat(subject[1].alpha[:1], 10, 0)
    alphas[7, 2] = np.nan
    out = tmp_path / "o.mp4"
    with pytest.raises(EmoheadInputError, match="1 of 10 frames have non-finite expression codes"):
        render_clip(load_renderer(sdir / "model.pt", "cpu"), data, alphas, out, progress=False)
    assert not out.exists()
    # an --alpha file with inf: named
    a = tmp_path / "inf.npy"
    np.save(a, np.where(np.arange(10)[:, None] == 3, np.inf, alphas[:1]).astype(np.float32))
    rc, err = _render(
        capsys, "--subject-dir", str(sdir), "--audio", str(_wav(tmp_path / "a.wav", 0.4)), "--alpha", str(a),
        "--out", str(out),
    )  # fmt: skip
    assert rc == 2 and str(a) in err and "NaN or inf" in err and not out.exists()
    # a model.pt whose weights are NaN: the frame is refused naming model.pt
    s = torch.load(sdir / "model.pt", weights_only=True)
    for k, v in s["model"].items():
        if v.is_floating_point() and "color" in k:
            v.fill_(float("nan"))
    torch.save(s, sdir / "model.pt")
    with pytest.raises(EmoheadInputError) as e:
        render_clip(load_renderer(sdir / "model.pt", "cpu"), data, alphas[:5], out, progress=False)
    assert str(sdir / "model.pt") in str(e.value) and "non-finite colours" in str(e.value)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


# ------------------------------------------------------------------ 7: tracebacks -> messages


def test_bad_intensity_curve_files_are_named(sdir, capsys, tmp_path):
    wav = _wav(tmp_path / "a.wav", 0.4)
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros(0, np.float32))
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([1.0, "x", None], dtype=object), allow_pickle=True)
    words = tmp_path / "words.txt"
    words.write_text("one two\n")
    for f, why in [(empty, "holds no values"), (objects, "not a curve of numbers"), (words, "not a curve")]:
        rc, err = _render(
            capsys, "--subject-dir", str(sdir), "--audio", str(wav), "--out", str(tmp_path / "o.mp4"),
            "--intensity", str(f),
        )  # fmt: skip
        assert rc == 2 and str(f) in err and why in err and "Fix:" in err, err


def test_model_files_of_other_settings_are_named(sdir, capsys, tmp_path):
    """A model.pt whose stored settings do not fit its weights (another version, edited): the
    trial got a size-mismatch RuntimeError traceback."""
    s = torch.load(sdir / "model.pt", weights_only=True)
    s["model_cfg"] = dict(s["model_cfg"], hidden=2 * int(s["model_cfg"].get("hidden", 16)))
    torch.save(s, sdir / "model.pt")
    alpha = tmp_path / "zeros.npy"
    np.save(alpha, np.zeros((5, 10), np.float32))
    rc, err = _render(
        capsys, "--subject-dir", str(sdir), "--audio", str(_wav(tmp_path / "a.wav", 0.4)),
        "--alpha", str(alpha), "--out", str(tmp_path / "o.mp4"),
    )  # fmt: skip
    assert rc == 2 and str(sdir / "model.pt") in err and "do not fit its model settings" in err
    assert "Fix:" in err and not (tmp_path / "o.mp4").exists()
    # the audio-expression model the same way
    from emohead_core.audio2exp.model import ModelConfig, build_model
    from emohead_core.audio2exp.train import load_model

    cfg = ModelConfig(dim_v=8, dim_e=8, dim_gamma=8, d=16, d_h=16, n=2, ffn=(16,))
    other = dict(cfg.to_dict(), d=32)
    a2e = tmp_path / "a2e" / "model.pt"
    a2e.parent.mkdir()
    torch.save({"model_config": other, "state_dict": build_model(cfg).state_dict()}, a2e)
    with pytest.raises(EmoheadInputError) as e:
        load_model(a2e.parent)
    assert str(a2e) in str(e.value) and "size mismatch" in str(e.value)


def test_truncated_or_wrong_subject_json_is_named(sdir, capsys, tmp_path):
    wav = _wav(tmp_path / "a.wav", 0.4)
    common = ["--subject-dir", str(sdir), "--audio", str(wav), "--out", str(tmp_path / "o.mp4")]
    sj = sdir / "subject.json"
    full = json.dumps({"hyperplanes": "hyperplanes.json", "audio2exp": "../../a2e/main"})
    sj.write_text(full[: len(full) // 2])  # cut short
    rc, err = _render(capsys, *common)
    assert rc == 2 and str(sj) in err and "not a readable subject.json" in err and "Fix:" in err
    notjson = sdir / "hp.json"
    notjson.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    sj.write_text(json.dumps({"hyperplanes": "hp.json"}))
    rc, err = _render(capsys, *common, "--timeline", "0:happy")
    assert rc == 2 and str(notjson.resolve()) in err and "not a readable hyperplanes file" in err


# ------------------------------------------------------------------ 8: render memory, --out


def _peak_render(capsys, sdir, tmp_path, alpha_path: Path, n: int) -> tuple[int, str]:
    wav = _wav(tmp_path / f"a{n}.wav", n / 25)
    out = tmp_path / f"o{n}.mp4"
    tracemalloc.start()
    try:
        rc, err = _render(
            capsys, "--subject-dir", str(sdir), "--audio", str(wav), "--alpha", str(alpha_path),
            "--out", str(out), "--pose", "still",
        )  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rc == 0, err
    assert media.count_frames(out) == n
    return peak, err


def test_render_streams_frames_memory_flat_in_the_audios_length(subject, sdir, capsys, tmp_path):
    """Issue 23 item 8: every frame used to be kept until the end. Peak Python/NumPy memory of a
    render of 1,500 frames against one of 150 frames of the same subject: the frames alone
    (32x32x3 bytes each, kept, stacked and flipped) were > 10 MB more."""
    short, _ = _peak_render(capsys, sdir, tmp_path, _alpha(tmp_path, subject[1], 150), 150)
    long, err = _peak_render(capsys, sdir, tmp_path, _alpha(tmp_path, subject[1], 1500), 1500)
    frame = 32 * 32 * 3
    assert long - short < 1350 * frame / 10, (short, long)  # < 10 % of the frames' bytes
    assert "frame/s" in err and "<" in err  # progress bar with rate and remaining time


def test_out_on_a_read_only_directory_names_out_before_any_work(sdir, capsys, tmp_path, monkeypatch):
    from test_reliability import _read_only  # tests/workflow/

    import emohead_core.render.train as rt

    def no_work(*a, **kw):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(rt, "load_renderer", no_work)
    ro = tmp_path / "mnt"
    _read_only(monkeypatch, ro)
    try:
        rc, err = _render(
            capsys, "--subject-dir", str(sdir), "--audio", str(_wav(tmp_path / "a.wav", 0.4)),
            "--out", str(ro / "o.mp4"),
        )  # fmt: skip
    finally:
        ro.chmod(0o755)
    assert rc == 1 and str(ro / "o.mp4") in err and "cannot write --out" in err
    assert "--out a path in a writable directory" in err and "results_dir" not in err
    assert os.listdir(ro) == []


# ------------------------------------------------------------------ 3: a face that leaves the frame


@pytest.fixture(scope="module")
def face_model(mirror, tmp_path_factory):
    from emohead_core.expression.facemodel import FaceModel

    return FaceModel(mirror / "models" / "3ddfa_v2", onnx_dir=tmp_path_factory.mktemp("onnx"), threads=1)


def _slide_out(mirror, out: Path, start_s: float, gone_s: float = 0.8) -> Path:
    """3 s of a real talking head (450x450, 25 fps) that slides out of the picture to the right,
    starting at ``start_s`` and gone ``gone_s`` later (black from then on), with its speech."""
    src = mirror / "data" / "talking-heads" / "uncrop_Obama.mp4"
    ffmpeg(
        "-ss", "2", "-t", "3", "-i", str(src),
        "-filter_complex",
        "[0:v]setpts=PTS-STARTPTS[v];color=black:s=450x450:r=25[bg];"
        f"[bg][v]overlay=x='if(lt(t,{start_s}),0,(t-{start_s})*450/{gone_s})':y=0:shortest=1[o]",
        "-map", "[o]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(out),
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def slid(mirror, face_model, tmp_path_factory):
    """The trial's clip (the face leaves after 1.2 s of 3 s; frames 50-74 black), preprocessed
    with the defaults (FaceBoxes every 5th frame), with the warnings it logged."""
    d = tmp_path_factory.mktemp("slide")
    video = _slide_out(mirror, d / "leaves.mp4", 1.2)
    handler = logging.Handler()
    records = []
    handler.emit = records.append
    logging.getLogger("emohead_core").addHandler(handler)
    try:
        summary = pp.crop_clip(
            video, face_model.detector.onnx_path, d / "c.mp4", d / "c.boxes.parquet", crop_size=128
        )
    finally:
        logging.getLogger("emohead_core").removeHandler(handler)
    return dict(video=video, crop=d / "c.mp4", boxes=d / "c.boxes.parquet", summary=summary, log=records)


def test_face_leaving_the_frame_is_found_per_frame_and_warned(slid):
    """Issue 23 item 3 (preprocessing): the face is there in frames 0-29 and gone in 50-74; the
    frame where it leaves is found by checking every frame between the two FaceBoxes checks that
    disagree, the clip passes min_face_fraction (0.5) on its frames with a face, and a warning
    names the clip and the frames without one."""
    b = pp.read_boxes(slid["boxes"])
    face, checked = b["face"].to_numpy(), b["checked"].to_numpy()
    assert len(b) == 75 and face[:30].all() and not face[50:].any()
    edge = int(np.argmin(face))  # first frame without a face; one run of faces, then none
    assert face[:edge].all() and not face[edge:].any() and 30 <= edge <= 50
    assert checked[edge - 1] and checked[edge]  # decided on those frames, not interpolated
    assert slid["summary"]["face_frames"] == edge
    warned = [r.getMessage() for r in slid["log"] if r.levelno == logging.WARNING]
    assert any(
        str(slid["video"]) in m and f"no face in {75 - edge} of 75 frames ({edge}-74" in m for m in warned
    )


@pytest.mark.parametrize("detect_every", [None, 1, 5])
def test_frames_without_a_face_are_not_detected_in_the_expression_file(
    slid, face_model, tmp_path, caplog, detect_every
):
    """Issue 23 item 3 (expression): the trial's expression file marked all 75 frames detected
    with one frozen expression over the black frames. Now frames without a face are not
    ``detected`` - from preprocessing's boxes (None) or FaceBoxes on the crop (1, 5) - so the
    hyperplanes, audio2exp targets and renderer training frames (all select ``detected``) leave
    them out, and the clip's log counts them."""
    from emohead_core.audio2exp.data import read_alpha
    from emohead_core.expression.extract import extract_clip
    from emohead_core.expression.hyperplanes import collect_frames

    out = tmp_path / "leaves.parquet"
    with caplog.at_level(logging.WARNING, logger="emohead_core.expression"):
        if detect_every is None:
            d = extract_clip(slid["crop"], face_model, out, boxes=slid["boxes"])
        else:
            d = extract_clip(slid["crop"], face_model, out, detect_every=detect_every)
    det = d["detected"]
    assert det[:30].all() and not det[50:].any()
    face = pp.read_boxes(slid["boxes"])["face"].to_numpy()
    if detect_every is None:
        assert not det[~face].any()  # never a face where preprocessing saw none
    assert any(f"no face in {int((~det).sum())} of 75 frames" in r.getMessage() for r in caplog.records)
    _, _, targets = read_alpha(out)  # audio2exp targets
    assert (targets == det).all()
    table = pd.DataFrame(
        [dict(sample_id="leaves", split="train", video_path="v.mp4", emotion="happy", actor="a")]
    )
    assert len(collect_frames(table, {"leaves": out})["exp"]) == det.sum()  # hyperplane frames


def test_clip_with_too_few_faces_fails_on_its_frames(mirror, face_model, tmp_path):
    """The face leaves after 0.4 s: about a third of the frames show it, below the default
    min_face_fraction 0.5 (it used to be counted on the FaceBoxes checks only)."""
    video = _slide_out(mirror, tmp_path / "early.mp4", 0.4)
    out_v, out_b = tmp_path / "c.mp4", tmp_path / "c.boxes.parquet"
    with pytest.raises(EmoheadInputError) as e:
        pp.crop_clip(video, face_model.detector.onnx_path, out_v, out_b, crop_size=128)
    msg = str(e.value)
    assert str(video) in msg and "of 75 frames" in msg and "min_face_fraction is 50%" in msg
    assert not out_v.exists() and not out_b.exists()


# ------------------------------------------------------------------ 6: silent or unnamed


@pytest.fixture(scope="module")
def three_s(mirror, tmp_path_factory) -> Path:
    """3.00 s of a real talking head, H.264/AAC mp4 with the index first (as downloads are)."""
    out = tmp_path_factory.mktemp("cut") / "talk.mp4"
    src = mirror / "data" / "talking-heads" / "uncrop_Obama.mp4"
    ffmpeg(
        "-ss", "4", "-t", "3", "-i", str(src), "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac",
        "-movflags", "+faststart", str(out),
    )  # fmt: skip
    return out


def test_mp4_cut_at_85_percent_is_refused(three_s, face_model, tmp_path):
    """The trial's mp4 cut at 85 % (2.52 of 3.00 s) passed the 0.5 s container slack; the index
    of an mp4 declares each stream's length, which the decoded length is held to."""
    cut = tmp_path / "cut85.mp4"
    data = three_s.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.85)])
    n_decoded = sum(1 for _ in media.iter_frames(cut, fps=25))
    assert 2.2 < n_decoded / 25 < 2.75  # decodes without an error, only shorter
    out_v, out_b, out_w = tmp_path / "c.mp4", tmp_path / "c.boxes.parquet", tmp_path / "c.wav"
    with pytest.raises(EmoheadInputError) as e:
        pp.crop_clip(cut, face_model.detector.onnx_path, out_v, out_b, crop_size=128)
    msg = str(e.value)
    assert str(cut) in msg and "its video stream declares 3.0" in msg and "truncated" in msg
    with pytest.raises(EmoheadInputError, match="of audio but its audio stream declares"):
        pp.extract_clip_audio(cut, out_w, n_frames=75)
    assert not any(p.exists() for p in (out_v, out_b, out_w))
    # the uncut file passes both checks
    pp.extract_clip_audio(three_s, out_w, n_frames=75)
    assert media.stream_end_s(three_s, "video") == pytest.approx(3.0, abs=0.05)


def test_one_frame_video_and_two_faces_are_warned(mirror, face_model, tmp_path, caplog):
    src = mirror / "data" / "talking-heads" / "uncrop_Obama.mp4"
    one = tmp_path / "one.mp4"
    ffmpeg("-i", str(src), "-frames:v", "1", "-t", "0.04", "-c:v", "libx264", "-c:a", "aac", str(one))
    onnx = face_model.detector.onnx_path
    with caplog.at_level(logging.WARNING, logger="emohead_core.preprocess"):
        pp.crop_clip(one, onnx, tmp_path / "1.mp4", tmp_path / "1.boxes.parquet", crop_size=128)
    assert any(str(one) in r.getMessage() and "only 1 frame(s)" in r.getMessage() for r in caplog.records)
    caplog.clear()
    two = tmp_path / "two.mp4"  # two people side by side (the same clip mirrored on the right)
    ffmpeg(
        "-t", "1", "-i", str(src), "-filter_complex", "[0:v]split[a][b];[b]hflip[c];[a][c]hstack[o]",
        "-map", "[o]", "-map", "0:a", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(two),
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="emohead_core.preprocess"):
        pp.crop_clip(two, onnx, tmp_path / "2.mp4", tmp_path / "2.boxes.parquet", crop_size=128)
    msgs = [r.getMessage() for r in caplog.records if str(two) in r.getMessage()]
    assert any("2 faces in frame 0" in m and "following the one with the highest score" in m for m in msgs)


def test_config_file_errors_name_the_file(tmp_path, capsys):
    """A YAML error or an empty file given to ``emohead render --config`` / ``emohead
    check-config`` is named with its line; Snakemake's --configfile message does not name it,
    which docs/reliability.md says, pointing to ``emohead check-config``."""
    from emohead_core.cli import main
    from emohead_core.config import load_config

    bad = tmp_path / "bad.yaml"
    bad.write_text("preprocess:\n  fps: 25\ndatasets: {a: [1, 2\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    listy = tmp_path / "list.yaml"
    listy.write_text("- preprocess\n")
    for f, why in [(bad, "not valid YAML at line 4"), (empty, "is empty"), (listy, "holds a list")]:
        with pytest.raises(EmoheadInputError) as e:
            load_config(f)
        assert str(e.value).startswith(f"{f}: ") and why in str(e.value), str(e.value)
        assert main(["check-config", str(f)]) == 2
        err = capsys.readouterr().err
        assert str(f) in err and why in err and "Traceback" not in err
    nan = tmp_path / "nan.yaml"
    nan.write_text("preprocess: {fps: .nan}\n")
    assert main(["check-config", str(nan)]) == 2 and "preprocess.fps: nan is not a finite number" in (
        capsys.readouterr().err
    )
    assert main(["check-config", str(REPO / "config" / "demo.yaml")]) == 0


# ------------------------------------------------------------------ 5: values without bounds


def _schema_numbers(node, path=""):
    if isinstance(node, dict):
        types = node.get("type")
        types = types if isinstance(types, list) else [types]
        if {"number", "integer"} & set(types):
            yield path, node
        for k, v in node.items():
            yield from _schema_numbers(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _schema_numbers(v, f"{path}[{i}]")


def test_every_number_in_the_schema_has_a_finite_range():
    from emohead_core.config import load_schema

    found = list(_schema_numbers(load_schema()))
    assert len(found) > 100
    for path, node in found:
        if "enum" in node:
            continue
        lo = [node[k] for k in ("minimum", "exclusiveMinimum") if k in node]
        hi = [node[k] for k in ("maximum", "exclusiveMaximum") if k in node]
        assert lo and hi, f"{path}: no finite range"
        assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in lo + hi), path
        assert lo[0] < hi[0], path


def _merged(text: str) -> dict:
    from emohead_core.config import deep_update

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return deep_update(cfg, yaml.safe_load(text))


@pytest.mark.parametrize(
    "override, key, says",
    [
        ("preprocess: {fps: .nan}", "preprocess.fps", "nan is not a finite number"),
        ("render: {resolution: 100000}", "render.resolution", "100000 is greater than the maximum of 2048"),
        ("render: {train: {lr_mlp: .inf}}", "render.train.lr_mlp", "inf is not a finite number"),
        ("render: {train: {lambda_photo: -.inf}}", "render.train.lambda_photo", "-inf is not a finite"),
        (
            "audio2exp: {train: {lr: 1.0e+3}}",
            "audio2exp.train.lr",
            "1000.0 is greater than the maximum of 10",
        ),
        ("features: {chunk_s: .nan}", "features.chunk_s", "nan is not a finite number"),
    ],
)
def test_non_finite_and_absurd_config_values_fail_naming_the_key(override, key, says):
    from emohead_core.config import validate_config

    with pytest.raises(EmoheadInputError) as e:
        validate_config(_merged(override))
    assert f"  {key}: {says}" in str(e.value) and "Fix:" in str(e.value), str(e.value)


def test_workflow_start_refuses_fps_nan(mirror, tmp_path):
    """The trial: `preprocess.fps: .nan` passed validation and every clip then failed, blaming
    the (good) videos."""
    from test_reliability import FOLDER_ONLY, _snakemake  # tests/workflow/

    r = _snakemake(tmp_path, mirror, {**FOLDER_ONLY, "preprocess": {"fps": float("nan")}}, "-n")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "preprocess.fps: nan is not a finite number" in out
    assert "re-encode" not in out and not (tmp_path / "results").exists()


def _expression_rows(path: Path, n: int) -> Path:
    pd.DataFrame({"frame": np.arange(n)}).to_parquet(path)  # only its row count is read here
    return path


def test_prepared_store_beyond_the_machine_is_refused_with_the_estimate(tmp_path, monkeypatch):
    """`render.resolution: 100000` (the trial, past the schema) and a resolution within range but
    beyond this machine: render_prepare stops before writing, with the estimate."""
    from emohead_core import resources
    from emohead_core.render.data import ClipInput, check_prepare_fits, prepare_subject

    clips = [
        ClipInput(
            sample=f"c{k}",
            crop=tmp_path / f"c{k}.mp4",
            expression=_expression_rows(tmp_path / f"c{k}.parquet", 300),
        )
        for k in range(2)
    ]
    out = tmp_path / "render" / "me" / "prepared"
    with pytest.raises(EmoheadInputError) as e:
        prepare_subject(clips, out, resolution=100000, bfm_path=tmp_path / "none.npz", subject="me")
    msg = str(e.value)
    assert "'me' (600 frames at 100000x100000, 31.2 GB per frame)" in msg and "of memory" in msg
    assert "render.resolution" in msg and "Fix: lower render.resolution" in msg
    assert not (tmp_path / "render").exists()
    # 2048 px needs about 7.9 GB of disk here: a disk with 1 GB free refuses, as an output fault
    monkeypatch.setattr(resources, "free_disk", lambda p: 1_000_000_000)
    monkeypatch.setattr(resources, "available_memory", lambda: 64_000_000_000)
    with pytest.raises(EmoheadOutputError) as e:
        check_prepare_fits(clips, out, 2048, None)
    assert (
        "needs about 7.9 GB of disk, the disk has 1.0 GB free" in str(e.value)
        and e.value.reason == "no_space"
    )
    monkeypatch.setattr(resources, "available_memory", lambda: 2_000_000_000)
    monkeypatch.setattr(resources, "free_disk", lambda p: 10**13)
    with pytest.raises(EmoheadInputError, match=r"needs about 14\.\d GB of memory, this machine has 2\.0 GB"):
        check_prepare_fits(clips, out, 2048, None)
    monkeypatch.setattr(resources, "available_memory", lambda: 64_000_000_000)
    est = check_prepare_fits(clips, out, 2048, max_frames=100)  # fits
    assert est["disk"] == 200 * (3 * 2048 * 2048 + 2048 * 256)


# ------------------------------------------------------------------ 4: braces in a file name


def test_braced_file_name_is_listed_at_start_and_exclude_works(mirror, tmp_path):
    """The trial stopped the whole workflow with `WildcardError ... 'x'`, naming no file."""
    from test_reliability import _snakemake  # tests/workflow/

    root = tmp_path / "talks"
    root.mkdir()
    heads = mirror / "data" / "talking-heads"
    (root / "talk {x}.mp4").symlink_to(heads / "uncrop_Obama.mp4")
    (root / "aoc}.mp4").symlink_to(heads / "WDA_AlexandriaOcasioCortez_000.mp4")
    (root / "plain.mp4").symlink_to(heads / "WDA_AlexandriaOcasioCortez_000.mp4")
    cfg = {"datasets": {"mine": {"kind": "folder", "root": str(root), "crop_size": 128}}}
    r = _snakemake(tmp_path, mirror, cfg, "-n")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "WildcardError" not in out
    for name in ("talk {x}.mp4", "aoc}.mp4"):
        assert f"{root / name}: its name holds '{{' or '}}'" in out and "rename it without braces" in out
    assert "datasets.mine.exclude" in out
    listing = yaml.safe_load((tmp_path / "resources" / "cache" / "bad_files_mine.yaml").read_text())
    cfg["datasets"]["mine"]["exclude"] = listing["exclude"]  # pasted as the message says
    r = _snakemake(tmp_path, mirror, cfg, "-n", "results/mine/samples.parquet")
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]


# ------------------------------------------------------------------ 2: a second run on live files

SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"


def _run_cmd(snakefile: Path, cfg: Path, *args: str) -> list[str]:
    base = snakefile.parent / "config" / "config.yaml"
    return [str(SNAKEMAKE), "-s", str(snakefile), "--configfile", str(base), str(cfg), "--cores", "1", *args]


def _snapshot(results: Path, workdir: Path) -> dict:
    files = {str(p.relative_to(results)): p.stat().st_size for p in results.rglob("*") if p.is_file()}
    marks = sorted(p.name for p in (workdir / ".snakemake" / "incomplete").glob("*"))
    return {"files": files, "incomplete": marks}


@pytest.mark.slow
def test_second_run_cannot_delete_a_live_runs_files_after_unlock_or_from_a_second_checkout(mirror, tmp_path):
    """Issue 23 item 2: with the first run still working, `snakemake --unlock` then
    `--rerun-incomplete` on the same results deleted a wav a live job was reading; a second
    checkout pointed at the same absolute results_dir took no lock at all. Two real concurrent
    runs: the first is frozen (SIGSTOP) mid-job; every second run stops before touching a file,
    naming the holder; the first run then finishes normally."""
    from conftest import copy_workflow

    first = tmp_path / "first"
    first.mkdir()
    results = first / "results"
    cfg = {
        "results_dir": str(results),
        "datasets": {
            "obama": {"kind": "folder", "root": "asset:data/talking-heads", "include": ["uncrop_Obama.mp4"]}
        },
    }
    (first / "my.yaml").write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, EMOHEAD_MIRROR=str(mirror))
    run1 = subprocess.Popen(
        _run_cmd(REPO / "Snakefile", first / "my.yaml", "all_preprocess"),
        cwd=first,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lock = results / ".emohead-run.lock"
    try:
        deadline = time.time() + 600
        while time.time() < deadline and run1.poll() is None:  # a job of run 1 has started
            if any((first / ".snakemake" / "incomplete").glob("*")):
                break
            time.sleep(0.05)
        os.killpg(run1.pid, signal.SIGSTOP)  # run 1 and its job, frozen while live
        before = _snapshot(results, first)
        assert run1.poll() is None and before["incomplete"], "run 1 ended before its job was caught"
        holder = json.loads(lock.read_text())
        assert holder["pid"] == run1.pid and holder["cwd"] == str(first)

        def second(cwd: Path, snakefile: Path, *args: str) -> str:
            r = subprocess.run(
                _run_cmd(snakefile, first / "my.yaml", *args), cwd=cwd, env=env, capture_output=True,
                text=True, timeout=600,
            )  # fmt: skip
            out = r.stdout + r.stderr
            assert r.returncode != 0, out[-3000:]
            assert f"in use by a live EmoHead run: pid {run1.pid}" in out and f"ps -p {run1.pid}" in out, out
            assert "--unlock` does not remove it" in out
            assert _snapshot(results, first) == before  # nothing deleted, nothing written
            return out

        out = second(first, REPO / "Snakefile", "--unlock")
        assert "refusing --unlock" in out
        assert any((first / ".snakemake" / "locks").glob("*"))  # run 1's Snakemake lock is kept
        shutil.rmtree(first / ".snakemake" / "locks")  # as --unlock used to do
        second(first, REPO / "Snakefile", "--rerun-incomplete", "all_preprocess")
        other = copy_workflow(tmp_path / "second-checkout")  # another working directory
        second(other, other / "Snakefile", "--rerun-incomplete", "all_preprocess")
    finally:
        os.killpg(run1.pid, signal.SIGCONT)
    out1, _ = run1.communicate(timeout=900)
    assert run1.returncode == 0, out1[-3000:]
    assert (results / "obama" / "crop").is_dir() and (results / "obama" / "audio").is_dir()
    # the lock ended with run 1: a run from the second checkout now goes ahead
    r = subprocess.run(
        _run_cmd(other / "Snakefile", first / "my.yaml", "all_preprocess"), cwd=other, env=env,
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]


# ------------------------------------------------------------------ 9: config files are code


def test_templated_config_runs_code_in_snakemake_and_emohead_refuses_it(mirror, tmp_path, capsys):
    """What docs/reliability.md says: Snakemake evaluates a config file that sets
    `__use_yte__: true` as a template whose `?` expressions are Python (here one writes a file);
    `emohead check-config` / `render --config` read config files without running code."""
    from test_reliability import FOLDER_ONLY, SNAKEMAKE  # tests/workflow/

    from emohead_core.cli import main

    marker = tmp_path / "ran"
    templ = tmp_path / "templ.yaml"
    templ.write_text(
        yaml.safe_dump(FOLDER_ONLY)
        + "__use_yte__: true\n"
        + f"results_dir: ?__import__('pathlib').Path({str(marker)!r}).write_text('code ran') and 'results'\n"
    )
    r = subprocess.run(
        [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--configfile", str(REPO / "config" / "config.yaml"),
         str(templ), "--cores", "1", "-n"],
        cwd=tmp_path, env=dict(os.environ, EMOHEAD_MIRROR=str(mirror)), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert marker.read_text() == "code ran"  # reading the config ran its code (also in a dry run)
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]  # a legal config to Snakemake
    marker.unlink()
    assert main(["check-config", str(templ)]) == 2
    err = capsys.readouterr().err
    assert str(templ) in err and "__use_yte__" in err and "Python code" in err and not marker.exists()
    doc = (REPO / "docs" / "reliability.md").read_text()
    assert "__use_yte__" in doc and "trust" in doc
