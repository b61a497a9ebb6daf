"""Training (eq. 13 contrastive regression loss, Adam; Appendix C) with exact resume, and the
test-split evaluation (Table VI RMSE) against a constant-mean predictor."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import building_from, load_checkpoint
from ..emotion_edit import refine
from ..io import atomic_path
from ..loss_curves import write_loss_curves
from .data import Corpus, FrameTable, alpha_mean, feature_stats
from .model import ModelConfig, build_model

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    iterations: int = 20000  # Appendix C
    lr: float = 5e-4  # Appendix C
    batch_size: int = 64
    rho: float = 0.5  # eq. (13), Table VI
    weight_decay: float = 0.0  # not in the paper (0); L2 penalty of Adam for tiny data sets
    seed: int = 0
    ckpt_every: int = 1000
    keep_ckpts: int = 2
    log_every: int = 10


def contrastive_loss(alpha_hat, alpha, own, alpha_bar, has_partner, rho: float):
    """eq. (13): ||alpha^A - alpha_hat^A||_2 + rho ||alpha^Abar - alpha_hat^A||_2 per frame, mean
    over the batch. A term is dropped where its target does not exist (``own``: A's frame has a
    detected face; ``has_partner``: another individual with the same tag (and sentence) exists).
    Returns (loss, own-term mean, partner-term mean)."""
    l_own = torch.linalg.vector_norm(alpha - alpha_hat, dim=-1) * own.to(alpha_hat.dtype)
    l_bar = torch.linalg.vector_norm(alpha_bar - alpha_hat, dim=-1) * has_partner.to(alpha_hat.dtype)
    return (l_own + rho * l_bar).mean(), l_own.mean(), l_bar.mean()


def split_ids(corpus: Corpus, split: str) -> list[int]:
    """Clips with at least one frame in ``split`` (all of them, or a time span: data.split_corpus)."""
    return [i for i, c in enumerate(corpus.clips) if c.in_split(split)]


def _fingerprint(corpus: Corpus, mcfg: ModelConfig, tcfg: TrainConfig) -> str:
    """What a checkpoint must share with this run to be resumed: model, loss and optimiser
    settings, the clip list and the content of every clip's training data (features, alpha
    targets and mask, eq. 9 direction w_z), so a rerun after the hyperplanes, features or
    expressions changed trains afresh instead of continuing a model of other inputs."""
    t = asdict(tcfg)
    for k in ("iterations", "ckpt_every", "keep_ckpts", "log_every"):
        t.pop(k)
    data = [
        (c.sample_id, c.split, c.T, c.has_alpha) + ((c.test_from,) if c.test_from is not None else ())
        for c in corpus.clips
    ]
    h = hashlib.sha256(json.dumps([mcfg.to_dict(), t, data], sort_keys=True, default=str).encode())
    for c in corpus.clips:
        for k in sorted(c.feats):
            h.update(k.encode())
            h.update(np.ascontiguousarray(c.feats[k]).tobytes())
        for a in (c.alpha, c.alpha_mask, c.w_z):
            h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def init_model(corpus: Corpus, mcfg: ModelConfig, train_ids: list[int], seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(mcfg)
    stats = feature_stats(corpus, train_ids, "train")  # train frames only
    for k, norm in (("v", model.norm_v), ("e", model.norm_e), ("gamma", model.norm_gamma)):
        norm.set_stats(torch.from_numpy(stats[k][0]), torch.from_numpy(stats[k][1]))
    # Start alpha_tilde at the training mean (bias of FFN_1's output layer); tau starts near 0.
    with torch.no_grad():
        model.FFN_1[-1].bias.copy_(torch.from_numpy(alpha_mean(corpus, train_ids, "train")))
    return model


def _ckpts(ckpt_dir: Path) -> list[Path]:
    return sorted(ckpt_dir.glob("iter_*.pt"))


def _save_ckpt(ckpt_dir: Path, state: dict, keep: int) -> None:
    target = ckpt_dir / f"iter_{state['iteration']:07d}.pt"
    with atomic_path(target) as tmp:
        torch.save(state, tmp)
    for old in _ckpts(ckpt_dir)[:-keep]:
        old.unlink(missing_ok=True)


class Interrupt(Exception):
    """Raised by the ``stop_at`` hook (tests simulate a killed job with it)."""


def _train(
    corpus: Corpus,
    mcfg: ModelConfig,
    tcfg: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = True,
    stop_at: int | None = None,
    progress: bool = True,
    hyperplanes: dict[str, np.ndarray] | None = None,
) -> Path:
    """Train and write ``out_dir/model.pt``, ``loss.csv``, ``loss.png``; checkpoints in
    ``out_dir/ckpt/`` every ``ckpt_every`` iterations; an existing checkpoint with the same
    fingerprint (model, data, loss and optimiser settings) is resumed exactly (model, Adam
    state, RNG states, iteration, loss history). ``stop_at``: raise :class:`Interrupt` after
    that many iterations (tests)."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "ckpt"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    train_ids, table = _training_frames(corpus, mcfg)
    fp = _fingerprint(corpus, mcfg, tcfg)
    meta = model_meta(corpus, train_ids, hyperplanes)
    model = init_model(corpus, mcfg, train_ids, tcfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)
    gen = torch.Generator().manual_seed(tcfg.seed + 1)
    start, history = _resume(_ckpts(ckpt_dir) if resume else [], fp, tcfg, model, opt, gen)
    model.train()
    bar = tqdm(
        range(start, tcfg.iterations),
        initial=start,
        total=tcfg.iterations,
        disable=not progress,
        desc=f"audio2exp {mcfg.architecture} d={mcfg.d} n={mcfg.n}",
        mininterval=2.0,
    )
    for it in bar:
        loss, l_own, l_bar = _train_step(model, opt, table.sample_batch(tcfg.batch_size, gen), mcfg, tcfg)
        history.append((it + 1, loss.item(), l_own.item(), l_bar.item()))
        if (it + 1) % tcfg.log_every == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if (it + 1) % tcfg.ckpt_every == 0 or it + 1 == tcfg.iterations:
            _save_ckpt(
                ckpt_dir,
                {
                    "iteration": it + 1,
                    "fingerprint": fp,
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "generator": gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "history": history,
                    "model_config": mcfg.to_dict(),
                    "meta": meta,
                },
                tcfg.keep_ckpts,
            )
        if stop_at is not None and it + 1 >= stop_at:
            raise Interrupt(f"stopped at iteration {it + 1}")
    bar.close()
    model_path = out_dir / "model.pt"
    save_model(model, mcfg, model_path, meta=meta, extra={"train": asdict(tcfg), "fingerprint": fp})
    rows = [dict(zip(LOSS_COLUMNS, r)) for r in history]  # iteration, loss, own and cross-individual terms
    write_loss_curves(
        rows, LOSS_COLUMNS, out_dir / "loss.csv", out_dir / "loss.png", _draw_loss, figsize=(6, 3.5)
    )
    return model_path


