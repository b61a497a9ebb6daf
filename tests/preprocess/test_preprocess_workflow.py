"""Snakemake really preprocesses demo clips: one video clip and one audio-only clip, in a
temporary copy of the workflow (assets from the mirror, ONNX export, crop, audio, sample table).

This is the per-clip mode (``datasets.cremad.batch: clip``: rules crop_video and extract_audio);
the per-actor batches (rule preprocess_actor) are run and compared with it in
test_batch_workflow.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import soundfile as sf
from conftest import copy_workflow

from emohead_core import media
from emohead_core.preprocess import datasets

BIN = Path(sys.executable).parent


def _run(args, cwd, mirror, timeout=600):
    env = {**os.environ, "EMOHEAD_MIRROR": str(mirror), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def test_snakemake_preprocesses_demo_clips(repo_root, mirror, tmp_path):
    """Real run of the preprocessing rules on one video clip and one audio-only clip."""
    copy_workflow(tmp_path)
    # per-clip jobs for cremad (its default is batch: actor); configfiles merge recursively
    (tmp_path / "clip_mode.yaml").write_text("datasets:\n  cremad:\n    batch: clip\n")
    targets = [
        "results/cremad/samples.parquet",
        "results/cremad/crop/1001/1001_DFA_SAD_XX.mp4",
        "results/cremad/audio/1001/1001_DFA_SAD_XX.wav",
        "results/cremad/audio/1002/1002_DFA_HAP_XX.wav",
    ]
    cmd = [
        str(BIN / "snakemake"),
        *targets,
        "--cores",
        "2",
        "--configfile",
        "config/demo.yaml",
        "clip_mode.yaml",
    ]
    rc, out = _run(cmd, tmp_path, mirror)
    assert rc == 0, out[-4000:]
    res = tmp_path / "results" / "cremad"
    table = pd.read_parquet(res / "samples.parquet")
    expect = datasets.build_table(
        "cremad",
        {"kind": "crema_d", "root": "asset:data/crema-d", "crop_size": 340},
        mirror=mirror,
        cache_path=tmp_path / "c.json",
    )
    pd.testing.assert_frame_equal(table, expect, check_dtype=False)
    info = media.probe(res / "crop" / "1001" / "1001_DFA_SAD_XX.mp4")
    assert (info.width, info.height, info.fps) == (340, 340, 25.0)
    n = len(pd.read_parquet(res / "crop" / "1001" / "1001_DFA_SAD_XX.boxes.parquet"))
    wav = sf.info(str(res / "audio" / "1001" / "1001_DFA_SAD_XX.wav"))
    assert (wav.samplerate, wav.channels) == (16000, 1) and abs(wav.frames / 16000 - n / 25) <= 0.04
    assert abs(sf.info(str(res / "audio" / "1002" / "1002_DFA_HAP_XX.wav")).frames / 16000 - 2.25) < 0.06
    # clip mode: only the requested clips, no actor batches (no stash, no batch log)
    assert sorted(p.name for p in (res / "crop" / "1001").iterdir()) == [
        "1001_DFA_SAD_XX.boxes.parquet",
        "1001_DFA_SAD_XX.mp4",
    ]
    assert not list(res.rglob("*.partial")) and not (tmp_path / "logs/preprocess/preprocess_actor").exists()
    # the sha256-checked assets and the cached ONNX model were produced by their rules
    assert (tmp_path / "resources/onnx/faceboxes.onnx").is_file()
    assert (tmp_path / "resources/assets/3ddfa_v2/FaceBoxesProd.pth").is_file()
    # every rule wrote its log and benchmark
    for rule in ["fetch_asset", "export_faceboxes_onnx", "sample_table", "crop_video", "extract_audio"]:
        assert list((tmp_path / "logs/preprocess").glob(f"{rule}*")), rule
        assert list((tmp_path / "benchmarks/preprocess").glob(f"{rule}*")), rule
    # nothing left to do on a second invocation
    rc, out = _run([*cmd, "-n"], tmp_path, mirror)
    assert rc == 0 and "Nothing to be done" in out, out[-2000:]
