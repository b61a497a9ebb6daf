"""The checks of bench/gpu_check.sh, one row each, printed as one table (see that script).

Rows: device; ``pytest -m gpu``; onnxruntime CUDA vs CPU provider on FaceBoxes and the 3DDFA
regressor (same inputs); tinycudann vs PyTorch hash grid (outputs within the float32 bound of
``parity_tolerance``); bench/bench_render.py's CUDA section (training iterations/s, 512x512
render frames/s, both grid backends). A row is PASS, FAIL or SKIP (with the reason); the exit
status is 1 when a row failed. Without CUDA it stops with status 2 unless ``--allow-cpu`` (a dry
run: every GPU row is skipped with its reason).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ORT_TOLERANCE = 1e-3  # relative to each output's largest magnitude (TF32 convolutions on CUDA)


class Table:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, check: str, status: str, result: str = "", detail: str = "", seconds: float = 0.0):
        self.rows.append(
            dict(check=check, status=status, result=result, detail=detail, seconds=round(seconds, 1))
        )
        print(f"[{status}] {check}: {result} {detail}".rstrip(), flush=True)

    def markdown(self) -> str:
        lines = ["| check | status | result | detail | s |", "| --- | --- | --- | --- | --- |"]
        lines += [
            "| " + " | ".join(str(r[k]) for k in ("check", "status", "result", "detail", "seconds")) + " |"
            for r in self.rows
        ]
        return "\n".join(lines)


def timed(table: Table, check: str, fn) -> None:
    """Run ``fn() -> (status, result, detail)``; an exception is a FAIL row with its message."""
    t0 = time.perf_counter()
    try:
        status, result, detail = fn()
    except Exception as e:  # one failed check must not hide the others
        status, result, detail = "FAIL", type(e).__name__, str(e).splitlines()[0][:200] if str(e) else ""
    table.add(check, status, result, detail, time.perf_counter() - t0)


def device_row():
    import torch

    from emohead_core.render.hashgrid import tcnn_available

    if not torch.cuda.is_available():
        return "SKIP", "no CUDA device", f"torch {torch.__version__}"
    try:
        import onnxruntime as ort

        prov = ",".join(p.replace("ExecutionProvider", "") for p in ort.get_available_providers())
        ort_s = f"onnxruntime {ort.__version__} [{prov}]"
    except ImportError:
        ort_s = "no onnxruntime"
    tcnn = "yes" if tcnn_available() else "no"
    return (
        "PASS",
        torch.cuda.get_device_name(),
        f"torch {torch.__version__} CUDA {torch.version.cuda}; tinycudann {tcnn}; {ort_s}",
    )


def pytest_row(timeout: int):
    files = sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "tests").glob("test_*.py")
        if "pytest.mark.gpu" in p.read_text()
    )
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-rs", *files]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    summary = next(
        (ln for ln in reversed(lines) if re.search(r"\d+ (passed|failed|skipped|error)", ln)), "no summary"
    )
    summary = summary.strip("= ")
    ok = p.returncode == 0
    if ok and "passed" not in summary:
        return "SKIP", summary, "; ".join(ln[:120] for ln in lines if ln.startswith("SKIPPED"))[:300]
    detail = "" if ok else "; ".join(ln[:160] for ln in lines if ln.startswith(("FAILED", "ERROR")))[:400]
    return ("PASS" if ok else "FAIL"), summary, f"{len(files)} files" + (f"; {detail}" if detail else "")


def _cuda_provider():
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None, (
            f"onnxruntime {ort.__version__} has no CUDAExecutionProvider "
            "(install onnxruntime-gpu: gpu_check.sh --ort-wheel)"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"], ""


def _images(assets: Path, n: int = 8) -> np.ndarray:
    """Real frames (uint8 RGB) of the carried prepared subject, else a deterministic pattern."""
    p = assets / "prepared.npz"
    if p.is_file():
        with np.load(p) as z:
            f = z["frames"]
            return f[np.linspace(0, len(f) - 1, n).astype(int)]
    yy, xx = np.mgrid[0:256, 0:256]
    return np.stack(
        [
            np.stack([(xx * 3 + k * 17) % 256, (yy * 5) % 256, (xx ^ yy) % 256], -1).astype(np.uint8)
            for k in range(n)
        ]
    )


def _compare(a: list, b: list) -> float:
    """Largest |a - b| over outputs, relative to each output's largest magnitude."""
    return max(float(np.abs(x - y).max() / max(np.abs(y).max(), 1e-12)) for x, y in zip(a, b))


