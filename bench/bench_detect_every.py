"""How far the face-detection schedule moves the expression parameters, on the real clips.

Reference: every-frame detection as before this change (``preprocess.detect_every: 1``, then
``expression.face_boxes: detect`` with ``detect_every: 1``: FaceBoxes on every source frame for
the crop, again on every crop frame for the fits). Rows, each against the reference:

- 3DDFA_V2's own sensitivity to its ROI: the reference fitted once more from its own landmarks
  (one more landmark-ROI pass), the scale below which differences mean nothing;
- ``face_boxes: detect, detect_every: 5``: FaceBoxes on every 5th crop frame, landmark tracking
  in between (upstream demo_video);
- ``face_boxes: preprocess`` with ``preprocess.detect_every`` = k: the fits start from the
  preprocessing boxes (detected every k source frames, interpolated in between); k changes the
  crop box a little (median / 95th percentile over fewer boxes), and with it the crop video;
- the alternative not taken, at k = 5: two-pass fits from the preprocessing boxes on the
  detected frames only, upstream's landmark tracking (one pass from the previous frame's
  landmarks) in between.

Columns: FaceBoxes runs per frame (both stages), mean and 95th percentile of |d alpha| (the 10
expression coefficients; their std over a clip is ~0.13-0.27), mean landmark shift in source
pixels and in % of the inter-ocular distance, MAR correlation over frames, largest crop-box
corner shift (source px). CREMA-D: the six actor-1001 clips (crop 340); talking heads: the
three mirror videos (crop 512).

    .venv/bin/python bench/bench_detect_every.py [--threads 2] [--ks 1 2 5 10 25]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from emohead_core import media
from emohead_core.expression import FaceModel, extract_clip
from emohead_core.expression import tddfa as T
from emohead_core.expression.extract import seed_boxes
from emohead_core.expression.schema import ROI_BOX_DETECTED, ROI_DETECTED
from emohead_core.preprocess import crop as pp

REPO = Path(__file__).resolve().parent.parent
GROUPS = {
    "CREMA-D": ("data/crema-d", "1001_*.flv", 340),
    "talking heads": ("data/talking-heads", "*.mp4", 512),
}


def crop(clip, onnx, out: Path, size: int, k: int, threads: int):
    video, boxes = out / f"{clip.stem}.k{k}.mp4", out / f"{clip.stem}.k{k}.boxes.parquet"
    if not boxes.exists():
        pp.crop_clip(clip, onnx, video, boxes, crop_size=size, opts={"detect_every": k}, threads=threads)
    return video, boxes


def track_between(fm, frames, boxes_path) -> dict:
    """Two-pass fits from the detected preprocessing boxes, upstream tracking in between."""
    seeds, kinds = seed_boxes(boxes_path)
    lms = np.zeros((len(frames), 68, 3), np.float32)
    exp = np.zeros((len(frames), 10), np.float32)
    det = np.nonzero(kinds == ROI_BOX_DETECTED)[0]
    p, lm, _ = fm.fit_boxes([frames[i] for i in det], seeds[det])
    lms[det], exp[det] = lm, p[:, 52:62]
    for i in range(1, len(frames)):
        if kinds[i] != ROI_BOX_DETECTED:
            p, lm, _ = fm.fit_landmarks([frames[i]], lms[i - 1][None])
            lms[i], exp[i] = lm[0], p[0, 52:62]
    return {"exp": exp, "landmarks": lms, "roi_source": np.zeros(len(frames))}


def compare(ref: dict, ref_boxes, data: dict, boxes) -> dict:
    """Per-frame differences of ``data`` to ``ref`` (landmarks compared in source pixels)."""
    lm_ref = pp.crop_to_source(ref["landmarks"][..., :2], ref_boxes)
    lm = pp.crop_to_source(data["landmarks"][..., :2], boxes)
    iod = np.linalg.norm(lm_ref[:, 36:42].mean(1) - lm_ref[:, 42:48].mean(1), axis=-1)
    shift = np.linalg.norm(lm - lm_ref, axis=-1).mean(1)
    corners = ["crop_x1", "crop_y1", "crop_x2", "crop_y2"]
    return {
        "d_exp": np.abs(data["exp"] - ref["exp"]).ravel(),
        "shift": shift,
        "shift_iod": shift / iod,
        "mar": (T.mouth_aspect_ratio(lm), T.mouth_aspect_ratio(lm_ref)),
        "crop_shift": float(
            np.abs(boxes[corners].iloc[0].to_numpy(float) - ref_boxes[corners].iloc[0].to_numpy(float)).max()
        ),
    }


def summarise(parts: list[dict], detect_per_frame: float) -> str:
    d_exp = np.concatenate([p["d_exp"] for p in parts])
    shift = np.concatenate([p["shift"] for p in parts])
    shift_iod = np.concatenate([p["shift_iod"] for p in parts])
    mar = np.concatenate([p["mar"][0] for p in parts]), np.concatenate([p["mar"][1] for p in parts])
    return (
        f"{detect_per_frame:.2f} | {d_exp.mean():.4f} | {np.percentile(d_exp, 95):.3f} | {shift.mean():.2f} | "
        f"{100 * shift_iod.mean():.2f} | {np.corrcoef(*mar)[0, 1]:.4f} | {max(p['crop_shift'] for p in parts):.0f}"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 5, 10, 25])
    args = ap.parse_args()
    mirror = Path(os.environ.get("EMOHEAD_MIRROR", REPO.parent / "shared"))
    rev = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(f"# bench_detect_every  commit {rev}  {time.strftime('%Y-%m-%d')}  threads {args.threads}")
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        fm = FaceModel(mirror / "models" / "3ddfa_v2", onnx_dir=td, threads=args.threads)
        onnx = td / "faceboxes.onnx"
        _ = fm.detector  # exports faceboxes.onnx into td
        for group, (sub, pattern, size) in GROUPS.items():
            clips = sorted((mirror / sub).glob(pattern))
            rows: dict[str, list] = {}
            detects: dict[str, float] = {}
            n_total = 0
            for clip in clips:
                video, boxes_path = crop(clip, onnx, td, size, 1, args.threads)
                ref_boxes = pp.read_boxes(boxes_path)
                ref = extract_clip(video, fm, detect_every=1, threads=args.threads)
                n = len(ref["exp"])
                n_total += n

                def add(name, data, boxes, checked):
                    rows.setdefault(name, []).append(compare(ref, ref_boxes, data, boxes))
                    found = (
                        int((np.asarray(data["roi_source"]) == ROI_DETECTED).sum()) if data is not None else 0
                    )
                    detects[name] = detects.get(name, 0.0) + checked + found

                p, lm, _ = fm.fit_landmarks(list(media.read_frames(video)), ref["landmarks"])
                add(
                    "3DDFA_V2 ROI sensitivity (one more landmark-ROI pass)",
                    {"exp": p[:, 52:62], "landmarks": lm, "roi_source": np.zeros(n)},
                    ref_boxes,
                    2 * n,
                )
                add("reference: every frame, FaceBoxes on source and crop", ref, ref_boxes, n)
                add(
                    "face_boxes: detect, detect_every 5 (crop, tracking)",
                    extract_clip(video, fm, detect_every=5, threads=args.threads),
                    ref_boxes,
                    n,
                )
                for k in args.ks:
                    v, b = crop(clip, onnx, td, size, k, args.threads)
                    table = pp.read_boxes(b)
                    add(
                        f"face_boxes: preprocess, preprocess.detect_every {k}",
                        extract_clip(v, fm, boxes=b, threads=args.threads),
                        table,
                        int(table["checked"].sum()),
                    )
                v, b = crop(clip, onnx, td, size, 5, args.threads)
                table = pp.read_boxes(b)
                add(
                    "not taken: preprocess.detect_every 5, tracking between detections",
                    track_between(fm, media.read_frames(v), b),
                    table,
                    int(table["checked"].sum()),
                )
            print(f"\n{group}: {len(clips)} clips, {n_total} frames")
            print(
                "| schedule | FaceBoxes runs / frame | mean abs d alpha | p95 abs d alpha | landmark shift px | "
                "shift % IOD | MAR r | crop box shift px |"
            )
            print("| --- | --- | --- | --- | --- | --- | --- | --- |")
            for name, parts in rows.items():
                print(f"| {name} | {summarise(parts, detects[name] / n_total)} |")


if __name__ == "__main__":
    main()
