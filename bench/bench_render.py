"""Render stage speed and quality: the ray-marching renderer against the previous one, same run.

Baseline ("before"): the stratified sampler (every occupied lattice point of every ray, dense
compositing) with the reference hash grid (``TorchHashGrid.forward_reference``, plain autograd),
i.e. the renderer before the marcher. "after": ``sampler="march"`` with the vectorised grid, the
default. A middle row (stratified sampler, vectorised grid) separates the two gains.

    python bench/bench_render.py                                # synthetic subject, demo model
    python bench/bench_render.py --prepared results/render/obama/prepared.npz \\
        --model results/render/obama/model.pt                   # the trained demo subject
    python bench/bench_render.py --prepared results/render/obama/prepared.npz \\
        --psnr-budget 240                                       # + equal-time training, PSNR

Sections: (1) the hash grid alone (reference vs vectorised, same 80,000 points), render
frames/s and training rays/s at 128 and 256 on CPU (``--threads``);
(2) ``--psnr-budget S``: the previous and the new renderer each train a fresh model for S
seconds of their own steps (steps interleaved, so both see the same machine load; the linear
learning-rate schedule runs over each one's elapsed time), then the held-out frames are
rendered from their ground-truth alphas: head PSNR for both;
(3) on CUDA (skipped with the reason otherwise): 512x512 render frames/s and training
iterations/s with the tinycudann grid and the PyTorch grid (``--cuda-iters``), same weights.
Data come only through ``load_prepared`` / ``Trainer`` / ``Renderer``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# On a shared machine a spinning OpenMP thread waits for a descheduled partner at every
# parallel operation, and the timings measure the other jobs more than the code; passive waiting
# (set before torch loads; export OMP_WAIT_POLICY to override) keeps them about the code.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

BEFORE = ("before: stratified sampler, reference grid", "stratified", True)
MIDDLE = ("stratified sampler, vectorised grid", "stratified", False)
AFTER = ("after: ray marching, vectorised grid", "march", False)
CONFIGS = (BEFORE, MIDDLE, AFTER)


def render_cfg(profile: str) -> dict:
    return yaml.safe_load((REPO / "config" / f"{profile}.yaml").read_text())["render"]


# The prepared subject is a dict of arrays here and a SubjectData (several clips) after the
# multi-clip rework; the helpers below read either, so the benchmark runs on both.
def _is_dict(data) -> bool:
    return isinstance(data, dict)


def n_frames(data) -> int:
    return len(data["frames"]) if _is_dict(data) else data.n_frames


def frame_size(data) -> int:
    return int(data["frames"].shape[1]) if _is_dict(data) else int(data.H)


def test_frames(data) -> np.ndarray:
    return np.asarray(data["val_idx"] if _is_dict(data) else data.test_idx)


def frame_args(data, i):
    """pose, alpha, what lies behind the head, and the rays' region of frame i."""
    from emohead_core.render.data import compose_background
    from emohead_core.render.train import sampling_region

    if _is_dict(data):
        m = data["head_mask"][i]
        return (
            data["poses"][i],
            data["alpha"][i],
            compose_background(data["frames"][i], data["bg"], m),
            sampling_region(m),
        )
    return data.poses[i], data.alpha[i], data.behind(i), sampling_region(data.mask(i))


def upscale(data, size: int):
    """The prepared subject at ``size`` x ``size`` (frames, masks, backgrounds resized; cameras
    and landmarks rescaled), for timing at another resolution."""
    from emohead_core.render.camera import scale_pose

    H = frame_size(data)
    if size == H:
        return data
    k = size / H

    def rs(img, nearest=False):
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        return cv2.resize(img.astype(np.uint8), (size, size), interpolation=interp)

    get = (lambda name: data[name]) if _is_dict(data) else (lambda name: getattr(data, name))
    idx = np.arange(n_frames(data))
    frames = data["frames"] if _is_dict(data) else data.frames(idx)
    masks = data["head_mask"] if _is_dict(data) else data.masks(idx)
    lm = np.array(get("landmarks"), copy=True)
    lm[..., :2] = (lm[..., :2] + 0.5) * k - 0.5
    arrays = dict(
        frames=np.stack([rs(f) for f in frames]),
        head_mask=np.stack([rs(m, True) > 0 for m in masks]),
        poses=np.stack([scale_pose(p, k) for p in get("poses")]),
        landmarks=lm,
    )
    if _is_dict(data):
        return dict(data, bg=rs(data["bg"]), resolution=np.int64(size), **arrays)
    return type(data).from_arrays(
        bg=np.stack([rs(b) for b in data.bgs]),
        alpha=data.alpha,
        shape=data.shape,
        train_idx=data.train_idx,
        test_idx=data.test_idx,
        clip_of=data.clip_of,
        clips=data.clips,
        **arrays,
    )


