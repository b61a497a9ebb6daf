"""Inference: render clips from per-frame alpha_hat, emotion timelines, novel views, test clips.

Pose source: one clip of the subject (its per-frame cameras; ping-pong over the clip's frames when
the output is longer, as AD-NeRF does) or one still frame; optional yaw sweep for novel views.
Behind the head: the clip's static background inside the pose frame's head mask, the pose frame
(torso and the rest) elsewhere. Audio is muxed with ffmpeg (emohead_core.media).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .. import media
from ..errors import EmoheadInputError
from ..headmask import MASK_FILE, save_masks
from ..io import atomic_path, write_json_atomic
from .camera import rotate_pose
from .data import SubjectData, sampling_region
from .plan import BASELINES
from .renderer import Renderer
from .train import psnr


def pose_schedule(
    n: int, pose_frames: np.ndarray, mode: str = "video", still: int | None = None
) -> np.ndarray:
    """Frame index of the pose source for each of ``n`` output frames: ``video`` ping-pongs over
    ``pose_frames`` (consecutive frames of one clip), ``still`` repeats one frame."""
    pose_frames = np.asarray(pose_frames)
    if mode == "still":
        return np.full(n, int(pose_frames[0] if still is None else still))
    if mode != "video":
        raise EmoheadInputError(f"unknown pose mode {mode!r}", fix="use 'video' or 'still'.")
    seq = np.concatenate([pose_frames, pose_frames[::-1][1:-1]]) if len(pose_frames) > 2 else pose_frames
    return seq[np.arange(n) % len(seq)]


def pose_clip(data: SubjectData, prefer: str | None = None) -> int:
    """The clip whose frames give the poses of a new render: ``prefer`` (a sample id or an
    emotion tag), else the longest neutral clip, else the longest clip."""
    if prefer:
        hits = [k for k, c in enumerate(data.clips) if prefer in (c["sample"], c.get("emotion"))]
        if not hits:
            raise EmoheadInputError(
                f"no clip or emotion {prefer!r} in this subject; clips: {[c['sample'] for c in data.clips]}.",
                fix="pass one of them.",
            )
        return max(hits, key=lambda k: data.clips[k]["n_frames"])
    neutral = [k for k, c in enumerate(data.clips) if c.get("emotion") == "neutral"]
    pool = neutral or list(range(len(data.clips)))
    return max(pool, key=lambda k: data.clips[k]["n_frames"])


def yaw_curve(n: int, amplitude_deg: float) -> np.ndarray:
    """One full sine sweep of the head's yaw over the clip."""
    return amplitude_deg * np.sin(2 * np.pi * np.arange(n) / max(n, 1))


def iter_render_frames(
    renderer: Renderer,
    data: SubjectData,
    alphas: np.ndarray,
    *,
    pose_idx: np.ndarray,
    yaw_deg: np.ndarray | None = None,
    progress: bool = False,
    desc: str = "render",
) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 RGB frames for alphas (T, 10), poses of frames ``pose_idx``, one at a
    time (memory flat in T). ``progress``: a bar with the rate and the remaining time. A frame
    whose colours are not finite (NaN expression code or weights) is an error, never a black
    head."""
    from tqdm import tqdm

    for t in tqdm(range(len(alphas)), disable=not progress, desc=desc, mininterval=5, unit="frame"):
        j = int(pose_idx[t])
        pose = data.poses[j]
        if yaw_deg is not None and yaw_deg[t] != 0:
            pose = rotate_pose(pose, float(yaw_deg[t]), renderer.box_center)
        behind = data.behind(j)
        # unrotated: rays only where training rays were drawn (the field is empty elsewhere)
        region = sampling_region(data.mask(j)) if yaw_deg is None or yaw_deg[t] == 0 else None
        img, _ = renderer.render_frame(pose, alphas[t], behind, region=region)
        if not np.isfinite(img).all():
            raise EmoheadInputError(
                f"the renderer gave non-finite colours for output frame {t} (expression code "
                f"{np.array2string(np.asarray(alphas[t]), precision=3)}).",
                path=getattr(renderer, "source", None),
                fix="check the expression codes (hyperplanes, --alpha, the audio model) are finite; "
                "a model.pt with non-finite weights must be retrained.",
            )
        yield (img * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def render_frames(
    renderer: Renderer,
    data: SubjectData,
    alphas: np.ndarray,
    *,
    pose_idx: np.ndarray,
    yaw_deg: np.ndarray | None = None,
    progress: bool = False,
    desc: str = "render",
) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames (:func:`iter_render_frames`, kept: for short spans whose
    frames are compared with the ground truth)."""
    return np.stack(
        list(
            iter_render_frames(
                renderer, data, alphas, pose_idx=pose_idx, yaw_deg=yaw_deg, progress=progress, desc=desc
            )
        )
    )


