"""Logging helper for workflow scripts: send stdout, stderr and ``logging`` to the rule's log."""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def log_to(path: str | os.PathLike) -> Iterator[None]:
    """Redirect stdout/stderr and the root logger into ``path`` for the duration of the block.
    An exception is written to the log with its traceback and re-raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as f:
        handler = logging.StreamHandler(f)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        old_level = root.level
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                try:
                    yield
                except BaseException:
                    traceback.print_exc(file=f)
                    raise
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
