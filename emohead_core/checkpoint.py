"""Loading checkpoints without running code from them.

``torch.load`` unpickles, and a pickle can run arbitrary code. Every checkpoint this project
writes holds only tensors and plain containers (dict, list, tuple, str, int, float, bool, None),
so it is loaded with ``weights_only=True``: PyTorch's restricted unpickler refuses anything else.
A file that needs more (e.g. one written by other software, or tampered with) is refused with a
message naming it, never executed.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

from .errors import EmoheadInputError


def load_checkpoint(path: str | os.PathLike, *, map_location="cpu", what: str = "checkpoint", fix: str = ""):
    """``torch.load(path, weights_only=True)`` with errors that name the file and the fix."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise EmoheadInputError(f"{what} not found.", path=path, fix=fix or "train it first (see README).")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise EmoheadInputError(
            f"refusing to load this {what}: it holds objects other than tensors and plain containers, "
            f"which could run code when loaded ({str(e).splitlines()[0][:200]}).",
            path=path,
            fix="load only checkpoints written by this pipeline; retrain, or re-save the weights as a "
            "plain state dict.",
        ) from e
    except (RuntimeError, EOFError) as e:  # (OSError, e.g. an unreadable disk, propagates as is)
        raise EmoheadInputError(
            f"cannot read this {what} ({str(e).splitlines()[0][:200]}).",
            path=path,
            fix="the file is truncated or not a PyTorch checkpoint; retrain it.",
        ) from e


@contextlib.contextmanager
def building_from(path: str | os.PathLike, *, what: str = "checkpoint", fix: str = "") -> Iterator[None]:
    """Errors while a model is built from a loaded checkpoint (an entry missing, weights whose
    sizes do not fit the model settings stored beside them: a file of another version, edited,
    or of other software) become an :class:`EmoheadInputError` naming the file, not a
    ``size mismatch`` traceback."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
        if isinstance(e, EmoheadInputError):
            raise
        detail = " ".join(str(e).split())[:300]
        kind = "weights that do not fit its model settings" if "size mismatch" in detail else "a wrong layout"
        raise EmoheadInputError(
            f"this {what} has {kind} ({type(e).__name__}: {detail}).",
            path=path,
            fix=fix
            or "use a file written by this pipeline's training rule (retrain it with the current "
            "settings); do not mix model files of other settings or versions.",
        ) from None
