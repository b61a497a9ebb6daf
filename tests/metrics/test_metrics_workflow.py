"""Snakemake really evaluates demo pairs and writes the tables: the two CREMA-D test crops
re-encoded at crf 40 and the ground-truth row, in a temporary copy of the workflow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emohead_core.metrics.evaluate import SYNC_NOTE

BIN = Path(sys.executable).parent

OVERRIDE = """
metrics:
  render: false
  reencode: {datasets: [cremad], crf: 40}
  groundtruth_datasets: [cremad]
  fid: {max_frames: 4}
  lmd: {backends: [dlib]}
  er: {baseline: false}
tables:
  loss_ablations: []
"""


@pytest.mark.slow
def test_snakemake_metrics_and_tables(repo_root, mirror, tmp_path):
    for name in ["Snakefile", "rules", "workflow", "config", "envs"]:
        shutil.copytree(repo_root / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__")) if (
            repo_root / name
        ).is_dir() else shutil.copy(repo_root / name, tmp_path / name)
    (tmp_path / "config" / "metrics_test.yaml").write_text(OVERRIDE)
    env = {**os.environ, "EMOHEAD_MIRROR": str(mirror), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [
        str(BIN / "snakemake"),
        "results/tables/table_II.md",
        "results/metrics/human/sheet.csv",
        "--cores",
        "2",
        "--configfile",
        "config/demo.yaml",
        "config/metrics_test.yaml",
    ]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    res = tmp_path / "results"
    rows = pd.read_parquet(res / "metrics/clips/reencode/cremad/1001_DFA_SAD_XX.parquet").set_index("metric")
    assert 0 < rows.loc["SSIM", "value"] < 1 and 20 < rows.loc["PSNR", "value"] < 60
    assert rows.loc["LPIPS", "value"] > 0 and rows.loc["M-LMD", "value"] > 0
    assert np.isnan(rows.loc["LSE-C", "value"]) and rows.loc["LSE-C", "note"] == SYNC_NOTE
    assert 0 < rows.loc["AUE (blendshape proxy)", "value"] < 0.2  # crf 40 copy of the crop
    gt = pd.read_parquet(res / "metrics/clips/groundtruth/cremad/1001_DFA_SAD_XX.parquet")
    assert "PSNR" not in set(gt["metric"]) and "ER" in set(gt["metric"])
    t2 = pd.read_csv(res / "tables/table_II.csv")
    assert (t2["Source"] == "paper").sum() == 7
    ours = t2[(t2["Source"] == "measured") & (t2["Method"] == "Re-encoded crop (crf 40)")].iloc[0]
    assert 0 < float(ours["SSIM (full frame) ↑"]) < 1 and ours["Sync. ↑"] == SYNC_NOTE
    # a re-encoded crop has no head masks (only the renderer's test spans do): the cell says so
    assert ours["SSIM (head) ↑"].startswith("n/a: no head masks")
    assert int(ours["FID frames"]) == 2 * 4  # 2 test clips x metrics.fid.max_frames
    assert 0 < float(ours["AUE (blendshape proxy) ↓"]) < 0.2
    assert float(ours["FID ↓"]) > 0
    for t in ("table_I", "table_IV", "table_VI"):
        assert (res / "tables" / f"{t}.tex").is_file()
    assert len(pd.read_csv(res / "metrics/human/sheet.csv")) == 4
