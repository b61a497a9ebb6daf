"""``emohead`` command line. Subcommands register themselves in ``SUBCOMMANDS``.

    emohead stashes results [--remove]   # unfinished actor batches (emohead_core/batch.py)

    emohead render --subject-dir results/render/obama --audio new.wav \
        --timeline "0:happy,2.5:sad" --intensity 1.0 --out out.mp4
"""

from __future__ import annotations

import argparse
import sys


def _add_render(sub) -> None:
    p = sub.add_parser(
        "render",
        help="render a talking head for new audio with an emotion timeline",
        description="Render the trained person-specific head of --subject-dir for an audio "
        "file: alpha_hat from the audio-expression module (or --alpha), emotion "
        "timeline with a linear ramp, audio muxed into the mp4.",
    )
    p.add_argument("--subject-dir", required=True, help="results/render/<subject> (model.pt, prepared/)")
    p.add_argument("--audio", required=True, help="speech audio (any format ffmpeg reads)")
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument("--timeline", default=None, help='emotion timeline, e.g. "0:happy,2.5:sad"')
    p.add_argument(
        "--intensity",
        default="1.0",
        help=f"tau: a number in [0, {MAX_INTENSITY:g}], or a .npy/.txt per-frame curve",
    )
    p.add_argument("--alpha", default=None, help="(T, 10) .npy of alpha_tilde instead of the audio model")
    p.add_argument("--audio2exp", default=None, help="audio2exp model dir (default: from subject.json)")
    p.add_argument("--hyperplanes", default=None, help="hyperplanes.json (default: the subject's)")
    p.add_argument(
        "--config",
        action="append",
        default=None,
        help="pipeline config overrides (config/demo.yaml ...) for the audio feature encoders",
    )
    p.add_argument("--ramp", type=float, default=0.5, help="ramp length of an emotion switch, seconds")
    p.add_argument("--pose", choices=["video", "still"], default="video")
    p.add_argument(
        "--pose-clip",
        default=None,
        help="clip (sample id or emotion tag) whose frames give the head poses (default: the "
        "longest neutral clip)",
    )
    p.add_argument("--still-frame", type=int, default=None, help="--pose still: the subject's frame index")
    p.add_argument("--yaw-sweep", type=float, default=0.0, help="novel views: yaw amplitude in degrees")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_run_render)


# tau multiplies the hyperplane edit (eq. 9); beyond a few units the person-specific field is
# asked for expressions far outside its training clips (it clamps them, the head dissolves).
MAX_INTENSITY = 4.0


def _check_intensity(intensity) -> None:
    import numpy as np

    from .errors import EmoheadInputError

    v = np.asarray(intensity, np.float64)
    if not np.all(np.isfinite(v)) or v.min() < 0 or v.max() > MAX_INTENSITY:
        raise EmoheadInputError(
            f"--intensity must lie in [0, {MAX_INTENSITY:g}] (got {v.min():g} .. {v.max():g}).",
            fix="tau scales the emotion edit of eq. 9: 1 is the trained strength, 0 none.",
        )


def _run_render(args) -> int:
    from pathlib import Path

    from .emotion_edit import parse_timeline
    from .errors import EmoheadInputError, EmoheadOutputError
    from .expression.hyperplanes import load_hyperplanes

    sdir = Path(args.subject_dir)
    if not (sdir / "model.pt").is_file():
        raise EmoheadInputError(
            "not a trained render subject (no model.pt).",
            path=sdir,
            fix="pass results/render/<subject> after the render_train rule ran.",
        )
    if not Path(args.audio).is_file():
        raise EmoheadInputError("audio file not found.", path=args.audio, fix="pass an existing speech file.")
    from .render.infer import load_intensity, subject_info

    info = subject_info(sdir)
    intensity = load_intensity(args.intensity)
    _check_intensity(intensity)
    hyper = args.hyperplanes or info.get("hyperplanes")
    # checked (a damaged, e.g. NaN, file fails here, before any work) when given or used: by a
    # timeline, or by the audio model's neutral edit
    used = bool(args.hyperplanes or args.timeline or not args.alpha)
    have = load_hyperplanes(hyper) if hyper and used else None
    if args.timeline:  # every tag checked before any work
        if not hyper:
            raise EmoheadInputError(
                "--timeline needs hyperplanes.", fix="pass --hyperplanes <hyperplanes.json>."
            )
        unknown = sorted({z for _, z in parse_timeline(args.timeline) if z not in have})
        if unknown:
            raise EmoheadInputError(
                f"no hyperplane for emotion(s) {unknown} in --timeline; have {sorted(have)}.",
                path=hyper,
                fix="use those emotion names in the timeline.",
            )
    out = _check_out(args.out)
    alpha_in = _load_alpha(args.alpha) if args.alpha else None
    model = None
    if not args.alpha:
        model = args.audio2exp or info.get("audio2exp")
        if not model:
            raise EmoheadInputError(
                "no audio-expression model.", fix="pass --audio2exp <dir> or --alpha <file.npy>."
            )
        if not Path(model).exists():
            raise EmoheadInputError(
                "audio-expression model not found.",
                path=model,
                fix="pass --audio2exp <results/<dataset>/audio2exp/<variant>>.",
            )
    from .render.data import load_prepared
    from .render.infer import pose_clip, render_clip, timeline_alphas
    from .render.train import load_renderer

    renderer = load_renderer(sdir / "model.pt", args.device)
    data = load_prepared(sdir / "prepared")
    pose_clip(data, args.pose_clip)  # an unknown --pose-clip fails here, before the audio model runs
    fps = data.fps()
    if args.alpha:
        alpha = alpha_in
        if args.timeline:
            alpha = timeline_alphas(
                alpha, args.timeline, hyper, intensity=intensity, fps=fps, ramp_s=args.ramp
            )
    else:
        from .audio2exp.infer import predict_alpha
        from .config import load_config

        cfg = load_config(*(args.config or []))
        pred = predict_alpha(
            model,
            wav=args.audio,
            config=cfg,
            timeline=args.timeline,
            intensity=intensity,
            hyperplanes=hyper,
            ramp_s=args.ramp,
            fps=fps,
            emotion=None if args.timeline else "neutral",
        )
        alpha = pred.alpha_hat
    try:
        render_clip(
            renderer,
            data,
            alpha,
            out,
            audio=args.audio,
            fps=fps,
            pose_mode=args.pose,
            still=args.still_frame,
            yaw_sweep_deg=args.yaw_sweep,
            pose_from=args.pose_clip,
        )
    except EmoheadOutputError as e:  # the fix is about --out, not results_dir
        raise _out_error(out, e.reason, str(e)) from None
    print(f"wrote {out} ({len(alpha)} frames)")
    return 0


