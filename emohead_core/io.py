"""Atomic output writing: write to a temporary path beside the target, then rename.

A killed job therefore never leaves a partial file under the final name, and one failed
sample never corrupts another sample's outputs. The temp name carries the writing process's
identity (:func:`emohead_core.execution.writer_tag`), so the start hook removes only the temps
of writers that are gone.

A write that fails because of the output side - disk full, quota, read-only or not writable -
raises :class:`~emohead_core.errors.EmoheadOutputError` naming the file, the reason and the fix
(:func:`output_fault`), never an input error.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import EmoheadOutputError
from .execution import writer_tag

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
    return EmoheadOutputError(f"cannot write this output: {what}.", path=path,
                              fix=fault_fix(reason, path) + "; outputs already finished are kept.", reason=reason)


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


def output_fault(exc: BaseException, path: str | os.PathLike, *, tmp: str | os.PathLike | None = None,
                 check_filesystem: bool = True) -> EmoheadOutputError | None:
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
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.{writer_tag()}.", suffix=f".tmp{ext}", dir=target.parent)
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
    import shutil

    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{writer_tag()}.", suffix=".tmp", dir=target.parent))
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
