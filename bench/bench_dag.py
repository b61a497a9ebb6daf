"""DAG build time of a MEAD-sized workflow (dry run): 30,000 clips in per-actor batches against
a baseline of 3,000 clips in per-clip jobs (and in per-actor batches).

    .venv/bin/python bench/bench_dag.py [--clips 30000] [--baseline 3000] [--profile slurm|none]

Builds a synthetic MEAD tree of empty-but-named files
(``{actor}/video/front/{emotion}/level_{k}/{nnn}.mp4`` + ``{actor}/audio/.../{nnn}.m4a``) in a
temporary directory, seeds the dataset adapter's duration cache (``resources/cache/
durations_<dataset>.json``, the cache Snakemake start-up uses so clips are not probed with
ffmpeg at every start) with a fixed 3 s per clip, and times ``snakemake -n`` of the full
workflow (``rule all``) on it, by default with ``profiles/slurm`` (its per-clip job groups are
part of the DAG work), quiet (``--quiet rules progress``: the run stops after the DAG instead of
printing every job). Prints wall time and the ratio large/baseline. The issue's
goal: the 30,000-clip DAG builds in under 60 s on the 2-core dev machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from emohead_core.preprocess.datasets import EMOTIONS, DurationCache  # noqa: E402

LEVELS = (1, 2, 3)
CLIP_S = 3.0


def make_mead_tree(root: Path, n_clips: int, n_actors: int = 60) -> list[Path]:
    """Empty files in MEAD layout: n_actors actors x 8 emotions x 3 levels x sentences."""
    per_actor_cell = -(-n_clips // (n_actors * len(EMOTIONS) * len(LEVELS)))
    files = []
    made = 0
    for a in range(n_actors):
        actor = f"M{a + 1:03d}" if a % 2 == 0 else f"W{a + 1:03d}"
        for emo in EMOTIONS:
            for k in LEVELS:
                vdir = root / actor / "video" / "front" / emo / f"level_{k}"
                adir = root / actor / "audio" / emo / f"level_{k}"
                vdir.mkdir(parents=True, exist_ok=True)
                adir.mkdir(parents=True, exist_ok=True)
                for s in range(per_actor_cell):
                    if made >= n_clips:
                        return files
                    for p in (vdir / f"{s + 1:03d}.mp4", adir / f"{s + 1:03d}.m4a"):
                        p.touch()
                        files.append(p)
                    made += 1
    return files


def seed_duration_cache(cache_path: Path, files: list[Path]) -> None:
    cache = DurationCache(cache_path)
    for p in files:
        st = p.stat()
        cache.data[str(p.resolve())] = [st.st_size, st.st_mtime_ns, CLIP_S]
    cache.dirty = True
    cache.save()


def dry_run(
    workdir: Path, n_clips: int, profile: str | None, timeout: float | None = None, batch: str = "actor"
) -> tuple[float, int]:
    root = workdir / "MEAD"
    files = make_mead_tree(root, n_clips)
    seed_duration_cache(workdir / "resources" / "cache" / "durations_mead.json", files)
    cfg = {
        "datasets": {"mead": {"kind": "mead", "root": str(root), "crop_size": 512, "batch": batch}},
        "results_dir": "results",
        "resources_dir": "resources",
    }
    (workdir / "bench.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [
        str(REPO / ".venv" / "bin" / "snakemake"),
        "-s",
        str(REPO / "Snakefile"),
        "--configfile",
        str(REPO / "config" / "config.yaml"),
        str(workdir / "bench.yaml"),
        # rules+progress: a dry run that stops after building the DAG and printing the job
        # table (printing 200,000 job descriptions would be timed otherwise)
        "-n",
        "--quiet",
        "rules",
        "progress",
    ]
    if profile and profile != "none":
        cmd += ["--profile", str(REPO / "profiles" / profile)]
    else:
        cmd += ["--cores", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    try:
        out = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return float("inf"), -1
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-3000:] + out.stderr[-3000:])
        raise SystemExit(f"dry run of {n_clips} clips failed (rc {out.returncode})")
    return dt, n_clips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=30000)
    ap.add_argument("--baseline", type=int, default=3000)
    ap.add_argument("--profile", default="slurm", help="profile under profiles/, or 'none'")
    ap.add_argument(
        "--timeout", type=float, default=None, help="give up on a dry run after this many seconds"
    )
    args = ap.parse_args()
    runs = [(args.baseline, "clip"), (args.baseline, "actor"), (args.clips, "actor")]
    res = {}
    for n, batch in runs:
        with tempfile.TemporaryDirectory(prefix=f"bench_dag_{n}_{batch}_") as d:
            res[n, batch] = dry_run(Path(d), n, args.profile, args.timeout, batch)[0]
        print(
            f"dry run (profile {args.profile}), {n:6d} MEAD clips, batch {batch:5s}: "
            f"{res[n, batch]:7.1f} s wall",
            flush=True,
        )
    base = res[args.baseline, "clip"]
    small, large = res[args.baseline, "actor"], res[args.clips, "actor"]
    print(f"per-actor vs per-clip jobs at {args.baseline} clips: x{base / small:.1f} faster")
    print(
        f"{args.clips} clips per actor vs {args.baseline} clips per clip (baseline): time x{large / base:.2f}"
    )
    print(
        f"{args.clips}/{args.baseline} clips, per actor: time x{large / small:.2f} "
        f"(linear scaling would be x{args.clips / args.baseline:.1f})"
    )
    print(f"{args.clips}-clip DAG (per actor) {'within' if large < 60 else 'OVER'} the 60 s goal")


if __name__ == "__main__":
    main()
