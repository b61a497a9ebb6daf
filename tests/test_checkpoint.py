"""Checkpoints never run code when loaded (torch.load weights_only=True): a model.pt that carries a
pickled payload is refused with a message naming the file, and the payload does not run."""

from __future__ import annotations

import os

import pytest
import torch

from emohead_core.errors import EmoheadInputError


class _Payload:
    """Unpickling this calls os.system: what a hostile model.pt would carry."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _hostile(path, marker, extra=None):
    torch.save({"model": {"w": torch.zeros(2)}, "payload": _Payload(marker), **(extra or {})}, path)


def test_renderer_model_and_training_checkpoint_refuse_code(tmp_path):
    from emohead_core.render.train import load_renderer

    marker = tmp_path / "pwned"
    _hostile(tmp_path / "model.pt", marker)
    with pytest.raises(EmoheadInputError, match="refusing to load") as e:
        load_renderer(tmp_path / "model.pt", "cpu")
    assert "model.pt" in str(e.value) and "Fix:" in str(e.value)
    assert not marker.exists()


def test_audio2exp_model_refuses_code(tmp_path):
    from emohead_core.audio2exp.train import load_model

    marker = tmp_path / "pwned"
    _hostile(tmp_path / "model.pt", marker, {"state_dict": {}, "model_config": {}})
    with pytest.raises(EmoheadInputError, match="refusing to load"):
        load_model(tmp_path)
    assert not marker.exists()


def test_truncated_checkpoint_is_named(tmp_path):
    from emohead_core.checkpoint import load_checkpoint

    torch.save({"w": torch.zeros(1000)}, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(EmoheadInputError, match="cannot read") as e:
        load_checkpoint(tmp_path / "cut.pt", what="renderer model")
    assert "cut.pt" in str(e.value)
    assert torch.equal(load_checkpoint(tmp_path / "ok.pt")["w"], torch.zeros(1000))
