"""The ``audio2exp:`` config section -> model / training configs for one ``{variant}``.

A variant is a mapping of overrides of ``model`` and ``train`` keys (Appendix D / Tables IV, VI
ablations), e.g. ``{architecture: transformer}``, ``{refinement: false}``, ``{d: 256, d_h: 256}``,
``{n: 8}``, ``{rho: 0.2}``.
"""

from __future__ import annotations

from dataclasses import fields

from ..errors import EmoheadInputError
from .model import ModelConfig
from .train import TrainConfig

MODEL_KEYS = {f.name for f in fields(ModelConfig)} - {"dim_v", "dim_e", "dim_gamma", "m", "extra"}
TRAIN_KEYS = {f.name for f in fields(TrainConfig)}


def variant_overrides(section: dict, variant: str) -> dict:
    variants = section.get("variants") or {"main": {}}
    if variant not in variants:
        raise EmoheadInputError(
            f"unknown audio2exp variant {variant!r}; known: {sorted(variants)}",
            fix="add it under audio2exp.variants in the config",
        )
    return dict(variants[variant] or {})


def make_configs(
    section: dict, variant: str, dims: dict[str, int], m: int = 10
) -> tuple[ModelConfig, TrainConfig]:
    """dims: raw feature dims {'v': D_v, 'e': D_e, 'gamma': D_gamma} read from the feature files."""
    model = dict(section.get("model") or {})
    train = dict(section.get("train") or {})
    for k, v in variant_overrides(section, variant).items():
        if k in MODEL_KEYS:
            model[k] = v
        elif k in TRAIN_KEYS:
            train[k] = v
        else:
            raise EmoheadInputError(
                f"audio2exp variant {variant!r}: unknown key {k!r}",
                fix=f"use one of {sorted(MODEL_KEYS | TRAIN_KEYS)}",
            )
    unknown = set(model) - MODEL_KEYS
    if unknown:
        raise EmoheadInputError(f"audio2exp.model: unknown keys {sorted(unknown)}")
    unknown = set(train) - TRAIN_KEYS
    if unknown:
        raise EmoheadInputError(f"audio2exp.train: unknown keys {sorted(unknown)}")
    if "ffn" in model:
        model["ffn"] = tuple(model["ffn"])
    mcfg = ModelConfig(dim_v=dims["v"], dim_e=dims["e"], dim_gamma=dims["gamma"], m=m, **model)
    return mcfg, TrainConfig(**train)
