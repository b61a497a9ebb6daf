"""Training data of the person-specific renderer, prepared once per subject.

A subject is one person's clips (``render.subjects.<s>``: an actor's video clips, a list of
samples, or one video). Clips of one person come from different takes and crops, so every clip
keeps its own crop box (its crop video), per-frame cameras, head masks, static background and
expression parameters. ``prepare_subject`` writes a directory::

    prepared/clips.json          subject and per-clip metadata (sample, emotion, frame range, split)
    prepared/arrays.npz          per-frame arrays over all clips (cameras, alpha, shape, landmarks,
                                 clip index, train / test indices) and the per-clip backgrounds
    prepared/NNNN.frames.npy     clip NNNN's frames at the render resolution (T, H, W, 3) uint8 RGB
    prepared/NNNN.masks.npy      its head masks, bit-packed along the rows (T, H, ceil(W / 8)) uint8

:class:`SubjectData` opens it with the frames and masks memory-mapped, so training and
rendering touch only the frames they use: a MEAD person (10 min, 15,000 frames at 512x512) does
not have to fit in memory.

Head mask (landmarks + colour, see docs/decisions.md): a face polygon from the 68 3DDFA
landmarks (jaw contour + the jaw mirrored above the brows as a dome for forehead and hair),
refined by colour against the clip's static background: ring pixels around the polygon above
the mouth-corner line that differ from the background are added (hair, ears), dome pixels that
match the background are removed. Background: per-pixel temporal median over frames where the
pixel lies outside the dilated head polygon; never-seen pixels are inpainted (Telea). Torso and
everything else outside the head mask are taken from the ground-truth frame when compositing
(``compose_background``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import media
from ..errors import EmoheadInputError
from ..io import atomic_dir
from ..splits import held_out_count
from .camera import fit_affine_pose, scale_pose

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # prepared/ directory (1: a single-video prepared.npz)
SPLIT_MODES = ("clips", "within_clip")


def canonical_landmarks(shape: np.ndarray, exp: np.ndarray, bfm) -> np.ndarray:
    """BFM keypoints u + W_shp a_shp + W_exp a_exp (T, 68, 3) in canonical micrometres."""
    v = (
        bfm.u_base[None].astype(np.float64)
        + shape @ bfm.w_shp_base.T.astype(np.float64)
        + exp @ bfm.w_exp_base.T.astype(np.float64)
    )
    return v.reshape(len(shape), 68, 3)


def poses_from_expression(expr: dict, bfm) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame camera (T, 3, 4) mapping canonical points to crop-image pixels, fitted to the
    stored landmarks (an exact affine image of the canonical keypoints, see camera.py).
    Returns (poses, rms residuals in px)."""
    X = canonical_landmarks(expr["shape"].astype(np.float64), expr["exp"].astype(np.float64), bfm)
    lm = expr["landmarks"].astype(np.float64)
    poses, res = [], []
    for t in range(len(X)):
        P, r = fit_affine_pose(X[t], lm[t])
        poses.append(P)
        res.append(r)
    return np.stack(poses), np.asarray(res)


def face_polygon(lm: np.ndarray, dome: float = 0.9, widen: float = 1.1) -> np.ndarray:
    """(68, 2) landmarks -> (34, 2) polygon: jaw contour + the jaw mirrored across the brow line
    (scaled by ``dome`` along the face's up axis, ``widen`` across) for forehead and hair."""
    jaw = lm[0:17, :2]
    brow = lm[17:27, :2].mean(axis=0)
    chin = lm[8, :2]
    up = brow - chin
    up = up / (np.linalg.norm(up) + 1e-9)
    right = np.array([-up[1], up[0]])
    rel = jaw - brow
    s_up = rel @ up  # negative below the brows
    s_rt = rel @ right
    top = brow[None] + (-dome * s_up)[:, None] * up[None] + (widen * s_rt)[:, None] * right[None]
    return np.concatenate([jaw, top[::-1]], axis=0)


