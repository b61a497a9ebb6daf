"""Per-clip expression extraction: frames -> per-frame 3DDFA_V2 params, landmarks, pose, MAR.

Where the face is (``expression.face_boxes``):

* ``preprocess`` (default, :func:`fit_frames_from_boxes`): the face boxes preprocessing
  already found on the source frames (``crop/{sample}.boxes.parquet``: detected every
  ``preprocess.detect_every`` frames, interpolated in between) are mapped into the crop and
  seed a two-pass fit (box ROI, then landmark ROI) on every frame with a face, batched over
  frames; the crop is not searched again. Frames where preprocessing found no face
  (``boxes.parquet`` column ``face``, decided per frame) are searched with FaceBoxes on the
  crop frame; without a detection there they get no fit (``detected`` False).
* ``detect`` (:func:`fit_frames`, also used on generated frames by the metrics): FaceBoxes on
  the frames, with ``detect_every`` = k:

  - k = 1: the face detector runs on every frame; each frame is fitted from its own box in two
    passes (box ROI, then landmark ROI); both passes are batched over frames.
  - k > 1: the detector runs on frames 0, k, 2k, ... (two-pass fit from the box); the frames in
    between are tracked as in upstream 3DDFA_V2's video demo: the ROI comes from the previous
    frame's landmarks. A tracked ROI smaller than upstream's 2020 px^2 area, or a frame without
    previous landmarks, triggers detection.

``detected`` is the per-frame face presence: the detector's answer where it ran, and for a
frame between detector runs (tracked, or seeded by an interpolated box) whether the runs on
both sides found a face. A tracked frame without a face keeps its fit but is not ``detected``;
every fit and training set (hyperplanes, audio2exp targets, renderer training frames) uses only
``detected`` frames. Frames where no face can be fitted get their values linearly interpolated
from the nearest fitted frames (``detected`` False, ``roi_source`` 0); a clip without any face
is an error.
Frames are decoded in a reader thread (:func:`emohead_core.media.prefetch`), so decoding
overlaps the regression.
"""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)

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
    the previous frame's landmarks when that frame was fitted. Returns the chunk's arrays (with
    per frame: detection tried, face found) and the landmarks the next chunk may track from."""
    n = len(imgs)
    params, lms, rois, boxes, source = _empty_fit(n)
    dets = fm.detect_batch(imgs)
    tried, found = np.ones(n, bool), np.array([len(b) > 0 for b in dets])
    arrays = (params, lms, rois, boxes, source, tried, found)
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
    params, lms, rois, boxes, source = _empty_fit(len(imgs))
    tried, found = np.zeros(len(imgs), bool), np.zeros(len(imgs), bool)
    arrays = (params, lms, rois, boxes, source, tried, found)
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
            tried[j], found[j] = True, len(b) > 0
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
    # params, landmarks, ROIs, boxes, source, detection tried, face found
    per_chunk: tuple[list, ...] = ([], [], [], [], [], [], [])
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
    if not per_chunk[0]:
        raise EmoheadInputError("no frames to fit.")
    tried, found = np.concatenate(per_chunk[5]), np.concatenate(per_chunk[6])
    return _finish(fm, *per_chunk[:5], present=_present_between_detections(tried, found))


def _present_between_detections(tried: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Face presence per frame from the frames where the detector ran: those frames its answer;
    a frame in between (tracked) when the detections before and after it both found a face (the
    last stretch: the one before)."""
    idx = np.nonzero(tried)[0]
    if len(idx) == 0:
        return np.zeros(len(tried), bool)
    t = np.arange(len(tried))
    before = idx[np.clip(np.searchsorted(idx, t, side="right") - 1, 0, len(idx) - 1)]
    after = idx[np.clip(np.searchsorted(idx, t, side="left"), 0, len(idx) - 1)]
    return np.where(tried, found, found[before] & found[after])


def fit_frames_from_boxes(
    fm: FaceModel, frames: Iterable[np.ndarray], boxes: np.ndarray, kinds: np.ndarray, chunk: int = 64
) -> dict[str, np.ndarray]:
    """Fit every frame from given face boxes (``expression.face_boxes: preprocess``).

    ``boxes`` (T, 5): x1, y1, x2, y2, score in the frames' pixels (score NaN where the box is
    interpolated); ``kinds`` (T,): :data:`ROI_BOX_DETECTED` (a detector box of this frame),
    :data:`ROI_BOX_INTERPOLATED` (interpolated between detections: the face is there) or 0
    (preprocessing found no face in this frame). Seeded frames get the two-pass fit, batched
    ``chunk`` frames at a time; frames without a face are searched with ``fm``'s detector on the
    crop (a detection there fits the frame) and otherwise get no fit: ``detected`` False,
    values interpolated (tracking into a frame without a face would freeze the last expression).
    Returns the arrays of :func:`fit_frames`."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 5)
    kinds = np.asarray(kinds, np.int8)
    total = len(kinds)
    P, LM, R, B, S, F = [], [], [], [], [], []
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
        face = seed_kind != ROI_INTERPOLATED
        for j in np.nonzero(seed_kind == ROI_INTERPOLATED)[0]:
            found = fm.detect(imgs[j])  # the crop, larger than the face was in the source frame
            if len(found):
                p, lm, r = fm.fit_boxes([imgs[j]], found[:1])
                params[j], lms[j], rois[j] = p[0], lm[0], r[0]
                out_box[j], source[j], face[j] = found[0], ROI_DETECTED, True
        P.append(params)
        LM.append(lms)
        R.append(rois)
        B.append(out_box)
        S.append(source)
        F.append(face)
        t0 += n
    if t0 != total:
        raise ValueError(f"{t0} frames for {total} face boxes")
    return _finish(fm, P, LM, R, B, S, present=np.concatenate(F))


def _finish(
    fm: FaceModel, P: list, LM: list, R: list, B: list, S: list, present: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Concatenate the per-chunk arrays, interpolate the frames without a fit, derive pose
    and MAR: the per-frame arrays of the schema (without frame/time). ``detected``: the frame
    was fitted and shows a face (``present``: the detector's per-frame verdict; a frame tracked
    where no face was detected keeps its fit but is not ``detected``)."""
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
    detected = valid if present is None else valid & np.asarray(present, bool)
    if not detected.any():
        raise EmoheadInputError("no face found in any frame.")
    return {
        "detected": detected,
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
    detected, face = table["detected"].to_numpy(bool), table["face"].to_numpy(bool)
    kinds = np.where(detected, ROI_BOX_DETECTED, np.where(face, ROI_BOX_INTERPOLATED, ROI_INTERPOLATED))
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
    missing = np.nonzero(~data["detected"])[0]
    if len(missing):
        from ..preprocess.crop import frame_ranges

        log.warning(
            "%s: no face in %d of %d frames (%s): detected=False there; every fit and training set "
            "leaves them out.",
            video_path,
            len(missing),
            n,
            frame_ranges(missing),
        )
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
                "n_interpolated": int((data["roi_source"] == ROI_INTERPOLATED).sum()),
                "n_no_face": int((~data["detected"]).sum()),
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
