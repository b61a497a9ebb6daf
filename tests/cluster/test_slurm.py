"""The demo's preprocessing through a real SLURM (tests/cluster/start_slurm.sh) equals a local run.

Marked `cluster` (skipped by default; `.ci/run` runs it when root and apt are available).
Runs `snakemake all_preprocess` twice on config/demo.yaml, in two fresh working directories, once
per batch mode of the dataset (`clip`: per-clip jobs packed into the `clips` job group; `actor`:
one job per actor and step, the MEAD / CREMA-D default):
locally (`--cores 2`) and with `--profile profiles/slurm --profile tests/cluster/profile`.
While the SLURM run is going, a thread polls `squeue` and records the job ids whose working
directory is the SLURM run's; the test requires some, and requires every output file of the
local run to exist in the SLURM run with identical content (Parquet tables equal, wav bytes
equal, mp4 bytes equal or else identical decoded frames).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"
START = REPO / "tests" / "cluster" / "start_slurm.sh"


def _skip(reason: str):
    print(f"SKIP cluster test: {reason}", file=sys.stderr)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm_cluster():
    if os.geteuid() != 0:
        _skip("not root: the one-node SLURM test cluster needs root (apt, daemons)")
    if shutil.which("apt-get") is None:
        _skip("apt-get not available: slurm-wlm/munge come from Debian packages")
    r = subprocess.run(["bash", str(START)], capture_output=True, text=True, timeout=900)
    print(r.stdout, r.stderr)
    if r.returncode == 2:
        _skip(f"start_slurm.sh cannot run here: {r.stdout.strip().splitlines()[-1:]}")
    assert r.returncode == 0, f"SLURM did not come up:\n{r.stdout}\n{r.stderr}"
    return True


def _overlay(tmp_path: Path, batch: str) -> Path:
    """The demo's dataset with an explicit batch mode (crema_d defaults to `actor`)."""
    p = tmp_path / f"batch_{batch}.yaml"
    ds = dict(kind="crema_d", root="asset:data/crema-d", crop_size=340, batch=batch)
    p.write_text(yaml.safe_dump({"datasets": {"cremad": ds}}))
    return p


def _cmd(overlay: Path, *extra: str) -> list[str]:
    return [
        str(SNAKEMAKE),
        "all_preprocess",
        "-s",
        str(REPO / "Snakefile"),
        *extra,
        "--configfile",
        str(REPO / "config" / "config.yaml"),
        str(REPO / "config" / "demo.yaml"),
        str(overlay),
    ]


