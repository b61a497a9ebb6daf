"""Expression extraction speed (frames per second) on the six real CREMA-D clips.

Measured in the same run, decode excluded (frames are decoded once beforehand):
- full per-frame fit (FaceBoxes + two 3DDFA_V2 passes) with detection on every frame (the
  baseline) vs detection every k-th frame with landmark tracking in between;
- the 3DDFA_V2 regressor alone: onnxruntime (the pipeline's path) vs the PyTorch module,
  batched over frames.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_expression.py [--threads 1] [--every 5] [--rounds 3]

The raw clips (480x360, 29.97 fps) are used as they are; the pipeline runs on the 340x340
25 fps crops, where detection is a little cheaper.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from emohead_core import media
from emohead_core.expression import FaceModel, fit_frames, load_mobilenet
from emohead_core.expression import tddfa as T
from emohead_core.expression.runtime import TorchRegressor

REPO = Path(__file__).resolve().parent.parent


def median_time(fn, rounds):
    fn()  # warm-up
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mirror = Path(os.environ.get("EMOHEAD_MIRROR", REPO.parent / "shared"))
    clips = sorted((mirror / "data" / "crema-d").glob("1001_*.flv"))
    frames = {c.stem: media.read_frames(c) for c in clips}
    n = sum(len(f) for f in frames.values())
    with tempfile.TemporaryDirectory() as td:
        fm = FaceModel(mirror / "models" / "3ddfa_v2", onnx_dir=td, threads=args.threads)

        def run(k):
            return lambda: [fit_frames(fm, list(f), detect_every=k) for f in frames.values()]

        t1 = median_time(run(1), args.rounds)
        tk = median_time(run(args.every), args.rounds)

        # regressor only, on the final crops of every frame
        crops = []
        for f in frames.values():
            d = fit_frames(fm, list(f), detect_every=1)
            crops += [T.crop_resize(img, r) for img, r in zip(f, d["roi_box"])]
        x = T.normalize_crops(np.stack(crops))
        torch_reg = TorchRegressor(load_mobilenet(fm.checkpoint_path, fm.widen_factor), batch_size=64)
        t_onnx = median_time(lambda: fm.regressor(x), args.rounds)
        t_torch = median_time(lambda: torch_reg(x), args.rounds)

    print(
        f"# bench_expression  {platform.processor() or platform.machine()}  threads={args.threads}  "
        f"python {sys.version.split()[0]}  torch {torch.__version__}"
    )
    print(f"clips: {len(clips)} CREMA-D (480x360), {n} frames, median of {args.rounds} rounds")
    print("| path | frames/s | ratio |")
    print("| --- | --- | --- |")
    print(f"| fit, detect every frame (baseline) | {n / t1:.1f} | 1.00 |")
    print(f"| fit, detect every {args.every} frames + tracking | {n / tk:.1f} | {t1 / tk:.2f} |")
    print(f"| 3DDFA regressor only, PyTorch (baseline) | {n / t_torch:.1f} | 1.00 |")
    print(f"| 3DDFA regressor only, onnxruntime | {n / t_onnx:.1f} | {t_torch / t_onnx:.2f} |")


if __name__ == "__main__":
    main()
