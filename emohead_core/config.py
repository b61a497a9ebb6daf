"""Configuration helpers shared by the Snakefile, scripts and tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent


def deep_update(base: dict, override: dict) -> dict:
    """Recursive dict merge (how Snakemake merges several --configfile)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = v
    return out


def load_config(*paths: str | os.PathLike, validate: bool = True) -> dict[str, Any]:
    """Load config/config.yaml plus overrides, validated against config/schema.yaml (with
    defaults filled in) exactly as the Snakefile does."""
    cfg: dict[str, Any] = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    for p in paths:
        cfg = deep_update(cfg, yaml.safe_load(Path(p).read_text()) or {})
    if validate:
        from snakemake.utils import validate as sm_validate

        sm_validate(cfg, str(REPO_ROOT / "config" / "schema.yaml"))
    apply_env_overrides(cfg)
    return cfg


def apply_env_overrides(cfg: dict[str, Any]) -> dict[str, Any]:
    """``assets.mirror`` falls back to ``$EMOHEAD_MIRROR`` (resolved to an absolute path)."""
    assets = cfg.setdefault("assets", {})
    if not assets.get("mirror") and os.environ.get("EMOHEAD_MIRROR"):
        assets["mirror"] = os.environ["EMOHEAD_MIRROR"]
    if assets.get("mirror"):
        assets["mirror"] = str(Path(assets["mirror"]).expanduser().resolve())
    return cfg
