"""Entry points of the Snakemake rules (``workflow/scripts/audio2exp_*.py`` only call these)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..io import write_json_atomic

if TYPE_CHECKING:  # torch-free at import: the Snakefile imports this module when it is parsed
    from .data import Corpus

log = logging.getLogger(__name__)


def resolve_encoders(config: dict) -> dict[str, str]:
    """{'v','e','gamma'} -> {encoder} names: audio2exp.features, or (null) the roles of the
    active features profile (emohead_core.features.role_encoders)."""
    enc = (config.get("audio2exp") or {}).get("features")
    if enc:
        return dict(enc)
    from ..features import role_encoders

    return role_encoders(config)


def encoders_of(section: dict) -> dict[str, str]:
    enc = dict(section.get("features") or {})
    missing = [k for k in ("v", "e", "gamma") if not enc.get(k)]
    if missing:
        from ..errors import EmoheadInputError

        raise EmoheadInputError(
            f"audio2exp.features lacks encoder names for {missing}",
            fix="set audio2exp.features.{v,e,gamma} to the features stage's {encoder} names",
        )
    return enc


def corpus_for(results_dir: str | Path, dataset: str, section: dict) -> Corpus:
    from .data import load_corpus

    return load_corpus(
        results_dir,
        dataset,
        encoders_of(section),
        hyperplane_actor=section.get("hyperplane_actor"),
        split=section.get("split"),
    )


def train_variant(
    results_dir,
    dataset: str,
    section: dict,
    variant: str,
    out_dir,
    *,
    threads: int = 1,
    progress: bool = True,
) -> Path:
    import torch

    from .config import make_configs
    from .train import train

    torch.set_num_threads(max(1, int(threads)))
    corpus = corpus_for(results_dir, dataset, section)
    mcfg, tcfg = make_configs(section, variant, corpus.dims(), m=corpus.m)
    n_train = sum(c.in_split("train") for c in corpus.clips)
    n_test = sum(c.in_split("test") for c in corpus.clips)
    log.info(
        "dataset %s variant %s: %d clips (%d with train frames, %d with test frames; split %s), dims %s",
        dataset,
        variant,
        len(corpus.clips),
        n_train,
        n_test,
        corpus.meta.get("split"),
        corpus.dims(),
    )
    log.info("model %s", mcfg.to_dict())
    log.info("train %s", tcfg)
    return train(corpus, mcfg, tcfg, out_dir, progress=progress)


def evaluate_variant(
    results_dir, dataset: str, section: dict, variant: str, model_path, out_json, *, threads: int = 1
) -> dict:
    import torch

    from .baselines import baseline_rmse
    from .train import evaluate

    torch.set_num_threads(max(1, int(threads)))
    corpus = corpus_for(results_dir, dataset, section)
    ev = evaluate(corpus, model_path, split="test")
    ev_train = evaluate(corpus, model_path, split="train")
    ev.update(
        {
            "dataset": dataset,
            "variant": variant,
            "rmse_train_alpha_hat": ev_train["rmse_alpha_hat"],
            "rmse_train_constant_mean": ev_train["rmse_constant_mean"],
            **baseline_rmse(corpus, split="test"),
        }
    )
    write_json_atomic(out_json, ev)
    log.info(
        "test RMSE alpha_hat %.4f (alpha_tilde %.4f) vs constant mean %.4f over %d frames; baselines %s",
        ev["rmse_alpha_hat"],
        ev["rmse_alpha_tilde"],
        ev["rmse_constant_mean"],
        ev["n_frames"],
        {k: v["rmse"] for k, v in ev["baselines"].items()},
    )
    return ev


def write_input_manifest(inputs: dict[str, list[str]], target: str | Path) -> None:
    """The manifest of rule audio2exp_inputs: every input file per role with its size and
    mtime (ns), so its content changes whenever one of them is rewritten (Snakemake's mtime
    trigger then reruns the jobs that read it)."""
    from ..errors import EmoheadInputError

    files = {}
    for role, paths in inputs.items():
        rows = []
        for p in paths:
            try:
                st = Path(p).stat()
            except FileNotFoundError:
                raise EmoheadInputError(
                    "audio2exp input file is missing", path=p, fix="rerun the features/expression stage"
                ) from None
            rows.append([str(p), st.st_size, st.st_mtime_ns])
        files[role] = rows
    write_json_atomic(target, {"files": files})
