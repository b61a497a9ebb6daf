"""Execution safety: clean-up after a killed run.

Outputs are written through :func:`emohead_core.io.atomic_path` / :func:`atomic_dir`: a temp
name beside the target (``.{stem}.XXXXXXXX.tmp{ext}``, or ``.{name}.XXXXXXXX.tmp`` for a
directory), renamed onto the target on success. A job killed with SIGKILL (node failure,
``scancel``, OOM killer, a killed Snakemake) never leaves a partial file under the final name,
but its temp file stays. Snakemake's ``--rerun-incomplete`` redoes the job; this module removes
the orphaned temp files. The workflow calls :func:`sweep_stale_temps` from ``onstart``
(rules/cluster.smk), i.e. only in the main Snakemake process, before any job runs, on the
outputs this run is going to produce: Snakemake has locked them for this run, so no live job
of another run writes them, and temps of other outputs are never touched.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Iterable

# tempfile.mkstemp/mkdtemp draw 8 characters from [a-z0-9_]; see emohead_core.io
TEMP_NAME = re.compile(r"^\.(?P<stem>.+)\.[a-z0-9_]{8}\.tmp(?P<ext>\.[A-Za-z0-9]+)?$")


def temp_target(name: str) -> str | None:
    """The target name an atomic-write temp name belongs to (None if it is not one).

    ``.{stem}.XXXXXXXX.tmp{ext}`` (atomic_path) -> ``{stem}{ext}``; ``.{name}.XXXXXXXX.tmp``
    (atomic_dir) -> ``{name}``.
    """
    m = TEMP_NAME.match(name)
    if not m:
        return None
    return m["stem"] + (m["ext"] or "")


def is_atomic_temp(name: str) -> bool:
    """Whether a file name is one of atomic_path's / atomic_dir's temp names."""
    return temp_target(name) is not None


def find_stale_temps(targets: Iterable[str | os.PathLike]) -> list[Path]:
    """Temp files/directories beside ``targets`` that belong to one of them.

    Only temps of the given targets are returned: the outputs the starting run is about to
    (re)produce and holds Snakemake's lock on, so no live job of another run owns them.
    """
    by_dir: dict[Path, set[str]] = {}
    for t in targets:
        t = Path(t)
        by_dir.setdefault(t.parent, set()).add(t.name)
    found = []
    for d, names in by_dir.items():
        try:
            entries = os.listdir(d)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            if e.startswith(".") and temp_target(e) in names:
                found.append(d / e)
    return sorted(found)


def sweep_stale_temps(targets: Iterable[str | os.PathLike], log=None) -> list[Path]:
    """Remove the temp files/directories that killed jobs left beside ``targets``."""
    removed = []
    for p in find_stale_temps(targets):
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except FileNotFoundError:
            continue
        removed.append(p)
    if removed and log is not None:
        log(
            f"removed {len(removed)} temp file(s) of interrupted jobs: "
            + ", ".join(map(str, removed[:10]))
            + (" ..." if len(removed) > 10 else "")
        )
    return removed
