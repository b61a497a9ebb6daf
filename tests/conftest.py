"""Shared test fixtures. Tests never download models: HF_HUB_OFFLINE is forced on."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

REPO_ROOT = Path(__file__).resolve().parent.parent


def _mirror() -> Path:
    return Path(os.environ.get("EMOHEAD_MIRROR", REPO_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The shared mirror (../shared): paper, 3DDFA_V2 files, real test media."""
    m = _mirror()
    if not (m / "data" / "MANIFEST.tsv").is_file():
        pytest.fail(f"mirror not found at {m}: set EMOHEAD_MIRROR to the shared/ directory")
    return m


@pytest.fixture(scope="session")
def crema_clips(mirror) -> list[Path]:
    """The six real CREMA-D actor-1001 clips (one per emotion)."""
    clips = sorted((mirror / "data" / "crema-d").glob("1001_*.flv"))
    assert len(clips) == 6
    return clips


def copy_workflow(dst: Path) -> Path:
    """A copy of the workflow (Snakefile, rules, scripts, config, envs) in ``dst``, for real
    Snakemake runs in a temporary working directory."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ["Snakefile", "rules", "workflow", "config", "envs"]:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy(src, dst / name)
    return dst
