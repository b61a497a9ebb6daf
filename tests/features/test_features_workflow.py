"""rules/features.smk through Snakemake on a real audio-only CREMA-D sample (offline profile):
outputs land at the contract paths, and a rerun forced by Snakemake's triggers (which deletes
the outputs first) is answered from the feature store instead of recomputing. (A mere newer
mtime of an unchanged input does not re-trigger: Snakemake 9 compares checksums of small
inputs.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emohead_core.features import read_features, read_transcript

SAMPLE = "1002_DFA_HAP_XX"
ACTOR = "1002"
ENCODERS = ("whisper", "logmel", "minilm")


def _snakemake(repo_root: Path, mirror: Path, results: Path, targets: list[str], *extra: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "EMOHEAD_MIRROR": str(mirror)}
    # the per-clip feature rules: cremad as per-clip jobs (crema_d defaults to actor batches)
    clip_mode = results.parent / "clip_mode.yaml"
    clip_mode.write_text("datasets:\n  cremad:\n    batch: clip\n")
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        *targets,
        *extra,
        "--nolock",
        "--cores",
        "1",
        "--configfile",
        "config/demo.yaml",
        str(clip_mode),
        "--config",
        f"results_dir={results}",
        f"logs_dir={results.parent / 'logs'}",
        f"benchmarks_dir={results.parent / 'bench'}",
    ]
    r = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stderr + r.stdout


@pytest.mark.slow
def test_features_rules_and_store_on_rerun(repo_root, mirror, tmp_path):
    res = tmp_path / "results"
    targets = [str(res / "cremad" / "features" / e / ACTOR / f"{SAMPLE}.parquet") for e in ENCODERS]
    _snakemake(repo_root, mirror, res, targets)
    metas = {}
    for e, t in zip(ENCODERS, targets):
        frames, feats, meta = read_features(t)
        metas[e] = meta
        assert len(frames) == meta["n_frames"] and meta["encoder"] == e
    tr = read_transcript(res / "cremad" / "transcripts" / ACTOR / f"{SAMPLE}.parquet")
    assert len(tr) >= 2
    # a rerun forced the way a params/code/software-env trigger does it: Snakemake deletes the
    # outputs and runs the jobs again ...
    _snakemake(repo_root, mirror, res, targets, "--forcerun", "features_audio", "features_text")
    logs = [tmp_path / "logs" / "features" / e / "cremad" / ACTOR / f"{SAMPLE}.log" for e in ENCODERS]
    for e, log in zip(ENCODERS, logs):
        text = log.read_text()
        # ... and each job finds its key in the store (same content, same encoder)
        assert ": hit (T=" in text, (e, text[-500:])
        assert (
            read_features(res / "cremad" / "features" / e / ACTOR / f"{SAMPLE}.parquet")[2]["cache_key"]
            == metas[e]["cache_key"]
        )
    # outputs are newer than inputs afterwards: nothing left to do
    out = _snakemake(repo_root, mirror, res, targets, "-n")
    assert "Nothing to be done" in out or "nothing to be done" in out.lower()
