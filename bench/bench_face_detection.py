"""Face detection time per frame on the six real CREMA-D clips (480x360, resampled to 25 fps).

Measured in the same run:
- FaceBoxes through onnxruntime (the pipeline's path) vs the PyTorch module (baseline), one
  frame per call and batched (8 frames per call);
- the per-clip detection pass of preprocessing (decode excluded) with detection on every frame
  vs every k-th frame (k = 5, boxes interpolated in between): time per output frame.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_face_detection.py [--threads 1] [--rounds 3]
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
from emohead_core.preprocess import crop as pp
from emohead_core.preprocess import facedetect as fd

REPO = Path(__file__).resolve().parent.parent


def per_frame(fn, frames, rounds):
    """Median over rounds of (seconds / frame) for fn(frames)."""
    fn(frames[:2])  # warm-up
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn(frames)
        times.append((time.perf_counter() - t) / len(frames))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--every", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mirror = Path(os.environ.get("EMOHEAD_MIRROR", REPO.parent / "shared"))
    clips = sorted((mirror / "data" / "crema-d").glob("1001_*.flv"))
    weights = mirror / "models" / "3ddfa_v2" / "FaceBoxesProd.pth"
    frames = np.concatenate([media.read_frames(c, fps=25) for c in clips])
    with tempfile.TemporaryDirectory() as td:
        onnx_path = fd.export_onnx(weights, Path(td) / "fb.onnx")
        ort_det = fd.FaceDetector(onnx_path, ["CPUExecutionProvider"], threads=args.threads)
        torch_det = fd.TorchFaceDetector(weights)

        def single(det):
            return lambda fr: [det.detect(f) for f in fr]

        def batched(det):
            return lambda fr: [det.detect_batch(fr[i : i + 8]) for i in range(0, len(fr), 8)]

        def clip_pass(every):
            def run(fr):
                n, _, dets = pp.detect_clip(iter(fr), ort_det, every=every, batch=8)
                boxes, scores = pp.select_track(dets)
                pp.interpolate_boxes(boxes, ~np.isnan(scores))

            return run

        res = {
            "torch, 1 frame/call (baseline)": per_frame(single(torch_det), frames, args.rounds),
            "onnxruntime, 1 frame/call": per_frame(single(ort_det), frames, args.rounds),
            "torch, 8 frames/call": per_frame(batched(torch_det), frames, args.rounds),
            "onnxruntime, 8 frames/call": per_frame(batched(ort_det), frames, args.rounds),
            "clip pass, detect every frame (onnxruntime)": per_frame(clip_pass(1), frames, args.rounds),
            f"clip pass, detect every {args.every} frames (onnxruntime)": per_frame(
                clip_pass(args.every), frames, args.rounds
            ),
        }
    print(
        f"# FaceBoxes on {len(frames)} frames of {len(clips)} CREMA-D clips ({frames.shape[2]}x{frames.shape[1]}), "
        f"{args.threads} thread(s), median of {args.rounds} rounds"
    )
    print(
        f"# {platform.processor() or platform.machine()}, python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    base = res["torch, 1 frame/call (baseline)"]
    every1 = res["clip pass, detect every frame (onnxruntime)"]
    print(f"{'variant':52s} {'ms/frame':>9s} {'vs torch':>9s} {'vs every frame':>15s}")
    for k, v in res.items():
        rel = f"{every1 / v:14.2f}x" if k.startswith("clip pass") else f"{'':15s}"
        print(f"{k:52s} {v * 1e3:9.2f} {base / v:8.2f}x {rel}")


if __name__ == "__main__":
    main()
