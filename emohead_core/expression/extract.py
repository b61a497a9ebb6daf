"""Per-clip expression extraction: frames -> per-frame 3DDFA_V2 params, landmarks, pose, MAR.

Where the face is (``expression.face_boxes``):

* ``preprocess`` (default, :func:`fit_frames_from_boxes`): the face boxes preprocessing
  already found on the source frames (``crop/{sample}.boxes.parquet``: detected every
  ``preprocess.detect_every`` frames, interpolated in between) are mapped into the crop and
  seed a two-pass fit (box ROI, then landmark ROI) on every frame, batched over frames; the
  crop is not searched again. Frames where preprocessing checked and found no face are
  tracked from the previous frame's landmarks, or, without a previous fit (or with a tracked
  ROI under upstream's 2020 px^2), searched with FaceBoxes on the crop frame.
* ``detect`` (:func:`fit_frames`, also used on generated frames by the metrics): FaceBoxes on
  the frames, with ``detect_every`` = k:

  - k = 1: the face detector runs on every frame; each frame is fitted from its own box in two
    passes (box ROI, then landmark ROI); both passes are batched over frames.
  - k > 1: the detector runs on frames 0, k, 2k, ... (two-pass fit from the box); the frames in
    between are tracked as in upstream 3DDFA_V2's video demo: the ROI comes from the previous
    frame's landmarks. A tracked ROI smaller than upstream's 2020 px^2 area, or a frame without
    previous landmarks, triggers detection.

Frames where no face can be fitted get their values linearly interpolated from the nearest
fitted frames (``detected`` False, ``roi_source`` 0); a clip without any face is an error.
Frames are decoded in a reader thread (:func:`emohead_core.media.prefetch`), so decoding
overlaps the regression.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .. import media
from ..errors import EmoheadInputError
from . import tddfa as T
from .facemodel import FaceModel
from .schema import (
    ROI_BOX_DETECTED,
    ROI_BOX_INTERPOLATED,
    ROI_DETECTED,
    ROI_INTERPOLATED,
    ROI_TRACKED,
    SCHEMA_VERSION,
    write_expression,
)

MIN_TRACK_AREA = 2020.0  # upstream demo_video.py re-detects below this ROI area (px^2)


def _bbox_of(lm: np.ndarray) -> np.ndarray:
    return np.array([lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max(), np.nan], np.float32)


def _chunks(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    buf: list[np.ndarray] = []
    for f in frames:
        buf.append(f)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


def _empty_fit(n: int) -> tuple[np.ndarray, ...]:
    """Per-frame arrays of ``n`` frames not fitted yet: params, landmarks, ROIs, boxes, source."""
    return (
        np.full((n, T.N_PARAMS), np.nan, np.float32),
        np.full((n, 68, 3), np.nan, np.float32),
        np.full((n, 4), np.nan, np.float32),
        np.full((n, 5), np.nan, np.float32),
        np.zeros(n, np.int8),
    )


def _fit_chunk_detecting(fm: FaceModel, imgs: list[np.ndarray], prev: np.ndarray | None):
    """detect_every 1: FaceBoxes on every frame, batched; a frame without a face is tracked from
    the previous frame's landmarks when that frame was fitted. Returns the chunk's arrays and
    the landmarks the next chunk may track from."""
    n = len(imgs)
    params, lms, rois, boxes, source = arrays = _empty_fit(n)
    dets = fm.detect_batch(imgs)
    idx = [j for j, b in enumerate(dets) if len(b)]
    if idx:
        bxs = np.stack([dets[j][0] for j in idx])
        p, lm, r = fm.fit_boxes([imgs[j] for j in idx], bxs)
        params[idx], lms[idx], rois[idx], boxes[idx] = p, lm, r, bxs
        source[idx] = ROI_DETECTED
    # frames without a detection: track from the previous frame if it was fitted
    for j in range(n):
        before = lms[j - 1] if j > 0 else prev
        if source[j] == ROI_INTERPOLATED and before is not None and np.isfinite(before).all():
            p, lm, r = fm.fit_landmarks([imgs[j]], before[None])
            params[j], lms[j], rois[j], boxes[j] = p[0], lm[0], r[0], _bbox_of(before)
            source[j] = ROI_TRACKED
    return arrays, (lms[-1] if source[-1] != ROI_INTERPOLATED else None)


def _fit_chunk_tracking(fm: FaceModel, imgs: list[np.ndarray], prev: np.ndarray | None, t0: int, k: int):
    """detect_every k > 1: landmark tracking from the last fitted frame, FaceBoxes every k-th
    frame (``t0``: index of the chunk's first frame in the clip) and whenever the tracked ROI is
    too small; a frame without a face is tracked when there is something to track."""
    params, lms, rois, boxes, source = arrays = _empty_fit(len(imgs))
    for j in range(len(imgs)):
        fitted = False
        if prev is not None and (t0 + j) % k != 0:
            roi = T.roi_box_from_landmarks(prev)
            if (roi[2] - roi[0]) * (roi[3] - roi[1]) >= MIN_TRACK_AREA:
                p, lm, r = fm.fit_landmarks([imgs[j]], prev[None])
                boxes[j] = _bbox_of(prev)
                source[j] = ROI_TRACKED
                fitted = True
        if not fitted:
            b = fm.detect(imgs[j])
            if len(b):
                p, lm, r = fm.fit_boxes([imgs[j]], b[:1])
                boxes[j] = b[0]
                source[j] = ROI_DETECTED
                fitted = True
            elif prev is not None:
                p, lm, r = fm.fit_landmarks([imgs[j]], prev[None])
                boxes[j] = _bbox_of(prev)
                source[j] = ROI_TRACKED
                fitted = True
        if fitted:
            params[j], lms[j], rois[j] = p[0], lm[0], r[0]
            prev = lms[j]
    return arrays, prev


def fit_frames(
    fm: FaceModel, frames: Iterable[np.ndarray], detect_every: int = 1, chunk: int = 32
) -> dict[str, np.ndarray]:
    """Fit every frame; returns the per-frame arrays of the schema (without frame/time).

    ``frames`` may be any iterable (e.g. :func:`emohead_core.media.iter_frames`): frames are
    consumed ``chunk`` at a time, so memory does not grow with the clip length."""
    k = max(1, int(detect_every))
    per_chunk: tuple[list, ...] = ([], [], [], [], [])  # params, landmarks, ROIs, boxes, source
    prev = None  # landmarks of the last fitted frame (k = 1: only if it is the previous frame)
    t0 = 0
    for imgs in _chunks(frames, chunk):
        if k == 1:
            arrays, prev = _fit_chunk_detecting(fm, imgs, prev)
        else:
            arrays, prev = _fit_chunk_tracking(fm, imgs, prev, t0, k)
        for out, arr in zip(per_chunk, arrays):
            out.append(arr)
        t0 += len(imgs)
    return _finish(fm, *per_chunk)


def fit_frames_from_boxes(
    fm: FaceModel, frames: Iterable[np.ndarray], boxes: np.ndarray, kinds: np.ndarray, chunk: int = 64
) -> dict[str, np.ndarray]:
    """Fit every frame from given face boxes (``expression.face_boxes: preprocess``).

    ``boxes`` (T, 5): x1, y1, x2, y2, score in the frames' pixels (score NaN where the box is
    interpolated); ``kinds`` (T,): :data:`ROI_BOX_DETECTED` (a detector box of this frame),
    :data:`ROI_BOX_INTERPOLATED` (interpolated between detections) or 0 (the frame was
    searched and showed no face). Seeded frames get the two-pass fit, batched ``chunk`` frames
    at a time; the others are tracked from the previous frame's landmarks, or searched with
    ``fm``'s detector when there is nothing to track (see the module docstring). Returns the
    arrays of :func:`fit_frames`."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 5)
    kinds = np.asarray(kinds, np.int8)
    total = len(kinds)
    P, LM, R, B, S = [], [], [], [], []
    prev = None  # landmarks of the previous frame when it was fitted
    t0 = 0
    for imgs in _chunks(frames, chunk):
        n = len(imgs)
        if t0 + n > total:
            raise ValueError(f"more frames than face boxes ({total})")
        seed_box, seed_kind = boxes[t0 : t0 + n], kinds[t0 : t0 + n]
        params = np.full((n, T.N_PARAMS), np.nan, np.float32)
        lms = np.full((n, 68, 3), np.nan, np.float32)
        rois = np.full((n, 4), np.nan, np.float32)
        source = np.zeros(n, np.int8)
        idx = np.nonzero(seed_kind != ROI_INTERPOLATED)[0]
        if len(idx):
            p, lm, r = fm.fit_boxes([imgs[j] for j in idx], seed_box[idx])
            params[idx], lms[idx], rois[idx] = p, lm, r
            source[idx] = seed_kind[idx]
        out_box = np.where((seed_kind != ROI_INTERPOLATED)[:, None], seed_box, np.nan).astype(np.float32)
        for j in np.nonzero(seed_kind == ROI_INTERPOLATED)[0]:
            before = lms[j - 1] if j > 0 else prev
            if before is not None and not np.isfinite(before).all():
                before = None
            fit = None
            if before is not None:
                roi = T.roi_box_from_landmarks(before)
                if (roi[2] - roi[0]) * (roi[3] - roi[1]) >= MIN_TRACK_AREA:
                    fit, out_box[j], source[j] = (
                        fm.fit_landmarks([imgs[j]], before[None]),
                        _bbox_of(before),
                        ROI_TRACKED,
                    )
            if fit is None:
                found = fm.detect(imgs[j])
                if len(found):
                    fit, out_box[j], source[j] = fm.fit_boxes([imgs[j]], found[:1]), found[0], ROI_DETECTED
                elif before is not None:
                    fit, out_box[j], source[j] = (
                        fm.fit_landmarks([imgs[j]], before[None]),
                        _bbox_of(before),
                        ROI_TRACKED,
                    )
            if fit is not None:
                params[j], lms[j], rois[j] = (a[0] for a in fit)
        prev = lms[-1] if source[-1] != ROI_INTERPOLATED else None
        P.append(params)
        LM.append(lms)
        R.append(rois)
        B.append(out_box)
        S.append(source)
        t0 += n
    if t0 != total:
        raise ValueError(f"{t0} frames for {total} face boxes")
    return _finish(fm, P, LM, R, B, S)


