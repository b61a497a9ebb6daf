"""Errors raised for bad user input: always name the offending file and the fix."""

from __future__ import annotations

from pathlib import Path


class EmoheadInputError(ValueError):
    """Bad input data or configuration.

    The message says which file (or config key) is wrong, what was expected, and how to fix it.
    """

    def __init__(self, what: str, *, path: str | Path | None = None, fix: str | None = None):
        parts = []
        if path is not None:
            parts.append(f"{path}: ")
        parts.append(what)
        if fix:
            parts.append(f" Fix: {fix}")
        super().__init__("".join(parts))
        self.path = None if path is None else str(path)
        self.fix = fix


class AssetError(EmoheadInputError):
    """An external asset is missing, unreachable or fails its checksum."""
