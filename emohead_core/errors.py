"""Errors raised for bad user input, and for outputs that cannot be written.

Both always name the offending file (or config key) and the fix. The two are kept apart: a
disk that filled up or a read-only results directory is never reported as bad input, so a user
is never told to exclude good clips.
"""

from __future__ import annotations

from pathlib import Path


def _message(what: str, path, fix: str | None) -> str:
    parts = []
    if path is not None:
        parts.append(f"{path}: ")
    parts.append(what)
    if fix:
        parts.append(f" Fix: {fix}")
    return "".join(parts)


class EmoheadInputError(ValueError):
    """Bad input data or configuration.

    The message says which file (or config key) is wrong, what was expected, and how to fix it.
    """

    def __init__(self, what: str, *, path: str | Path | None = None, fix: str | None = None):
        super().__init__(_message(what, path, fix))
        self.path = None if path is None else str(path)
        self.fix = fix


class AssetError(EmoheadInputError):
    """An external asset is missing, unreachable or fails its checksum."""


class EmoheadOutputError(RuntimeError):
    """An output could not be written (disk full, quota, read-only or not writable).

    ``reason`` is one of :data:`emohead_core.io.OUTPUT_FAULTS`; ``path`` the file or directory
    that could not be written. Never raised for a problem of the input.
    """

    def __init__(self, what: str, *, path: str | Path, fix: str, reason: str = "write"):
        super().__init__(_message(what, path, fix))
        self.path = str(path)
        self.fix = fix
        self.reason = reason
