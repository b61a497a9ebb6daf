"""Per-clip preprocessing on the real CREMA-D clips: 25 fps crops, stable box, 16 kHz audio."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from emohead_core import media
from emohead_core.errors import EmoheadInputError
from emohead_core.preprocess import crop as pp
from emohead_core.preprocess import facedetect as fd

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def onnx_path(mirror, tmp_path_factory):
    return fd.export_onnx(
        mirror / "models/3ddfa_v2/FaceBoxesProd.pth", tmp_path_factory.mktemp("onnx") / "fb.onnx"
    )


@pytest.fixture(scope="module")
def detector(onnx_path):
    return fd.FaceDetector(onnx_path, threads=1)


@pytest.fixture(scope="module")
def cropped(crema_clips, onnx_path, tmp_path_factory):
    """Two real clips preprocessed (crop 340, detection on every frame), with their source clips."""
    out = tmp_path_factory.mktemp("crop")
    res = {}
    for clip in [crema_clips[0], crema_clips[3]]:  # ANG, HAP
        v, b, w = out / f"{clip.stem}.mp4", out / f"{clip.stem}.boxes.parquet", out / f"{clip.stem}.wav"
        summary = pp.crop_clip(clip, onnx_path, v, b, crop_size=340, threads=1, opts={"detect_every": 1})
        pp.extract_clip_audio(clip, w, boxes_path=b)
        res[clip.stem] = dict(src=clip, video=v, boxes=b, wav=w, summary=summary)
    return res


def test_crop_video_format(cropped):
    for name, r in cropped.items():
        info = media.probe(r["video"])
        assert (info.width, info.height, info.fps) == (340, 340, 25.0), name
        assert not info.has_audio
        frames = media.read_frames(r["video"])
        boxes = pp.read_boxes(r["boxes"])
        assert len(frames) == len(boxes) == r["summary"]["frames"]
        src = media.probe(r["src"])
        # 29.97 fps source resampled to 25 fps CFR: same duration within a frame or two
        assert abs(len(frames) / 25.0 - src.duration_s) <= 0.09, name
        np.testing.assert_allclose(boxes["time_s"], np.arange(len(boxes)) / 25.0)
        assert boxes["detected"].all() and boxes["checked"].all()
        assert (boxes["score"] > 0.9).all()


def test_crop_box_is_fixed_and_contains_face_and_landmarks(cropped, mirror):
    from emohead_core.expression.facemodel import FaceModel

    for r in cropped.values():
        b = pp.read_boxes(r["boxes"])
        crop = b[["crop_x1", "crop_y1", "crop_x2", "crop_y2"]].drop_duplicates()
        assert len(crop) == 1, "one crop box per clip"
        x1, y1, x2, y2 = crop.iloc[0]
        assert x2 - x1 == y2 - y1 and 0 <= x1 and 0 <= y1 and x2 <= 480 and y2 <= 360
        assert (
            (b["x1"] >= x1).all()
            and (b["y1"] >= y1).all()
            and (b["x2"] <= x2).all()
            and (b["y2"] <= y2).all()
        )
    # 68 3DDFA_V2 landmarks of source frames (independent of the crop) fall inside the crop
    fm = FaceModel(mirror / "models/3ddfa_v2", backend="torch")
    for name, r in cropped.items():
        b = pp.read_boxes(r["boxes"])
        x1, y1, x2, y2 = b[["crop_x1", "crop_y1", "crop_x2", "crop_y2"]].iloc[0]
        src_frames = media.read_frames(r["src"], fps=25)
        idx = [0, len(src_frames) // 2, len(src_frames) - 1]
        _, lms, _ = fm.fit_boxes(
            [src_frames[i] for i in idx], b[["x1", "y1", "x2", "y2", "score"]].to_numpy()[idx]
        )
        lm = lms[..., :2]
        margin = 0.1 * (x2 - x1)
        assert (lm[..., 0] > x1 + margin).all() and (lm[..., 0] < x2 - margin).all(), name
        assert (lm[..., 1] > y1).all() and (lm[..., 1] < y2 - margin).all(), name
        # mouth (landmarks 48-67) in the lower half of the face box
        mouth_y = lm[:, 48:68, 1].mean(1)
        fb = b.iloc[idx]
        assert ((mouth_y > (fb["y1"] + fb["y2"]).to_numpy() / 2) & (mouth_y < fb["y2"].to_numpy())).all()


def test_cropped_video_shows_the_face_steadily(cropped, detector):
    """Re-detect the face in the output: one face per frame, mapped back to the source box."""
    for name, r in cropped.items():
        b = pp.read_boxes(r["boxes"])
        frames = media.read_frames(r["video"])
        dets = detector.detect_batch(frames[::4])
        assert all(len(d) == 1 for d in dets), name
        in_src = np.stack(
            [np.concatenate([pp.crop_to_source(d[0, :2], b), pp.crop_to_source(d[0, 2:4], b)]) for d in dets]
        )
        src_boxes = b[["x1", "y1", "x2", "y2"]].to_numpy()[::4]
        iou = np.diag(fd.box_iou(in_src, src_boxes))
        assert iou.min() > 0.75, (name, iou.min())
        np.testing.assert_allclose(
            pp.source_to_crop(pp.crop_to_source(np.array([[10.0, 20.0]]), b), b), [[10.0, 20.0]]
        )


def test_audio_16k_mono_matches_video_length(cropped):
    for name, r in cropped.items():
        info = sf.info(str(r["wav"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        n_frames = len(pp.read_boxes(r["boxes"]))
        assert abs(info.frames / 16000 - n_frames / 25.0) <= 0.04, name
        # it is the clip's own speech, not silence: matches ffmpeg's decode of the source
        wav, _ = sf.read(str(r["wav"]), dtype="float32")
        ref = media.load_audio(r["src"], 16000)
        n = min(len(wav), len(ref))
        assert np.abs(wav).max() > 0.05
        assert np.corrcoef(wav[:n], ref[:n])[0, 1] > 0.99


def test_audio_only_sample(mirror, tmp_path):
    out = tmp_path / "a.wav"
    s = pp.extract_clip_audio(mirror / "data/crema-d/1002_DFA_ANG_XX.mp3", out)
    info = sf.info(str(out))
    assert (info.samplerate, info.channels) == (16000, 1)
    assert abs(info.frames / 16000 - 2.612) < 0.06 and s["n_frames"] is None
    # padding / trimming to a video length
    pp.extract_clip_audio(mirror / "data/crema-d/1002_DFA_ANG_XX.mp3", out, n_frames=100)
    assert sf.info(str(out)).frames == 64000
    pp.extract_clip_audio(mirror / "data/crema-d/1002_DFA_ANG_XX.mp3", out, n_frames=10)
    assert sf.info(str(out)).frames == 6400
    with pytest.raises(EmoheadInputError, match="no video stream"):
        pp.crop_clip(
            mirror / "data/crema-d/1002_DFA_ANG_XX.mp3",
            None,
            tmp_path / "x.mp4",
            tmp_path / "x.parquet",
            crop_size=340,
            detector=object(),
        )


def _partly_blank(clip, tmp_path, blank):
    frames = media.read_frames(clip, fps=25)[:20].copy()
    frames[blank] = 128
    path = tmp_path / "partial.mp4"
    media.write_video(frames, path, 25)
    return path


def test_frames_without_face_are_flagged_and_interpolated(crema_clips, onnx_path, tmp_path):
    video = _partly_blank(crema_clips[4], tmp_path, slice(6, 11))
    out_v, out_b = tmp_path / "o.mp4", tmp_path / "o.boxes.parquet"
    s = pp.crop_clip(video, onnx_path, out_v, out_b, crop_size=128, threads=1, opts={"detect_every": 1})
    b = pp.read_boxes(out_b)
    assert s["detected"] == 15 and len(b) == 20
    assert list(np.nonzero(~b["detected"].to_numpy())[0]) == [6, 7, 8, 9, 10]
    assert b["score"].iloc[6:11].isna().all()
    for c in ["x1", "y1", "x2", "y2"]:
        expect = np.interp(np.arange(6, 11), [5, 11], b[c].iloc[[5, 11]])
        np.testing.assert_allclose(b[c].iloc[6:11], expect, rtol=1e-5)
    assert media.probe(out_v).width == 128


def test_too_few_faces_fails_without_outputs(crema_clips, onnx_path, tmp_path):
    video = _partly_blank(crema_clips[4], tmp_path, slice(2, 20))
    out_v, out_b = tmp_path / "o.mp4", tmp_path / "o.boxes.parquet"
    with pytest.raises(EmoheadInputError) as e:
        pp.crop_clip(
            video, onnx_path, out_v, out_b, crop_size=340, opts={"min_face_fraction": 0.5, "detect_every": 1}
        )
    assert "partial.mp4" in str(e.value) and "2 of 20" in str(e.value) and "min_face_fraction" in str(e.value)
    assert not out_v.exists() and not out_b.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
    # with a lower threshold the same clip passes
    pp.crop_clip(
        video, onnx_path, out_v, out_b, crop_size=340, opts={"min_face_fraction": 0.1, "detect_every": 1}
    )
    assert out_v.exists() and pp.read_boxes(out_b)["detected"].sum() == 2


def test_detect_every_k_frames(cropped, onnx_path, tmp_path):
    r = cropped["1001_DFA_ANG_XX"]
    b_out = tmp_path / "k.boxes.parquet"
    pp.crop_clip(r["src"], onnx_path, tmp_path / "k.mp4", b_out, crop_size=340)  # default: every 5th frame
    k, full = pp.read_boxes(b_out), pp.read_boxes(r["boxes"])
    n = len(full)
    checked = np.nonzero(k["checked"].to_numpy())[0]
    assert list(checked) == sorted(set(range(0, n, 5)) | {n - 1})
    assert (k["detected"] == k["checked"]).all()
    iou = np.diag(
        fd.box_iou(k[["x1", "y1", "x2", "y2"]].to_numpy(), full[["x1", "y1", "x2", "y2"]].to_numpy())
    )
    assert iou.min() > 0.85


def test_helpers():
    # crop box: square, even, inside the frame, centred on the median face
    boxes = np.array([[100, 50, 200, 170]] * 10, float)
    x, y, side = pp.stable_crop_box(boxes, 480, 360, 2.0)
    assert side == 240 and (x, y) == (30, 0)  # 240 px around centre (150, 110), moved down into the frame
    x, y, side = pp.stable_crop_box(boxes, 200, 150, 2.0)
    assert side == 150 and x + side <= 200 and y == 0
    # track: the face overlapping the previous choice wins over a higher-scoring other face
    a, b = [10, 10, 50, 50], [200, 200, 240, 240]
    dets = [
        np.array([a + [0.9], b + [0.8]]),
        np.array([b + [0.99], [12, 11, 52, 51, 0.7]]),
        None,
        np.zeros((0, 5)),
    ]
    boxes, scores = pp.select_track(dets)
    assert list(scores[:2]) == pytest.approx([0.9, 0.7]) and np.isnan(scores[2:]).all()
    filled = pp.interpolate_boxes(boxes, ~np.isnan(scores))
    np.testing.assert_allclose(filled[3], [12, 11, 52, 51])
    with pytest.raises(EmoheadInputError, match="even"):
        pp.crop_clip("x.mp4", None, "o.mp4", "o.parquet", crop_size=341, detector=object())


def test_threads_change_speed_not_boxes(cropped, onnx_path, tmp_path):
    """Two threads (decoder, FaceBoxes intra-op, x264) find the same boxes and crop box as one;
    the mp4 holds as many frames as the table has rows (counted from its packets and decoded)."""
    r = cropped["1001_DFA_HAP_XX"]
    v, b = tmp_path / "t2.mp4", tmp_path / "t2.boxes.parquet"
    pp.crop_clip(r["src"], onnx_path, v, b, crop_size=340, threads=2, opts={"detect_every": 1})
    import pandas as pd

    pd.testing.assert_frame_equal(pp.read_boxes(b), pp.read_boxes(r["boxes"]))
    assert media.count_frames(v) == len(media.read_frames(v)) == len(pp.read_boxes(b))
    # x264 is deterministic for a given thread count: the same crop twice is the same file
    pp.crop_clip(
        r["src"],
        onnx_path,
        tmp_path / "again.mp4",
        tmp_path / "again.parquet",
        crop_size=340,
        threads=2,
        opts={"detect_every": 1},
    )
    assert (tmp_path / "again.mp4").read_bytes() == v.read_bytes()


def test_prefetch_overlaps_and_stops_cleanly(crema_clips):
    import threading

    frames = media.read_frames(crema_clips[0], fps=25)
    got = list(media.prefetch(media.iter_frames(crema_clips[0], fps=25, threads=1), depth=3))
    assert len(got) == len(frames) and all(np.array_equal(a, b) for a, b in zip(got, frames))
    # a consumer that stops early ends the reader thread (and ffmpeg, through the generator)
    before = threading.active_count()
    it = media.prefetch(media.iter_frames(crema_clips[0]), depth=2)
    next(it)
    it.close()
    assert threading.active_count() == before
    # errors of the producer reach the consumer

    def broken():
        yield 1
        raise EmoheadInputError("bad frame", path="x.mp4")

    with pytest.raises(EmoheadInputError, match="bad frame"):
        list(media.prefetch(broken()))
