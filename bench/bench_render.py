"""Render stage speed: training rays/s and render frames/s at the demo size on this machine,
with occupancy-grid skipping vs without (baseline, same run); at 512x512 the tinycudann hash grid
vs the PyTorch grid when CUDA and tinycudann are available (else the reason is printed).

    python bench/bench_render.py                       # synthetic subject, demo model size
    python bench/bench_render.py --prepared results/render/obama/prepared.npz \
        --model results/render/obama/model.pt          # the trained demo subject
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
REPO = Path(__file__).resolve().parent.parent


def demo_render_cfg() -> dict:
    return yaml.safe_load((REPO / "config" / "demo.yaml").read_text())["render"]


def timed(fn, n: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prepared", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from emohead_core.render.data import compose_background, load_prepared
    from emohead_core.render.train import Trainer

    rc = demo_render_cfg()
    if args.prepared:
        data = load_prepared(args.prepared)
    else:
        from test_render import synthetic_subject

        data = synthetic_subject(T=12, size=int(rc["resolution"]))
    tcfg = dict(rc["train"])
    tr = Trainer(data, rc["model"], tcfg, device="cpu")
    if args.model:
        s = torch.load(args.model, map_location="cpu", weights_only=False)
        tr.model.load_state_dict(s["model"])
        tr.occ.load_state_dict(s["occ"])
    else:
        tr.fit(steps=120, progress=False)  # learn some empty space first
    H, W = data["frames"].shape[1:3]
    print(f"device: cpu ({torch.get_num_threads()} threads), {H}x{W}, rays/step {tcfg['rays']}, "
          f"samples/ray {tcfg['n_samples']}, occupied cells {tr.occ.fraction():.1%}")

    occ_saved = tr.occ.occupied.clone()

    def step():
        tr.train_step()

    t_occ = timed(step, args.steps)
    tr.occ.occupied.fill_(True)
    tr.cfg["occupancy"]["warmup"] = 10**9  # keep it full during the baseline
    t_full = timed(step, args.steps)
    tr.occ.occupied.copy_(occ_saved)
    rays = int(tcfg["rays"])
    print(f"train  rays/s: occupancy {rays / t_occ:9.0f} | no skipping (baseline) {rays / t_full:9.0f} "
          f"| ratio {t_full / t_occ:.2f}x")

    i = int(data["val_idx"][0])
    behind = compose_background(data["frames"][i], data["bg"], data["head_mask"][i])
    r = tr.renderer
    f_occ = timed(lambda: r.render_frame(data["poses"][i], data["alpha"][i], behind), args.frames)
    f_full = timed(lambda: r.render_frame(data["poses"][i], data["alpha"][i], behind, use_occupancy=False),
                   args.frames)
    print(f"render frames/s: occupancy {1 / f_occ:7.2f} | no skipping (baseline) {1 / f_full:7.2f} "
          f"| ratio {f_full / f_occ:.2f}x")

    from emohead_core.render.hashgrid import HashGridConfig, TorchHashGrid, copy_table, make_hash_grid, tcnn_available

    if not torch.cuda.is_available():
        print("512x512 tcnn vs PyTorch grid: skipped (no CUDA device on this machine)")
        return
    if not tcnn_available():
        print("512x512 tcnn vs PyTorch grid: skipped (tinycudann not importable)")
        return
    cfg = HashGridConfig.from_dict(dict(n_levels=16, log2_hashmap_size=19, base_resolution=16, finest_resolution=2048))
    pg = TorchHashGrid(cfg).cuda()
    tg = make_hash_grid(cfg, "tcnn").cuda()
    copy_table(pg, tg)
    x = torch.rand(512 * 512 * 8, 3, device="cuda")  # one 512x512 frame, 8 occupied samples per ray

    def run(g):
        def f():
            g(x).sum().backward()
            torch.cuda.synchronize()
        return f

    tp, tt = timed(run(pg), 5), timed(run(tg), 5)
    print(f"512x512 grid fwd+bwd on {torch.cuda.get_device_name()}: PyTorch {tp * 1e3:.1f} ms | tcnn {tt * 1e3:.1f} ms "
          f"| ratio {tp / tt:.2f}x")


if __name__ == "__main__":
    main()
