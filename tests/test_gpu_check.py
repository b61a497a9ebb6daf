"""bench/gpu_check.sh on a machine without CUDA: argument handling, staging the assets the GPU
machine cannot fetch, and the dry run (every GPU row skipped with its reason, one table)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "bench" / "gpu_check.sh"


def _run(*args, env=None, timeout=300):
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["--bogus"], "unknown argument '--bogus'"),
        (["--iters", "x"], "--iters needs an integer >= 2"),
        (["--iters"], "--iters needs a value"),
        (["--out"], "--out needs a value"),
    ],
)
def test_bad_arguments_exit_64_with_the_reason(args, message):
    p = _run(*args)
    assert p.returncode == 64 and message in p.stderr


def test_help_describes_the_checks_and_the_tcnn_build():
    p = _run("--help")
    assert p.returncode == 0
    for what in ("pytest -m gpu", "onnxruntime", "--no-networks build_ext", "--stage", "--allow-cpu"):
        assert what in p.stdout


def test_stage_copies_the_onnx_models(tmp_path, mirror):
    p = _run("--stage", str(tmp_path / "assets"), env={"EMOHEAD_MIRROR": str(mirror)})
    assert p.returncode == 0, p.stderr
    for f in ("faceboxes.onnx", "3ddfa_mb05.onnx"):
        staged = tmp_path / "assets" / f
        assert staged.is_file() and staged.stat().st_size > 1_000_000
    p = _run("--stage", str(tmp_path / "none"), env={"EMOHEAD_MIRROR": str(tmp_path / "nowhere")})
    if not (REPO / "resources" / "onnx" / "faceboxes.onnx").is_file():
        assert p.returncode == 64 and "faceboxes.onnx not found" in p.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_it_stops_unless_a_dry_run_is_asked(tmp_path):
    p = _run("--python", sys.executable, "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "no CUDA device" in p.stderr
    p = _run(
        "--python",
        sys.executable,
        "--out",
        str(tmp_path / "o"),
        "--assets",
        str(tmp_path / "empty"),
        "--allow-cpu",
    )
    assert p.returncode == 0, p.stdout + p.stderr
    rows = {r["check"]: r for r in json.loads((tmp_path / "o" / "gpu_check.json").read_text())}
    assert rows["device"]["status"] == "SKIP"
    assert rows["tinycudann build"]["status"] == "SKIP"
    assert rows["pytest -m gpu"]["status"] == "SKIP" and "skipped" in rows["pytest -m gpu"]["result"]
    for check in ("onnxruntime CUDA vs CPU: FaceBoxes", "onnxruntime CUDA vs CPU: 3DDFA"):
        assert rows[check]["status"] == "SKIP" and rows[check]["result"]
    assert rows["tcnn vs PyTorch grid"]["status"] == "SKIP"
    assert rows["bench_render CUDA"]["status"] == "SKIP"
    assert rows["total"]["status"] == "PASS"
    table = (tmp_path / "o" / "gpu_check.md").read_text()
    assert table.startswith("| check | status |") and table.count("\n") == len(rows) + 2
    # a failing row fails the run
    p = _run(
        "--python",
        sys.executable,
        "--out",
        str(tmp_path / "o"),
        "--allow-cpu",
        "--ort-wheel",
        str(tmp_path / "missing.whl"),
    )
    assert p.returncode == 1
    rows = {r["check"]: r for r in json.loads((tmp_path / "o" / "gpu_check.json").read_text())}
    assert rows["onnxruntime-gpu install"]["status"] == "FAIL"
