"""`snakemake --report` on a small demo run (CREMA-D actor 1001: crop, 3DDFA expression, emotion
hyperplanes) contains the plots the stage writes, with their captions.

Slow (a real crop + 3DDFA of six clips): `.ci/run` runs it.
"""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"
PLOTS = ["distances.png", "projection.png", "cv_accuracy.png"]


@pytest.mark.slow
def test_report_contains_hyperplane_plots(tmp_path, mirror):
    targets = [f"results/cremad/hyperplanes/1001/{p}" for p in PLOTS]
    base = [
        str(SNAKEMAKE),
        *targets,
        "-s",
        str(REPO / "Snakefile"),
        "--configfile",
        str(REPO / "config" / "config.yaml"),
        str(REPO / "config" / "demo.yaml"),
    ]
    env = dict(os.environ, EMOHEAD_MIRROR=str(mirror), OMP_NUM_THREADS="1")
    r = subprocess.run(base + ["--cores", "2"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    for p in targets:
        png = (tmp_path / p).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000, p

    r = subprocess.run(
        base + ["--report", "report.zip"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-4000:]
    with zipfile.ZipFile(tmp_path / "report.zip") as z:
        names = z.namelist()
        assert any(n.endswith("report.html") for n in names), names[:20]
        for p in PLOTS:
            hits = [n for n in names if n.endswith(p)]
            assert hits, f"{p} not in the report: {names[:40]}"
            # the stored plot is the rule's output, byte for byte
            assert z.read(hits[0]) == (tmp_path / "results/cremad/hyperplanes/1001" / p).read_bytes()
        blob = b"".join(z.read(n) for n in names if n.endswith((".html", ".js", ".json")))
    assert b"Emotion hyperplanes of actor 1001" in blob  # caption rendered with its wildcards
    assert b"Expression hyperplanes" in blob  # category
