"""Pipeline steps of the render stage (called by the thin workflow/scripts/render_*.py).

Parse-time planning (subjects, clips, splits, inputs) is in :mod:`emohead_core.render.plan`.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from ..io import atomic_path, write_json_atomic

# torch and the renderer load inside the step functions: the Snakefile imports the render
# package's plan when it is parsed.

log = logging.getLogger(__name__)


def step_prepare(params: dict, bfm, out_dir, preview_png, rcfg: dict, subject: str) -> dict:
    """Rule render_prepare: every clip of the subject into ``out_dir`` (see render/data.py)."""
    from .data import ClipInput, load_prepared, prepare_subject

    clips = [ClipInput(**c) for c in params["clips"]]
    summary = prepare_subject(
        clips,
        out_dir,
        resolution=int(rcfg["resolution"]),
        bfm_path=bfm,
        split_mode=params["split_mode"],
        test_fraction=float(params["test_fraction"]),
        mask_cfg=rcfg.get("mask"),
        max_frames=rcfg.get("max_frames"),
        subject=subject,
    )
    write_mask_preview(load_prepared(out_dir), preview_png)
    log.info("prepared %s: %s", subject, json.dumps(summary))
    return summary


def write_mask_preview(data, path, per_clip: int = 2, max_clips: int = 6) -> None:
    """Head masks (red), landmarks (green) and the clip's background, two frames per clip (one
    row per clip, at most ``max_clips`` rows)."""
    import cv2

    rows = []
    for k in np.linspace(0, len(data.clips) - 1, min(len(data.clips), max_clips)).round().astype(int):
        idx = data.clip_frames(int(k))
        tiles = []
        for i in idx[np.linspace(0, len(idx) - 1, per_clip).round().astype(int)]:
            a = data.frame(int(i)).astype(np.float32)
            m = data.mask(int(i))
            a[m] = 0.6 * a[m] + 0.4 * np.array([255, 0, 0])
            a = a.astype(np.uint8)
            for p in data.landmarks[i]:
                cv2.circle(a, (int(round(p[0])), int(round(p[1]))), 1, (0, 255, 0), -1)
            tiles.append(a)
        tiles.append(data.bgs[int(k)])
        row = np.concatenate(tiles, axis=1)[..., ::-1].copy()
        cv2.putText(
            row,
            str(data.clips[int(k)]["sample"]),
            (3, 12),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        rows.append(row)
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), np.concatenate(rows, axis=0))


def build_refine_losses(tcfg: dict, device, shape_ckpt=None, param_stats=None):
    clip = shape = None
    if tcfg.get("clip_model") and float(tcfg.get("lambda_cord", 0)) > 0:
        from .losses import ClipEmotionLoss

        clip = ClipEmotionLoss(
            tcfg["clip_model"], tcfg.get("clip_prompt", "a photo of a {emotion} face"), device
        )
    if shape_ckpt and param_stats and float(tcfg.get("lambda_shape", 0)) > 0:
        from .losses import ShapeLoss

        shape = ShapeLoss(shape_ckpt, param_stats, device=device)
    return clip, shape


def subject_json(info: dict, subject_dir, **extra) -> dict:
    """subject.json: what `emohead render` needs besides model.pt and prepared/. Paths are stored
    relative to the subject directory, so it stays valid when results/ moves or the command runs
    from another directory; the hyperplanes are copied in (a subject directory is self-contained
    except for the audio-expression model)."""
    from .plan import relative_to

    sdir = Path(subject_dir)
    out = dict(info, **extra)
    hp = info.get("hyperplanes")
    if hp and Path(hp).is_file():
        shutil.copyfile(hp, sdir / "hyperplanes.json.tmp")
        (sdir / "hyperplanes.json.tmp").replace(sdir / "hyperplanes.json")
        out["hyperplanes"] = "hyperplanes.json"
        out["hyperplanes_source"] = str(hp)
    a2e = info.get("audio2exp")
    if a2e:
        out["audio2exp"] = relative_to(a2e, sdir)
    return out


def step_train(
    prepared, out: dict, rcfg: dict, info: dict, *, shape_ckpt=None, param_stats=None, threads: int = 1
) -> dict:
    """Train (resuming from ``out['ckpt']`` when present), write model.pt, loss.csv/png, subject.json."""
    import torch

    from ..loss_curves import write_loss_curves
    from .data import load_prepared
    from .renderer import pick_device
    from .train import LOSS_COLUMNS, Trainer, draw_loss

    torch.set_num_threads(int(threads))
    data = load_prepared(prepared)
    tcfg = dict(rcfg.get("train", {}))
    tags = data.emotions()
    tcfg.setdefault("emotion", "neutral" if "neutral" in tags else tags[0])
    device = rcfg.get("device", "auto")
    clip, shape = build_refine_losses(tcfg, pick_device(device), shape_ckpt, param_stats)
    tr = Trainer(
        data, rcfg.get("model"), tcfg, device=device, box=rcfg.get("box"), clip_loss=clip, shape_loss=shape
    )
    ckpt = Path(out["ckpt"])
    if ckpt.is_file():
        if tr.resume(ckpt):
            log.info("resumed from %s at step %d", ckpt, tr.step)
        else:
            log.warning(
                "renderer checkpoint %s is from another run (settings or prepared subject changed): "
                "training from scratch",
                ckpt,
            )
            ckpt.unlink()
    tr.fit(ckpt_path=ckpt)
    tr.save(out["model"])
    write_loss_curves(
        tr.history, LOSS_COLUMNS, out["loss_csv"], out["loss_png"], draw_loss, figsize=(13, 3.5)
    )
    doc = subject_json(
        info,
        Path(out["model"]).parent,
        iters=tr.step,
        device=str(tr.device),
        backend=type(tr.model.encoder).__name__,
        n_clips=len(data.clips),
        n_train_frames=int(len(data.train_idx)),
        n_test_frames=int(len(data.test_idx)),
        refine=dict(clip=clip is not None, shape=shape is not None),
    )
    write_json_atomic(out["subject_json"], doc)
    return doc


def _renderer_and_data(model, prepared, rcfg: dict, threads: int):
    import torch

    from .data import load_prepared
    from .train import load_renderer

    torch.set_num_threads(int(threads))
    return load_renderer(model, rcfg.get("device", "auto")), load_prepared(prepared)


def step_test_clip(
    model, prepared, sample: str, audio, out_dir, rcfg: dict, subject: str, *, threads: int = 1
) -> dict:
    """Rule render_test: one test clip rendered from its ground-truth alphas."""
    from .infer import write_test_clip

    renderer, data = _renderer_and_data(model, prepared, rcfg, threads)
    res = write_test_clip(renderer, data, sample, out_dir, audio=audio, meta=dict(subject=subject))
    log.info("test render %s / %s: %s", subject, sample, json.dumps(res))
    return res


def step_driven_clip(
    model,
    prepared,
    sample: str,
    audio,
    a2e_model,
    out_dir,
    rcfg: dict,
    subject: str,
    variant: str,
    pipeline_cfg: dict,
    *,
    hyperplanes=None,
    features: dict | None = None,
    threads: int = 1,
) -> dict:
    """Rule render_driven: one test clip rendered from its audio with one audio2exp variant and
    the clip's own emotion tag (see :func:`emohead_core.render.infer.write_driven_clip`)."""
    from .infer import write_driven_clip

    renderer, data = _renderer_and_data(model, prepared, rcfg, threads)
    res = write_driven_clip(
        renderer,
        data,
        sample,
        out_dir,
        a2e_model=a2e_model,
        audio=audio,
        config=pipeline_cfg,
        hyperplanes=hyperplanes,
        features=features or None,
        intensity=float((rcfg.get("driven") or {}).get("intensity", 1.0)),
        meta=dict(subject=subject, variant=variant),
    )
    log.info("driven render %s / %s / %s: %s", subject, variant, sample, json.dumps(res))
    return res


