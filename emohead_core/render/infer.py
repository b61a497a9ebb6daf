"""Inference: render clips from per-frame alpha_hat, emotion timelines, novel views, test set.

Pose source: the training video's per-frame cameras (ping-pong over the training frames when the
clip is longer, as AD-NeRF does) or one still frame; optional yaw sweep for novel views. Behind
the head: the static background inside the pose frame's head mask, the pose frame (torso and
the rest) elsewhere. Audio is muxed with ffmpeg (emohead_core.media).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import media
from ..errors import EmoheadInputError
from ..io import atomic_path, write_json_atomic
from .camera import rotate_pose
from .data import compose_background
from .renderer import Renderer
from .train import psnr, sampling_region


def pose_schedule(n: int, train_idx: np.ndarray, mode: str = "video", still: int | None = None) -> np.ndarray:
    """Frame index of the pose source for each of ``n`` output frames."""
    if mode == "still":
        return np.full(n, int(train_idx[0] if still is None else still))
    if mode != "video":
        raise EmoheadInputError(f"unknown pose mode {mode!r}", fix="use 'video' or 'still'.")
    seq = np.concatenate([train_idx, train_idx[::-1][1:-1]]) if len(train_idx) > 2 else np.asarray(train_idx)
    return seq[np.arange(n) % len(seq)]


def yaw_curve(n: int, amplitude_deg: float) -> np.ndarray:
    """One full sine sweep of the head's yaw over the clip."""
    return amplitude_deg * np.sin(2 * np.pi * np.arange(n) / max(n, 1))