def _training_frames(corpus: Corpus, mcfg: ModelConfig) -> tuple[list[int], FrameTable]:
    """The train clips and their frame table; fails when nothing can be trained on."""
    from ..errors import EmoheadInputError

    train_ids = split_ids(corpus, "train")
    if not train_ids:
        raise EmoheadInputError("no clip in the train split", fix="check the sample table's split column")
    table = FrameTable(corpus, train_ids, mcfg.context, split="train")
    if len(table.usable) == 0:
        raise EmoheadInputError("no training frame has an expression target (own or paired)")
    return train_ids, table


def _resume(existing: list[Path], fp: str, tcfg: TrainConfig, model, opt, gen) -> tuple[int, list]:
    """(iteration, loss history) of the newest checkpoint of this run (same fingerprint), its
    model, Adam, generator and torch RNG states restored; (0, []) when there is none, and a
    different run's checkpoints are removed."""
    if not existing:
        return 0, []
    st = load_checkpoint(existing[-1], what="audio2exp training checkpoint")
    if st.get("fingerprint") == fp and st["iteration"] <= tcfg.iterations:
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        gen.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
        return st["iteration"], list(st["history"])
    log.warning(
        "audio2exp checkpoint %s is from another run (settings or training data changed): "
        "training from scratch",
        existing[-1],
    )
    for p in existing:  # a different run's checkpoints: start fresh
        p.unlink(missing_ok=True)
    return 0, []


def _train_step(model, opt, b: dict, mcfg: ModelConfig, tcfg: TrainConfig):
    """One optimiser step on batch ``b``; returns (loss, own term, cross-individual term)."""
    alpha_tilde, tau = model(b["v"], b["e"], b["gamma"])
    alpha_hat = refine(alpha_tilde, tau, b["w_z"]) if mcfg.refinement else alpha_tilde  # eq. (14)
    loss, l_own, l_bar = contrastive_loss(
        alpha_hat, b["alpha"], b["own"], b["alpha_bar"], b["has_partner"], tcfg.rho
    )
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss, l_own, l_bar


@functools.wraps(_train)
def train(*args, **kwargs) -> Path:
    # deterministic algorithms for the run; the process-wide setting is restored afterwards
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _train(*args, **kwargs)
    finally:
        torch.use_deterministic_algorithms(prev)


def model_meta(corpus: Corpus, train_ids, hyperplanes=None) -> dict:
    """What inference needs besides the weights: silence vectors, training alpha mean, the w_z
    per emotion seen in training (or given), encoder names."""
    if hyperplanes is None:
        hyperplanes = {}
        for c in corpus.clips:
            if c.w_z is not None and c.emotion not in hyperplanes:
                hyperplanes[c.emotion] = c.w_z
    return {
        "silence": {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in corpus.silence.items()},
        "alpha_mean": torch.from_numpy(alpha_mean(corpus, train_ids, "train")),  # mean of TRAIN targets
        "hyperplanes": {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in hyperplanes.items()},
        "encoders": dict(corpus.meta.get("encoders", {})),
        "dataset": corpus.meta.get("dataset"),
    }