def step_baseline_clip(prepared, sample: str, name: str, audio, out_dir, subject: str) -> dict:
    """Rule render_baseline: one test clip's held-out span as trivial baseline ``name``
    (:func:`emohead_core.render.infer.write_baseline_clip`; no model, no torch)."""
    from .data import load_prepared
    from .infer import write_baseline_clip

    data = load_prepared(prepared)
    res = write_baseline_clip(data, sample, name, out_dir, audio=audio, meta=dict(subject=subject))
    log.info("baseline %s %s / %s: %s", name, subject, sample, json.dumps(res))
    return res


def step_summary(meta_files: list, out_json) -> dict:
    """Rule render_summary: val_psnr.json over the subject's test clips."""
    from .infer import summarise_tests

    return summarise_tests(meta_files, out_json)


def step_showcase(
    model,
    prepared,
    hyperplanes,
    out: dict,
    rcfg: dict,
    face_model_inputs: dict,
    expr_cfg: dict,
    *,
    threads: int = 1,
) -> dict:
    """Rule render_showcase: emotion_switch.mp4, novel_views.png, and the measured emotion control
    (emotion_control.json / .png, intensity_sweep.png; see render/control.py)."""
    from .control import write_emotion_control
    from .infer import emotion_switch_video, novel_view_strip

    renderer, data = _renderer_and_data(model, prepared, rcfg, threads)
    sw = dict(rcfg.get("switch") or {})
    switch = emotion_switch_video(
        renderer,
        data,
        out["emotion_switch"],
        hyperplanes=hyperplanes,
        tags=sw.get("emotions"),
        seconds_per_tag=float(sw.get("seconds_per_tag", 1.5)),
        intensity=float(sw.get("intensity", 1.0)),
        ramp_s=float(sw.get("ramp_s", 0.5)),
        intensity_unit=sw.get("intensity_unit", "std"),
    )
    novel_view_strip(
        renderer, data, out["novel_views"], yaws=tuple(rcfg.get("novel_yaws", (-30, -15, 0, 15, 30)))
    )
    ec = dict(rcfg["emotion_control"])
    doc = write_emotion_control(
        renderer,
        data,
        hyperplanes,
        subject_reextractor(data, face_model_inputs, expr_cfg, threads),
        out,
        taus=tuple(ec["taus"]),
        n_frames=int(ec["frames"]),
        unit=ec["unit"],
    )
    log.info(
        "emotion switch %s; emotion control summary %s %s over measurable tags %s (confusion diagonal: %s)",
        switch,
        doc["summary"],
        doc["summary_ci95"],
        doc["summary_tags"],
        {z: round(c["shares"].get(z, float("nan")), 2) for z, c in doc["confusion"].items()},
    )
    return dict(switch=switch, emotion_control=doc["summary"], measurable=doc["summary_tags"])


