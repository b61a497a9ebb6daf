"""The workflow itself: `snakemake --lint` and `snakefmt --check .` are clean for the whole repo,
and the demo DAG has the preprocessing jobs (the real run is in test_preprocess_workflow.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


BIN = Path(sys.executable).parent


def _env(mirror):
    return {**os.environ, "EMOHEAD_MIRROR": str(mirror), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _run(args, cwd, mirror, timeout=600):
    r = subprocess.run(args, cwd=cwd, env=_env(mirror), capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def test_snakemake_lint(repo_root, mirror):
    rc, out = _run([str(BIN / "snakemake"), "--lint", "--configfile", "config/demo.yaml"], repo_root, mirror)
    assert rc == 0, out[-3000:]
    assert "Lints for" not in out, out[-3000:]


def test_snakefmt_check(repo_root, mirror):
    rc, out = _run([str(BIN / "snakefmt"), "--check", "."], repo_root, mirror)
    assert rc == 0, out[-3000:]


def test_demo_dag_has_preprocessing_jobs(repo_root, mirror):
    rc, out = _run(
        [str(BIN / "snakemake"), "-n", "--forceall", "--quiet", "rules", "--configfile", "config/demo.yaml"],
        repo_root,
        mirror,
    )
    assert rc == 0, out[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", out, flags=re.M))
    # 7 demo clips with video, 10 samples with audio (3 audio-only), 2 datasets
    assert counts.get("crop_video") == "7", out[-2000:]
    assert counts.get("extract_audio") == "10", out[-2000:]
    assert counts.get("sample_table") == "2"
    assert counts.get("export_faceboxes_onnx") == "1"