def _poly_mask(poly: np.ndarray, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
    return m.astype(bool)


def estimate_background(frames: np.ndarray, exclude: np.ndarray, max_frames: int = 120) -> np.ndarray:
    """Per-pixel median of frames (T, H, W, 3) uint8 over frames where ``exclude`` (T, H, W) is
    False; pixels never free are inpainted."""
    T = len(frames)
    idx = np.linspace(0, T - 1, min(T, max_frames)).round().astype(int)
    f = frames[idx].astype(np.float32)
    f[exclude[idx]] = np.nan
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            bg = np.nanmedian(f, axis=0)
    hole = np.isnan(bg[..., 0])
    bg = np.nan_to_num(bg, nan=0.0).clip(0, 255).astype(np.uint8)
    if hole.any():
        bg = cv2.inpaint(bg, hole.astype(np.uint8), 5, cv2.INPAINT_TELEA)
    return bg


def _ellipse(r: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def _exclusion(poly_mask: np.ndarray, face_width: float, ring: float) -> np.ndarray:
    """The head polygon dilated by ``ring`` face widths: pixels that may belong to the head."""
    r = max(int(round(ring * face_width)), 1)
    return cv2.dilate(poly_mask.astype(np.uint8), _ellipse(r)).astype(bool)


def _face_width(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[16, :2] - lm[0, :2]))


def clip_background(
    frames,
    landmarks: np.ndarray,
    *,
    dome: float = 0.9,
    widen: float = 1.1,
    ring: float = 0.15,
    max_bg_frames: int = 120,
) -> np.ndarray:
    """Static background (H, W, 3) uint8 of one clip: the temporal median of up to
    ``max_bg_frames`` evenly spread frames where the pixel is outside the dilated head polygon.
    ``frames``: (T, H, W, 3) array (a memory map is fine: only the sampled frames are read)."""
    T, H, W = frames.shape[:3]
    idx = np.linspace(0, T - 1, min(T, max_bg_frames)).round().astype(int)
    excl = np.stack(
        [
            _exclusion(
                _poly_mask(face_polygon(landmarks[t], dome, widen), H, W), _face_width(landmarks[t]), ring
            )
            for t in idx
        ]
    )
    return estimate_background(np.asarray(frames[idx]), excl, max_frames=len(idx))


def head_mask(
    frame: np.ndarray,
    lm: np.ndarray,
    bg: np.ndarray,
    *,
    dome: float = 0.9,
    widen: float = 1.1,
    ring: float = 0.15,
    color_threshold: float = 30.0,
) -> np.ndarray:
    """Head mask (H, W) bool of one frame from its landmarks (68, 2+) and the clip's background."""
    H, W = frame.shape[:2]
    lm = lm[:, :2]
    poly_m = _poly_mask(face_polygon(lm, dome, widen), H, W)
    excl = _exclusion(poly_m, _face_width(lm), ring)
    diff = np.abs(frame.astype(np.int16) - bg.astype(np.int16)).max(axis=-1) > color_threshold
    yy, xx = np.mgrid[0:H, 0:W]
    brow = lm[17:27].mean(axis=0)
    up = brow - lm[8]
    up = up / (np.linalg.norm(up) + 1e-9)
    s = (xx - brow[0]) * up[0] + (yy - brow[1]) * up[1]  # height above the brow line
    mouth = 0.5 * (lm[3] + lm[13])
    s_mouth = (mouth - brow) @ up
    ringm = excl & ~poly_m & (s > s_mouth) & diff
    dome_bg = poly_m & (s > 0) & ~diff
    m = ((poly_m & ~dome_bg) | ringm).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, k)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, k)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n > 2:  # keep the component that holds the nose tip
        nose = np.clip(np.round(lm[30]).astype(int), 0, [W - 1, H - 1])
        keep = lab[nose[1], nose[0]] or 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        m = (lab == keep).astype(np.uint8)
    return m.astype(bool) | poly_m & (s <= 0)  # the face below the brows always counts