def save_model(model, mcfg: ModelConfig, path: Path, *, meta: dict, extra=None) -> None:
    payload = {"model_config": mcfg.to_dict(), "state_dict": model.state_dict(), **meta, **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """A trained module from ``model.pt``, its directory, or a training checkpoint
    (``ckpt/iter_*.pt``). Returns (model in eval mode, payload with the inference metadata)."""
    path = Path(path)
    if path.is_dir():
        path = (
            path / "model.pt"
            if (path / "model.pt").is_file()
            else max(path.glob("ckpt/iter_*.pt"), default=path / "model.pt")
        )
    if not path.is_file():
        from ..errors import EmoheadInputError

        raise EmoheadInputError(
            "audio2exp model not found",
            path=path,
            fix="train it: snakemake results/<dataset>/audio2exp/<variant>/model.pt",
        )
    payload = load_checkpoint(path, what="audio2exp model")
    fix = "train it with the current settings: snakemake results/<dataset>/audio2exp/<variant>/model.pt"
    with building_from(path, what="audio2exp model", fix=fix):
        if "state_dict" not in payload:  # a checkpoint
            payload = {
                "model_config": payload["model_config"],
                "state_dict": payload["model"],
                **payload["meta"],
            }
        mcfg = ModelConfig.from_dict(payload["model_config"])
        model = build_model(mcfg)
        model.load_state_dict(payload["state_dict"])
        model.eval()
    return model, payload


LOSS_COLUMNS = ["iteration", "loss", "loss_own", "loss_partner"]


def _draw_loss(fig, rows: list[dict]) -> None:
    h = np.asarray([[r[c] for c in LOSS_COLUMNS] for r in rows], dtype=np.float64).reshape(-1, 4)
    ax = fig.subplots()
    if len(h):
        k = max(1, len(h) // 100)
        smooth = lambda x: np.convolve(x, np.ones(k) / k, mode="valid")  # noqa: E731
        xs = h[k - 1 :, 0]
        ax.plot(xs, smooth(h[:, 1]), label="L_reg^const (eq. 13)")
        ax.plot(xs, smooth(h[:, 2]), label="own term", alpha=0.7)
        ax.plot(xs, smooth(h[:, 3]), label="cross-individual term", alpha=0.7)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.legend()


@torch.no_grad()
def predict_clip_windows(model, v, e, g, w_z, refinement: bool, chunk: int = 4096):
    outs = []
    for s in range(0, v.shape[0], chunk):
        a, t = model(v[s : s + chunk], e[s : s + chunk], g[s : s + chunk])
        outs.append((a, t))
    alpha_tilde = torch.cat([o[0] for o in outs])
    tau = torch.cat([o[1] for o in outs])
    alpha_hat = refine(alpha_tilde, tau, w_z) if refinement else alpha_tilde
    return alpha_hat, alpha_tilde, tau


def evaluate(corpus: Corpus, model_path: str | Path, split: str = "test") -> dict:
    """RMSE of alpha_hat (and alpha_tilde) vs 3DDFA alpha over the detected frames of the
    split (whole clips, or each clip's time span in within-clip mode) of the clips with video,
    and the RMSE of the constant training-mean predictor (mean of the TRAIN frames' targets,
    stored in the model at training time)."""
    model, payload = load_model(model_path)
    mcfg = ModelConfig.from_dict(payload["model_config"])
    ids = [i for i in split_ids(corpus, split) if corpus.clips[i].target_mask(split).any()]
    if not ids:
        from ..errors import EmoheadInputError

        raise EmoheadInputError(f"no {split} clip with expression targets to evaluate on")
    table = FrameTable(corpus, ids, mcfg.context, split=split)  # own: targets of the split's frames
    v, e, g = table.windows(torch.arange(table.n_frames))
    alpha_hat, alpha_tilde, tau = predict_clip_windows(model, v, e, g, table.w_z, mcfg.refinement)
    mask = table.own
    target = table.alpha[mask]
    mean = payload["alpha_mean"]

    def rmse(pred):
        return float(torch.sqrt(torch.mean((pred - target) ** 2)))

    per_clip = {}
    for c in ids:
        sel = torch.from_numpy(table.clip_of == c) & mask
        per_clip[corpus.clips[c].sample_id] = float(
            torch.sqrt(torch.mean((alpha_hat[sel] - table.alpha[sel]) ** 2))
        )
    return {
        "split": split,
        "split_mode": dict(corpus.meta.get("split") or {"mode": "samples"}),
        "n_clips": len(ids),
        "n_frames": int(mask.sum()),
        "rmse_alpha_hat": rmse(alpha_hat[mask]),
        "rmse_alpha_tilde": rmse(alpha_tilde[mask]),
        "rmse_constant_mean": rmse(mean.expand_as(target)),
        "tau_mean": float(tau[mask].mean()),
        "tau_std": float(tau[mask].std()) if int(mask.sum()) > 1 else 0.0,
        "per_clip_rmse_alpha_hat": per_clip,
        "model_config": payload["model_config"],
        "train_config": payload.get("train", {}),
    }
