"""Preprocessing + expression wall time on a 5-minute 512x512 talking-head clip (7,500 frames).

Measured in the same run, each step in a fresh Python process as a Snakemake job runs it
(interpreter start and model loading included):

- **baseline**, upstream 3DDFA_V2 style: OpenCV decode, FaceBoxes + one 3DDFA_V2 pass
  (box ROI -> parameters -> 68 landmarks) on every source frame, one thread, nothing written;
- **workflow** (this checkout, ``config/config.yaml`` defaults): the crop job
  (:func:`emohead_core.preprocess.crop.crop_clip` + :func:`~emohead_core.preprocess.crop.extract_clip_audio`:
  crop mp4, boxes Parquet, wav) then the expression job
  (:func:`emohead_core.expression.extract_clip`: expression Parquet), ``--threads`` each;
- **before** (``--before REV``): the same two jobs with the ``emohead_core`` and
  ``config/config.yaml`` of git revision ``REV`` (``git archive``), each job with the threads its
  rules gave it there (1 for both at the revision before this benchmark existed).

The clip is the mirror's 8-s 512x512 ``WDA_AlexandriaOcasioCortez_000.mp4`` looped to 5 min
(re-encoded as the same mpeg4 at 25 fps, audio copied) in a temporary directory.

    .venv/bin/python bench/bench_preprocess.py [--threads 2] [--minutes 5] [--before REV]

Targets: workflow <= 90 s for the 7,500 frames and >= 1.2x faster than the baseline (goal 2x).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SOURCE = "data/talking-heads/WDA_AlexandriaOcasioCortez_000.mp4"
CROP_SIZE = 512  # folder datasets' default

# Each job runs in `python -c JOB` with the package under test first on sys.path; argv[1] is a
# JSON dict of arguments. Only API common to the old and the new package is used.
# (run from a directory without an emohead_core/, so the package under test comes first)
IMPORT_PKG = """
import emohead_core
assert emohead_core.__file__.startswith(a["pkg"]), emohead_core.__file__
"""
CROP_JOB = """
import json, sys
a = json.loads(sys.argv[1])
{IMPORT_PKG}try:
    from emohead_core.preprocess import crop as pp
except ImportError:  # packages before emohead_core/preprocess/
    from emohead_core.preprocess import crop as pp
pp.crop_clip(a["src"], a["faceboxes"], a["video"], a["boxes"], crop_size=a["crop_size"], opts=a["opts"],
             threads=a["threads"])
pp.extract_clip_audio(a["src"], a["wav"], boxes_path=a["boxes"])
""".replace("{IMPORT_PKG}", IMPORT_PKG)

EXPRESSION_JOB = """
import json, sys
a = json.loads(sys.argv[1])
{IMPORT_PKG}from emohead_core.expression import extract_clip, face_model_for_job
if a["torch"]:  # as the rule's script (packages before this change import torch anyway)
    import torch
    torch.set_num_threads(a["threads"])
o = a["opts"]
fm = face_model_for_job(a["checkpoint"], a["onnx"], a["faceboxes"], a["bfm"], o, a["threads"])
kw = {}
if o.get("face_boxes") == "preprocess":
    kw = {"boxes": a["boxes"], "threads": a["threads"]}
extract_clip(a["video"], fm, a["out"], detect_every=o["detect_every"], **kw)
""".replace("{IMPORT_PKG}", IMPORT_PKG)

BASELINE_JOB = """
import json, sys
a = json.loads(sys.argv[1])
import cv2, numpy as np
try:
    from emohead_core.preprocess.facedetect import FaceDetector
except ImportError:  # packages before emohead_core/preprocess/
    from emohead_core.preprocess.facedetect import FaceDetector
from emohead_core.expression import tddfa as T
from emohead_core.expression.runtime import OnnxRegressor
det = FaceDetector(a["faceboxes"], ["CPUExecutionProvider"], threads=1)
reg = OnnxRegressor(a["onnx"], ["CPUExecutionProvider"], batch_size=1, threads=1)
stats, bfm = T.load_param_stats(a["stats"]), T.load_bfm_keypoints(a["bfm"])
cap = cv2.VideoCapture(a["src"])
n = 0
while True:
    ok, frame = cap.read()
    if not ok:
        break
    n += 1
    boxes = det.detect(frame)
    if len(boxes):
        roi = T.roi_box_from_bbox(boxes[0])
        x = T.normalize_crops(T.crop_resize(frame, roi)[None])
        params = T.denormalize(reg(x), stats)
        T.reconstruct_landmarks(params, roi[None], bfm)
