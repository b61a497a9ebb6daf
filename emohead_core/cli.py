"""``emohead`` command line. Subcommands register themselves in ``SUBCOMMANDS``.

    emohead stashes results [--remove]   # unfinished actor batches (emohead_core/batch.py)

    emohead render --subject-dir results/render/obama --audio new.wav \
        --timeline "0:happy,2.5:sad" --intensity 1.0 --out out.mp4
"""

from __future__ import annotations

import argparse
import sys


def _add_render(sub) -> None:
    p = sub.add_parser("render", help="render a talking head for new audio with an emotion timeline",
                       description="Render the trained person-specific head of --subject-dir for an audio "
                                   "file: alpha_hat from the audio-expression module (or --alpha), emotion "
                                   "timeline with a linear ramp, audio muxed into the mp4.")
    p.add_argument("--subject-dir", required=True, help="results/render/<subject> (model.pt, prepared.npz)")
    p.add_argument("--audio", required=True, help="speech audio (any format ffmpeg reads)")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--timeline", default=None, help='emotion timeline, e.g. "0:happy,2.5:sad"')
    p.add_argument("--intensity", default="1.0", help="tau: a number, or a .npy/.txt per-frame curve")
    p.add_argument("--alpha", default=None, help="(T, 10) .npy of alpha_tilde instead of the audio model")
    p.add_argument("--audio2exp", default=None, help="audio2exp model dir (default: from subject.json)")
    p.add_argument("--hyperplanes", default=None, help="hyperplanes.json (default: from subject.json)")
    p.add_argument("--config", action="append", default=None,
                   help="pipeline config overrides (config/demo.yaml ...) for the audio feature encoders")
    p.add_argument("--ramp", type=float, default=0.5, help="ramp length of an emotion switch, seconds")
    p.add_argument("--pose", choices=["video", "still"], default="video")
    p.add_argument("--still-frame", type=int, default=None)
    p.add_argument("--yaw-sweep", type=float, default=0.0, help="novel views: yaw amplitude in degrees")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_run_render)


def _run_render(args) -> int:
    from pathlib import Path

    import numpy as np

    from .errors import EmoheadInputError
    from .render.data import load_prepared
    from .render.infer import load_intensity, render_clip, subject_info, timeline_alphas
    from .render.train import load_renderer

    sdir = Path(args.subject_dir)
    info = subject_info(sdir)
    renderer = load_renderer(sdir / "model.pt", args.device)
    data = load_prepared(sdir / "prepared.npz")
    fps = float(data["fps"])
    intensity = load_intensity(args.intensity)
    hyper = args.hyperplanes or info.get("hyperplanes")
    if args.alpha:
        alpha = np.load(args.alpha).astype(np.float32)
        if args.timeline:
            if not hyper:
                raise EmoheadInputError("--timeline needs hyperplanes.", fix="pass --hyperplanes <hyperplanes.json>.")
            alpha = timeline_alphas(alpha, args.timeline, hyper, intensity=intensity, fps=fps, ramp_s=args.ramp)
    else:
        from .audio2exp.infer import predict_alpha
        from .config import load_config

        model = args.audio2exp or info.get("audio2exp")
        if not model:
            raise EmoheadInputError("no audio-expression model.", fix="pass --audio2exp <dir> or --alpha <file.npy>.")
        cfg = load_config(*(args.config or []))
        pred = predict_alpha(model, wav=args.audio, config=cfg, timeline=args.timeline, intensity=intensity,
                             hyperplanes=hyper, ramp_s=args.ramp, fps=fps)
        alpha = pred.alpha_hat
    render_clip(renderer, data, alpha, args.out, audio=args.audio, fps=fps, pose_mode=args.pose,
                still=args.still_frame, yaw_sweep_deg=args.yaw_sweep)
    print(f"wrote {args.out} ({len(alpha)} frames)")
    return 0


def _add_stashes(sub) -> None:
    p = sub.add_parser("stashes", help="list (or remove) the stashes of unfinished actor batches",
                       description="An actor batch that failed or was killed keeps its finished clips in "
                                   "results/{dataset}/<step>/.{actor}.partial/ and reuses them on the rerun "
                                   "(emohead_core/batch.py). List them, or remove them, e.g. after a code "
                                   "change that alters every clip's result.")
    p.add_argument("results_dir", nargs="?", default="results")
    p.add_argument("--remove", action="store_true", help="delete the stashes")
    p.set_defaults(func=_run_stashes)


def _run_stashes(args) -> int:
    import shutil

    from .batch import find_stashes

    found = find_stashes(args.results_dir)
    for s in found:
        clips = "?" if s["finished_clips"] is None else s["finished_clips"]
        print(f"{s['path']}\t{clips} finished clips\t{s['bytes'] / 1e6:.1f} MB")
        if args.remove:
            shutil.rmtree(s["path"])
    verb = "removed" if args.remove else "found"
    print(f"{len(found)} stash(es) {verb} under {args.results_dir}")
    return 0


SUBCOMMANDS = [_add_render, _add_stashes]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="emohead", description="EmoHead command line")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
