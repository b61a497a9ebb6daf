"""Pipeline steps of the render stage (called by the thin workflow/scripts/render_*.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..io import write_json_atomic

# torch and the renderer load inside the step functions: the Snakefile imports this module
# (its smk_* input functions) when it is parsed.

log = logging.getLogger(__name__)


def subject_cfg(config: dict, subject: str) -> dict:
    from ..errors import EmoheadInputError

    subs = config.get("render", {}).get("subjects", {}) or {}
    if subject not in subs:
        raise EmoheadInputError(f"unknown render subject {subject!r}; configured: {sorted(subs)}.",
                                path="config render.subjects")
    return subs[subject]


def step_prepare(crop, expression, bfm, out_npz, preview_png, rcfg: dict) -> dict:
    from .data import load_prepared, prepare_subject

    summary = prepare_subject(crop, expression, out_npz, resolution=int(rcfg["resolution"]), bfm_path=bfm,
                              val_fraction=float(rcfg.get("val_fraction", 0.1)), mask_cfg=rcfg.get("mask"),
                              max_frames=rcfg.get("max_frames"))
    write_mask_preview(load_prepared(out_npz), preview_png)
    return summary


def write_mask_preview(data: dict, path, n: int = 4) -> None:
    import cv2

    from ..io import atomic_path

    T = len(data["frames"])
    tiles = []
    for i in np.linspace(0, T - 1, n).round().astype(int):
        a = data["frames"][i].astype(np.float32)
        m = data["head_mask"][i]
        a[m] = 0.6 * a[m] + 0.4 * np.array([255, 0, 0])
        a = a.astype(np.uint8)
        for p in data["landmarks"][i]:
            cv2.circle(a, (int(round(p[0])), int(round(p[1]))), 1, (0, 255, 0), -1)
        tiles.append(a)
    tiles.append(data["bg"])
    with atomic_path(path) as tmp:
        cv2.imwrite(str(tmp), np.concatenate(tiles, axis=1)[..., ::-1])


def build_refine_losses(tcfg: dict, device, shape_ckpt=None, param_stats=None):
    clip = shape = None
    if tcfg.get("clip_model") and float(tcfg.get("lambda_cord", 0)) > 0:
        from .losses import ClipEmotionLoss

        clip = ClipEmotionLoss(tcfg["clip_model"], tcfg.get("clip_prompt", "a photo of a {emotion} face"), device)
    if shape_ckpt and param_stats and float(tcfg.get("lambda_shape", 0)) > 0:
        from .losses import ShapeLoss

        shape = ShapeLoss(shape_ckpt, param_stats, device=device)
    return clip, shape


def step_train(prepared, out: dict, rcfg: dict, subject: dict, *, shape_ckpt=None, param_stats=None,
               threads: int = 1) -> dict:
    """Train (resuming from ``out['ckpt']`` when present), write model.pt, loss.csv/png, subject.json."""
    import torch

    from .data import load_prepared
    from .train import Trainer, write_loss_curves

    torch.set_num_threads(int(threads))
    data = load_prepared(prepared)
    tcfg = dict(rcfg.get("train", {}))
    tcfg.setdefault("emotion", subject.get("emotion", "neutral"))
    device = rcfg.get("device", "auto")
    from .renderer import pick_device

    clip, shape = build_refine_losses(tcfg, pick_device(device), shape_ckpt, param_stats)
    tr = Trainer(data, rcfg.get("model"), tcfg, device=device, box=rcfg.get("box"), clip_loss=clip,
                 shape_loss=shape)
    ckpt = Path(out["ckpt"])
    if ckpt.is_file():
        tr.load(ckpt)
        log.info("resumed from %s at step %d", ckpt, tr.step)
    tr.fit(ckpt_path=ckpt)
    tr.save(out["model"])
    write_loss_curves(tr.history, out["loss_csv"], out["loss_png"])
    info = dict(subject=subject, hyperplanes=subject.get("hyperplanes"), audio2exp=subject.get("audio2exp"),
                iters=tr.step, device=str(tr.device), backend=type(tr.model.encoder).__name__,
                refine=dict(clip=clip is not None, shape=shape is not None))
    write_json_atomic(out["subject_json"], info)
    return info


def step_outputs(model, prepared, out: dict, rcfg: dict, subject: str, subject_cfg_: dict, *, audio=None,
                 hyperplanes=None, threads: int = 1) -> dict:
    from .infer import emotion_switch_video, novel_view_strip, write_test_outputs
    import torch

    from .data import load_prepared
    from .train import load_renderer

    torch.set_num_threads(int(threads))
    renderer = load_renderer(model, rcfg.get("device", "auto"))
    data = load_prepared(prepared)
    odir = Path(out["val_psnr"]).parent
    res = write_test_outputs(renderer, data, odir, subject=subject, dataset=subject_cfg_["dataset"],
                             sample=subject_cfg_["sample"], audio=audio, emotion=subject_cfg_.get("emotion", "neutral"))
    novel_view_strip(renderer, data, out["novel_views"], yaws=tuple(rcfg.get("novel_yaws", (-30, -15, 0, 15, 30))))
    sw = rcfg.get("switch", {})
    info = emotion_switch_video(renderer, data, out["emotion_switch"], hyperplanes=hyperplanes,
                                emotions=tuple(sw.get("emotions", ("happy", "sad"))),
                                intensity=float(sw.get("intensity", 1.0)), ramp_s=float(sw.get("ramp_s", 0.5)),
                                audio=audio, intensity_unit=sw.get("intensity_unit", "std"))
    log.info("val PSNR %s; switch %s", json.dumps(res), info)
    return res


def step_driven(model, prepared, a2e_model, audio, out_dir, rcfg: dict, subject: str, subject_cfg_: dict,
                variant: str, pipeline_cfg: dict, *, hyperplanes=None, threads: int = 1) -> dict:
    """Rule render_driven: the subject's held-out frames rendered from audio with the
    audio-expression model of one variant (see :func:`emohead_core.render.infer.write_driven_outputs`)."""
    import torch

    from .data import load_prepared
    from .infer import write_driven_outputs
    from .train import load_renderer

    torch.set_num_threads(int(threads))
    renderer = load_renderer(model, rcfg.get("device", "auto"))
    data = load_prepared(prepared)
    res = write_driven_outputs(
        renderer, data, out_dir, a2e_model=a2e_model, audio=audio, config=pipeline_cfg, hyperplanes=hyperplanes,
        emotion=subject_cfg_.get("emotion", "neutral"),
        intensity=float((rcfg.get("driven") or {}).get("intensity", 1.0)),
        meta=dict(subject=subject, dataset=subject_cfg_["dataset"], sample=subject_cfg_["sample"], variant=variant),
    )
    log.info("driven render %s / %s: %s", subject, variant, json.dumps(res))
    return res


def driven_models(config: dict, results: str, variants=None) -> dict[str, dict[str, str]]:
    """subject -> {audio2exp variant: model directory} of the audio-driven test renders.

    A subject whose ``audio2exp`` is a model this workflow trains
    (``{results}/{dataset}/audio2exp/{variant}``) is rendered with every variant the workflow
    trains for that dataset (``variants``: list, default just that one), so that the ablation
    rows of Table IV come from renders; any other model directory is rendered as ``main``.
    ``render.driven.variants`` (a list) renders only those of the trained variants;
    ``render.driven.enabled: false`` turns the audio-driven renders off."""
    import re

    rcfg = config.get("render") or {}
    dcfg = rcfg.get("driven") or {}
    if not dcfg.get("enabled", True):
        return {}
    if dcfg.get("variants") is not None and variants:
        variants = [v for v in variants if v in dcfg["variants"]]
    out: dict[str, dict[str, str]] = {}
    pattern = re.compile(rf"{re.escape(str(results).rstrip('/'))}/([^/]+)/audio2exp/([^/]+)")
    for name, s in (rcfg.get("subjects") or {}).items():
        a2e = s.get("audio2exp")
        if not a2e:
            continue
        a2e = str(a2e).rstrip("/").removesuffix("/model.pt")
        m = pattern.fullmatch(a2e)
        if m:
            names = list(variants) if variants else [m[2]]
            out[name] = {v: f"{results}/{m[1]}/audio2exp/{v}" for v in names}
        else:
            out[name] = {"main": a2e}
    return out


# ----------------------------------------------------------------------------- Snakemake input functions


def smk_subject_files(config: dict, clip_file):
    """Params function: the per-clip files a subject's jobs read (crop video, expression
    Parquet, 16 kHz wav); ``clip_file(ds, kind, sample)`` from rules/common.smk."""

    def f(wildcards):
        s = config["render"]["subjects"][wildcards.subject]
        return {k: clip_file(s["dataset"], k, s["sample"]) for k in ("crop", "expression", "audio")}

    return f


def smk_prepare_inputs(config: dict, asset, clip_file, layout):
    """Input function of render_prepare: crop video, expression Parquet (or, for a dataset
    batched per actor, their actor directories: emohead_core/layout.py), BFM keypoints."""
    files = smk_subject_files(config, clip_file)

    def f(wildcards):
        c = files(wildcards)
        return {"crop": layout.dep(c["crop"]), "expression": layout.dep(c["expression"]),
                "bfm": asset(config["expression"]["bfm"])}

    return f


def smk_output_inputs(config: dict, results: str, clip_file, layout):
    """Input function of render_outputs: model, prepared data, the subject's audio (or its
    actor directory), hyperplanes."""

    def f(wildcards):
        s = config["render"]["subjects"][wildcards.subject]
        return {
            "model": f"{results}/render/{wildcards.subject}/model.pt",
            "prepared": f"{results}/render/{wildcards.subject}/prepared.npz",
            "audio": layout.dep(clip_file(s["dataset"], "audio", s["sample"])),
            "hyperplanes": s["hyperplanes"],
        }

    return f


def smk_driven_inputs(config: dict, results: str, clip_file, layout, driven: dict):
    """Input function of render_driven: those of render_outputs plus the variant's audio2exp model
    (``driven``: :func:`driven_models`)."""
    outputs_inputs = smk_output_inputs(config, results, clip_file, layout)

    def f(wildcards):
        return {**outputs_inputs(wildcards),
                "a2e_model": f"{driven[wildcards.subject][wildcards.variant]}/model.pt"}

    return f