print(json.dumps({"frames": n}))
"""


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_job(code: str, args: dict, pkg: Path, threads: int) -> tuple[float, float, str]:
    """Wall seconds and CPU seconds (the job and its ffmpeg processes) of one job process, and
    its stdout."""
    env = dict(os.environ, PYTHONPATH=str(pkg), OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1")
    t, c = time.perf_counter(), _children_cpu()
    r = subprocess.run(
        [sys.executable, "-c", code, json.dumps({**args, "pkg": str(pkg)})],
        env=env,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    dt, dc = time.perf_counter() - t, _children_cpu() - c
    if r.returncode != 0:
        raise RuntimeError(f"job failed:\n{r.stderr[-3000:]}")
    return dt, dc, r.stdout


def make_clip(mirror: Path, dst: Path, minutes: float) -> int:
    from emohead_core import media

    media.run_ffmpeg(
        [
            "-stream_loop",
            "-1",
            "-i",
            str(mirror / SOURCE),
            "-t",
            str(60 * minutes),
            "-vf",
            "fps=25",
            "-c:v",
            "mpeg4",
            "-q:v",
            "2",
            "-c:a",
            "copy",
            str(dst),
        ]
    )
    return media.count_frames(dst)


def rule_threads(pkg_root: Path, section: str) -> int:
    """Threads the rules of a checkout give a stage's jobs (``<section>.threads`` if the config
    has it, else 1, as before that key existed)."""
    cfg = yaml.safe_load((pkg_root / "config" / "config.yaml").read_text())
    return int(cfg[section].get("threads", 1))


def workflow(pkg_root: Path, work: Path, clip: Path, models: dict, threads: int | None) -> dict:
    """Crop job then expression job of ``pkg_root``'s package with its config defaults."""
    cfg = yaml.safe_load((pkg_root / "config" / "config.yaml").read_text())
    work.mkdir()
    out = {"video": str(work / "clip.mp4"), "boxes": str(work / "clip.boxes.parquet")}
    t_pre = threads or rule_threads(pkg_root, "preprocess")
    t_expr = threads or rule_threads(pkg_root, "expression")
    crop_s, crop_cpu, _ = run_job(
        CROP_JOB,
        {
            **models,
            **out,
            "src": str(clip),
            "wav": str(work / "clip.wav"),
            "crop_size": CROP_SIZE,
            "opts": cfg["preprocess"],
            "threads": t_pre,
        },
        pkg_root,
        t_pre,
    )
    expr_s, expr_cpu, _ = run_job(
        EXPRESSION_JOB,
        {
            **models,
            **out,
            "out": str(work / "clip.parquet"),
            "opts": cfg["expression"],
            "threads": t_expr,
            "torch": cfg["expression"]["backend"] == "torch",
        },
        pkg_root,
        t_expr,
    )
    return {
        "crop_s": crop_s,
        "expression_s": expr_s,
        "total_s": crop_s + expr_s,
        "cpu_s": crop_cpu + expr_cpu,
        "threads": (t_pre, t_expr),
    }


def export_models(mirror: Path, dst: Path) -> dict:
    from emohead_core.expression.runtime import export_onnx
    from emohead_core.preprocess import facedetect

    tddfa = mirror / "models" / "3ddfa_v2"
    facedetect.export_onnx(tddfa / "FaceBoxesProd.pth", dst / "faceboxes.onnx")
    export_onnx(tddfa / "mb05_120x120.pth", dst / "3ddfa_mb05.onnx", 0.5)
    return {
        "faceboxes": str(dst / "faceboxes.onnx"),
        "onnx": str(dst / "3ddfa_mb05.onnx"),
        "checkpoint": str(tddfa / "mb05_120x120.pth"),
        "stats": str(tddfa / "param_mean_std_62d_120x120.pkl"),
        "bfm": str(tddfa / "bfm_68_landmarks.npz"),
    }


def archive(rev: str, dst: Path) -> Path:
    """``emohead_core`` and ``config`` of git revision ``rev`` unpacked into ``dst``."""
    dst.mkdir()
    tar = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "emohead_core", "config"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dst)], input=tar, check=True)
    return dst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--threads", type=int, default=2, help="threads of the workflow's crop and expression jobs"
    )
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--before", metavar="REV", help="also time the jobs of this git revision")
    args = ap.parse_args()
    mirror = Path(os.environ.get("EMOHEAD_MIRROR", REPO.parent / "shared"))
    rev = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        clip = td / "loop.mp4"
        n = make_clip(mirror, clip, args.minutes)
        models = export_models(mirror, td)
        base_s, base_cpu, base_out = run_job(BASELINE_JOB, {**models, "src": str(clip)}, REPO, 1)
        loads.append(os.getloadavg()[0])
        ours = workflow(REPO, td / "ours", clip, models, args.threads)
        loads.append(os.getloadavg()[0])
        before = None
        if args.before:
            before = workflow(archive(args.before, td / "before_pkg"), td / "before", clip, models, None)
            loads.append(os.getloadavg()[0])
    assert json.loads(base_out)["frames"] == n, (base_out, n)

    print(
        f"# bench_preprocess  commit {rev}  {time.strftime('%Y-%m-%d')}  {platform.machine()}, "
        f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}"
    )
    print(f"# clip: {SOURCE} looped to {args.minutes:g} min, {n} frames 512x512 at 25 fps; crop {CROP_SIZE}")
    print(f"# 1-min load average at start / after each run: {', '.join(f'{x:.1f}' for x in loads)}")
    print(
        "| run | threads (crop, expression) | crop job s | expression job s | total s | ms/frame | "
        "speed-up vs baseline | CPU s (with ffmpeg) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| baseline: OpenCV decode + FaceBoxes + 1 3DDFA pass per frame | 1 | | | {base_s:.1f} | "
        f"{1e3 * base_s / n:.1f} | 1.00 | {base_cpu:.1f} |"
    )
    rows = [("workflow (this commit)", ours)] + ([(f"before ({args.before})", before)] if before else [])
    for name, r in rows:
        print(
            f"| {name} | {r['threads'][0]}, {r['threads'][1]} | {r['crop_s']:.1f} | {r['expression_s']:.1f} | "
            f"{r['total_s']:.1f} | {1e3 * r['total_s'] / n:.1f} | {base_s / r['total_s']:.2f} | {r['cpu_s']:.1f} |"
        )
    target = 90.0 * n / 7500
    print(
        f"targets: workflow <= {target:.0f} s: {'met' if ours['total_s'] <= target else 'MISSED'}; "
        f">= 1.2x the baseline: {'met' if base_s / ours['total_s'] >= 1.2 else 'MISSED'} (goal 2x)"
    )


if __name__ == "__main__":
    main()
