"""Configuration helpers shared by the Snakefile, scripts and tests.

:func:`validate_config` checks a merged config against config/schema.yaml before anything runs: first
for keys the schema does not know (a misspelt ``crop_sise:`` or a top-level ``preprocesss:``
would otherwise be ignored silently), naming each with the closest known key; then for types and
ranges, naming the key and what it takes; then Snakemake's validation fills in the defaults.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from .errors import EmoheadInputError

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = REPO_ROOT / "config" / "schema.yaml"
MAX_REPORTED = 10


def deep_update(base: dict, override: dict) -> dict:
    """Recursive dict merge (how Snakemake merges several --configfile)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = v
    return out


@functools.lru_cache(maxsize=1)
def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def schema_defaults(section: str = "") -> dict:
    """The defaults config/schema.yaml gives the keys of ``section`` (dotted path, e.g.
    ``"render.train"``; nested objects included): what a validated config holds where the config
    files are silent. Library code that runs without a config takes its defaults from here, so
    that they live in the schema only."""
    schema = load_schema()
    node = _resolve(schema, schema)
    for part in filter(None, section.split(".")):
        node = _resolve(node["properties"][part], schema)
    return _defaults_of(node, schema)


def _defaults_of(node: dict, root: dict) -> dict:
    out = {}
    for key, sub in (node.get("properties") or {}).items():
        sub = _resolve(sub, root)
        if "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        elif sub.get("properties"):
            nested = _defaults_of(sub, root)
            if nested:
                out[key] = nested
    return out


def _key(path: tuple) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _resolve(node: Any, root: dict) -> Any:
    """Follow local ``$ref`` (``#/$defs/...``) and, for a mapping value, pick the one object
    alternative of ``oneOf`` / ``anyOf`` (e.g. a split given as a name or as a mapping)."""
    while isinstance(node, dict) and str(node.get("$ref", "")).startswith("#/"):
        target = root
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    if isinstance(node, dict):
        for key in ("oneOf", "anyOf"):
            objects = [_resolve(alt, root) for alt in node.get(key) or []]
            objects = [
                a for a in objects if isinstance(a, dict) and ("properties" in a or a.get("type") == "object")
            ]
            if len(objects) == 1:
                node = {**{k: v for k, v in node.items() if k != key}, **objects[0]}
    return node


def unknown_keys(
    cfg: Any, schema: dict, path: tuple = (), root: dict | None = None
) -> Iterator[tuple[tuple, list[str]]]:
    """(path of the key, the keys allowed there) for every key of ``cfg`` that ``schema``
    rejects with ``additionalProperties: false``."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if isinstance(cfg, dict) and isinstance(schema, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties", True)
        for k, v in cfg.items():
            if k in props:
                yield from unknown_keys(v, props[k], (*path, k), root)
            elif extra is False:
                yield (*path, k), sorted(props)
            elif isinstance(extra, dict):
                yield from unknown_keys(v, extra, (*path, k), root)
    elif isinstance(cfg, list) and isinstance(schema, dict) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(cfg):
            yield from unknown_keys(v, schema["items"], (*path, i), root)


def check_unknown_keys(cfg: dict, schema: dict | None = None) -> None:
    """Raise :class:`EmoheadInputError` naming every unknown key and its closest known key."""
    found = list(unknown_keys(cfg, schema or load_schema()))
    if not found:
        return
    lines = []
    for path, known in found[:MAX_REPORTED]:
        key = str(path[-1])
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = (
            f"did you mean {_key((*path[:-1], close[0]))}?" if close else f"allowed here: {', '.join(known)}"
        )
        lines.append(f"  {_key(path)}: unknown key; {hint}")
    if len(found) > MAX_REPORTED:
        lines.append(f"  ... and {len(found) - MAX_REPORTED} more")
    first = found[0][0]
    raise EmoheadInputError(
        f"{len(found)} unknown config key(s) (an unknown key would be ignored, so the run would not do "
        "what the config says):\n" + "\n".join(lines) + "\n",
        path=f"config {_key(first)}",
        fix="rename each key as suggested (or remove it); config/schema.yaml describes every key.",
    )


def check_values(cfg: dict, schema: dict | None = None) -> None:
    """Raise :class:`EmoheadInputError` naming every key whose value the schema rejects."""
    from jsonschema import Draft202012Validator

    errors = sorted(
        Draft202012Validator(schema or load_schema()).iter_errors(cfg),
        key=lambda e: list(map(str, e.absolute_path)),
    )
    if not errors:
        return
    lines = []
    for e in errors[:MAX_REPORTED]:
        desc = e.schema.get("description") if isinstance(e.schema, dict) else None
        lines.append(f"  {_key(tuple(e.absolute_path))}: {e.message}" + (f" ({desc})" if desc else ""))
    if len(errors) > MAX_REPORTED:
        lines.append(f"  ... and {len(errors) - MAX_REPORTED} more")
    raise EmoheadInputError(
        f"{len(errors)} invalid config value(s):\n" + "\n".join(lines) + "\n",
        path=f"config {_key(tuple(errors[0].absolute_path))}",
        fix="correct the values above; config/schema.yaml describes every key.",
    )


def validate_config(cfg: dict) -> dict:
    """Check ``cfg`` (unknown keys, then values) and fill in the schema's defaults, in place."""
    from snakemake.utils import validate as sm_validate

    schema = load_schema()
    check_unknown_keys(cfg, schema)
    check_values(cfg, schema)
    sm_validate(cfg, str(SCHEMA_PATH))
    return cfg


def load_config(*paths: str | os.PathLike, validate: bool = True) -> dict[str, Any]:
    """Load config/config.yaml plus overrides, validated against config/schema.yaml (with
    defaults filled in) exactly as the Snakefile does."""
    cfg: dict[str, Any] = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text())
    for p in paths:
        cfg = deep_update(cfg, yaml.safe_load(Path(p).read_text()) or {})
    if validate:
        validate_config(cfg)
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
