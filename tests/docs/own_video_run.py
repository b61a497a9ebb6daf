"""One real, tiny run of config/examples/own_video.yaml, shared by the tests that need its outputs
(tests/docs/test_own_video.py, tests/workflow/test_report_contents.py): a mirror video as the
`folder` dataset `me`, the mirror's CREMA-D clips for the hyperplanes and the audio-to-expression
model, and the render subject `me`, with iteration counts and metric models cut down by
``TINY`` so the whole chain, tables included, runs in a few minutes on 2 CPU cores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLE = REPO / "config" / "examples" / "own_video.yaml"
SUBJECT = "me"
CLIP = "WDA_AlexandriaOcasioCortez_000"  # the example's video (8 s, 512x512, 25 fps)

# Test overlay: tiny training, few rendered frames, and the expensive metric models off (their
# cells become explicit n/a); everything else is the example config as a user runs it.
TINY = """
audio2exp:
  train: {iterations: 20, batch_size: 16, ckpt_every: 10}
render:
  resolution: 64
  max_frames: 60
  train: {iters: 40, refine_start: 30, refine_every: 5, rays: 256, ckpt_every: 20, log_every: 5,
          val_every: 0, val_frames: 1}
  switch: {seconds_per_tag: 0.2}
  emotion_control: {frames: 2, taus: [0.0, 1.0]}
metrics:
  lpips: {backbone: null, heads: null}
  fid: {weights: null}
  lmd: {backends: [3ddfa]}
  landmarker: null
  er: {model: null, baseline: false}
"""

_DONE: dict[str, Path] = {}


def env(mirror: Path) -> dict:
    return {
        **os.environ,
        "EMOHEAD_MIRROR": str(mirror),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
    }


def snakemake_cmd(workdir: Path, *args: str) -> list[str]:
    """The workflow of this checkout, run in ``workdir`` (results/, logs/, .snakemake/ there)."""
    configs = [str(REPO / "config" / "config.yaml"), str(EXAMPLE), str(workdir / "tiny.yaml")]
    return [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--configfile", *configs, *args]


def prepare(workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "tiny.yaml").write_text(TINY)
    return workdir


def run_all(tmp_path_factory, mirror: Path) -> Path:
    """The whole example workflow (rule all: render subject, metrics, tables) once per session;
    returns the working directory (its results/ holds the outputs)."""
    if "all" not in _DONE:
        wd = prepare(tmp_path_factory.mktemp("own_video"))
        r = subprocess.run(
            snakemake_cmd(wd, "--cores", "2"),
            cwd=wd,
            env=env(mirror),
            capture_output=True,
            text=True,
            timeout=3000,
        )
        assert r.returncode == 0, (r.stdout + r.stderr)[-6000:]
        _DONE["all"] = wd
    return _DONE["all"]