def _ort_inputs(assets: Path, name: str):
    """(model path, CUDA-first providers, None) or (None, None, SKIP row)."""
    model = assets / name
    if not model.is_file():
        return None, None, ("SKIP", f"no {name}", f"in {assets} (gpu_check.sh --stage)")
    prov, why = _cuda_provider()
    if prov is None:
        return None, None, ("SKIP", "CPU provider only", why)
    return model, prov, None


def ort_faceboxes_row(assets: Path):
    model, prov, skip = _ort_inputs(assets, "faceboxes.onnx")
    if skip:
        return skip
    from emohead_core.preprocess.facedetect import FaceDetector, preprocess_bgr

    imgs = [np.ascontiguousarray(f[..., ::-1]) for f in _images(assets)]  # BGR like cv2
    cuda, cpu = FaceDetector(model, prov), FaceDetector(model, ["CPUExecutionProvider"])
    if "CUDAExecutionProvider" not in cuda.providers:
        return "FAIL", "CUDA provider not used", ",".join(cuda.providers)
    worst = max(
        _compare(cuda.session.run(None, {cuda.input_name: x}), cpu.session.run(None, {cpu.input_name: x}))
        for x in (preprocess_bgr(im) for im in imgs)
    )
    same = sum(len(cuda.detect(im)) == len(cpu.detect(im)) for im in imgs)
    ok = worst <= ORT_TOLERANCE and same == len(imgs)
    return (
        ("PASS" if ok else "FAIL"),
        f"max rel diff {worst:.1e}",
        f"tolerance {ORT_TOLERANCE:g}; same detection count on {same}/{len(imgs)} frames",
    )


