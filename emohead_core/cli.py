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


# --intensity scales tau of eq. 9 (1 = as learned). Outside this range the expression leaves
# what the renderer was trained on (the head dissolves); negative values push away from the
# emotion. docs/decisions.md.
INTENSITY_RANGE = (0.0, 4.0)


def check_render_args(args) -> dict:
    """Every cheap check of ``emohead render``'s arguments, before any model is loaded or any
    audio is encoded: subject directory, audio, --alpha, intensity range, the timeline's syntax and
    its emotions against the hyperplanes. Returns the checked values (subject info, intensity,
    hyperplanes, timeline)."""
    from pathlib import Path

    import numpy as np

    from .errors import EmoheadInputError
    from .hyperplanes import load_hyperplanes, parse_timeline
    from .render.infer import load_intensity, subject_info

    sdir = Path(args.subject_dir)
    need = [sdir / "model.pt", sdir / "prepared.npz"]
    if not sdir.is_dir() or not all(p.is_file() for p in need):
        what = "is not a directory" if not sdir.is_dir() else \
            f"lacks {', '.join(p.name for p in need if not p.is_file())}"
        raise EmoheadInputError(
            f"--subject-dir {what}; it must be a trained subject's directory (model.pt, prepared.npz, "
            "subject.json).",
            path=sdir,
            fix="pass results/render/<subject> of a subject the workflow has trained (rule render_train), "
            "e.g. --subject-dir results/render/obama.",
        )
    for flag, value in (("--audio", args.audio), ("--alpha", args.alpha)):
        if value and not Path(value).is_file():
            raise EmoheadInputError(f"{flag} file not found.", path=value, fix=f"give an existing file to {flag}.")
    intensity = load_intensity(args.intensity)
    lo, hi = INTENSITY_RANGE
    values = np.asarray(intensity, np.float64).reshape(-1)
    if values.size == 0 or not np.all(np.isfinite(values)) or values.min() < lo or values.max() > hi:
        shown = args.intensity if np.ndim(intensity) == 0 else f"{args.intensity} (min {values.min():g}, max {values.max():g})"
        raise EmoheadInputError(
            f"--intensity {shown} is outside [{lo:g}, {hi:g}]: tau scales the emotion direction of eq. 9 "
            "(1 = as learned, 0 = none); beyond that the expression leaves what the renderer was trained "
            "on and the head dissolves.",
            fix=f"give a value (or per-frame curve) between {lo:g} and {hi:g}.",
        )
    info = subject_info(sdir)
    hyper = args.hyperplanes or info.get("hyperplanes")
    timeline = None
    if args.timeline:
        timeline = parse_timeline(args.timeline)
        if not hyper:
            raise EmoheadInputError("--timeline needs hyperplanes.", path=sdir / "subject.json",
                                    fix="pass --hyperplanes <hyperplanes.json>.")
        known = load_hyperplanes(hyper)
        unknown = sorted({z for _, z in timeline if z not in known})
        if unknown:
            raise EmoheadInputError(
                f"--timeline {args.timeline!r}: no hyperplane for emotion(s) {unknown}; these hyperplanes "
                f"have {sorted(known)}.",
                path=hyper,
                fix="use emotions of these hyperplanes in --timeline (or pass --hyperplanes of an actor "
                "with those emotions).",
            )
    return {"info": info, "intensity": intensity, "hyperplanes": hyper, "timeline": timeline}


def _run_render(args) -> int:
    from pathlib import Path

    import numpy as np

    from .errors import EmoheadInputError
    from .render.data import load_prepared
    from .render.infer import render_clip, timeline_alphas
    from .render.train import load_renderer

    checked = check_render_args(args)  # before any model is loaded
    sdir = Path(args.subject_dir)
    info, intensity, hyper = checked["info"], checked["intensity"], checked["hyperplanes"]
    renderer = load_renderer(sdir / "model.pt", args.device)
    data = load_prepared(sdir / "prepared.npz")
    fps = float(data["fps"])
    if args.alpha:
        alpha = np.load(args.alpha).astype(np.float32)
        if args.timeline:
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
    """Run a subcommand. Bad input and unwritable outputs end with their message (naming the
    file or key and the fix) and exit status 2 / 1, without a traceback."""
    from .errors import EmoheadInputError, EmoheadOutputError

    parser = argparse.ArgumentParser(prog="emohead", description="EmoHead command line")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except EmoheadInputError as e:
        print(f"emohead {args.command}: error: {e}", file=sys.stderr)
        return 2
    except EmoheadOutputError as e:
        print(f"emohead {args.command}: cannot write output: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