def _env(mirror: Path) -> dict:
    return dict(os.environ, EMOHEAD_MIRROR=str(mirror), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")


class SqueuePoller(threading.Thread):
    """Records (job id, state) of SLURM jobs running in `workdir` every 0.5 s."""

    def __init__(self, workdir: Path):
        super().__init__(daemon=True)
        self.workdir = str(workdir.resolve())
        self.seen: dict[str, set[str]] = {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            r = subprocess.run(
                ["squeue", "-h", "-t", "all", "-o", "%i|%T|%Z|%j"], capture_output=True, text=True
            )
            for line in r.stdout.splitlines():
                jid, state, wd, _name = (line.split("|") + ["", "", ""])[:4]
                if wd.rstrip("/") == self.workdir:
                    self.seen.setdefault(jid, set()).add(state)
            self.stop.wait(0.5)


def _outputs(root: Path) -> dict[str, Path]:
    res = root / "results"
    return {
        str(p.relative_to(root)): p
        for p in sorted(res.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _frames_sha(p: Path) -> str:
    """sha256 of the decoded raw RGB frames (container/encoder metadata excluded)."""
    from emohead_core import media

    ff = media.ffmpeg_exe()
    r = subprocess.run(
        [ff, "-v", "error", "-i", str(p), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
    )
    return hashlib.sha256(r.stdout).hexdigest()


def assert_same_outputs(a_root: Path, b_root: Path) -> int:
    import pandas as pd

    a, b = _outputs(a_root), _outputs(b_root)
    assert a, f"no outputs under {a_root}/results"
    assert sorted(a) == sorted(b), f"different output files: {sorted(set(a) ^ set(b))}"
    for rel, pa in a.items():
        pb = b[rel]
        if rel.endswith(".parquet"):
            da, db = pd.read_parquet(pa), pd.read_parquet(pb)
            pd.testing.assert_frame_equal(da, db, check_exact=True, obj=rel)
        elif rel.endswith(".mp4"):
            if _sha(pa) != _sha(pb):
                assert _frames_sha(pa) == _frames_sha(pb), f"{rel}: decoded frames differ"
        else:
            assert _sha(pa) == _sha(pb), f"{rel}: contents differ"
    return len(a)


@pytest.mark.parametrize("batch", ["clip", "actor"])
def test_preprocessing_on_slurm_equals_local(slurm_cluster, tmp_path, mirror, batch):
    env = _env(mirror)
    overlay = _overlay(tmp_path, batch)
    local, cluster = tmp_path / "local", tmp_path / "slurm"
    local.mkdir()
    cluster.mkdir()

    r = subprocess.run(_cmd(overlay, "--cores", "2"), cwd=local, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"local run failed:\n{r.stderr[-4000:]}"

    poller = SqueuePoller(cluster)
    poller.start()
    t0 = time.time()
    r = subprocess.run(
        _cmd(
            overlay,
            "--profile",
            str(REPO / "profiles" / "slurm"),
            "--profile",
            str(REPO / "tests" / "cluster" / "profile"),
            # a grouped job asks --cpus-per-task=cores: not more than the one node has
            "--cores",
            str(min(2, os.cpu_count() or 1)),
        ),
        cwd=cluster,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    time.sleep(1.0)
    poller.stop.set()
    poller.join()
    log = r.stdout + r.stderr
    assert r.returncode == 0, f"SLURM run failed:\n{log[-6000:]}"
    print(
        f"SLURM run: {time.time() - t0:.0f} s; jobs seen in squeue: "
        + ", ".join(f"{j}:{'/'.join(sorted(s))}" for j, s in sorted(poller.seen.items()))
    )

    # Jobs really went through SLURM: seen in squeue, and the executor reports submitting them.
    assert poller.seen, "no SLURM job of this run was ever visible in squeue"
    assert "SLURM run ID" in log
    submitted = {
        line.split("SLURM jobid ")[1].split()[0].strip("().")
        for line in log.splitlines()
        if "SLURM jobid " in line
    }
    assert submitted, "the executor logged no sbatch submission"
    assert set(poller.seen) & submitted, (poller.seen, submitted)
    assert any("COMPLETED" in s or "RUNNING" in s for s in poller.seen.values())
    if batch == "clip":
        # per-clip steps ran batched: one job group covers several crops
        assert "group" in log.lower() and "clips" in log, "no job group 'clips' was submitted"
    else:
        # one job per actor and step; no per-clip jobs at all
        assert "preprocess_actor" in log, "no per-actor preprocessing job was submitted"
        assert "rule crop_video" not in log, "per-clip crop jobs ran although batch is actor"

    assert_same_outputs(local, cluster)
    # the per-clip files of the results/ contract, whichever way the dataset is batched
    import pandas as pd

    table = pd.read_parquet(cluster / "results" / "cremad" / "samples.parquet")
    made = set(_outputs(cluster))
    expected = set()
    for row in table.itertuples():
        expected.add(f"results/cremad/audio/{row.actor}/{row.sample_id}.wav")
        if isinstance(row.video_path, str) and row.video_path:
            expected.add(f"results/cremad/crop/{row.actor}/{row.sample_id}.mp4")
            expected.add(f"results/cremad/crop/{row.actor}/{row.sample_id}.boxes.parquet")
    assert (table["video_path"].fillna("") != "").sum() >= 6, "the demo has six video clips of actor 1001"
    assert expected <= made, f"missing per-clip outputs: {sorted(expected - made)}"
