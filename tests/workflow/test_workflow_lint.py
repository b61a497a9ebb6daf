"""The workflow itself: `snakemake --lint`, `snakefmt --check .`, `ruff check .` and
`ruff format --check .` (`make lint`) are clean for the whole repo,
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


def test_ruff_check(repo_root, mirror):
    rc, out = _run([str(BIN / "ruff"), "check", "."], repo_root, mirror)
    assert rc == 0, out[-3000:]


def test_ruff_format_check(repo_root, mirror):
    rc, out = _run([str(BIN / "ruff"), "format", "--check", "."], repo_root, mirror)
    assert rc == 0, out[-3000:]


def test_demo_dag_has_preprocessing_jobs(repo_root, mirror):
    rc, out = _run(
        [
            str(BIN / "snakemake"),
            "-n",
            "--forceall",
            "--quiet",
            "rules",
            "--configfile",
            "config/demo.yaml",
            "tests/data/talking_head.yaml",
        ],
        repo_root,
        mirror,
    )
    assert rc == 0, out[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)\s*$", out, flags=re.M))
    # Demo: cremad (kind crema_d -> batch: actor) = actor 1001 (6 clips with video) + actor 1002
    # (3 audio-only clips); with tests/data/talking_head.yaml, obama (kind folder -> batch: clip) =
    # 1 video clip.
    expect = {
        # per-clip preprocessing only for obama's clip (clip mode)
        "crop_video": 1,
        "extract_audio": 1,
        # one job per cremad actor writes crop/{actor} + audio/{actor} (1002: wavs only)
        "preprocess_actor": 2,
        # expression: one batch for 1001 (1002 has no video), one per-clip job for obama
        "expression_actor": 1,
        "expression_extract": 1,
        # features (offline profile: whisper, logmel, minilm + the transcripts step):
        # cremad 2 actors x 4 steps in actor batches ...
        "features_actor": 8,
        # ... obama per clip: a prefill per (actor, encoder or asr) and per-clip link jobs
        "features_prefill": 4,
        "features_audio": 2,
        "features_text": 1,
        "features_transcript": 1,
        "sample_table": 2,
        "export_faceboxes_onnx": 1,
    }
    got = {rule: int(counts.get(rule, 0)) for rule in expect}
    assert got == expect, out[-2000:]