def write_rgb_video(frames_rgb, path, fps: float, audio=None) -> None:
    """RGB frames ((T, H, W, 3) or an iterable of (H, W, 3), streamed) as an mp4."""
    media.write_video((np.ascontiguousarray(f[..., ::-1]) for f in frames_rgb), path, fps, audio=audio)


def timeline_alphas(
    alpha_tilde: np.ndarray,
    timeline: str,
    hyperplanes,
    *,
    intensity=1.0,
    fps: float = 25.0,
    ramp_s: float = 0.5,
) -> np.ndarray:
    """alpha_hat = alpha_tilde + tau w(t) (eq. 9) with w(t) the timeline's ramped hyperplane
    normal (Appendix B (3)); intensity tau is a number or a per-frame curve."""
    from ..emotion_edit import refine, timeline_directions

    T = len(alpha_tilde)
    td = timeline_directions(timeline, T, fps, hyperplanes, ramp_s=ramp_s)
    tau = np.asarray(intensity, np.float64)
    if tau.ndim == 1 and tau.shape[0] != T:
        raise EmoheadInputError(
            f"intensity curve has {tau.shape[0]} values for {T} frames.",
            fix="give one intensity value per output frame.",
        )
    return refine(np.asarray(alpha_tilde, np.float64), tau, td.W).astype(np.float32)


def load_intensity(spec: str) -> float | np.ndarray:
    """A number, or a .npy / .txt file with one finite value per frame."""
    try:
        return float(spec)
    except ValueError:
        p = Path(spec)
        if not p.is_file():
            raise EmoheadInputError("intensity is neither a number nor a file.", path=spec) from None
    fix = "give --intensity a number, or a .npy / .txt file of numbers (one per output frame)."
    try:
        raw = np.load(p, allow_pickle=False) if p.suffix == ".npy" else np.loadtxt(p, np.float64, ndmin=1)
        if raw.dtype.kind not in "biuf":
            raise ValueError(f"holds {raw.dtype} values, not numbers")
        curve = np.asarray(raw, np.float32).reshape(-1)
    except (ValueError, TypeError, OSError, EOFError) as e:
        raise EmoheadInputError(f"--intensity: not a curve of numbers ({e}).", path=p, fix=fix) from None
    if curve.size == 0:
        raise EmoheadInputError("--intensity: the curve file holds no values.", path=p, fix=fix)
    return curve


