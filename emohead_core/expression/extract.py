"""Per-clip expression extraction: frames -> per-frame 3DDFA_V2 params, landmarks, pose, MAR.

Detection policy (``detect_every`` = k):

* k = 1: the face detector runs on every frame; each frame is fitted from its own box in two
  passes (box ROI, then landmark ROI); both passes are batched over frames.
* k > 1: the detector runs on frames 0, k, 2k, ... (two-pass fit from the box); the frames in
  between are tracked as in upstream 3DDFA_V2's video demo: the ROI comes from the previous
  frame's landmarks. A tracked ROI smaller than upstream's 2020 px^2 area, or a frame without
  previous landmarks, triggers detection.

Frames where no face can be fitted get their values linearly interpolated from the nearest
fitted frames (``detected`` False, ``roi_source`` 0); a clip without any face is an error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .. import media
from ..errors import EmoheadInputError
from . import tddfa as T
from .facemodel import FaceModel
from .schema import ROI_DETECTED, ROI_INTERPOLATED, ROI_TRACKED, SCHEMA_VERSION, write_expression

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


def fit_frames(fm: FaceModel, frames: Iterable[np.ndarray], detect_every: int = 1,
               chunk: int = 32) -> dict[str, np.ndarray]:
    """Fit every frame; returns the per-frame arrays of the schema (without frame/time).

    ``frames`` may be any iterable (e.g. :func:`emohead_core.media.iter_frames`): frames are
    consumed ``chunk`` at a time, so memory does not grow with the clip length."""
    k = max(1, int(detect_every))
    P, LM, R, B, S = [], [], [], [], []
    prev = None  # landmarks of the last fitted frame (k = 1: only if it is the previous frame)
    t0 = 0
    for imgs in _chunks(frames, chunk):
        n = len(imgs)
        params = np.full((n, T.N_PARAMS), np.nan, np.float32)
        lms = np.full((n, 68, 3), np.nan, np.float32)
        rois = np.full((n, 4), np.nan, np.float32)
        boxes = np.full((n, 5), np.nan, np.float32)
        source = np.zeros(n, np.int8)
        if k == 1:
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
            prev = lms[-1] if source[-1] != ROI_INTERPOLATED else None
        else:
            for j in range(n):
                t = t0 + j
                fitted = False
                if prev is not None and t % k != 0:
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
        P.append(params)
        LM.append(lms)
        R.append(rois)
        B.append(boxes)
        S.append(source)
        t0 += n
    if t0 == 0:
        raise EmoheadInputError("no frames to fit.")
    params, lms, rois, boxes, source = (np.concatenate(a) for a in (P, LM, R, B, S))
    n = t0

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


def extract_clip(video_path: str | os.PathLike, fm: FaceModel, out_path: str | os.PathLike | None = None, *,
                 detect_every: int = 1, fps: float | None = None) -> dict[str, np.ndarray]:
    """Decode ``video_path`` (resampled to ``fps`` if given), fit every frame, and write the
    schema Parquet to ``out_path`` when given. Returns the arrays (reader layout + 'params')."""
    video_path = Path(video_path)
    info = media.probe(video_path)
    rate = float(fps or info.fps or 25.0)
    try:
        data = fit_frames(fm, media.iter_frames(video_path, fps=fps), detect_every=detect_every)
    except EmoheadInputError as e:
        raise EmoheadInputError(str(e), path=video_path,
                                fix="check the crop video shows a face (preprocessing crop box).") from e
    n = len(data["exp"])
    data["frame"] = np.arange(n, dtype=np.int32)
    data["time_s"] = np.arange(n, dtype=np.float64) / rate
    if out_path is not None:
        meta = {
            "schema_version": SCHEMA_VERSION,
            "video": video_path.name,
            "fps": rate,
            "detect_every": int(detect_every),
            "backend": fm.backend,
            "widen_factor": fm.widen_factor,
            "n_frames": n,
            "n_interpolated": int((~data["detected"]).sum()),
            "assets": fm.asset_hashes(),
        }
        write_expression(out_path, data, meta)
    return data


def extract_actor(videos: dict[str, str], fm: FaceModel, out_dir: str | os.PathLike, *, detect_every: int = 1,
                  params: dict | None = None) -> dict:
    """:func:`extract_clip` for all crop videos of one actor (``datasets.<name>.batch: actor``):
    ``videos`` sample id -> crop video; writes ``out_dir/{sample}.parquet`` (the per-clip
    files). Resumable, see :mod:`emohead_core.batch`; ``params`` joins the clips' fingerprint."""
    from ..batch import Clip, run_batch

    clips = [Clip(s, {"video": str(v)}, {"expression": (0, f"{s}.parquet")}) for s, v in videos.items()]

    def work(clip: Clip, targets: dict) -> None:
        extract_clip(clip.inputs["video"], fm, targets["expression"], detect_every=detect_every)

    return run_batch([out_dir], clips, work, params={"detect_every": int(detect_every), **(params or {})},
                     desc=f"3DDFA {Path(out_dir).name}")


def face_model_for_job(checkpoint: str | os.PathLike, onnx: str | os.PathLike, detector: str | os.PathLike,
                       bfm: str | os.PathLike, opts: dict, threads: int = 1) -> FaceModel:
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
