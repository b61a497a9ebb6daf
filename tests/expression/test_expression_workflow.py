"""Snakemake really runs the expression stage: two real CREMA-D clips (angry, happy) in a
temporary copy of the workflow -> crops + boxes -> expression Parquet (fits seeded from the
preprocessing boxes, the default) -> hyperplanes of actor 1001."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from emohead_core import media
from emohead_core.expression import read_expression, read_expression_metadata
from emohead_core.expression.hyperplanes import load_hyperplanes

BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_snakemake_expression_and_hyperplanes(repo_root, mirror, tmp_path):
    for name in ["Snakefile", "rules", "workflow", "config", "envs"]:
        src = repo_root / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    data = tmp_path / "clips"
    data.mkdir()
    for emo in ("ANG", "HAP"):
        os.symlink(mirror / "data" / "crema-d" / f"1001_DFA_{emo}_XX.flv", data / f"1001_DFA_{emo}_XX.flv")
    cfg = {
        "datasets": {"cremad": {"kind": "crema_d", "root": str(data), "crop_size": 340}},
        "hyperplanes": {"actors": ["each"], "splits": ["train", "test"], "cv_folds": 3},
    }
    (tmp_path / "config" / "t.yaml").write_text(yaml.safe_dump(cfg))
    targets = ["results/cremad/hyperplanes/1001/hyperplanes.json"]
    env = {**os.environ, "EMOHEAD_MIRROR": str(mirror), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [str(BIN / "snakemake"), *targets, "--cores", "2", "--configfile", "config/t.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    res = tmp_path / "results" / "cremad"
    for emo in ("ANG", "HAP"):
        # crema_d: an actor batch (datasets.<name>.batch: actor) writes results/cremad/<step>/1001/
        e = read_expression(res / "expression" / "1001" / f"1001_DFA_{emo}_XX.parquet")
        n = len(media.read_frames(res / "crop" / "1001" / f"1001_DFA_{emo}_XX.mp4"))
        assert e["exp"].shape == (n, 10) and e["detected"].all()
        assert np.allclose(e["time_s"], np.arange(n) / 25.0)
        # preprocessing detected every 5th frame (and the last); the fits start from its boxes
        boxes = pd.read_parquet(res / "crop" / "1001" / f"1001_DFA_{emo}_XX.boxes.parquet")
        assert list(np.nonzero(boxes["checked"])[0]) == sorted(set(range(0, n, 5)) | {n - 1})
        assert (e["roi_source"] == np.where(boxes["detected"], 3, 4)).all()
        meta = read_expression_metadata(res / "expression" / "1001" / f"1001_DFA_{emo}_XX.parquet")
        assert meta["face_boxes"] == "preprocess" and meta["boxes"] == f"1001_DFA_{emo}_XX.boxes.parquet"
        assert "3ddfa_mb05.onnx" in meta["assets"]
    hp = load_hyperplanes(res / "hyperplanes" / "1001" / "hyperplanes.json")
    assert set(hp) == {"angry", "happy"}
    for w, _ in hp.values():
        assert np.isclose(np.linalg.norm(w), 1.0)
    doc = json.loads((res / "hyperplanes" / "1001" / "hyperplanes.json").read_text())
    assert doc["meta"]["actor"] == "1001" and len(doc["mar_edges"]) == 6
    for f in ("distances.png", "projection.png", "cv_accuracy.png", "accuracy.md", "accuracy.csv"):
        assert (res / "hyperplanes" / "1001" / f).stat().st_size > 0
    assert (tmp_path / "resources" / "onnx" / "3ddfa_mb05.onnx").is_file()
    assert (tmp_path / "benchmarks" / "expression" / "export_3ddfa_onnx.tsv").is_file()
    assert (tmp_path / "logs" / "expression" / "expression_actor" / "cremad" / "1001.log").is_file()