def use(tr, config) -> None:
    """Switch a trainer's renderer to one of CONFIGS (same weights)."""
    _, sampler, reference = config
    tr.renderer.sampler = sampler
    if hasattr(tr.model.encoder, "reference"):
        tr.model.encoder.reference = reference


def make_trainer(data, model_cfg, train_cfg, device, weights=None):
    from emohead_core.render.train import Trainer

    tr = Trainer(data, model_cfg, dict(train_cfg), device=device)
    if weights is not None:
        tr.model.load_state_dict(weights["model"])
        tr.occ.load_state_dict(weights["occ"])
    return tr


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(fns: dict, repeats: int, device="cpu", reduce=np.median) -> dict:
    """Wall seconds per call of each function (median, or ``reduce``), calls interleaved (a, b,
    c, a, b, c...) so that load changes of a shared machine hit all of them alike."""
    for f in fns.values():
        f()  # warm-up
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            sync(device)
            t0 = time.perf_counter()
            f()
            sync(device)
            times[k].append(time.perf_counter() - t0)
    return {k: float(reduce(v)) for k, v in times.items()}


def bench_grid(rc, n_points: int, repeats: int) -> None:
    """The hash grid alone (demo configuration, random table): reference vs vectorised, the same
    points, forward and forward+backward."""
    from emohead_core.render.hashgrid import HashGridConfig, TorchHashGrid

    grid = TorchHashGrid(HashGridConfig.from_dict(rc["model"]["grid"]))
    with torch.no_grad():
        grid.params.normal_()
    x = torch.rand(n_points, 3, generator=torch.Generator().manual_seed(0))

    def run(reference: bool, backward: bool):
        def f():
            grid.reference = reference
            if backward:
                grid.params.grad = None
                grid(x).sum().backward()
            else:
                with torch.no_grad():
                    grid(x)

        return f

    for label, bwd in (("forward", False), ("forward+backward", True)):
        t = interleaved({"reference": run(True, bwd), "vectorised": run(False, bwd)}, repeats)
        print(
            f"hash grid {label}, {n_points} points: reference {t['reference'] * 1e3:.0f} ms | vectorised "
            f"{t['vectorised'] * 1e3:.0f} ms (x{t['reference'] / t['vectorised']:.2f})"
        )


