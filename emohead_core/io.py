"""Atomic output writing, and clean-up after a killed run without touching a live writer's files.

Outputs are written through :func:`atomic_path` / :func:`atomic_dir`: a temp name beside the
target, renamed onto the target on success. A killed job therefore never leaves a partial file
under the final name, and one failed sample never corrupts another sample's outputs. The temp
name carries the identity of the process writing it (:func:`writer_tag`: host, pid namespace,
pid, process start time; :func:`temp_affixes` makes the name, :data:`TEMP_NAME` parses it)::

    .{stem}.{host}_{pidns}_{pid}_{start}.XXXXXXXX.tmp{ext}     (atomic_path)
    .{name}.{host}_{pidns}_{pid}_{start}.XXXXXXXX.tmp          (atomic_dir)

A write that fails because of the output side - disk full, quota, read-only or not writable -
raises :class:`~emohead_core.errors.EmoheadOutputError` naming the file, the reason and the fix
(:func:`output_fault`), never an input error.

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

import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import EmoheadOutputError

# reason -> (what happened, what to do; {dir} = the directory that could not be written)
OUTPUT_FAULTS = {
    "no_space": (
        "no space left on device",
        "free space on the disk that holds {dir} (or set results_dir to a disk with room, e.g. "
        "--config results_dir=/scratch/emohead) and rerun",
    ),
    "quota": (
        "disk quota exceeded",
        "free space within your quota for {dir} (or set results_dir to a disk with room) and rerun",
    ),
    "too_large": (
        "file too large for the filesystem",
        "set results_dir to a filesystem without a small file-size limit and rerun",
    ),
    "read_only": (
        "the directory is read-only or not writable",
        "make {dir} writable for this user, or set results_dir to a writable directory (e.g. "
        "--config results_dir=/scratch/emohead), and rerun",
    ),
}
_ERRNO_FAULTS = {
    errno.ENOSPC: "no_space",
    errno.EDQUOT: "quota",
    errno.EFBIG: "too_large",
    errno.EROFS: "read_only",
    errno.EACCES: "read_only",
    errno.EPERM: "read_only",
}
# strerror texts as external tools (ffmpeg, libsndfile, pyarrow) print them
_TEXT_FAULTS = {
    "No space left on device": "no_space",
    "Disk quota exceeded": "quota",
    "File too large": "too_large",
    "Read-only file system": "read_only",
}
_PERMISSION_TEXTS = ("Permission denied", "Operation not permitted")
MIN_FREE_BYTES = 1 << 20  # below this a failed write is blamed on the full disk


def fault_fix(reason: str, path: str | os.PathLike) -> str:
    """What to do about an output fault ``reason`` at ``path`` (no trailing period)."""
    return OUTPUT_FAULTS[reason][1].format(dir=_existing_dir(Path(path)))


def output_error(reason: str, path: str | os.PathLike, detail: str = "") -> EmoheadOutputError:
    """The :class:`EmoheadOutputError` of ``reason`` (a key of :data:`OUTPUT_FAULTS`) for ``path``."""
    what = OUTPUT_FAULTS[reason][0]
    detail = detail.strip()[-300:]
    if detail and detail.lower().rstrip(".") not in what.lower():
        what += f" ({detail})"
    return EmoheadOutputError(
        f"cannot write this output: {what}.",
        path=path,
        fix=fault_fix(reason, path) + "; outputs already finished are kept.",
        reason=reason,
    )


def _existing_dir(p: Path) -> Path:
    """``p`` if it is a directory, else its nearest existing ancestor directory."""
    p = Path(os.path.abspath(p))
    while not p.is_dir() and p != p.parent:
        p = p.parent
    return p


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _names_output(filename, outputs: list[Path]) -> bool:
    """Whether an OSError's filename is one of ``outputs``, lies beside one (a temp), or is one
    of their ancestor directories (mkdir)."""
    if not filename:
        return False
    f = os.path.abspath(str(filename))
    for p in outputs:
        p = os.path.abspath(p)
        if f == p or os.path.dirname(f) == os.path.dirname(p) or p.startswith(f.rstrip(os.sep) + os.sep):
            return True
    return False


def filesystem_fault(path: str | os.PathLike) -> str | None:
    """``read_only`` / ``no_space`` when the filesystem that holds ``path`` is read-only, not
    writable or (nearly) full right now; else None."""
    d = _existing_dir(Path(path))
    try:
        st = os.statvfs(d)
    except OSError:
        return None
    if st.f_blocks == 0:  # a pseudo filesystem (/proc ...): no usable numbers
        return None
    if st.f_flag & os.ST_RDONLY or not os.access(d, os.W_OK):
        return "read_only"
    free = (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
    return "no_space" if free < MIN_FREE_BYTES else None


def output_fault(
    exc: BaseException,
    path: str | os.PathLike,
    *,
    tmp: str | os.PathLike | None = None,
    check_filesystem: bool = True,
) -> EmoheadOutputError | None:
    """The output-side fault behind ``exc`` raised while writing ``path`` (temp ``tmp``), or None.

    Recognised: an :class:`OSError` with errno ENOSPC / EDQUOT / EFBIG / EROFS (EACCES / EPERM
    when it names the output or its directory), the same conditions in the message of an error
    from an external tool (ffmpeg ...), and - for errors that carry no reason (libsndfile's
    "System error") - a read-only, unwritable or full filesystem at ``path``.
    """
    outputs = [Path(path)] + ([Path(tmp)] if tmp is not None else [])
    for e in _chain(exc):
        if isinstance(e, EmoheadOutputError):
            return e
        if isinstance(e, OSError) and e.errno in _ERRNO_FAULTS:
            if e.errno in (errno.EACCES, errno.EPERM) and not _names_output(e.filename, outputs):
                continue  # e.g. an unreadable input file
            return output_error(_ERRNO_FAULTS[e.errno], path, e.strerror or str(e))
        text = str(e)
        for needle, reason in _TEXT_FAULTS.items():
            if needle in text:
                return output_error(reason, path, needle)
        if any(t in text for t in _PERMISSION_TEXTS) and any(str(p) in text for p in outputs):
            return output_error("read_only", path, "permission denied")
    if check_filesystem:
        reason = filesystem_fault(path)
        if reason is not None:
            return output_error(reason, path)
    return None


def _raise_output_fault(exc: BaseException, target: Path, tmp: Path | None = None) -> None:
    if isinstance(exc, Exception) and not isinstance(exc, EmoheadOutputError):
        fault = output_fault(exc, target, tmp=tmp)
        if fault is not None:
            raise fault from exc


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``target`` on success.

    The temporary name keeps the target's extension (tools such as ffmpeg pick the container
    from it). On any exception the temporary file is removed and the target is untouched.
    """
    target = Path(target)
    ext = suffix if suffix is not None else "".join(target.suffixes[-1:])
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = temp_affixes(target.stem, ext)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
        os.close(fd)
    except OSError as e:
        _raise_output_fault(e, target)
        raise
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not tmp_path.exists():
            raise FileNotFoundError(f"atomic write produced no file for {target}")
        _default_mode(tmp_path, 0o666)
        os.replace(tmp_path, target)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        _raise_output_fault(e, target, tmp_path)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_path` for a directory output (renamed as a whole on success)."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = temp_affixes(target.name)
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=target.parent))
    except OSError as e:
        _raise_output_fault(e, target)
        raise
    try:
        yield tmp
        _default_mode(tmp, 0o777)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_output_fault(e, target, tmp)
        raise


def _default_mode(path: Path, base: int) -> None:
    """mkstemp/mkdtemp create 0600/0700 entries; give outputs the usual umask-derived mode."""
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(path, base & ~umask)


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json_atomic(target: str | os.PathLike, obj) -> None:
    write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# ----------------------------------------------------------------------------- temps of killed jobs

# a temp whose writer cannot be checked is stale after this long without modification
STALE_AFTER_S = 24 * 3600

# tempfile.mkstemp/mkdtemp draw 8 characters from [a-z0-9_] between temp_affixes' prefix and suffix
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


@functools.cache
def _writer_of(pid: int) -> Writer:
    return Writer(_host(), _pid_ns(), pid, _start_time(pid) or 0)


def writer_tag() -> str:
    """The tag :func:`atomic_path` / :func:`atomic_dir` put into their temp names (this process)."""
    return _writer_of(os.getpid()).tag


def temp_affixes(name: str, ext: str = "") -> tuple[str, str]:
    """(prefix, suffix) of this process's temp names for ``name`` + ``ext``, for
    ``tempfile.mkstemp`` / ``mkdtemp``: ``.{name}.{tag}.`` and ``.tmp{ext}`` (:data:`TEMP_NAME`)."""
    return f".{name}.{writer_tag()}.", f".tmp{ext}"


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
            log(
                f"kept {len(kept)} temp file(s) of jobs that may still be writing (another run, or "
                "another host): " + _some(kept)
            )
    return removed


def _some(paths: list[Path]) -> str:
    return ", ".join(map(str, paths[:10])) + (" ..." if len(paths) > 10 else "")