def _out_error(out, reason: str, detail: str = ""):
    from .errors import EmoheadOutputError
    from .io import OUTPUT_FAULTS

    what = OUTPUT_FAULTS.get(reason, ("cannot write there", ""))[0]
    return EmoheadOutputError(
        f"cannot write --out: {what}." + (f" ({detail.strip()[:300]})" if detail else ""),
        path=out,
        fix="pass --out a path in a writable directory with free space (nothing was written).",
        reason=reason,
    )


def _check_out(path: str):
    """--out: an mp4 path whose directory can be written, checked before any work (a render of
    minutes of audio must not fail at its end): a file is created there and removed."""
    import os
    import tempfile
    from pathlib import Path

    from .errors import EmoheadInputError
    from .io import output_fault

    out = Path(path)
    if out.is_dir():
        raise EmoheadInputError("--out is a directory.", path=out, fix="pass a file name, e.g. out.mp4.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".check", dir=out.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        fault = output_fault(e, out)
        raise _out_error(out, fault.reason if fault is not None else "read_only", str(e)) from None
    return out


def _load_alpha(path: str):
    """--alpha: a (T, m) .npy of finite numbers."""
    import numpy as np

    from .errors import EmoheadInputError

    fix = "pass a (T, 10) float .npy of alpha_tilde (one row per output frame)."
    try:
        a = np.load(path, allow_pickle=False)
        if a.dtype.kind not in "biuf":
            raise ValueError(f"holds {a.dtype} values, not numbers")
    except (ValueError, OSError, EOFError) as e:
        raise EmoheadInputError(
            f"--alpha: not a readable array of numbers ({e}).", path=path, fix=fix
        ) from None
    a = np.asarray(a, np.float32)
    if a.ndim != 2 or len(a) == 0:
        raise EmoheadInputError(f"--alpha: shape {a.shape}, need (T, 10) with T > 0.", path=path, fix=fix)
    if not np.isfinite(a).all():
        raise EmoheadInputError("--alpha: holds NaN or inf values.", path=path, fix=fix)
    return a


def _add_stashes(sub) -> None:
    p = sub.add_parser(
        "stashes",
        help="list (or remove) the stashes of unfinished actor batches",
        description="An actor batch that failed or was killed keeps its finished clips in "
        "results/{dataset}/<step>/.{actor}.partial/ and reuses them on the rerun "
        "(emohead_core/batch.py). List them, or remove them, e.g. after a code "
        "change that alters every clip's result.",
    )
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


def _add_check_config(sub) -> None:
    p = sub.add_parser(
        "check-config",
        help="check config files as the workflow does at start, naming the file of any error",
        description="Reads config/config.yaml and the given files (as snakemake --configfile "
        "config/config.yaml FILE ... merges them) and checks every key and value against "
        "config/schema.yaml. Snakemake reads --configfile before the workflow starts and does not "
        "name the file when one is not valid YAML or is empty; this command does.",
    )
    p.add_argument("files", nargs="*", help="config files (overrides of config/config.yaml)")
    p.set_defaults(func=_run_check_config)


def _run_check_config(args) -> int:
    from .config import check_config_files

    check_config_files(*args.files)
    print(f"config OK: config/config.yaml {' '.join(args.files)}".rstrip())
    return 0


SUBCOMMANDS = [_add_render, _add_stashes, _add_check_config]


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
