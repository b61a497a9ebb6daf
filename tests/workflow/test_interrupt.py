"""Interruption safety: SIGKILL the whole Snakemake process group in the middle of a long rule
(crop_video of the 20 s Obama demo video, killed while ffmpeg writes the crop), rerun with
--rerun-incomplete, and compare with an uninterrupted run.

Slow (three Snakemake runs of the real crop, a few minutes on 2 cores): `.ci/run` runs it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emohead_core.io import (
    Writer,
    find_stale_temps,
    is_atomic_temp,
    sweep_stale_temps,
    temp_target,
    writer_tag,
)

REPO = Path(__file__).resolve().parents[2]
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
        "-s",
        str(REPO / "Snakefile"),
        "--configfile",
        str(REPO / "config" / "config.yaml"),
        str(REPO / "config" / "demo.yaml"),
        str(REPO / "tests" / "data" / "talking_head.yaml"),
        "--cores",
        "2",
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


# A writer in its own process: enters atomic_path, writes a part, prints the temp path, waits for
# a line on stdin, writes the rest and leaves the block (rename onto the target).
WRITER = """
import sys
from emohead_core.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"part")
    print(tmp, flush=True)
    sys.stdin.readline()
    tmp.write_bytes(b"complete")
"""


def _start_writer(target: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    tmp = Path(proc.stdout.readline().strip())
    assert tmp.is_file() and temp_target(tmp.name) == target.name, tmp
    return proc, tmp


def _killed_writer(target: Path) -> Path:
    """What SIGKILL leaves: the temp exists, nothing was renamed, its writer is gone."""
    proc, tmp = _start_writer(target)
    proc.kill()
    proc.wait()
    return tmp


def test_sweep_removes_only_temps_of_dead_writers_of_given_targets(tmp_path):
    out = tmp_path / "crop"
    out.mkdir()
    mine = _killed_writer(out / "a.mp4")
    mine_dir = out / ".hyper.abcd1234.tmp"  # a legacy (untagged) temp dir, untouched for 2 days
    mine_dir.mkdir()
    (mine_dir / "x").write_text("partial")
    old = time.time() - 2 * 86400
    os.utime(mine_dir / "x", (old, old))
    os.utime(mine_dir, (old, old))
    other = _killed_writer(out / "b.mp4")  # not a target of this run: must survive
    (out / "a.mp4.keep").write_text("not a temp")
    assert set(find_stale_temps([out / "a.mp4", out / "hyper", tmp_path / "missing" / "z"])) == {
        mine,
        mine_dir,
    }
    removed = sweep_stale_temps([out / "a.mp4", out / "hyper"])
    assert set(removed) == {mine, mine_dir}
    assert not mine.exists() and not mine_dir.exists()
    assert other.exists() and (out / "a.mp4.keep").exists()


def test_sweep_keeps_a_live_writers_temp_and_the_writer_finishes(tmp_path):
    """Issue 16 finding 1: a second run's start hook removed the first run's in-flight temp file
    (its job then failed). A live writer's temp is kept; the writer renames it as usual."""
    target = tmp_path / "crop" / "a.mp4"
    writer, tmp = _start_writer(target)
    dead = _killed_writer(target)  # an earlier killed job's leftover of the same target
    try:
        messages = []
        removed = sweep_stale_temps([target], log=messages.append)
        assert removed == [dead] and not dead.exists()
        assert tmp.is_file() and tmp.read_bytes() == b"part"
        assert any("kept 1 temp file(s)" in m and str(tmp) in m for m in messages), messages
        assert any("removed 1 temp file(s)" in m and str(dead) in m for m in messages), messages
    finally:
        writer.communicate("go\n", timeout=60)
    assert writer.returncode == 0
    assert target.read_bytes() == b"complete" and not tmp.exists()


def _tagged(out: Path, stem: str, w: Writer, ext: str = ".mp4") -> Path:
    p = out / f".{stem}.{w.tag}.abcd_123{'.tmp' + ext}"
    p.write_bytes(b"x")
    return p


def test_writer_checks_host_pid_namespace_and_start_time(tmp_path):
    from emohead_core.io import STALE_AFTER_S, _writer_of, is_stale, temp_writer, writer_alive

    me = _writer_of(os.getpid())
    assert temp_writer(f".a.{writer_tag()}.abcd_123.tmp.mp4") == me
    assert writer_alive(me) is True
    reused = Writer(me.host, me.ns, me.pid, me.start + 1)  # same pid, another process (pid reuse)
    assert writer_alive(reused) is False
    assert writer_alive(Writer("another-node", me.ns, me.pid, me.start)) is None
    assert writer_alive(Writer(me.host, me.ns + 1, me.pid, me.start)) is None  # other pid namespace

    live = _tagged(tmp_path, "live", me)
    gone = _tagged(tmp_path, "gone", reused)
    remote_recent = _tagged(tmp_path, "remote", Writer("another-node", 1, 42, 7))
    remote_old = _tagged(tmp_path, "remote_old", Writer("another-node", 1, 42, 7))
    old = time.time() - STALE_AFTER_S - 60
    os.utime(remote_old, (old, old))
    assert not is_stale(live) and is_stale(gone)
    assert not is_stale(remote_recent) and is_stale(remote_old)
    targets = [tmp_path / f"{n}.mp4" for n in ("live", "gone", "remote", "remote_old")]
    assert set(sweep_stale_temps(targets)) == {gone, remote_old}
    assert live.exists() and remote_recent.exists()


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
    proc = subprocess.Popen(
        _cmd(), cwd=run, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
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