def _finish(fm: FaceModel, P: list, LM: list, R: list, B: list, S: list) -> dict[str, np.ndarray]:
    """Concatenate the per-chunk arrays, interpolate the frames without a fit, derive pose
    and MAR: the per-frame arrays of the schema (without frame/time)."""
    if not S:
        raise EmoheadInputError("no frames to fit.")
    params, lms, rois, boxes, source = (np.concatenate(a) for a in (P, LM, R, B, S))
    n = len(source)

    valid = source != ROI_INTERPOLATED
    if not valid.any():
        raise EmoheadInputError("no face found in any frame.")
    if not valid.all():
        tt = np.arange(n)
        for arr in (params, rois, boxes):
            flat = arr.reshape(n, -1)
            for j in range(flat.shape[1]):
                col = flat[:, j]
                ok = valid & np.isfinite(col)
                if ok.any():
                    col[~valid] = np.interp(tt[~valid], tt[ok], col[ok])
        lms[~valid] = T.reconstruct_landmarks(params[~valid], rois[~valid], fm.bfm)
    pose = T.pose_from_params(params)
    pose_p, shape_p, exp_p = params[:, :12], params[:, 12:52], params[:, 52:62]
    return {
        "detected": valid,
        "roi_source": source,
        "box": boxes,
        "roi_box": rois,
        "pose": pose_p,
        "shape": shape_p,
        "exp": exp_p,
        "landmarks": lms,
        "yaw": pose["yaw"].astype(np.float32),
        "pitch": pose["pitch"].astype(np.float32),
        "roll": pose["roll"].astype(np.float32),
        "scale": pose["scale"].astype(np.float32),
        "mar": T.mouth_aspect_ratio(lms),
        "params": params,
    }