def subject_reextractor(data, face_model_inputs: dict, expr_cfg: dict, threads: int):
    """The expression stage's 3DDFA_V2 model as a re-extractor of a subject's frames at the crop
    size the stage saw (render/control.py)."""
    from ..expression.extract import face_model_for_job
    from .control import Reextractor

    fm = face_model_for_job(
        face_model_inputs["checkpoint"],
        face_model_inputs["onnx"],
        face_model_inputs["detector"],
        face_model_inputs["bfm"],
        expr_cfg,
        threads=int(threads),
    )
    return Reextractor(fm, int(np.median([c.get("crop_size", data.W) for c in data.clips])))


def step_driven_emotion(
    videos: dict,
    prepared,
    hyperplanes,
    out_json,
    face_model_inputs: dict,
    expr_cfg: dict,
    *,
    threads: int = 1,
) -> dict:
    """Rule render_driven_emotion: the tag accuracy of a subject's audio-driven test renders
    (3DDFA re-extracted, classified by the hyperplanes), beside its real held-out frames'."""
    from ..io import write_json_atomic
    from .control import measure_tag_accuracy
    from .data import load_prepared

    data = load_prepared(prepared)
    reextract = subject_reextractor(data, face_model_inputs, expr_cfg, threads)
    doc = measure_tag_accuracy(videos, data, hyperplanes, reextract)
    write_json_atomic(out_json, doc)
    log.info(
        "audio-driven renders classified as their tag: %s (real frames %s)",
        doc["accuracy"],
        doc["real_accuracy"],
    )
    return doc
