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
import math
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


def non_finite_values(cfg: Any, path: tuple = ()) -> Iterator[tuple[tuple, float]]:
    """(path, value) of every NaN or infinite number in ``cfg`` (YAML ``.nan``, ``.inf``): JSON
    schema range checks compare with ``<`` / ``>``, which NaN always passes."""
    if isinstance(cfg, float) and not math.isfinite(cfg):
        yield path, cfg
    elif isinstance(cfg, dict):
        for k, v in cfg.items():
            yield from non_finite_values(v, (*path, k))
    elif isinstance(cfg, (list, tuple)):
        for i, v in enumerate(cfg):
            yield from non_finite_values(v, (*path, i))


def check_values(cfg: dict, schema: dict | None = None) -> None:
    """Raise :class:`EmoheadInputError` naming every key whose value the schema rejects, and
    every NaN / infinite number (every number of the schema has a finite range)."""
    from jsonschema import Draft202012Validator

    schema = schema or load_schema()
    bad = [(p, f"{v} is not a finite number") for p, v in non_finite_values(cfg)]
    errors = sorted(
        Draft202012Validator(schema).iter_errors(cfg),
        key=lambda e: list(map(str, e.absolute_path)),
    )
    for e in errors:
        if not any(tuple(e.absolute_path) == p for p, _ in bad):
            desc = e.schema.get("description") if isinstance(e.schema, dict) else None
            bad.append((tuple(e.absolute_path), e.message + (f" ({desc})" if desc else "")))
    if not bad:
        return
    bad.sort(key=lambda b: list(map(str, b[0])))
    lines = [f"  {_key(path)}: {msg}" for path, msg in bad[:MAX_REPORTED]]
    if len(bad) > MAX_REPORTED:
        lines.append(f"  ... and {len(bad) - MAX_REPORTED} more")
    raise EmoheadInputError(
        f"{len(bad)} invalid config value(s):\n" + "\n".join(lines) + "\n",
        path=f"config {_key(bad[0][0])}",
        fix="correct the values above (each key's range and meaning: config/schema.yaml).",
    )


def validate_config(cfg: dict) -> dict:
    """Check ``cfg`` (unknown keys, then values) and fill in the schema's defaults, in place."""
    from snakemake.utils import validate as sm_validate

    schema = load_schema()
    check_unknown_keys(cfg, schema)
    check_values(cfg, schema)
    sm_validate(cfg, str(SCHEMA_PATH))
    return cfg


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """One config file as a mapping; a file that is missing, not YAML, empty or not a mapping is
    an :class:`EmoheadInputError` naming it (and the line of a YAML error)."""
    path = Path(path)
    fix = "write the config as YAML keys at the top level (see config/config.yaml), or drop the file."
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise EmoheadInputError("config file not found.", path=path, fix="check the path.") from None
    except UnicodeDecodeError as e:
        raise EmoheadInputError(f"not a text file ({e}).", path=path, fix=fix) from None
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise EmoheadInputError(f"not valid YAML{at}: {problem}.", path=path, fix=fix) from None
    if cfg is None:
        raise EmoheadInputError("the config file is empty.", path=path, fix=fix)
    if not isinstance(cfg, dict):
        raise EmoheadInputError(
            f"the config file holds a {type(cfg).__name__}, not keys at the top level.", path=path, fix=fix
        )
    if cfg.get("__use_yte__"):
        raise EmoheadInputError(
            "the config file uses Snakemake's YAML templating (__use_yte__: true), whose expressions are "
            "Python code; emohead reads config files without running code (docs/reliability.md).",
            path=path,
            fix="pass a config file with plain values (e.g. the values the template gives).",
        )
    return cfg


def check_config_files(*paths: str | os.PathLike) -> dict[str, Any]:
    """What the workflow checks at start, for config files given as ``snakemake --configfile
    <paths>`` (after config/config.yaml): each file read (naming a file that is not YAML, empty,
    or not a mapping), then the merged config's keys and values. Returns the merged config."""
    return load_config(*paths)


def load_config(*paths: str | os.PathLike, validate: bool = True) -> dict[str, Any]:
    """Load config/config.yaml plus overrides, validated against config/schema.yaml (with
    defaults filled in) exactly as the Snakefile does."""
    cfg: dict[str, Any] = read_config_file(REPO_ROOT / "config" / "config.yaml")
    for p in paths:
        cfg = deep_update(cfg, read_config_file(p))
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