def mean_psnr(frames: np.ndarray, gt: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    """Mean per-frame PSNR of uint8 frames against ground truth: inside the head masks, whole frame."""
    f = frames.astype(np.float32) / 255
    g = gt.astype(np.float32) / 255
    head = float(np.mean([psnr(f[k], g[k], masks[k]) for k in range(len(f))]))
    full = float(np.mean([psnr(f[k], g[k]) for k in range(len(f))]))
    return head, full


def cut_audio(audio, start_s: float, duration_s: float, out_wav) -> Path:
    """``duration_s`` seconds of ``audio`` from ``start_s`` as a mono PCM wav."""
    out_wav = Path(out_wav)
    media.run_ffmpeg(
        [
            "-ss",
            f"{start_s:.3f}",
            "-t",
            f"{duration_s:.3f}",
            "-i",
            str(audio),
            "-ac",
            "1",
            "-c:a",
            "pcm_s16le",
            str(out_wav),
        ],
        input_path=audio,
    )
    return out_wav


def fit_length(alpha: np.ndarray, n: int) -> np.ndarray:
    """``alpha`` (T, m) cut or edge-padded to ``n`` frames (feature frame counts may differ from
    the video's by one)."""
    alpha = np.asarray(alpha, np.float32)
    if len(alpha) >= n:
        return alpha[:n]
    if len(alpha) == 0:
        raise EmoheadInputError("the audio-expression module predicted no frames.")
    return np.concatenate([alpha, np.repeat(alpha[-1:], n - len(alpha), axis=0)])


def _write_pair(
    frames: np.ndarray, gt: np.ndarray, masks: np.ndarray, out_dir: Path, fps: float, audio, start_s: float
) -> None:
    """test_render.mp4 and test_gt.mp4 of one test span, both with the span's audio (the same
    encode for every method: renders and baselines), and test_mask.npz, the ground-truth frames'
    head masks (the metrics' head region)."""
    seg = cut_audio(audio, start_s, len(frames) / fps, out_dir / ".test_audio.wav") if audio else None
    try:
        write_rgb_video(frames, out_dir / "test_render.mp4", fps, audio=seg)
        write_rgb_video(gt, out_dir / "test_gt.mp4", fps, audio=seg)
    finally:
        if seg is not None:
            seg.unlink(missing_ok=True)
    save_masks(out_dir / MASK_FILE, masks)


def _span_meta(data: SubjectData, k: int, audio, meta: dict | None) -> dict:
    c = data.clips[k]
    idx = data.clip_test_frames(k)
    return dict(
        meta or {},
        subject=data.subject,
        dataset=c.get("dataset", ""),
        sample=c["sample"],
        emotion=c.get("emotion"),
        audio=None if audio is None else str(audio),
        frame_start=int(c["test_start"]),
        frame_end=int(c["n_frames"]),
        n_frames=int(len(idx)),
        fps=data.fps(int(idx[0])),
        width=data.W,
        height=data.H,
        crop_size=int(c.get("crop_size", data.W)),
        mask=MASK_FILE,
    )


def _test_span(data: SubjectData, sample: str, out_dir) -> tuple[Path, int, np.ndarray]:
    """(output folder, created; clip index; its held-out frames) of a test clip's span."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    k = data.clip_index(sample)
    idx = data.clip_test_frames(k)
    if len(idx) == 0:
        raise EmoheadInputError(
            f"{sample!r} has no test frames in render subject {data.subject!r}.",
            path=data.path,
            fix="render only the subject's test clips.",
        )
    return out_dir, k, idx


def write_test_clip(
    renderer: Renderer, data: SubjectData, sample: str, out_dir, *, audio=None, meta: dict | None = None
) -> dict:
    """One test clip (its test span) rendered from its ground-truth alphas and poses:
    ``out_dir/test_render.mp4``, ``test_gt.mp4`` (the same frames of the crop video at the render
    resolution) and ``test_meta.json`` (frame range, tag, PSNR against the ground truth and of the
    background-only baseline)."""
    out_dir, k, idx = _test_span(data, sample, out_dir)
    fps = data.fps(int(idx[0]))
    frames = render_frames(renderer, data, data.alpha[idx], pose_idx=idx, desc=f"render {sample}")
    gt = data.frames(idx)
    masks = data.masks(idx)
    behind = np.stack([data.behind(int(i)) for i in idx])
    head, full = mean_psnr(frames, gt, masks)
    base_head, base_full = mean_psnr(behind, gt, masks)
    _write_pair(frames, gt, masks, out_dir, fps, audio, int(data.clips[k]["test_start"]) / fps)
    res = dict(psnr_head=head, psnr_full=full, baseline_psnr_head=base_head, baseline_psnr_full=base_full)
    info = dict(
        _span_meta(data, k, audio, meta),
        alpha_source="ground truth",
        **res,
        note="test span of the clip (frame range in its crop video, end exclusive) rendered from the "
        "frames' 3DDFA alphas and poses; head = pixels of the per-frame head mask; baseline = "
        "nothing rendered (static background in the head mask, ground truth elsewhere); frames "
        "as written (8-bit).",
    )
    write_json_atomic(out_dir / "test_meta.json", info)
    return res


def write_driven_clip(
    renderer: Renderer,
    data: SubjectData,
    sample: str,
    out_dir,
    *,
    a2e_model,
    audio,
    config: dict,
    hyperplanes=None,
    emotion: str | None = None,
    intensity: float = 1.0,
    features: dict | None = None,
    meta: dict | None = None,
) -> dict:
    """One test clip rendered from its audio, as the paper's test does: alpha_hat of the
    audio-expression module ``a2e_model`` predicted from the clip's whole wav (so the test span
    has its audio context) with the clip's emotion tag (eq. 9 with ``hyperplanes``), the test
    span's frames and poses. ``features`` ({v, e, gamma} -> the features stage's files of the
    clip, on the encoders the model was trained with) skips running the encoders on the wav.
    Writes test_render.mp4, test_gt.mp4 and test_meta.json (alpha RMSE against the frames' 3DDFA
    alphas, PSNR). The ground-truth-alpha render bounds it from above."""
    from ..audio2exp.infer import predict_alpha

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    k = data.clip_index(sample)
    c = data.clips[k]
    idx = data.clip_test_frames(k)
    emotion = emotion or c.get("emotion") or "neutral"
    fps = data.fps(int(idx[0]))
    pred = predict_alpha(
        a2e_model,
        features=features,
        wav=None if features else audio,
        config=config,
        emotion=emotion,
        intensity=intensity,
        hyperplanes=hyperplanes,
        fps=fps,
    )
    alpha = fit_length(pred.renderer_input(), int(c["n_frames"]))[int(c["test_start"]) :]
    if alpha.shape[1] != data.alpha.shape[1]:
        raise EmoheadInputError(
            f"the audio-expression model gives {alpha.shape[1]}-d renderer inputs, the renderer "
            f"takes {data.alpha.shape[1]}.",
            path=a2e_model,
            fix="render this variant with a renderer trained on its input.",
        )
    frames = render_frames(renderer, data, alpha, pose_idx=idx, desc=f"render {sample}")
    gt = data.frames(idx)
    masks = data.masks(idx)
    _write_pair(frames, gt, masks, out_dir, fps, audio, int(c["test_start"]) / fps)
    gt_alpha = data.alpha[idx]
    head, full = mean_psnr(frames, gt, masks)
    res = dict(
        alpha_rmse=float(np.sqrt(np.mean((alpha - gt_alpha) ** 2))),
        alpha_rmse_constant_mean=float(np.sqrt(np.mean((gt_alpha - gt_alpha.mean(0)) ** 2))),
        psnr_head=head,
        psnr_full=full,
        n_predicted=int(len(pred.alpha_hat)),
    )
    info = dict(
        _span_meta(data, k, audio, meta),
        audio2exp=str(a2e_model),
        emotion=emotion,
        alpha_source="audio",
        features="features stage" if features else "computed from the wav",
        **res,
        note="test span rendered from alpha_hat of the audio-expression module (the clip's audio, "
        "its emotion tag), poses of those frames; alpha_rmse against their 3DDFA alphas; "
        "alpha_rmse_constant_mean: the same frames against their own mean alpha (an oracle "
        "constant)",
    )
    write_json_atomic(out_dir / "test_meta.json", info)
    return res


# ----------------------------------------------------------------------------- trivial baselines
# Scored beside the renders with the same encode and metrics (metrics methods baseline_{name}):
# nothing is learned, the held-out frames' head masks are filled from the clip's training frames.


def baseline_source_frames(data: SubjectData, k: int) -> tuple[np.ndarray, str]:
    """Training frames (global indices, in time order) the baselines of clip ``k`` draw from: the
    clip's own training frames (same take, crop box and background as its held-out frames);
    a clip without any (split mode ``clips``: a test clip is held out whole) falls back to the
    subject's training frames. Returns (indices, ``clip`` | ``subject``)."""
    own = data.clip_train_frames(k)
    if len(own):
        return own, "clip"
    if len(data.train_idx) == 0:
        raise EmoheadInputError(
            f"render subject {data.subject!r} has no training frames for the baselines.", path=data.path
        )
    return np.sort(data.train_idx), "subject"


