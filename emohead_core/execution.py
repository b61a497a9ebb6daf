"""Execution safety: clean-up after a killed run, without touching a live writer's files.

Outputs are written through :func:`emohead_core.io.atomic_path` / :func:`atomic_dir`: a temp
name beside the target, renamed onto the target on success. The temp name carries the identity
of the process writing it (:func:`writer_tag`: host, pid namespace, pid, process start time)::

    .{stem}.{host}_{pidns}_{pid}_{start}.XXXXXXXX.tmp{ext}     (atomic_path)
    .{name}.{host}_{pidns}_{pid}_{start}.XXXXXXXX.tmp          (atomic_dir)

A job killed with SIGKILL (node failure, ``scancel``, OOM killer, a killed Snakemake) never
leaves a partial file under the final name, but its temp file stays. Snakemake's
``--rerun-incomplete`` redoes the job; :func:`sweep_stale_temps`, called from ``onstart``
(rules/cluster.smk) before any job runs, removes the temps of the outputs this run is going to
produce - but only those whose writer is gone:

- written on this host (same pid namespace): removed when that pid no longer runs, or runs a
  different process (start time differs: the pid was reused);
- written on another host / in another pid namespace (a cluster node), or by a version before
  writer tags: the writer cannot be checked, so the temp is removed only when nothing modified
  it for :data:`STALE_AFTER_S` (a live writer keeps writing into it).

Snakemake's own lock does not make this safe on its own: any run that ends (also ``--unlock``)
deletes the whole ``.snakemake/locks`` directory, so a second run on the same results is then
not refused, and its start hook used to delete the first run's in-flight temp file.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

# a temp whose writer cannot be checked is stale after this long without modification
STALE_AFTER_S = 24 * 3600

# tempfile.mkstemp/mkdtemp draw 8 characters from [a-z0-9_]; see emohead_core.io
_RAND = r"[a-z0-9_]{8}"
_EXT = r"(?P<ext>\.[A-Za-z0-9]+)?"
TEMP_NAME = re.compile(
    rf"^\.(?P<stem>.+)\.(?P<host>[a-z0-9-]+)_(?P<ns>\d+)_(?P<pid>\d+)_(?P<start>\d+)\.{_RAND}\.tmp{_EXT}$"
)
LEGACY_TEMP_NAME = re.compile(rf"^\.(?P<stem>.+)\.{_RAND}\.tmp{_EXT}$")  # before writer tags


@dataclass(frozen=True)
class Writer:
    """Who writes a temp file: host (sanitised), pid namespace id, pid, process start time
    (clock ticks since boot; 0 where /proc is not available)."""

    host: str
    ns: int
    pid: int
    start: int

    @property
    def tag(self) -> str:
        return f"{self.host}_{self.ns}_{self.pid}_{self.start}"


def _host() -> str:
    return re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower())[:40] or "host"


def _pid_ns() -> int:
    try:
        return int(re.sub(r"\D", "", os.readlink("/proc/self/ns/pid")) or 0)
    except OSError:
        return 0


def _start_time(pid: int) -> int | None:
    """Start time of ``pid`` (field 22 of /proc/<pid>/stat); None if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # the command name (field 2) is in parentheses and may contain spaces
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


@functools.lru_cache(maxsize=None)
def _writer_of(pid: int) -> Writer:
    return Writer(_host(), _pid_ns(), pid, _start_time(pid) or 0)


def writer_tag() -> str:
    """The tag :func:`emohead_core.io.atomic_path` puts into its temp names (this process)."""
    return _writer_of(os.getpid()).tag


def temp_writer(name: str) -> Writer | None:
    """The writer recorded in a temp name (None for a legacy name or a non-temp)."""
    m = TEMP_NAME.match(name)
    if not m:
        return None
    return Writer(m["host"], int(m["ns"]), int(m["pid"]), int(m["start"]))


def temp_target(name: str) -> str | None:
    """The target name an atomic-write temp name belongs to (None if it is not one).

    ``.{stem}.{tag}.XXXXXXXX.tmp{ext}`` (atomic_path) -> ``{stem}{ext}``;
    ``.{name}.{tag}.XXXXXXXX.tmp`` (atomic_dir) -> ``{name}``.
    """
    m = TEMP_NAME.match(name) or LEGACY_TEMP_NAME.match(name)
    if not m:
        return None
    return m["stem"] + (m["ext"] or "")


def is_atomic_temp(name: str) -> bool:
    """Whether a file name is one of atomic_path's / atomic_dir's temp names."""
    return temp_target(name) is not None


def writer_alive(w: Writer) -> bool | None:
    """True: the writer runs; False: it is gone; None: it cannot be checked from here (another
    host or pid namespace)."""
    me = _writer_of(os.getpid())
    if w.host != me.host or (w.ns and me.ns and w.ns != me.ns):
        return None
    try:
        os.kill(w.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    if w.start:
        now = _start_time(w.pid)
        if now is not None and now != w.start:
            return False  # the pid was reused by another process
    return True


def _last_modified(p: Path) -> float:
    """Newest mtime of a file, or of a directory and everything in it."""
    try:
        newest = p.lstat().st_mtime
    except FileNotFoundError:
        return 0.0
    if p.is_dir() and not p.is_symlink():
        for root, dirs, files in os.walk(p):
            for n in dirs + files:
                try:
                    newest = max(newest, os.lstat(os.path.join(root, n)).st_mtime)
                except FileNotFoundError:
                    continue
    return newest


def is_stale(p: Path, now: float | None = None) -> bool:
    """Whether the writer of temp ``p`` is gone (see the module docstring)."""
    w = temp_writer(p.name)
    alive = writer_alive(w) if w is not None else None
    if alive is not None:
        return not alive
    now = time.time() if now is None else now
    return now - _last_modified(p) > STALE_AFTER_S


def find_temps(targets: Iterable[str | os.PathLike]) -> list[Path]:
    """Temp files/directories beside ``targets`` that belong to one of them (live or not)."""
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


def find_stale_temps(targets: Iterable[str | os.PathLike]) -> list[Path]:
    """The temps beside ``targets`` whose writer is gone (:func:`is_stale`)."""
    return [p for p in find_temps(targets) if is_stale(p)]


def sweep_stale_temps(targets: Iterable[str | os.PathLike], log=None) -> list[Path]:
    """Remove the temp files/directories that killed jobs left beside ``targets``; temps of a
    writer that runs (or cannot be checked and was modified recently) are kept."""
    removed, kept = [], []
    for p in find_temps(targets):
        if not is_stale(p):
            kept.append(p)
            continue
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except FileNotFoundError:
            continue
        removed.append(p)
    if log is not None:
        if removed:
            log(f"removed {len(removed)} temp file(s) of interrupted jobs: " + _some(removed))
        if kept:
            log(f"kept {len(kept)} temp file(s) of jobs that may still be writing (another run, or "
                "another host): " + _some(kept))
    return removed


def _some(paths: list[Path]) -> str:
    return ", ".join(map(str, paths[:10])) + (" ..." if len(paths) > 10 else "")
