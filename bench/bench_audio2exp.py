"""Training speed of the audio-expression module on this CPU at the paper's dimensions.

Inputs 768 (HuBERT) / 768 (emotion2vec) / 4096 (LLaMA2-7B) per frame, d = d_h = 512, n = 5,
FFN (512, 256, 256, 128, k), Adam, eq. (13) loss with rho = 0.5, batch 64 frames (our choice;
the paper gives none). Synthetic features (same shapes). Reports training iterations per second
of FusedAttn and, measured in the same run, of two baselines: the "w/o audio expression
alignment" transformer (Appendix D) and FusedAttn with d = d_h = 256.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_audio2exp.py [--iters 5] [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from emohead_core.audio2exp.data import FrameTable
from emohead_core.audio2exp.model import ModelConfig
from emohead_core.audio2exp.synthetic import synthetic_corpus
from emohead_core.audio2exp.train import contrastive_loss, init_model
from emohead_core.emotion_edit import refine


class Runner:
    """One model + optimiser; ``time(k)`` runs k training iterations and returns seconds."""

    def __init__(self, corpus, mcfg: ModelConfig, batch: int):
        train_ids = [i for i, c in enumerate(corpus.clips) if c.split == "train"]
        self.table = FrameTable(corpus, train_ids, mcfg.context)
        self.model = init_model(corpus, mcfg, train_ids, seed=0)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=5e-4)
        self.gen = torch.Generator().manual_seed(0)
        self.batch = batch

    def step(self):
        b = self.table.sample_batch(self.batch, self.gen)
        a, tau = self.model(b["v"], b["e"], b["gamma"])
        loss, _, _ = contrastive_loss(
            refine(a, tau, b["w_z"]), b["alpha"], b["own"], b["alpha_bar"], b["has_partner"], 0.5
        )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def time(self, k: int) -> float:
        t = time.perf_counter()
        for _ in range(k):
            self.step()
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=5, help="iterations per timing round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dims = (768, 768, 4096)
    corpus = synthetic_corpus(dims=dims, frames=100, actors=("A", "B"))
    base = dict(dim_v=dims[0], dim_e=dims[1], dim_gamma=dims[2], n=5)
    configs = {
        "FusedAttn d=d_h=512 (paper)": ModelConfig(**base, d=512, d_h=512),
        "w/o alignment transformer d=512": ModelConfig(**base, d=512, d_h=512, architecture="transformer"),
        "FusedAttn d=d_h=256": ModelConfig(**base, d=256, d_h=256),
    }
    print(
        f"# audio2exp training speed, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{args.threads} threads, batch {args.batch} frames, inputs {dims}, n=5"
    )
    runners = {name: Runner(corpus, mcfg, args.batch) for name, mcfg in configs.items()}
    for r in runners.values():  # warm-up
        r.time(2)
    # interleaved rounds (the machine is shared: load changes hit every model alike); median
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, r in runners.items():
            times[name].append(r.time(args.iters) / args.iters)
    res = {name: 1.0 / statistics.median(t) for name, t in times.items()}
    ref = res["FusedAttn d=d_h=512 (paper)"]
    print(f"{'model':36s} {'it/s':>8s} {'frames/s':>10s} {'ratio vs paper':>15s}")
    for name, r in res.items():
        print(f"{name:36s} {r:8.2f} {r * args.batch:10.0f} {r / ref:15.2f}")
    print(f"# 20k iterations (Appendix C) at the paper setting: {20000 / ref / 3600:.2f} h on this CPU")


if __name__ == "__main__":
    main()