def ort_3ddfa_row(assets: Path):
    model, prov, skip = _ort_inputs(assets, "3ddfa_mb05.onnx")
    if skip:
        return skip
    import cv2

    from emohead_core.expression.runtime import OnnxRegressor

    x = np.stack(
        [cv2.resize(f, (120, 120), interpolation=cv2.INTER_AREA)[..., ::-1] for f in _images(assets, 64)]
    )
    x = ((x.astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2)
    cuda, cpu = OnnxRegressor(model, prov), OnnxRegressor(model, ["CPUExecutionProvider"])
    if "CUDAExecutionProvider" not in cuda.session.get_providers():
        return "FAIL", "CUDA provider not used", ""
    worst = _compare([cuda(x)], [cpu(x)])
    return (
        ("PASS" if worst <= ORT_TOLERANCE else "FAIL"),
        f"max rel diff {worst:.1e}",
        f"64 frames, tolerance {ORT_TOLERANCE:g}",
    )


def grid_parity_row():
    import torch

    from emohead_core.render.hashgrid import (
        HashGridConfig,
        TorchHashGrid,
        copy_table,
        make_hash_grid,
        parity_tolerance,
        tcnn_available,
    )

    if not torch.cuda.is_available():
        return "SKIP", "no CUDA", ""
    if not tcnn_available():
        return "SKIP", "tinycudann not importable", "build it: gpu_check.sh --tcnn-src"
    cfg = HashGridConfig.from_dict(
        dict(n_levels=16, log2_hashmap_size=19, base_resolution=16, finest_resolution=2048)
    )
    pg = TorchHashGrid(cfg).cuda()
    with torch.no_grad():
        pg.params.copy_(torch.randn_like(pg.params))
    tg = make_hash_grid(cfg, "tcnn").cuda()
    copy_table(pg, tg)
    x = torch.rand(1_000_000, 3, device="cuda")
    with torch.no_grad():
        diff = (tg(x) - pg(x)).abs().cpu()
    tol = parity_tolerance(cfg, x, pg.params)
    ratio = float((diff / tol).max())
    exact = float((diff <= 1e-6 * pg.params.abs().max().item()).float().mean())
    return (
        ("PASS" if ratio <= 1.0 else "FAIL"),
        f"max |diff| / bound = {ratio:.3f}",
        f"max |diff| {float(diff.max()):.2e}; {exact:.1%} of outputs within 1e-6 x max|table|; 1M points",
    )


def bench_rows(table: Table, assets: Path, iters: int, timeout: int) -> None:
    import torch

    if not torch.cuda.is_available():
        table.add("bench_render CUDA", "SKIP", "no CUDA device")
        return
    cmd = [sys.executable, str(REPO / "bench" / "bench_render.py"), "--skip-cpu", "--cuda-iters", str(iters)]
    if (assets / "prepared.npz").is_file():
        cmd += ["--prepared", str(assets / "prepared.npz")]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    dt = time.perf_counter() - t0
    lines = p.stdout.splitlines()
    for ln in lines:
        m = re.match(r"(\w+): (\d+) training iterations \((\d+) rays\) ([\d.]+) s = ([\d.]+) it/s", ln)
        if m:
            table.add(
                f"{m[1]} training",
                "PASS",
                f"{m[5]} it/s",
                f"{m[2]} iterations of {m[3]} rays in {m[4]} s",
                dt,
            )
        m = re.match(r"(\w+): ([\d.]+) training it/s", ln)
        if m:
            table.add(f"{m[1]} training", "PASS", f"{m[2]} it/s", "200 iterations, same weights")
        m = re.match(r"(\w+): 512x512 render \(([^)]*)\): (.*)", ln)
        if m:
            table.add(f"{m[1]} 512x512 render", "PASS", m[3], m[2])
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or [""])[-1][:300]
        table.add("bench_render CUDA", "FAIL", f"exit {p.returncode}", last, dt)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--assets", default=".gpu", help="folder with faceboxes.onnx, 3ddfa_mb05.onnx, prepared.npz"
    )
    ap.add_argument("--out", default=None, help="folder for gpu_check.md / .json (default: print only)")
    ap.add_argument("--iters", type=int, default=2000, help="training iterations timed on CUDA")
    ap.add_argument("--allow-cpu", action="store_true", help="dry run without CUDA (GPU rows skipped)")
    ap.add_argument("--pre", action="append", default=[], help="an extra row 'check|status|result|detail|s'")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print(
            "gpu_check: no CUDA device (torch.cuda.is_available() is False); --allow-cpu for a dry run",
            file=sys.stderr,
        )
        return 2
    assets = Path(args.assets)
    table = Table()
    t_start = time.perf_counter()
    timed(table, "device", device_row)
    for pre in args.pre:
        c, s, r, d, sec = (pre.split("|") + ["", "", "", "", "0"])[:5]
        table.add(c, s, r, d, float(sec or 0))
    timed(table, "pytest -m gpu", lambda: pytest_row(240))
    timed(table, "onnxruntime CUDA vs CPU: FaceBoxes", lambda: ort_faceboxes_row(assets))
    timed(table, "onnxruntime CUDA vs CPU: 3DDFA", lambda: ort_3ddfa_row(assets))
    timed(table, "tcnn vs PyTorch grid", grid_parity_row)
    try:
        bench_rows(table, assets, args.iters, 300)
    except Exception as e:
        table.add("bench_render CUDA", "FAIL", type(e).__name__, str(e)[:200])
    table.add(
        "total",
        "FAIL" if any(r["status"] == "FAIL" for r in table.rows) else "PASS",
        f"{time.perf_counter() - t_start:.0f} s",
        "",
    )
    md = table.markdown()
    print("\n" + md)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.md").write_text(md + "\n")
        (out / "gpu_check.json").write_text(json.dumps(table.rows, indent=1))
    return 1 if any(r["status"] == "FAIL" for r in table.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