def seed_boxes(boxes_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessing's face boxes (``crop/{sample}.boxes.parquet``) mapped into the crop video's
    pixels: boxes (T, 5) x1, y1, x2, y2, score and kinds (T,) as :func:`fit_frames_from_boxes`
    takes them."""
    from ..preprocess.crop import read_boxes, source_to_crop

    table = read_boxes(boxes_path)
    corners = table[["x1", "y1", "x2", "y2"]].to_numpy(np.float64).reshape(-1, 2, 2)
    crop = source_to_crop(corners, table).reshape(-1, 4)
    boxes = np.concatenate([crop, table[["score"]].to_numpy(np.float64)], axis=1).astype(np.float32)
    detected, checked = table["detected"].to_numpy(bool), table["checked"].to_numpy(bool)
    kinds = np.where(detected, ROI_BOX_DETECTED, np.where(checked, ROI_INTERPOLATED, ROI_BOX_INTERPOLATED))
    return boxes, kinds.astype(np.int8)


def extract_clip(
    video_path: str | os.PathLike,
    fm: FaceModel,
    out_path: str | os.PathLike | None = None,
    *,
    detect_every: int = 1,
    fps: float | None = None,
    boxes: str | os.PathLike | None = None,
    threads: int | None = None,
) -> dict[str, np.ndarray]:
    """Decode ``video_path`` (resampled to ``fps`` if given), fit every frame, and write the
    schema Parquet to ``out_path`` when given. Returns the arrays (reader layout + 'params').

    With ``boxes`` (the clip's ``boxes.parquet`` from preprocessing) the fits start from its
    face boxes (:func:`fit_frames_from_boxes`); without, FaceBoxes searches the frames every
    ``detect_every`` frames (:func:`fit_frames`). ``threads`` caps ffmpeg's decoder threads."""
    video_path = Path(video_path)
    info = media.probe(video_path)
    rate = float(fps or info.fps or 25.0)
    frames = media.prefetch(media.iter_frames(video_path, fps=fps, threads=threads), depth=32)
    meta = {"face_boxes": "detect", "detect_every": int(detect_every)}
    try:
        if boxes is None:
            data = fit_frames(fm, frames, detect_every=detect_every)
        else:
            seeds, kinds = seed_boxes(boxes)
            n_video = media.count_frames(video_path) if fps is None else None
            if n_video is not None and n_video != len(kinds):
                raise EmoheadInputError(
                    f"has {n_video} frames but its boxes table {Path(boxes).name} has {len(kinds)} rows.",
                    path=video_path,
                    fix="rerun the preprocessing of this clip (crop video and boxes together).",
                )
            data = fit_frames_from_boxes(fm, frames, seeds, kinds, chunk=max(1, fm.regressor.batch_size))
            meta = {
                "face_boxes": "preprocess",
                "boxes": Path(boxes).name,
                "boxes_detected": int((kinds == ROI_BOX_DETECTED).sum()),
            }
    except EmoheadInputError as e:
        if e.path is not None:
            raise
        raise EmoheadInputError(
            str(e), path=video_path, fix="check the crop video shows a face (preprocessing crop box)."
        ) from e
    n = len(data["exp"])
    data["frame"] = np.arange(n, dtype=np.int32)
    data["time_s"] = np.arange(n, dtype=np.float64) / rate
    if out_path is not None:
        meta.update(
            {
                "schema_version": SCHEMA_VERSION,
                "video": video_path.name,
                "fps": rate,
                "backend": fm.backend,
                "widen_factor": fm.widen_factor,
                "n_frames": n,
                "n_interpolated": int((~data["detected"]).sum()),
                "assets": fm.asset_hashes(),
            }
        )
        write_expression(out_path, data, meta)
    return data


def extract_actor(
    videos: dict[str, str],
    fm: FaceModel,
    out_dir: str | os.PathLike,
    *,
    detect_every: int = 1,
    params: dict | None = None,
    boxes: dict[str, str] | None = None,
    threads: int | None = None,
) -> dict:
    """:func:`extract_clip` for all crop videos of one actor (``datasets.<name>.batch: actor``):
    ``videos`` sample id -> crop video (``boxes``: sample id -> its boxes table, for
    ``face_boxes: preprocess``); writes ``out_dir/{sample}.parquet`` (the per-clip files).
    Resumable, see :mod:`emohead_core.batch`; ``params`` joins the clips' fingerprint."""
    from ..batch import Clip, run_batch

    clips = [
        Clip(
            s, {"video": str(v), "boxes": str(boxes[s]) if boxes else ""}, {"expression": (0, f"{s}.parquet")}
        )
        for s, v in videos.items()
    ]

    def work(clip: Clip, targets: dict) -> None:
        extract_clip(
            clip.inputs["video"],
            fm,
            targets["expression"],
            detect_every=detect_every,
            boxes=clip.inputs["boxes"] or None,
            threads=threads,
        )

    return run_batch(
        [out_dir],
        clips,
        work,
        params={"detect_every": int(detect_every), **(params or {})},
        desc=f"3DDFA {Path(out_dir).name}",
    )


def face_model_for_job(
    checkpoint: str | os.PathLike,
    onnx: str | os.PathLike,
    detector: str | os.PathLike,
    bfm: str | os.PathLike,
    opts: dict,
    threads: int = 1,
) -> FaceModel:
    """The FaceModel of an extraction job from its input files and the ``expression`` config
    section (rules expression_extract / expression_actor)."""
    onnx_dir = Path(onnx).parent
    if Path(detector).parent != onnx_dir:
        raise ValueError(f"3DDFA ({onnx}) and FaceBoxes ({detector}) ONNX files must share one directory")
    return FaceModel(
        Path(checkpoint).parent,
        onnx_dir=onnx_dir,
        checkpoint=Path(checkpoint).name,
        widen_factor=opts.get("widen_factor"),
        backend=opts["backend"],
        device=opts["device"],
        batch_size=opts["batch_size"],
        threads=threads,
        detect_threshold=opts["detect_threshold"],
        bfm=bfm,
    )
