"""Interruption safety: SIGKILL the whole Snakemake process group in the middle of a long rule
(crop_video of the 20 s Obama demo video, killed while ffmpeg writes the crop), rerun with
--rerun-incomplete, and compare with an uninterrupted run.

Slow (three Snakemake runs of the real crop, a few minutes on 2 cores): `.ci/run` runs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from emohead_core.execution import find_stale_temps, is_atomic_temp, sweep_stale_temps, temp_target

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"
# obama is a folder dataset (batch: clip, per-clip jobs); its actor is the file stem
CROP_DIR = "results/obama/crop/uncrop_Obama"
TARGETS = [
    f"{CROP_DIR}/uncrop_Obama.mp4",
    f"{CROP_DIR}/uncrop_Obama.boxes.parquet",
    "results/obama/audio/uncrop_Obama/uncrop_Obama.wav",
]


def _cmd(*extra: str) -> list[str]:
    return [
        str(SNAKEMAKE),
        *TARGETS,
        "-s", str(REPO / "Snakefile"),
        "--configfile", str(REPO / "config" / "config.yaml"), str(REPO / "config" / "demo.yaml"),
        "--cores", "2",
        *extra,
    ]


def _env(mirror) -> dict:
    return dict(os.environ, EMOHEAD_MIRROR=str(mirror), OMP_NUM_THREADS="1")


def _temps(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*") if is_atomic_temp(p.name)]


# ---------------------------------------------------------------- fast unit tests (default)


def test_temp_names_match_atomic_path(tmp_path):
    from emohead_core.io import atomic_dir, atomic_path

    seen = []
    for target in (tmp_path / "a.boxes.parquet", tmp_path / "clip.mp4", tmp_path / "noext"):
        with atomic_path(target) as tmp:
            seen.append((tmp.name, target.name))
            tmp.write_bytes(b"x")
    with atomic_dir(tmp_path / "hyper") as d:
        seen.append((d.name, "hyper"))
        (d / "f").write_text("x")
    for tmp_name, target_name in seen:
        assert is_atomic_temp(tmp_name), tmp_name
        assert temp_target(tmp_name) == target_name
    assert not is_atomic_temp("clip.mp4") and temp_target(".hidden") is None


def test_sweep_removes_only_temps_of_given_targets(tmp_path):
    from emohead_core.io import atomic_path

    out = tmp_path / "crop"
    out.mkdir()

    alive = []  # keep the open contexts referenced: GC would close them and remove the temp

    def orphan(target: Path) -> Path:
        # what SIGKILL leaves: the temp exists, nothing was renamed
        ctx = atomic_path(target)
        alive.append(ctx)
        tmp = ctx.__enter__()
        tmp.write_bytes(b"partial")
        return tmp

    mine = orphan(out / "a.mp4")
    mine_dir = out / ".hyper.abcd1234.tmp"
    mine_dir.mkdir()
    (mine_dir / "x").write_text("partial")
    other = orphan(out / "b.mp4")  # another run's output: must survive
    (out / "a.mp4.keep").write_text("not a temp")
    assert set(find_stale_temps([out / "a.mp4", out / "hyper", tmp_path / "missing" / "z"])) == {mine, mine_dir}
    removed = sweep_stale_temps([out / "a.mp4", out / "hyper"])
    assert set(removed) == {mine, mine_dir}
    assert not mine.exists() and not mine_dir.exists()
    assert other.exists() and (out / "a.mp4.keep").exists()


# ---------------------------------------------------------------- the real kill-and-rerun


@pytest.mark.slow
def test_sigkill_mid_rule_then_rerun_equals_uninterrupted(tmp_path, mirror):
    import pandas as pd

    from tests.cluster.test_slurm import assert_same_outputs

    env = _env(mirror)
    ref, run = tmp_path / "ref", tmp_path / "killed"
    ref.mkdir()
    run.mkdir()

    # 1. uninterrupted reference
    r = subprocess.run(_cmd(), cwd=ref, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]

    # 2. start, wait until crop_video writes its temp mp4 (ffmpeg encoding), SIGKILL the group
    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(_cmd(), cwd=run, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    crop_dir = run / CROP_DIR
    deadline = time.time() + 900
    seen_temp = None
    while time.time() < deadline and proc.poll() is None:
        if crop_dir.is_dir():
            temps = [p for p in crop_dir.iterdir() if is_atomic_temp(p.name)]
            if temps:
                seen_temp = temps[0]
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before crop_video started writing; nothing was interrupted"
    assert seen_temp is not None, "crop_video never started writing within 15 min"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    log.close()
    time.sleep(0.5)  # let the killed ffmpeg/python children go

    # killed mid-write: the temp file is left, no partial file under the final names
    assert not (run / TARGETS[0]).exists() and not (run / TARGETS[1]).exists()
    assert _temps(run / "results"), "expected the killed job's temp file to be left behind"
    assert (run / ".snakemake" / "incomplete").is_dir()

    # 3. a SIGKILLed Snakemake leaves its directory lock: `--unlock` (what a user runs), then the
    # rerun redoes the incomplete job and onstart removes the orphaned temp
    r = subprocess.run(_cmd("--rerun-incomplete"), cwd=run, env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "cannot be locked" in r.stdout + r.stderr
    r = subprocess.run(_cmd("--unlock"), cwd=run, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    assert not (run / TARGETS[0]).exists() and _temps(run / "results")  # --unlock changes no file
    r = subprocess.run(_cmd("--rerun-incomplete"), cwd=run, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "temp file(s) of interrupted jobs" in r.stdout + r.stderr
    assert _temps(run / "results") == [] and _temps(run / "resources") == []

    # final outputs equal the uninterrupted run's (tables exact, wav bytes, mp4 bytes or frames)
    assert assert_same_outputs(ref, run) == 3  # mp4, boxes, wav
    boxes = pd.read_parquet(run / TARGETS[1])
    assert len(boxes) == 500  # 20 s at 25 fps