def bench_cpu(data, rc, weights, sizes, repeats, steps) -> None:
    from emohead_core.render.hashgrid import TorchHashGrid

    print(f"\n== render frames/s and training rays/s (CPU, {torch.get_num_threads()} threads) ==")
    bench_grid(rc, 80000, repeats)
    for size in sizes:
        d = upscale(data, size)
        tr = make_trainer(d, rc["model"], rc["train"], "cpu", weights)
        assert isinstance(tr.model.encoder, TorchHashGrid)
        i = int(test_frames(d)[0])
        pose, alpha, behind, region = frame_args(d, i)
        r = tr.renderer

        def frame(cfg, reg):
            def f():
                use(tr, cfg)
                r.render_frame(pose, alpha, behind, region=reg)

            return f

        for label, reg in (("head region", region), ("full frame", None)):
            t = interleaved({c[0]: frame(c, reg) for c in CONFIGS}, repeats)
            base = t[BEFORE[0]]
            print(
                f"{size}x{size} render, {label}: "
                + " | ".join(f"{k} {1 / v:.2f} frames/s (x{base / v:.2f})" for k, v in t.items())
            )

        # training from the same weights, one trainer each; both start past the occupancy
        # warm-up at a multiple of its update interval, and `steps` (a multiple of it) includes
        # the same share of occupancy-grid updates
        rays = int(rc["train"]["rays"])
        oc = rc["train"]["occupancy"]
        every = int(oc["update_every"])
        trainers = {}
        for cfg in (BEFORE, AFTER):
            t = make_trainer(d, rc["model"], rc["train"], "cpu", weights)
            use(t, cfg)
            t.step = -(-int(oc["warmup"]) // every) * every
            trainers[cfg[0]] = t
        n = max(every, steps // every * every)
        t = interleaved({k: v.train_step for k, v in trainers.items()}, n, reduce=np.mean)
        base = t[BEFORE[0]]
        print(
            f"{size}x{size} training ({rays} rays/step, {n} steps each, interleaved): "
            + " | ".join(f"{k} {rays / v:.0f} rays/s (x{base / v:.2f})" for k, v in t.items())
        )


def bench_psnr(data, rc, budget: float) -> None:
    """Equal training time for the previous and the new renderer, then held-out head PSNR.

    Fresh models (same seed), steps interleaved; each learning rate decays linearly over its
    own elapsed training time (the demo's schedule, spread over the budget instead of a fixed
    iteration count), so both end their schedule when the budget is spent. L_photo only."""
    from tqdm import tqdm

    from emohead_core.render.train import Trainer

    print(
        f"\n== equal training time ({budget:.0f} s each, {torch.get_num_threads()} threads): held-out head PSNR =="
    )
    cfg = dict(rc["train"], val_every=0, ckpt_every=10**9)
    trainers, spent = {}, {}
    for c in (BEFORE, AFTER):
        tr = Trainer(data, rc["model"], dict(cfg), device="cpu")
        use(tr, c)
        fin = float(tr.cfg["lr_final_ratio"])
        tr.sched.lr_lambdas = [lambda _, k=c[0]: 1.0 - (1.0 - fin) * min(spent[k] / budget, 1.0)] * len(
            tr.opt.param_groups
        )
        trainers[c[0]], spent[c[0]] = tr, 0.0
    bar = tqdm(total=int(budget * len(trainers)), desc="equal-time training (s)", mininterval=10)
    while any(v < budget for v in spent.values()):
        for k, tr in trainers.items():
            if spent[k] < budget:
                t0 = time.perf_counter()
                tr.train_step()
                dt = time.perf_counter() - t0
                spent[k] += dt
                bar.update(int(spent[k]) - int(spent[k] - dt))
    bar.close()
    rows = {}
    for k, tr in trainers.items():
        tr.renderer.sampler = "march"  # the same images as the stratified sampler (tested), faster
        tr.model.encoder.reference = False
        rows[k] = (tr.step, spent[k], tr.validate())
    for k, (steps, sec, v) in rows.items():
        print(
            f"{k}: {steps} iterations in {sec:.0f} s ({steps / sec:.2f} it/s) -> held-out head PSNR "
            f"{v['val_psnr_head']:.2f} dB (whole frame {v['val_psnr_full']:.2f} dB; background only "
            f"{v['baseline_psnr_head']:.2f} dB; {v['n_frames']} frames)"
        )
    gain = rows[AFTER[0]][2]["val_psnr_head"] - rows[BEFORE[0]][2]["val_psnr_head"]
    print(f"head PSNR gain of the new renderer at equal training time: {gain:+.2f} dB")


def bench_cuda(data, profile: str, iters: int, repeats: int, device: str = "cuda", size: int = 512) -> None:
    from emohead_core.render.hashgrid import tcnn_available

    print(f"\n== {device.upper()}: {size}x{size} ==")
    if device == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA device on this machine")
        return
    backends = ["torch"] + (["tcnn"] if device == "cuda" and tcnn_available() else [])
    if len(backends) == 1:
        print("tinycudann not importable: PyTorch grid only")
    rc = render_cfg(profile)
    d = upscale(data, size)
    train_cfg = dict(rc["train"], iters=max(iters, 1), val_every=0, ckpt_every=10**9, refine_start=10**9)
    i = int(test_frames(d)[0])
    pose, alpha, behind, region = frame_args(d, i)
    weights = None
    for backend in backends:
        tr = make_trainer(d, dict(rc["model"], backend=backend), train_cfg, device)
        name = f"{type(tr.model.encoder).__name__}"
        if weights is None:  # the first backend trains; the second loads its weights
            tr.train_step()
            sync(device)
            t0 = time.perf_counter()
            for _ in range(iters - 1):
                tr.train_step()
            sync(device)
            dt = time.perf_counter() - t0
            print(
                f"{name}: {iters - 1} training iterations ({train_cfg['rays']} rays) {dt:.1f} s = "
                f"{(iters - 1) / dt:.1f} it/s; occupied cells {tr.occ.fraction():.1%}"
            )
            weights = dict(model=tr.model.state_dict(), occ=tr.occ.state_dict())
        else:
            tr.model.load_state_dict(weights["model"])
            tr.occ.load_state_dict(weights["occ"])
            for _ in range(20):
                tr.train_step()
            sync(device)
            t0 = time.perf_counter()
            n = min(200, iters)
            for _ in range(n):
                tr.train_step()
            sync(device)
            print(f"{name}: {n / (time.perf_counter() - t0):.1f} training it/s ({n} iterations)")
            tr.model.load_state_dict(weights["model"])
            tr.occ.load_state_dict(weights["occ"])
        r = tr.renderer
        t = interleaved(
            {
                "head region": lambda: r.render_frame(pose, alpha, behind, region=region),
                "full frame": lambda: r.render_frame(pose, alpha, behind),
            },
            repeats,
            device,
        )
        print(
            f"{name}: {size}x{size} render (march{', float16 MLPs' if device == 'cuda' else ''}): "
            + " | ".join(f"{k} {1 / v:.1f} frames/s" for k, v in t.items())
        )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepared", default=None, help="prepared.npz of a subject (default: synthetic)")
    ap.add_argument(
        "--model", default=None, help="trained model.pt of that subject (default: 120 quick steps)"
    )
    ap.add_argument("--sizes", type=int, nargs="*", default=[128, 256])
    ap.add_argument("--repeats", type=int, default=3, help="timed frames per configuration")
    ap.add_argument("--steps", type=int, default=16, help="timed training steps per configuration")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--psnr-budget", type=float, default=0.0, help="seconds of training each (0: skip)")
    ap.add_argument("--cuda-iters", type=int, default=2000, help="training iterations timed on CUDA")
    ap.add_argument("--cuda-profile", default="config", help="config/<name>.yaml render section for CUDA")
    ap.add_argument(
        "--cuda-device", default="cuda", help="run section 3 on this device ('cpu': a smoke test)"
    )
    ap.add_argument("--cuda-size", type=int, default=512, help="frame size of section 3")
    ap.add_argument("--skip-cpu", action="store_true", help="skip section 1 (frames/s, rays/s on CPU)")
    ap.add_argument(
        "--frames-per-step",
        type=int,
        default=None,
        help="training frames per step (default: config/demo.yaml's render.train.frames_per_step)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from emohead_core.render.data import load_prepared

    rc = render_cfg("demo")
    if args.frames_per_step:
        rc["train"] = dict(rc["train"], frames_per_step=args.frames_per_step)
    if args.prepared:
        data = load_prepared(args.prepared)
    else:
        from test_render import synthetic_subject

        data = synthetic_subject(T=24, size=int(rc["resolution"]))
    H = frame_size(data)
    print(
        f"subject: {args.prepared or 'synthetic'} ({n_frames(data)} frames {H}x{H}); demo model, "
        f"{rc['train']['n_samples']} samples/ray, {rc['train']['rays']} rays/step from "
        f"{rc['train'].get('frames_per_step', 1)} frame(s); "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}"
    )
    if not args.skip_cpu:
        if args.model:
            weights = torch.load(args.model, map_location="cpu", weights_only=True)
        else:
            tr = make_trainer(data, rc["model"], rc["train"], "cpu")
            tr.fit(steps=120, progress=False)  # learn some empty space first
            weights = dict(model=tr.model.state_dict(), occ=tr.occ.state_dict())
        print(f"occupied cells: {weights['occ']['occupied'].float().mean():.1%}")
        bench_cpu(data, rc, weights, args.sizes, args.repeats, args.steps)
    if args.psnr_budget > 0:
        bench_psnr(data, rc, args.psnr_budget)
    bench_cuda(data, args.cuda_profile, args.cuda_iters, args.repeats, args.cuda_device, args.cuda_size)


if __name__ == "__main__":
    main()