def head_masks(
    frames: np.ndarray,
    landmarks: np.ndarray,
    *,
    dome: float = 0.9,
    widen: float = 1.1,
    ring: float = 0.15,
    color_threshold: float = 30.0,
    max_bg_frames: int = 120,
):
    """Head masks (T, H, W) bool and background (H, W, 3) uint8 of one clip's frames."""
    bg = clip_background(frames, landmarks, dome=dome, widen=widen, ring=ring, max_bg_frames=max_bg_frames)
    masks = np.stack(
        [
            head_mask(
                frames[t],
                landmarks[t],
                bg,
                dome=dome,
                widen=widen,
                ring=ring,
                color_threshold=color_threshold,
            )
            for t in range(len(frames))
        ]
    )
    return masks, bg


def compose_background(frame: np.ndarray, bg: np.ndarray, head_mask: np.ndarray) -> np.ndarray:
    """What lies behind the rendered head: the static background inside the head mask, the
    ground-truth frame (torso and the rest) elsewhere."""
    return np.where(head_mask[..., None], bg, frame)


def sampling_region(mask: np.ndarray, grow: float = 0.15) -> np.ndarray:
    """The head mask's bounding box grown by ``grow`` of its larger side: where training rays
    are drawn (inside the mask: the head; around it: empty space)."""
    m = np.asarray(mask, bool)
    ys, xs = np.nonzero(m)
    out = np.zeros_like(m)
    if len(ys) == 0:
        return out
    pad = int(grow * max(int(ys.max() - ys.min()), int(xs.max() - xs.min()))) + 1
    out[
        max(int(ys.min()) - pad, 0) : int(ys.max()) + pad + 1,
        max(int(xs.min()) - pad, 0) : int(xs.max()) + pad + 1,
    ] = True
    return out


# ----------------------------------------------------------------------------- the subject's clips


@dataclass
class ClipInput:
    """One clip of a subject, as handed to :func:`prepare_subject`."""

    sample: str
    crop: str | Path  # square face-crop video (preprocess stage)
    expression: str | Path  # 3DDFA parameters (expression stage)
    audio: str | Path | None = None  # 16 kHz wav (preprocess stage)
    emotion: str = "neutral"  # the clip's emotion tag z
    dataset: str = ""
    test: bool = False  # split mode "clips": the whole clip is a test clip


def split_frames(n: int, mode: str, test_fraction: float, is_test_clip: bool) -> int:
    """First test frame (local index) of an ``n``-frame clip: ``clips``: 0 for a test clip, n for a
    training clip; ``within_clip``: the clip's last ``test_fraction`` (at least one frame, at least
    one training frame)."""
    if mode == "clips":
        return 0 if is_test_clip else n
    if mode == "within_clip":
        return n - held_out_count(n, test_fraction) if n > 1 else n
    raise EmoheadInputError(
        f"unknown render split mode {mode!r}.",
        path="config render.split.mode",
        fix=f"use one of {', '.join(SPLIT_MODES)}.",
    )


def _pack(masks: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(masks, bool), axis=-1)


