"""Host memory of a MEAD-sized render subject: 10 minutes of clips (15,000 frames) at 512x512.

Builds a subject of N clips from the demo's CREMA-D crops and expression files (each crop reused
under many sample ids, upscaled to 512 by the preparation itself), prepares it with
``render.data.prepare_subject`` and trains the paper-profile renderer (config/config.yaml
render.model / train, on the CPU) for a few steps, each in its own process, and prints the peak
resident memory (ru_maxrss) and the resident anonymous memory at the end (file-backed pages of
the memory-mapped frames are page cache the kernel can drop; anonymous memory is what the
process really holds). Baseline in the same run: the frames and masks as in-memory arrays, the
size they would take if the subject were loaded whole (as the single-video prepared.npz was).

    python bench/bench_render_memory.py --results results --frames 15000 --work /tmp/emohead_mem

Needs the demo's CREMA-D crops and expression files (``make demo`` or the targets
``results/cremad/crop/1001`` and ``results/cremad/expression/1001``) and ~13 GB of free disk.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_prepare(args) -> dict:
    from emohead_core.render.data import ClipInput, prepare_subject

    crops = sorted(Path(args.results, "cremad", "crop", "1001").glob("*.mp4"))
    if not crops:
        sys.exit(
            f"no CREMA-D crops under {args.results}/cremad/crop/1001: run the demo's preprocessing first"
        )
    clips, total, k = [], 0, 0
    while total < args.frames:
        crop = crops[k % len(crops)]
        expr = Path(args.results, "cremad", "expression", "1001", crop.stem + ".parquet")
        clips.append(ClipInput(sample=f"{crop.stem}_{k:04d}", crop=crop, expression=expr, test=k % 5 == 4))
        total += 57  # ~frames per CREMA-D clip (the exact count comes from the files)
        k += 1
    t0 = time.perf_counter()
    s = prepare_subject(
        clips,
        Path(args.work) / "prepared",
        resolution=512,
        bfm_path=args.bfm,
        split_mode="clips",
        subject="mead_sized",
        progress=True,
    )
    return dict(
        step="prepare",
        seconds=time.perf_counter() - t0,
        n_frames=s["n_frames"],
        n_clips=s["n_clips"],
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        rss_anon_mb=_rss_anon_mb(),
    )


def child_train(args) -> dict:
    import torch
    import yaml

    from emohead_core.render.data import load_prepared
    from emohead_core.render.train import Trainer

    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["render"]
    data = load_prepared(Path(args.work) / "prepared")
    tcfg = dict(
        cfg["train"],
        iters=args.steps,
        refine_start=10**9,
        clip_model=None,
        ckpt_every=10**9,
        frames_per_step=4,
        val_every=0,
    )
    t0 = time.perf_counter()
    tr = Trainer(data, cfg["model"], tcfg, device="cpu")
    tr.fit(progress=False)
    val = tr.validate(data.test_idx[:2])
    return dict(
        step="train",
        seconds=time.perf_counter() - t0,
        steps=args.steps,
        n_frames=data.n_frames,
        val_psnr_head=val["val_psnr_head"],
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        rss_anon_mb=_rss_anon_mb(),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default="results")
    ap.add_argument("--work", default="/tmp/emohead_render_memory")
    ap.add_argument("--bfm", default="resources/assets/3ddfa_v2/bfm_68_landmarks.npz")
    ap.add_argument("--frames", type=int, default=15000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", choices=["prepare", "train"], default=None)
    ap.add_argument("--keep", action="store_true", help="keep the prepared subject")
    args = ap.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child_prepare(args) if args.child == "prepare" else child_train(args)))
        return
    Path(args.work).mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for step in ("prepare", "train"):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                step,
                "--results",
                args.results,
                "--work",
                args.work,
                "--bfm",
                args.bfm,
                "--frames",
                str(args.frames),
                "--steps",
                str(args.steps),
                "--threads",
                str(args.threads),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True)
            res = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if out.returncode or not res:
                sys.exit(f"{step} failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(res[-1][7:]))
        n = rows[0]["n_frames"]
        whole_gb = n * 512 * 512 * 4 / 1e9  # frames uint8 RGB + masks as bool, loaded whole
        print(f"subject: {rows[0]['n_clips']} clips, {n} frames at 512x512")
        print(f"baseline (frames + masks loaded whole in memory): {whole_gb:.1f} GB")
        for r in rows:
            print(
                f"{r['step']:8s} {r['seconds']:7.1f} s  peak RSS {r['peak_rss_mb'] / 1024:5.2f} GB "
                f"(x{r['peak_rss_mb'] / 1024 / whole_gb:.2f} of the baseline)  anonymous at the end "
                f"{r['rss_anon_mb'] / 1024:5.2f} GB"
                + (
                    f"  ({r['steps']} steps, held-out PSNR {r['val_psnr_head']:.1f} dB)"
                    if r["step"] == "train"
                    else ""
                )
            )
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