def last_training_frame(data: SubjectData, k: int) -> tuple[int, str]:
    """Global index of the frame the last-frame baseline of clip ``k`` pastes: the clip's last
    training frame; without one, the subject's last training frame before the clip (else its
    first)."""
    src, scope = baseline_source_frames(data, k)
    if scope == "clip":
        return int(src[-1]), scope
    before = src[src < data.clips[k]["offset"]]
    return int(before[-1] if len(before) else src[0]), scope


def mean_head(data: SubjectData, idx) -> np.ndarray:
    """(H, W, 3) uint8: per pixel, the mean colour of frames ``idx`` where the pixel lies in the
    frame's head mask; pixels in no head mask of them take the plain mean of the frames."""
    s_head = np.zeros((data.H, data.W, 3))
    n_head = np.zeros((data.H, data.W, 1))
    s_all = np.zeros((data.H, data.W, 3))
    for i in idx:
        f = data.frame(int(i)).astype(np.float64)
        m = data.mask(int(i))[..., None]
        s_head += f * m
        n_head += m
        s_all += f
    mean = np.where(n_head > 0, s_head / np.maximum(n_head, 1), s_all / max(len(idx), 1))
    return (mean + 0.5).clip(0, 255).astype(np.uint8)


def paste_head(head: np.ndarray, gt: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(T, H, W, 3): ``head`` (H, W, 3, or one per frame) inside each frame's head mask, the
    ground-truth frame elsewhere (what the renders composite over outside the mask)."""
    return np.where(masks[..., None], head, gt).astype(np.uint8)


def baseline_frames(data: SubjectData, k: int, name: str) -> tuple[np.ndarray, dict]:
    """The held-out frames of clip ``k`` as baseline ``name`` (:data:`BASELINES`) makes them, and
    what it used."""
    idx = data.clip_test_frames(k)
    gt, masks = data.frames(idx), data.masks(idx)
    if name == "last_frame":
        j, scope = last_training_frame(data, k)
        src = dict(source_frame=int(data.local[j]), source_sample=data.clip(j)["sample"])
        return paste_head(data.frame(j), gt, masks), dict(src, source=scope)
    if name == "mean_head":
        src, scope = baseline_source_frames(data, k)
        return paste_head(mean_head(data, src), gt, masks), dict(source=scope, n_source_frames=int(len(src)))
    raise EmoheadInputError(f"unknown render baseline {name!r}.", fix=f"use one of {sorted(BASELINES)}.")


def write_baseline_clip(data: SubjectData, sample: str, name: str, out_dir, *, audio=None, meta=None) -> dict:
    """One test clip's held-out span as baseline ``name``: ``out_dir/test_render.mp4``,
    ``test_gt.mp4``, ``test_mask.npz`` (encoded as the renders are) and ``test_meta.json``."""
    out_dir, k, idx = _test_span(data, sample, out_dir)
    frames, used = baseline_frames(data, k, name)
    gt, masks = data.frames(idx), data.masks(idx)
    fps = data.fps(int(idx[0]))
    _write_pair(frames, gt, masks, out_dir, fps, audio, int(data.clips[k]["test_start"]) / fps)
    head, full = mean_psnr(frames, gt, masks)
    res = dict(psnr_head=head, psnr_full=full, **used)
    info = dict(
        _span_meta(data, k, audio, meta),
        baseline=name,
        alpha_source="none (baseline)",
        **res,
        note=f"baseline {name}: {BASELINES[name]}, the held-out frame elsewhere (source: the "
        f"{used['source']}'s training frames); head = pixels of the per-frame head mask; frames as "
        "written (8-bit).",
    )
    write_json_atomic(out_dir / "test_meta.json", info)
    return res


def summarise_tests(meta_files: list, out_json) -> dict:
    """val_psnr.json of a subject: per test clip and mean over clips of the ground-truth-alpha
    test renders (head / whole-frame PSNR, background-only baseline)."""
    clips = {}
    for p in meta_files:
        m = json.loads(Path(p).read_text())
        clips[m["sample"]] = {
            k: m[k]
            for k in (
                "psnr_head",
                "psnr_full",
                "baseline_psnr_head",
                "baseline_psnr_full",
                "n_frames",
                "emotion",
            )
        }
    keys = ("psnr_head", "psnr_full", "baseline_psnr_head", "baseline_psnr_full")
    res = {
        f"val_{k}" if k.startswith("psnr") else k: float(np.mean([c[k] for c in clips.values()]))
        for k in keys
    }
    res.update(
        n_clips=len(clips),
        n_frames=int(sum(c["n_frames"] for c in clips.values())),
        clips=clips,
        note="mean over the subject's test clips of the per-clip mean PSNR; head = per-frame head mask",
    )
    write_json_atomic(out_json, res)
    return res


def novel_view_strip(
    renderer: Renderer, data: SubjectData, path, *, yaws=(-30, -15, 0, 15, 30), frame: int | None = None
) -> None:
    """PNG strip of one frame rendered at several yaw angles (head rotated about its centre)."""
    import cv2

    j = int(data.test_idx[0] if frame is None else frame)
    imgs = render_frames(
        renderer,
        data,
        np.repeat(data.alpha[j][None], len(yaws), 0),
        pose_idx=np.full(len(yaws), j),
        yaw_deg=np.asarray(yaws, np.float64),
    )
    tiles = []
    for y, im in zip(yaws, imgs):
        im = np.ascontiguousarray(im[..., ::-1])
        cv2.putText(
            im, f"yaw {y:+d}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA
        )
        tiles.append(im)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), np.concatenate(tiles, axis=1))


def std_tau(hyperplanes, data: SubjectData, tags, intensity: float) -> dict[str, float]:
    """tau of each tag such that tau d_z (its edit direction, :func:`edit_directions`) has
    standardised length ``intensity`` under the subject's training alphas (intensity in units of
    the person's own expression spread)."""
    from ..emotion_edit import edit_directions

    dirs = edit_directions(hyperplanes)
    sd = data.alpha[data.train_idx].std(0) + 1e-8
    return {z: intensity / float(np.linalg.norm(dirs[z] / sd)) for z in tags}


def emotion_switch_video(
    renderer: Renderer,
    data: SubjectData,
    out_mp4,
    *,
    hyperplanes,
    tags=None,
    seconds_per_tag: float = 1.5,
    intensity: float = 1.0,
    ramp_s: float = 0.5,
    intensity_unit: str = "std",
    pose_from: str | None = None,
) -> dict:
    """A walk through emotion tags (e.g. neutral -> angry -> happy -> sad, ``ramp_s`` ramps
    between, eq. 9 with Appendix B (3)): the frames of one clip (the longest neutral clip by
    default) re-rendered with their ground-truth alphas edited along w(t). The clip's frames
    ping-pong when the walk is longer than the clip; its audio is muxed only when they do not.
    ``intensity_unit``: ``raw`` (tau as given) or ``std`` (tau w_z of Mahalanobis length
    ``intensity`` under the subject's training alphas)."""
    from ..emotion_edit import edit_directions

    hp = edit_directions(hyperplanes)
    tags = [z for z in (tags or data.emotions()) if z in hp]
    if not tags:
        raise EmoheadInputError(
            "none of the switch emotions has a hyperplane.",
            path=hyperplanes,
            fix="set render.switch.emotions to emotions of the hyperplanes.",
        )
    k = pose_clip(data, pose_from)
    clip_idx = data.clip_frames(k)
    fps = data.fps(int(clip_idx[0]))
    T = max(int(round(seconds_per_tag * fps * len(tags))), 1)
    idx = pose_schedule(T, clip_idx, "video")
    spec = ",".join(f"{n * seconds_per_tag:.3f}:{z}" for n, z in enumerate(tags))
    if intensity_unit == "std":
        scale = std_tau(hp, data, tags, intensity)
        t = np.arange(T) / fps
        weights = np.zeros((T, len(tags)))
        weights[:, 0] = 1
        for n in range(1, len(tags)):  # the same ramp as the timeline's directions
            lam = (
                np.clip((t - n * seconds_per_tag) / ramp_s + 0.5, 0, 1)
                if ramp_s > 0
                else (t >= n * seconds_per_tag).astype(float)
            )
            weights *= (1 - lam)[:, None]
            weights[:, n] += lam
        tau = weights @ np.array([scale[z] for z in tags])
    elif intensity_unit == "raw":
        tau = intensity
    else:
        raise EmoheadInputError(
            f"unknown intensity unit {intensity_unit!r}.", path="config render.switch", fix="use std or raw."
        )
    alphas = timeline_alphas(data.alpha[idx], spec, hp, intensity=tau, fps=fps, ramp_s=ramp_s)
    frames = render_frames(renderer, data, alphas, pose_idx=idx, desc="emotion switch")
    c = data.clips[k]
    audio = c.get("audio") if T <= c["n_frames"] and c.get("audio") and Path(c["audio"]).is_file() else None
    seg = cut_audio(audio, 0.0, T / fps, Path(out_mp4).parent / ".switch_audio.wav") if audio else None
    try:
        write_rgb_video(frames, out_mp4, fps, audio=seg)
    finally:
        if seg is not None:
            seg.unlink(missing_ok=True)
    return dict(
        timeline=spec,
        tags=tags,
        intensity=intensity,
        intensity_unit=intensity_unit,
        ramp_s=ramp_s,
        n_frames=T,
        pose_clip=c["sample"],
        audio=bool(seg),
    )


def render_clip(
    renderer: Renderer,
    data: SubjectData,
    alphas: np.ndarray,
    out_mp4,
    *,
    audio=None,
    fps: float = 25.0,
    pose_mode: str = "video",
    still: int | None = None,
    yaw_sweep_deg: float = 0.0,
    pose_from: str | None = None,
    progress: bool = True,
) -> None:
    """Render a clip from per-frame alpha_hat (T, 10) and mux ``audio``. Poses: the frames of one
    clip of the subject (:func:`pose_clip`), ping-ponged, or one still frame (a global index)."""
    alphas = np.asarray(alphas, np.float32)
    if alphas.ndim != 2 or alphas.shape[1] != data.alpha.shape[1] or len(alphas) == 0:
        raise EmoheadInputError(f"alpha must be (T, {data.alpha.shape[1]}), got {alphas.shape}.")
    bad = np.nonzero(~np.isfinite(alphas).all(axis=1))[0]
    if len(bad):
        raise EmoheadInputError(
            f"{len(bad)} of {len(alphas)} frames have non-finite expression codes (first: frame "
            f"{bad[0]}); they would render as a black head.",
            fix="check the hyperplanes file, the --alpha file and the --intensity curve for NaN / inf.",
        )
    k = pose_clip(data, pose_from)
    frames_k = data.clip_train_frames(k)
    frames_k = frames_k if len(frames_k) else data.clip_frames(k)
    if still is not None and not 0 <= int(still) < data.n_frames:
        raise EmoheadInputError(
            f"--still-frame {still} is outside the subject's {data.n_frames} frames.",
            fix=f"use 0 .. {data.n_frames - 1}.",
        )
    idx = pose_schedule(len(alphas), frames_k, pose_mode, still)
    yaw = yaw_curve(len(alphas), yaw_sweep_deg) if yaw_sweep_deg else None
    frames = iter_render_frames(renderer, data, alphas, pose_idx=idx, yaw_deg=yaw, progress=progress)
    write_rgb_video(frames, out_mp4, fps, audio=audio)  # streamed: memory flat in the audio's length


def subject_info(subject_dir) -> dict:
    """subject.json of a trained subject, with its paths resolved against the subject directory
    (they are stored relative to it)."""
    sdir = Path(subject_dir)
    p = sdir / "subject.json"
    if not p.is_file():
        return {}
    try:
        info = json.loads(p.read_text())
        if not isinstance(info, dict):
            raise ValueError(f"a JSON {type(info).__name__}, not an object")
        for key in ("hyperplanes", "audio2exp"):
            if info.get(key) is not None and not isinstance(info[key], str):
                raise ValueError(f"{key!r} is not a path")
    except (ValueError, UnicodeDecodeError) as e:
        raise EmoheadInputError(
            f"not a readable subject.json ({e}).",
            path=p,
            fix="rerun the render_train rule of this subject to rewrite it (or pass --hyperplanes and "
            "--audio2exp explicitly after restoring the file).",
        ) from None
    for key in ("hyperplanes", "audio2exp"):
        v = info.get(key)
        if v and not Path(v).is_absolute():
            info[key] = str((sdir / v).resolve())
    return info