def _prepare_clip(
    k: int,
    clip: ClipInput,
    out_dir: Path,
    *,
    resolution: int,
    bfm,
    split_mode: str,
    test_fraction: float,
    mask_cfg: dict,
    max_residual_px: float,
    max_frames: int | None,
) -> tuple:
    """Decode, fit cameras and masks of one clip into ``out_dir`` (memory: one frame at a time plus
    the background sample). Returns (clip metadata, per-frame arrays)."""
    from ..expression.schema import read_expression

    info = media.probe(clip.crop)
    if not info.width or info.width != info.height:
        raise EmoheadInputError(
            f"expected a square crop video, got {info.width}x{info.height}.",
            path=clip.crop,
            fix="use the preprocessing stage's crop video of this sample.",
        )
    expr = read_expression(clip.expression)
    n = len(expr["exp"]) if not max_frames else min(len(expr["exp"]), int(max_frames))
    min_frames = 2 if split_mode == "within_clip" else 1
    if n < min_frames:
        raise EmoheadInputError(
            f"clip {clip.sample} has {n} frames with expression parameters.",
            path=clip.expression,
            fix="exclude the clip (render subject `exclude`) or check "
            "the crop video and the expression stage output.",
        )
    R = int(resolution)
    frames_path = out_dir / f"{k:04d}.frames.npy"
    frames = np.lib.format.open_memmap(frames_path, mode="w+", dtype=np.uint8, shape=(n, R, R, 3))
    decoded = 0
    for bgr in media.iter_frames(clip.crop, size=(R, R)):
        if decoded == n:
            break
        frames[decoded] = bgr[..., ::-1]
        decoded += 1
    if decoded < n:  # the video holds fewer frames than the expression table: keep the common part
        if decoded < min_frames:
            raise EmoheadInputError(f"decoded {decoded} frames.", path=clip.crop, fix="check the crop video.")
        frames.flush()
        del frames
        full = np.load(frames_path, mmap_mode="r")
        np.save(out_dir / f"{k:04d}.tmp.npy", np.asarray(full[:decoded]))
        del full
        (out_dir / f"{k:04d}.tmp.npy").replace(frames_path)
        frames = np.load(frames_path, mmap_mode="r")
        n = decoded
    expr = {key: v[:n] for key, v in expr.items()}
    poses_crop, resid = poses_from_expression(expr, bfm)
    bad = resid > max_residual_px
    if bad.mean() > 0.5:
        raise EmoheadInputError(
            f"camera fit residual > {max_residual_px}px on {bad.mean():.0%} of frames.",
            path=clip.expression,
            fix="the landmarks do not match the BFM keypoints file.",
        )
    scale = R / float(info.width)
    poses = scale_pose(poses_crop, scale)
    lm = expr["landmarks"].astype(np.float64).copy()
    lm[..., :2] = (lm[..., :2] + 0.5) * scale - 0.5
    mcfg = dict(mask_cfg or {})
    bg_frames = int(mcfg.pop("max_bg_frames", 120))
    geo = {key: mcfg[key] for key in ("dome", "widen", "ring") if key in mcfg}
    bg = clip_background(frames, lm, max_bg_frames=bg_frames, **geo)
    masks = np.lib.format.open_memmap(
        out_dir / f"{k:04d}.masks.npy", mode="w+", dtype=np.uint8, shape=(n, R, (R + 7) // 8)
    )
    mask_sum = 0
    for t in range(n):
        m = head_mask(frames[t], lm[t], bg, **mcfg)
        masks[t] = _pack(m)
        mask_sum += int(m.sum())
    masks.flush()
    del masks
    if isinstance(frames, np.memmap):
        frames.flush()
    del frames
    test_start = split_frames(n, split_mode, test_fraction, clip.test)
    usable = expr["detected"].astype(bool) & ~bad
    meta = dict(
        sample=clip.sample,
        dataset=clip.dataset,
        emotion=clip.emotion or "neutral",
        n_frames=int(n),
        test_start=int(test_start),
        fps=float(info.fps or 25.0),
        crop_size=int(info.width),
        crop=str(clip.crop),
        expression=str(clip.expression),
        audio=None if clip.audio is None else str(clip.audio),
        camera_residual_px_median=float(np.median(resid)),
        mask_fraction=mask_sum / float(n * R * R),
        n_usable=int(usable.sum()),
    )
    arrays = dict(
        poses=poses.astype(np.float64),
        alpha=expr["exp"].astype(np.float32),
        shape=expr["shape"].astype(np.float32),
        landmarks=lm.astype(np.float32),
        usable=usable,
        bg=bg,
    )
    return meta, arrays


def prepare_estimate(frame_counts: list[int], resolution: int, max_bg_frames: int = 120) -> dict[str, int]:
    """Bytes the prepared store of clips of ``frame_counts`` frames takes at ``resolution``: on
    disk (frames R x R x 3 and bit-packed masks per frame) and in memory at its peak (one clip's
    background sample: uint8 frames, exclusion masks, two float32 copies for the median)."""
    R = int(resolution)
    per_frame_disk = 3 * R * R + R * ((R + 7) // 8)
    bg = max((min(n, int(max_bg_frames)) for n in frame_counts), default=0)
    return {
        "disk": int(sum(frame_counts) * per_frame_disk),
        "memory": int(28 * bg * R * R + 32 * R * R),
        "per_frame_disk": int(per_frame_disk),
    }


def check_prepare_fits(clips, out_dir, resolution: int, max_frames, max_bg_frames: int = 120) -> dict:
    """Refuse (before anything is written) a prepared store the machine cannot hold: its memory
    and disk estimate (:func:`prepare_estimate`) against what is available now."""
    import pyarrow.parquet as pq

    from ..resources import check_fits, fmt_bytes

    counts = []
    for c in clips:
        try:
            n = pq.read_metadata(c.expression).num_rows
        except (OSError, ValueError):  # a missing / bad file is named when the clip is read
            continue
        counts.append(min(n, int(max_frames)) if max_frames else n)
    est = prepare_estimate(counts, resolution, max_bg_frames)
    what = (
        f"preparing render subject {Path(out_dir).parent.name!r} ({sum(counts)} frames at "
        f"{resolution}x{resolution}, {fmt_bytes(est['per_frame_disk'])} per frame)"
    )
    check_fits(
        what,
        memory=est["memory"],
        disk=est["disk"],
        disk_path=Path(out_dir).parent,
        keys="render.resolution, render.max_frames, render.mask.max_bg_frames",
        fix="lower render.resolution (the paper: 512) or render.max_frames / render.mask.max_bg_frames",
    )
    return est


def prepare_subject(
    clips: list[ClipInput],
    out_dir: str | Path,
    *,
    resolution: int,
    bfm_path: str | Path,
    split_mode: str = "within_clip",
    test_fraction: float = 0.1,
    mask_cfg: dict | None = None,
    max_residual_px: float = 2.0,
    max_frames: int | None = None,
    subject: str = "",
    progress: bool = True,
) -> dict:
    """Prepare every clip of a subject into the directory ``out_dir`` (written atomically; see the
    module docstring). Test frames: ``split_mode`` ``clips`` (clips with ``test=True``) or
    ``within_clip`` (each clip's last ``test_fraction``). Training frames are the non-test frames
    with a detected face and a good camera fit. ``max_frames`` caps the frames per clip.
    Returns a summary."""
    from tqdm import tqdm

    from ..expression.tddfa import load_bfm_keypoints

    if not clips:
        raise EmoheadInputError(
            f"render subject {subject!r} has no video clips.",
            path="config render.subjects",
            fix="name a dataset actor with video clips, or samples with videos.",
        )
    if split_mode not in SPLIT_MODES:
        split_frames(1, split_mode, test_fraction, False)  # raises the error
    names = [c.sample for c in clips]
    dup = sorted({s for s in names if names.count(s) > 1})
    if dup:
        raise EmoheadInputError(
            f"render subject {subject!r} lists clip(s) {dup} twice.",
            path="config render.subjects",
            fix="list each sample once.",
        )
    check_prepare_fits(clips, out_dir, resolution, max_frames, (mask_cfg or {}).get("max_bg_frames", 120))
    bfm = load_bfm_keypoints(bfm_path)
    metas, per_clip = [], []
    with atomic_dir(out_dir) as tmp:
        for k, clip in enumerate(tqdm(clips, desc=f"prepare {subject}", disable=not progress, mininterval=5)):
            meta, arrays = _prepare_clip(
                k,
                clip,
                tmp,
                resolution=resolution,
                bfm=bfm,
                split_mode=split_mode,
                test_fraction=test_fraction,
                mask_cfg=mask_cfg or {},
                max_residual_px=max_residual_px,
                max_frames=max_frames,
            )
            metas.append(meta)
            per_clip.append(arrays)
        offset = 0
        clip_of, train, test = [], [], []
        for k, (meta, arrays) in enumerate(zip(metas, per_clip)):
            n = meta["n_frames"]
            meta["offset"] = offset
            local = np.arange(n)
            clip_of.append(np.full(n, k, np.int32))
            train.append(offset + local[(local < meta["test_start"]) & arrays["usable"]])
            test.append(offset + local[local >= meta["test_start"]])
            offset += n
        train_idx, test_idx = np.concatenate(train), np.concatenate(test)
        if len(train_idx) == 0:
            raise EmoheadInputError(
                f"render subject {subject!r} has no usable training frames (no detected "
                "faces outside the test frames).",
                path=str(clips[0].expression),
                fix="check the expression stage outputs, or the split (render.split).",
            )
        cat = {
            key: np.concatenate([a[key] for a in per_clip])
            for key in ("poses", "alpha", "shape", "landmarks", "usable")
        }
        np.savez(
            tmp / "arrays.npz",
            **cat,
            clip=np.concatenate(clip_of),
            local=np.concatenate([np.arange(m["n_frames"], dtype=np.int32) for m in metas]),
            train_idx=train_idx.astype(np.int64),
            test_idx=test_idx.astype(np.int64),
            bg=np.stack([a["bg"] for a in per_clip]),
        )
        doc = dict(
            format=FORMAT_VERSION,
            subject=subject,
            resolution=int(resolution),
            split_mode=split_mode,
            test_fraction=float(test_fraction),
            n_frames=int(offset),
            clips=metas,
        )
        (tmp / "clips.json").write_text(json.dumps(doc, indent=2) + "\n")
    return dict(
        n_clips=len(metas),
        n_frames=int(offset),
        n_train=int(len(train_idx)),
        n_test=int(len(test_idx)),
        resolution=int(resolution),
        split_mode=split_mode,
        camera_residual_px_median=float(np.median([m["camera_residual_px_median"] for m in metas])),
        mask_fraction=float(np.mean([m["mask_fraction"] for m in metas])),
    )


class SubjectData:
    """A prepared subject: per-frame arrays over all its clips (global frame index ``i``), each
    clip's frames, masks and background.

    Per frame: ``poses[i]`` (3, 4) camera at the render resolution, ``alpha[i]`` (10,),
    ``shape[i]`` (40,), ``landmarks[i]`` (68, 3), ``clip_of[i]``, ``local[i]`` (index in the clip);
    ``train_idx`` / ``test_idx``; ``frame(i)``, ``mask(i)``, ``bg(i)``, ``behind(i)``.
    ``clips[c]``: dict with sample, dataset, emotion, n_frames, offset, test_start, fps, audio.
    """

    def __init__(
        self,
        *,
        clips: list[dict],
        frames: list,
        masks: list,
        bgs: np.ndarray,
        poses,
        alpha,
        shape,
        landmarks,
        train_idx,
        test_idx,
        resolution: int,
        split_mode: str = "within_clip",
        test_fraction: float = 0.1,
        subject: str = "",
        masks_packed: bool = False,
        path=None,
    ):
        self.clips = [dict(c) for c in clips]
        offset = 0
        for c, f in zip(self.clips, frames):
            c.setdefault("offset", offset)
            c.setdefault("n_frames", len(f))
            offset += c["n_frames"]
        self._frames, self._masks, self._packed = list(frames), list(masks), masks_packed
        self.bgs = np.asarray(bgs, np.uint8)
        self.poses = np.asarray(poses, np.float64)
        self.alpha = np.asarray(alpha, np.float32)
        self.shape = np.asarray(shape, np.float32)
        self.landmarks = np.asarray(landmarks, np.float32)
        self.clip_of = np.concatenate([np.full(c["n_frames"], k, np.int32) for k, c in enumerate(self.clips)])
        self.local = np.concatenate([np.arange(c["n_frames"], dtype=np.int64) for c in self.clips])
        self.train_idx = np.asarray(train_idx, np.int64)
        self.test_idx = np.asarray(test_idx, np.int64)
        self.resolution, self.split_mode, self.test_fraction = (
            int(resolution),
            split_mode,
            float(test_fraction),
        )
        self.subject, self.path = subject, path
        self.H = self.W = self.resolution

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        *,
        frames,
        head_mask,
        bg,
        poses,
        alpha,
        shape,
        landmarks,
        train_idx,
        test_idx,
        clip_of=None,
        clips: list[dict] | None = None,
        **kw,
    ) -> SubjectData:
        """In-memory subject (tests, tools): frames (N, H, W, 3), head_mask (N, H, W), bg (H, W, 3) for
        one clip or (C, H, W, 3) with ``clip_of`` (N,) giving each frame's clip."""
        frames, head_mask = np.asarray(frames), np.asarray(head_mask, bool)
        clip_of = np.zeros(len(frames), np.int64) if clip_of is None else np.asarray(clip_of)
        n_clips = int(clip_of.max()) + 1
        if np.any(np.diff(clip_of) < 0):
            raise ValueError("frames must be grouped by clip (clip_of non-decreasing)")
        bgs = np.asarray(bg)
        bgs = np.repeat(bgs[None], n_clips, 0) if bgs.ndim == 3 else bgs
        clips = clips or [dict(sample=f"clip{k}", emotion="neutral", fps=25.0) for k in range(n_clips)]
        fr = [frames[clip_of == k] for k in range(n_clips)]
        ms = [head_mask[clip_of == k] for k in range(n_clips)]
        test_idx = np.asarray(test_idx, np.int64)
        out = []
        for k, c in enumerate(clips):
            c = dict(c)
            first = np.nonzero(clip_of == k)[0]
            tests = test_idx[(test_idx >= first[0]) & (test_idx <= first[-1])]
            c.setdefault("test_start", int(tests[0] - first[0]) if len(tests) else int(len(first)))
            c.setdefault("fps", 25.0)
            c.setdefault("emotion", "neutral")
            c.setdefault("crop_size", int(frames.shape[1]))
            out.append(c)
        return cls(
            clips=out,
            frames=fr,
            masks=ms,
            bgs=bgs,
            poses=poses,
            alpha=alpha,
            shape=shape,
            landmarks=landmarks,
            train_idx=train_idx,
            test_idx=test_idx,
            resolution=frames.shape[1],
            **kw,
        )

    # ------------------------------------------------------------------ per frame
    @property
    def n_frames(self) -> int:
        return len(self.clip_of)

    def frame(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""
        return np.asarray(self._frames[self.clip_of[i]][self.local[i]])

    def frames(self, idx) -> np.ndarray:
        return np.stack([self.frame(int(i)) for i in idx])

    def mask(self, i: int) -> np.ndarray:
        """(H, W) bool head mask."""
        m = self._masks[self.clip_of[i]][self.local[i]]
        return np.unpackbits(m, axis=-1, count=self.W).astype(bool) if self._packed else np.asarray(m, bool)

    def masks(self, idx) -> np.ndarray:
        return np.stack([self.mask(int(i)) for i in idx])

    def bg(self, i: int) -> np.ndarray:
        """(H, W, 3) uint8: the static background of frame i's clip."""
        return self.bgs[self.clip_of[i]]

    def behind(self, i: int) -> np.ndarray:
        """What lies behind the rendered head in frame i (:func:`compose_background`)."""
        return compose_background(self.frame(i), self.bg(i), self.mask(i))

    def clip(self, i: int) -> dict:
        return self.clips[int(self.clip_of[i])]

    def fps(self, i: int = 0) -> float:
        return float(self.clip(i).get("fps", 25.0))

    # ------------------------------------------------------------------ per clip
    def clip_index(self, sample: str) -> int:
        for k, c in enumerate(self.clips):
            if c["sample"] == sample:
                return k
        raise EmoheadInputError(
            f"no clip {sample!r} in render subject {self.subject!r}; it has "
            f"{[c['sample'] for c in self.clips]}.",
            path=self.path,
        )

    def clip_frames(self, k: int) -> np.ndarray:
        """Global indices of all frames of clip k."""
        c = self.clips[k]
        return np.arange(c["offset"], c["offset"] + c["n_frames"])

    def clip_test_frames(self, k: int) -> np.ndarray:
        """Global indices of clip k's test frames (empty for a training clip)."""
        c = self.clips[k]
        return np.arange(c["offset"] + c["test_start"], c["offset"] + c["n_frames"])

    def clip_train_frames(self, k: int) -> np.ndarray:
        idx = self.clip_frames(k)
        return self.train_idx[(self.train_idx >= idx[0]) & (self.train_idx <= idx[-1])]

    def test_clips(self) -> list[int]:
        return [k for k, c in enumerate(self.clips) if c["test_start"] < c["n_frames"]]

    def emotions(self) -> list[str]:
        return list(dict.fromkeys(c.get("emotion") or "neutral" for c in self.clips))


def save_prepared(data: SubjectData, out_dir: str | Path) -> None:
    """Write an in-memory subject in the prepared/ directory layout (atomically)."""
    with atomic_dir(out_dir) as tmp:
        for k in range(len(data.clips)):
            idx = data.clip_frames(k)
            np.save(tmp / f"{k:04d}.frames.npy", data.frames(idx))
            np.save(tmp / f"{k:04d}.masks.npy", _pack(data.masks(idx)))
        np.savez(
            tmp / "arrays.npz",
            poses=data.poses,
            alpha=data.alpha,
            shape=data.shape,
            landmarks=data.landmarks,
            usable=np.ones(data.n_frames, bool),
            clip=data.clip_of,
            local=data.local,
            train_idx=data.train_idx,
            test_idx=data.test_idx,
            bg=data.bgs,
        )
        clips = [{k: v for k, v in c.items()} for c in data.clips]
        doc = dict(
            format=FORMAT_VERSION,
            subject=data.subject,
            resolution=data.resolution,
            split_mode=data.split_mode,
            test_fraction=data.test_fraction,
            n_frames=data.n_frames,
            clips=clips,
        )
        (tmp / "clips.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")


def load_prepared(path: str | Path) -> SubjectData:
    """Open a prepared subject directory (frames and masks memory-mapped)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".npz":
        raise EmoheadInputError(
            "prepared render data in the old single-file format (prepared.npz).",
            path=path,
            fix="rerun the render_prepare rule: subjects are now prepared into "
            "results/render/<subject>/prepared/.",
        )
    doc_path = path / "clips.json"
    if not doc_path.is_file():
        raise EmoheadInputError(
            "prepared render data not found.", path=path, fix="run the render_prepare rule for this subject."
        )
    doc = json.loads(doc_path.read_text())
    if doc.get("format") != FORMAT_VERSION:
        raise EmoheadInputError(
            f"prepared render data of format {doc.get('format')}, expected {FORMAT_VERSION}.",
            path=path,
            fix="rerun the render_prepare rule for this subject.",
        )
    with np.load(path / "arrays.npz", allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    frames, masks = [], []
    for k, c in enumerate(doc["clips"]):
        frames.append(np.load(path / f"{k:04d}.frames.npy", mmap_mode="r")[: c["n_frames"]])
        masks.append(np.load(path / f"{k:04d}.masks.npy", mmap_mode="r")[: c["n_frames"]])
    return SubjectData(
        clips=doc["clips"],
        frames=frames,
        masks=masks,
        bgs=a["bg"],
        poses=a["poses"],
        alpha=a["alpha"],
        shape=a["shape"],
        landmarks=a["landmarks"],
        train_idx=a["train_idx"],
        test_idx=a["test_idx"],
        resolution=doc["resolution"],
        split_mode=doc["split_mode"],
        test_fraction=doc["test_fraction"],
        subject=doc.get("subject", ""),
        masks_packed=True,
        path=path,
    )