def render_frames(renderer: Renderer, data: dict, alphas: np.ndarray, *, pose_idx: np.ndarray,
                  yaw_deg: np.ndarray | None = None, progress: bool = False) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames for alphas (T, 10)."""
    from tqdm import tqdm

    out = []
    for t in tqdm(range(len(alphas)), disable=not progress, desc="render", mininterval=5):
        j = int(pose_idx[t])
        pose = data["poses"][j]
        if yaw_deg is not None and yaw_deg[t] != 0:
            pose = rotate_pose(pose, float(yaw_deg[t]), renderer.box_center)
        behind = compose_background(data["frames"][j], data["bg"], data["head_mask"][j])
        # unrotated: rays only where training rays were drawn (the field is empty elsewhere)
        region = sampling_region(data["head_mask"][j]) if yaw_deg is None or yaw_deg[t] == 0 else None
        img, _ = renderer.render_frame(pose, alphas[t], behind, region=region)
        out.append((img * 255.0 + 0.5).clip(0, 255).astype(np.uint8))
    return np.stack(out)


def write_rgb_video(frames_rgb: np.ndarray, path, fps: float, audio=None) -> None:
    media.write_video(np.ascontiguousarray(frames_rgb[..., ::-1]), path, fps, audio=audio)


def timeline_alphas(alpha_tilde: np.ndarray, timeline: str, hyperplanes, *, intensity=1.0, fps: float = 25.0,
                    ramp_s: float = 0.5) -> np.ndarray:
    """alpha_hat = alpha_tilde + tau w(t) (eq. 9) with w(t) the timeline's ramped hyperplane
    normal (Appendix B (3)); intensity tau is a number or a per-frame curve."""
    from ..hyperplanes import load_hyperplanes, refine, timeline_directions

    hp = load_hyperplanes(hyperplanes) if isinstance(hyperplanes, (str, Path)) else hyperplanes
    T = len(alpha_tilde)
    td = timeline_directions(timeline, T, fps, hp, ramp_s=ramp_s)
    tau = np.asarray(intensity, np.float64)
    if tau.ndim == 1 and tau.shape[0] != T:
        raise EmoheadInputError(f"intensity curve has {tau.shape[0]} values for {T} frames.",
                                fix="give one intensity value per output frame.")
    return refine(np.asarray(alpha_tilde, np.float64), tau, td.W).astype(np.float32)


def load_intensity(spec: str) -> float | np.ndarray:
    """A number, or a .npy / .txt file with one value per frame."""
    try:
        return float(spec)
    except ValueError:
        p = Path(spec)
        if not p.is_file():
            raise EmoheadInputError("intensity is neither a number nor a file.", path=spec)
        return np.load(p).astype(np.float32).reshape(-1) if p.suffix == ".npy" else np.loadtxt(p, np.float32).reshape(-1)


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
    media.run_ffmpeg(["-ss", f"{start_s:.3f}", "-t", f"{duration_s:.3f}", "-i", str(audio), "-ac", "1",
                      "-c:a", "pcm_s16le", str(out_wav)], input_path=audio)
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


def write_driven_outputs(renderer: Renderer, data: dict, out_dir, *, a2e_model, audio, config: dict,
                         hyperplanes=None, emotion: str | None = None, intensity: float = 1.0,
                         meta: dict | None = None) -> dict:
    """The held-out frames rendered from audio (the paper's test setting): alpha_hat predicted by
    the audio-expression module ``a2e_model`` from the held-out span of ``audio`` with the emotion
    tag ``emotion`` (eq. 9 refinement with ``hyperplanes``), poses of the held-out frames.
    Writes test_render.mp4, test_gt.mp4 (the same frames of the crop video) and test_meta.json
    (frame range, RMSE of alpha_hat against the frames' 3DDFA alphas, PSNR against the ground
    truth). The GT-alpha render of :func:`write_test_outputs` bounds it from above."""
    from ..audio2exp.infer import predict_alpha

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    val = np.asarray(data["val_idx"])
    fps = float(data["fps"])
    t0 = int(val[0])
    seg = cut_audio(audio, t0 / fps, len(val) / fps, out_dir / ".driven_audio.wav")
    try:
        pred = predict_alpha(a2e_model, wav=seg, config=config, emotion=emotion, intensity=intensity,
                             hyperplanes=hyperplanes, fps=fps)
        alpha = fit_length(pred.alpha_hat, len(val))
        frames = render_frames(renderer, data, alpha, pose_idx=val)
        gt = data["frames"][val]
        write_rgb_video(frames, out_dir / "test_render.mp4", fps, audio=seg)
        write_rgb_video(gt, out_dir / "test_gt.mp4", fps, audio=seg)
    finally:
        seg.unlink(missing_ok=True)
    gt_alpha = np.asarray(data["alpha"], np.float32)[val]
    head, full = mean_psnr(frames, gt, data["head_mask"][val])
    res = dict(
        alpha_rmse=float(np.sqrt(np.mean((alpha - gt_alpha) ** 2))),
        alpha_rmse_constant_mean=float(np.sqrt(np.mean((gt_alpha - gt_alpha.mean(0)) ** 2))),
        psnr_head=head,
        psnr_full=full,
        n_predicted=int(len(pred.alpha_hat)),
    )
    info = dict(meta or {}, audio=str(audio), audio2exp=str(a2e_model), emotion=emotion, alpha_source="audio",
                frame_start=t0, frame_end=int(val[-1]) + 1, n_frames=int(len(val)), fps=fps,
                width=int(gt.shape[2]), height=int(gt.shape[1]), crop_size=int(data["crop_size"]), **res,
                note="held-out frames rendered from alpha_hat of the audio-expression module (audio of the "
                     "same span, emotion tag of the subject), poses of those frames; alpha_rmse against "
                     "their 3DDFA alphas; alpha_rmse_constant_mean: the same frames against their own mean "
                     "alpha (an oracle constant)")
    write_json_atomic(out_dir / "test_meta.json", info)
    return res


def write_test_outputs(renderer: Renderer, data: dict, out_dir, *, subject: str, dataset: str, sample: str,
                       audio=None, emotion: str | None = None) -> dict:
    """test_render.mp4 (held-out frames from ground-truth alphas and poses), test_gt.mp4 (the
    same frames of the crop video, same size), test_meta.json and val_psnr.json."""
    out_dir = Path(out_dir)
    val = np.asarray(data["val_idx"])
    fps = float(data["fps"])
    frames = render_frames(renderer, data, data["alpha"][val], pose_idx=val)
    gt = data["frames"][val]
    behind = np.stack([compose_background(data["frames"][i], data["bg"], data["head_mask"][i]) for i in val])
    masks = data["head_mask"][val]
    val_head, val_full = mean_psnr(frames, gt, masks)
    base_head, base_full = mean_psnr(behind, gt, masks)
    res = dict(
        val_psnr_head=val_head,
        val_psnr_full=val_full,
        baseline_psnr_head=base_head,
        baseline_psnr_full=base_full,
        n_frames=int(len(val)),
        note="head = pixels of the per-frame head mask; baseline = nothing rendered (static background "
             "in the head mask, ground truth elsewhere); frames as written (8-bit).",
    )
    t0 = int(val[0])
    # the held-out span of the subject's audio
    seg = cut_audio(audio, t0 / fps, len(val) / fps, out_dir / ".test_audio.wav") if audio is not None else None
    write_rgb_video(frames, out_dir / "test_render.mp4", fps, audio=seg)
    write_rgb_video(gt, out_dir / "test_gt.mp4", fps, audio=seg)
    if seg is not None:
        seg.unlink(missing_ok=True)
    meta = dict(subject=subject, dataset=dataset, sample=sample, audio=None if audio is None else str(audio),
                emotion=emotion, frame_start=t0,
                frame_end=int(val[-1]) + 1,
                n_frames=int(len(val)), fps=fps, width=int(gt.shape[2]), height=int(gt.shape[1]),
                crop_size=int(data["crop_size"]),
                note="frame range in the crop video (end exclusive); test_gt.mp4 is that range resized to "
                     "the render resolution")
    write_json_atomic(out_dir / "test_meta.json", meta)
    write_json_atomic(out_dir / "val_psnr.json", res)
    return res


def novel_view_strip(renderer: Renderer, data: dict, path, *, yaws=(-30, -15, 0, 15, 30), frame: int | None = None) -> None:
    """PNG strip of one frame rendered at several yaw angles (head rotated about its centre)."""
    import cv2

    j = int(data["val_idx"][0] if frame is None else frame)
    imgs = render_frames(renderer, data, np.repeat(data["alpha"][j][None], len(yaws), 0),
                         pose_idx=np.full(len(yaws), j), yaw_deg=np.asarray(yaws, np.float64))
    tiles = []
    for y, im in zip(yaws, imgs):
        im = np.ascontiguousarray(im[..., ::-1])
        cv2.putText(im, f"yaw {y:+d}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(im)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), np.concatenate(tiles, axis=1))


def emotion_switch_video(renderer: Renderer, data: dict, out_mp4, *, hyperplanes, emotions=("happy", "sad"),
                         intensity: float = 1.0, ramp_s: float = 0.5, audio=None, max_frames: int | None = None,
                         intensity_unit: str = "std") -> dict:
    """Held-out span re-rendered with ground-truth alpha edited along w_1, switching to w_2 half way
    (eq. 9 with the Appendix B (3) ramp); audio of the same span muxed. ``intensity_unit``:
    "raw" (tau as given) or "std" (tau scaled so the edit has Mahalanobis length ``intensity`` under
    the subject's training alphas: the hyperplanes may come from another actor's alpha spread)."""
    val = np.asarray(data["val_idx"])
    if max_frames:
        val = val[:max_frames]
    fps = float(data["fps"])
    T = len(val)
    spec = f"0:{emotions[0]},{T / fps / 2:.3f}:{emotions[1]}"
    tau = intensity
    if intensity_unit == "std":  # tau such that tau * w_z has Mahalanobis length `intensity`
        from ..hyperplanes import load_hyperplanes

        hp = load_hyperplanes(hyperplanes) if isinstance(hyperplanes, (str, Path)) else hyperplanes
        sd = data["alpha"][data["train_idx"]].std(0) + 1e-8
        scale = {z: intensity / float(np.linalg.norm(np.asarray(hp[z][0]) / sd)) for z in emotions}
        t = np.arange(T) / fps
        lam = np.clip((t - T / fps / 2) / ramp_s + 0.5, 0, 1) if ramp_s > 0 else (t >= T / fps / 2).astype(float)
        tau = (1 - lam) * scale[emotions[0]] + lam * scale[emotions[1]]
        hyperplanes = hp
    alphas = timeline_alphas(data["alpha"][val], spec, hyperplanes, intensity=tau, fps=fps, ramp_s=ramp_s)
    frames = render_frames(renderer, data, alphas, pose_idx=val)
    seg = None
    if audio is not None:
        seg = Path(out_mp4).parent / ".switch_audio.wav"
        media.run_ffmpeg(["-ss", f"{val[0] / fps:.3f}", "-t", f"{T / fps:.3f}", "-i", str(audio), "-ac", "1",
                          "-c:a", "pcm_s16le", str(seg)], input_path=audio)
    write_rgb_video(frames, out_mp4, fps, audio=seg)
    if seg is not None:
        seg.unlink(missing_ok=True)
    return dict(timeline=spec, intensity=intensity, intensity_unit=intensity_unit, ramp_s=ramp_s, n_frames=T)


def render_clip(renderer: Renderer, data: dict, alphas: np.ndarray, out_mp4, *, audio=None, fps: float = 25.0,
                pose_mode: str = "video", still: int | None = None, yaw_sweep_deg: float = 0.0,
                progress: bool = True) -> None:
    """Render a clip from per-frame alpha_hat (T, 10) and mux ``audio``."""
    alphas = np.asarray(alphas, np.float32)
    if alphas.ndim != 2 or alphas.shape[1] != data["alpha"].shape[1]:
        raise EmoheadInputError(f"alpha must be (T, {data['alpha'].shape[1]}), got {alphas.shape}.")
    idx = pose_schedule(len(alphas), np.asarray(data["train_idx"]), pose_mode, still)
    yaw = yaw_curve(len(alphas), yaw_sweep_deg) if yaw_sweep_deg else None
    frames = render_frames(renderer, data, alphas, pose_idx=idx, yaw_deg=yaw, progress=progress)
    write_rgb_video(frames, out_mp4, fps, audio=audio)


def subject_info(subject_dir) -> dict:
    p = Path(subject_dir) / "subject.json"
    return json.loads(p.read_text()) if p.is_file() else {}
