"""One live workflow run per results directory.

Snakemake's own lock (``.snakemake/locks`` of the working directory) does not keep a second run
off a live run's files: any run that ends, and ``snakemake --unlock``, removes it, and a second
checkout (another working directory) pointed at the same ``results_dir`` never sees it. A second
run then re-runs jobs whose outputs it finds incomplete, and Snakemake deletes those outputs
before re-running them - also files a job of the live run is reading or writing.

So the workflow takes its own lock, :func:`hold_results_lock`, from ``onstart``
(rules/cluster.smk; main process only, not in dry runs), before any job's outputs are touched:
an exclusive ``flock`` on ``{results_dir}/.emohead-run.lock`` held until the Snakemake process
exits. The kernel releases it when that process ends in any way (also SIGKILL), so there is no
stale lock to remove by hand, and ``--unlock`` cannot break it. The file names the holder (host,
pid, start, working directory, command); a second run on the same directory (from any working
directory, any checkout, the same path or a symlink to it) stops before it changes anything,
naming the holder and how to check that it is gone. ``snakemake --unlock`` while the holder runs
is refused too (:func:`refuse_unlock_while_held`, at parse time): it would remove the live run's
Snakemake lock.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys
from pathlib import Path

from .errors import EmoheadInputError
from .io import output_fault

log = logging.getLogger(__name__)

LOCK_NAME = ".emohead-run.lock"
_held: dict[str, object] = {}  # resolved results dir -> open lock file (kept open: the lock)


class ResultsBusyError(EmoheadInputError):
    """Another live run holds the results directory."""


def lock_path(results_dir: str | os.PathLike) -> Path:
    return Path(results_dir) / LOCK_NAME


def _holder_text(f) -> str:
    f.seek(0)
    raw = f.read().strip()
    try:
        h = json.loads(raw)
    except ValueError:
        return raw or "a process that left no description"
    return (
        f"pid {h.get('pid')} on host {h.get('host')} (user {h.get('user')}), started {h.get('started')} "
        f"in {h.get('cwd')}: {h.get('command')}"
    )


def _check_gone(f) -> str:
    f.seek(0)
    try:
        h = json.loads(f.read())
        return f"`ps -p {h['pid']}` on host {h['host']} shows whether it still runs"
    except (ValueError, KeyError, TypeError):
        return "the process holding the file (`fuser -v <lock file>`) shows who"


def _busy(path: Path, f, what: str) -> ResultsBusyError:
    return ResultsBusyError(
        f"{what}: this results directory is in use by a live EmoHead run: {_holder_text(f)}. "
        f"Nothing was changed. {_check_gone(f)}; the lock ends with that process (also when it is "
        "killed), `snakemake --unlock` does not remove it.",
        path=path.parent,
        fix="wait for that run to finish (or stop it), then rerun; or give this run another "
        "results_dir (--config results_dir=...).",
    )


def _open_locked(path: Path):
    """The lock file, opened and flocked exclusively (non-blocking); None when another process
    holds it (the file is returned open, unlocked, as the second value), or when the filesystem
    has no locks (a warning)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "a+")
    except OSError as e:
        fault = output_fault(e, path)
        if fault is not None:
            raise fault from e
        raise
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return None, f
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        log.warning("cannot lock %s (%s): running without the guard against concurrent runs", path, e)
        f.close()
        return None, None
    return f, None


def hold_results_lock(results_dir: str | os.PathLike, log=print) -> Path:
    """Lock ``results_dir`` for this process until it exits (idempotent); raise
    :class:`ResultsBusyError` naming the holder when another live process holds it."""
    path = lock_path(results_dir)
    key = os.path.realpath(results_dir)
    if key in _held:
        return path
    f, other = _open_locked(path)
    if f is None:
        if other is not None:
            err = _busy(path, other, "another run holds the results directory")
            other.close()
            raise err
        return path
    f.seek(0)
    f.truncate()
    f.write(
        json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "user": _user(),
                "started": datetime.datetime.now().isoformat(timespec="seconds"),
                "cwd": os.getcwd(),
                "command": " ".join(sys.argv)[:500],
            }
        )
        + "\n"
    )
    f.flush()
    _held[key] = f
    if log is not None:
        log(f"holding {path} for this run (a second run on {results_dir} is refused while this one runs)")
    return path


def refuse_unlock_while_held(results_dir: str | os.PathLike) -> None:
    """``snakemake --unlock`` while a live run holds ``results_dir``: refuse (it would remove
    that run's Snakemake lock and let a second run delete its files)."""
    path = lock_path(results_dir)
    if not path.is_file() or os.path.realpath(results_dir) in _held:
        return
    f, other = _open_locked(path)
    if f is not None:
        f.close()  # nobody holds it: unlocking is safe
        return
    if other is not None:
        err = _busy(path, other, "refusing --unlock")
        other.close()
        raise err


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())
