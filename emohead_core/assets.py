"""External assets (model files, demo media): one manifest, resolved offline-first.

Resolution order for an asset ``name`` (a key of ``config/assets.yaml``):

1. already in the resource directory with the right sha256: use it;
2. a mirror directory (``assets.mirror`` in config, else env ``EMOHEAD_MIRROR``) holding the
   file at the manifest's ``mirror`` path: checksum, then copy;
3. upstream: ``git`` (clone the repository, check out the pinned commit, take ``path``) or
   ``url`` (HTTP(S) or ``file://``): download, checksum, then move into place.

The checksum is verified before anything is used (pickles are never unpickled unverified). A
mismatch is an error naming the file, the expected and the actual hash.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import AssetError
from .io import atomic_path, sha256_file

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MANIFEST = REPO_ROOT / "config" / "assets.yaml"


@dataclass(frozen=True)
class Asset:
    name: str
    sha256: str | None
    mirror: str | None = None
    url: str | None = None
    git_url: str | None = None
    git_commit: str | None = None
    git_path: str | None = None
    group: str | None = None
    size: int | None = None


def load_manifest(path: str | os.PathLike | None = None) -> dict[str, Asset]:
    path = Path(path or DEFAULT_MANIFEST)
    data = yaml.safe_load(path.read_text())
    out = {}
    for name, spec in (data.get("assets") or {}).items():
        git = spec.get("git") or {}
        out[name] = Asset(
            name=name,
            sha256=spec.get("sha256"),
            mirror=spec.get("mirror"),
            url=spec.get("url"),
            git_url=git.get("url"),
            git_commit=git.get("commit"),
            git_path=git.get("path"),
            group=spec.get("group"),
            size=spec.get("size"),
        )
    return out


def mirror_dir(configured: str | os.PathLike | None = None) -> Path | None:
    """The mirror directory: the configured one, else ``$EMOHEAD_MIRROR``, else None."""
    m = configured or os.environ.get("EMOHEAD_MIRROR")
    return Path(m).expanduser().resolve() if m else None


def _verify(asset: Asset, path: Path, *, source: str) -> None:
    actual = sha256_file(path)
    if asset.sha256 is None:
        log.warning(
            "asset %s has no pinned sha256; got %s from %s. Pin it in config/assets.yaml.",
            asset.name,
            actual,
            source,
        )
        return
    if actual != asset.sha256:
        raise AssetError(
            f"sha256 mismatch for asset {asset.name!r}: expected {asset.sha256}, got {actual}.",
            path=source,
            fix="replace the file with the pinned upstream version, or update config/assets.yaml "
            "if you deliberately changed the asset.",
        )


def _fetch_git(asset: Asset, dest_tmp: Path) -> None:
    """Clone ``asset.git_url`` at the pinned commit (full or abbreviated id) and copy ``git_path``."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    with tempfile.TemporaryDirectory(prefix="emohead-git-") as td:

        def git(*args, check=True):
            r = subprocess.run(["git", "-C", td, *args], capture_output=True, text=True, env=env)
            if check and r.returncode != 0:
                raise AssetError(
                    f"git {args[0]} failed for asset {asset.name!r}: {r.stderr.strip()[-300:]}",
                    path=asset.git_url,
                    fix="set assets.mirror (or EMOHEAD_MIRROR) to a directory holding "
                    f"{asset.mirror}, or make {asset.git_url} reachable.",
                )
            return r

        git("init", "-q")
        commit = asset.git_commit
        fetched = False
        if commit and len(commit) == 40:
            # a full id can be fetched alone (shallow); servers that refuse get a full fetch
            fetched = git("fetch", "-q", "--depth", "1", asset.git_url, commit, check=False).returncode == 0
        if not fetched:
            git("fetch", "-q", "--tags", asset.git_url, "+refs/heads/*:refs/remotes/origin/*")
        if commit:
            r = git("rev-parse", "--verify", "-q", f"{commit}^{{commit}}", check=False)
            if r.returncode != 0:
                raise AssetError(
                    f"commit {commit} not found in {asset.git_url} for asset {asset.name!r}.",
                    path=asset.git_url,
                    fix="fix the pinned commit in config/assets.yaml.",
                )
            rev = r.stdout.strip()
        else:
            rev = "FETCH_HEAD"
        r = git("cat-file", "-e", f"{rev}:{asset.git_path}", check=False)
        if r.returncode != 0:
            raise AssetError(
                f"{asset.git_path} not found at commit {rev} of {asset.git_url} for asset {asset.name!r}.",
                path=asset.git_url,
                fix="fix git.path in config/assets.yaml.",
            )
        # binary-safe copy of the blob
        with open(dest_tmp, "wb") as f:
            subprocess.run(
                ["git", "-C", td, "cat-file", "blob", f"{rev}:{asset.git_path}"],
                stdout=f,
                check=True,
                env=env,
            )


def _fetch_url(asset: Asset, dest_tmp: Path) -> None:
    try:
        with urllib.request.urlopen(asset.url, timeout=60) as r, open(dest_tmp, "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as e:
        raise AssetError(
            f"download of asset {asset.name!r} failed ({e}).",
            path=asset.url,
            fix="set assets.mirror (or EMOHEAD_MIRROR) to a directory holding "
            f"{asset.mirror}, or make the URL reachable.",
        ) from e


def resolve(
    name: str,
    dest_root: str | os.PathLike,
    *,
    mirror: str | os.PathLike | None = None,
    manifest: dict[str, Asset] | None = None,
) -> Path:
    """Materialise asset ``name`` under ``dest_root/name`` and return that path (checksummed)."""
    manifest = manifest if manifest is not None else load_manifest()
    if name not in manifest:
        raise AssetError(f"unknown asset {name!r}; known: {sorted(manifest)}.", path=DEFAULT_MANIFEST)
    asset = manifest[name]
    dest = Path(dest_root) / name
    if dest.is_file() and asset.sha256 and sha256_file(dest) == asset.sha256:
        return dest
    mdir = mirror_dir(mirror)
    if mdir is not None and asset.mirror and (mdir / asset.mirror).is_file():
        src = mdir / asset.mirror
        _verify(asset, src, source=str(src))
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
        return dest
    with atomic_path(dest) as tmp:
        if asset.git_url and asset.git_path:
            _fetch_git(asset, tmp)
            source = f"{asset.git_url}@{asset.git_commit}:{asset.git_path}"
        elif asset.url:
            _fetch_url(asset, tmp)
            source = asset.url
        else:
            raise AssetError(
                f"asset {name!r} is not in the mirror and has no upstream source.",
                path=(mdir / asset.mirror) if (mdir and asset.mirror) else None,
                fix="set assets.mirror or EMOHEAD_MIRROR to a directory that has it.",
            )
        _verify(asset, tmp, source=source)
    return dest


def resolve_in_place(
    name: str, *, mirror: str | os.PathLike | None = None, manifest: dict[str, Asset] | None = None
) -> Path | None:
    """Path of a mirrored asset after checking its sha256, without copying (for parse-time
    discovery of demo media). Returns None when no mirror holds it."""
    manifest = manifest if manifest is not None else load_manifest()
    asset = manifest[name]
    mdir = mirror_dir(mirror)
    if mdir is None or not asset.mirror or not (mdir / asset.mirror).is_file():
        return None
    src = mdir / asset.mirror
    _verify(asset, src, source=str(src))
    return src


def group(name: str, manifest: dict[str, Asset] | None = None) -> list[str]:
    manifest = manifest if manifest is not None else load_manifest()
    return sorted(a.name for a in manifest.values() if a.group == name)
