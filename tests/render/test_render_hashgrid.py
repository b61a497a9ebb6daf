"""Hash grid: PyTorch backend vs a direct NumPy reference of tcnn's level scales, fma positions,
hashing and trilinear interpolation; the vectorised forward/backward vs the plain autograd
reference; one state-dict layout for both backends (a stand-in ``tinycudann`` module with tcnn's
parameter naming); the float32 parity bound; tcnn vs PyTorch on a GPU (marked gpu)."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from emohead_core.render import hashgrid as hg
from emohead_core.render.hashgrid import (
    HashGridConfig,
    TcnnHashGrid,
    TorchHashGrid,
    copy_table,
    grid_positions,
    level_layout,
    make_hash_grid,
    parity_tolerance,
)


def _fma32(a: float, b: float, c: float) -> np.float32:
    """float32 fma: the product of two float32 values is exact in float64, the sum too here."""
    return np.float32(float(a) * float(b) + float(c))


def _ref_layout(L, F, log2T, base, b):
    levels, off = [], 0
    l2 = np.float32(math.log2(float(np.float32(b))))  # log2f(per_level_scale)
    for l in range(L):
        e = np.float32(2.0 ** float(np.float32(np.float32(l) * l2)))  # exp2f, correctly rounded
        scale = float(_fma32(e, base, -1.0))  # grid_scale: exp2f(...) * N_min - 1 (contracted)
        res = int(math.ceil(scale)) + 1
        size = min(int(math.ceil(res**3 / 8) * 8), 2**log2T)
        levels.append((scale, res, size, off))
        off += size
    return levels


def _ref_encode(x, table, L, F, log2T, base, b):
    """Point-by-point NumPy reference: pos = fmaf(scale, x, 0.5), uint32 hash with primes
    (1, 2654435761, 805459861), corner weights (w_x * w_y) * w_z."""
    primes = [np.uint32(1), np.uint32(2654435761), np.uint32(805459861)]
    out = np.zeros((len(x), L * F), np.float64)
    for l, (scale, res, size, off) in enumerate(_ref_layout(L, F, log2T, base, b)):
        for n, p in enumerate(x):
            pos = np.array([_fma32(scale, v, 0.5) for v in p.astype(np.float32)], np.float32)
            g = np.floor(pos).astype(np.int64)
            fr = pos - g
            for cz in (0, 1):
                for cy in (0, 1):
                    for cx in (0, 1):
                        c = g + np.array([cx, cy, cz])
                        w = (
                            (fr[0] if cx else 1 - fr[0])
                            * (fr[1] if cy else 1 - fr[1])
                            * (fr[2] if cz else 1 - fr[2])
                        )
                        if res**3 <= size:
                            idx = int(c[0] + c[1] * res + c[2] * res * res)
                        else:
                            with np.errstate(over="ignore"):
                                h = np.uint32(0)
                                for d in range(3):
                                    h ^= np.uint32(c[d]) * primes[d]
                            idx = int(h)
                        idx %= size
                        out[n, l * F : (l + 1) * F] += w * table[(off + idx) * F : (off + idx + 1) * F]
    return out


def _grid(log2T=10, base=4, fin=64, L=6, F=2, seed=0):
    cfg = HashGridConfig.from_dict(
        dict(
            n_levels=L,
            n_features_per_level=F,
            log2_hashmap_size=log2T,
            base_resolution=base,
            finest_resolution=fin,
        )
    )
    grid = TorchHashGrid(cfg)
    with torch.no_grad():
        grid.params.copy_(torch.randn(grid.params.shape, generator=torch.Generator().manual_seed(seed)))
    return grid


@pytest.mark.parametrize("log2T,base,fin", [(10, 4, 64), (14, 16, 512)])
def test_torch_grid_matches_numpy_reference(log2T, base, fin):
    L, F = 6, 2
    grid = _grid(log2T, base, fin, L, F)
    x = torch.rand(40, 3, generator=torch.Generator().manual_seed(1))
    ours = grid(x).detach().numpy()
    ref = _ref_encode(
        x.numpy(),
        grid.params.detach().numpy().astype(np.float64),
        L,
        F,
        log2T,
        base,
        grid.cfg.per_level_scale,
    )
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)
    lay = level_layout(grid.cfg)  # both dense (coarse) and hashed (fine) levels were exercised
    assert any(l["dense"] for l in lay) and any(not l["dense"] for l in lay)
    assert [(l["scale"], l["resolution"], l["size"], l["offset"]) for l in lay] == _ref_layout(
        L, F, log2T, base, grid.cfg.per_level_scale
    )


def test_level_scales_follow_tcnn_float32_formula():
    """Paper profile (16 levels, 16 -> 2048): every scale is the float32 fma of the correctly
    rounded exp2f; NumPy's float32 exp2 with a separate multiply and subtract (the earlier
    computation) misses it on some level."""
    cfg = HashGridConfig.from_dict(
        dict(n_levels=16, log2_hashmap_size=19, base_resolution=16, finest_resolution=2048)
    )
    lay = level_layout(cfg)
    l2 = np.float32(math.log2(float(np.float32(cfg.per_level_scale))))
    naive = []
    for lvl, l in enumerate(lay):
        y = np.float32(np.float32(lvl) * l2)
        e = np.float32(2.0 ** float(y))
        assert l["exp2"] == float(e)
        assert l["scale"] == float(_fma32(e, 16, -1.0))
        assert l["resolution"] == math.ceil(l["scale"]) + 1
        naive.append(float(np.exp2(y, dtype=np.float32) * np.float32(16) - np.float32(1)))
    # NumPy's float32 exp2 is not correctly rounded on every CPU / build (where it is not, levels
    # 9 and 13 differ by 1 ulp); the formula above must hold either way, so the naive values are
    # only compared where they differ
    if naive != [l["scale"] for l in lay]:
        assert sum(a != l["scale"] for a, l in zip(naive, lay)) <= 4
    assert lay[-1]["resolution"] == 2048  # scale 2046.9987 (exp2f(15 log2f(b)) = 127.99992)


def test_positions_are_one_fma():
    """p = fmaf(s, x, 0.5): equal to the exactly rounded value everywhere, and different from
    x * s + 0.5 rounded twice on some points (so the test can tell them apart)."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(20000, 3, generator=g)
    scales = torch.tensor([15.0, 20.678152084350586, 1023.4371337890625, 2047.0], dtype=torch.float64)
    p = grid_positions(x, scales).numpy()  # (L, 3, N)
    xs = x.t().numpy()
    for li, s in enumerate(scales.tolist()):
        exact = (xs.astype(np.float64) * s + 0.5).astype(np.float32)
        np.testing.assert_array_equal(p[li], exact)
    twice = (xs * np.float32(scales[2].item())).astype(np.float32) + np.float32(0.5)
    assert (twice != p[2]).any()


@pytest.mark.parametrize("F", [1, 2, 4])
def test_vectorised_grid_matches_plain_autograd_reference(F):
    """The fused interpolation (custom forward/backward) against the plain autograd version:
    same outputs, same table gradients, dense and hashed levels."""
    grid = _grid(log2T=12, base=4, fin=128, L=5, F=F)
    x = torch.rand(3000, 3, generator=torch.Generator().manual_seed(2))
    w = torch.randn(3000, 5 * F, generator=torch.Generator().manual_seed(4))
    fast = grid(x)
    ref = grid.forward_reference(x)
    torch.testing.assert_close(fast, ref, atol=2e-6, rtol=1e-6)
    g_fast = torch.autograd.grad((fast * w).sum(), grid.params)[0]
    g_ref = torch.autograd.grad((ref * w).sum(), grid.params)[0]
    torch.testing.assert_close(g_fast, g_ref, atol=1e-4, rtol=1e-5)
    assert (g_fast != 0).sum() > 100
    grid.reference = True  # the switch the benchmark uses
    torch.testing.assert_close(grid(x), ref, atol=0, rtol=0)


def test_grid_is_continuous_and_interpolates_corners():
    cfg = HashGridConfig(
        n_levels=1, n_features_per_level=1, log2_hashmap_size=12, base_resolution=5, per_level_scale=1.0
    )
    grid = TorchHashGrid(cfg)
    with torch.no_grad():
        grid.params.copy_(torch.arange(grid.params.numel(), dtype=torch.float32))
    # dense level: value at a lattice point = c0 + c1*r + c2*r^2 exactly (scale 4, res 5)
    r = 5
    pts = torch.tensor([[0.125, 0.375, 0.625]])  # pos = x*4 + 0.5 -> (1, 2, 3) exactly
    assert grid(pts).item() == pytest.approx(1 + 2 * r + 3 * r * r)
    # linear in between along x
    a = grid(torch.tensor([[0.125, 0.375, 0.625]])).item()
    b = grid(torch.tensor([[0.375, 0.375, 0.625]])).item()
    m = grid(torch.tensor([[0.25, 0.375, 0.625]])).item()
    assert m == pytest.approx((a + b) / 2, rel=1e-6)


def test_gradients_reach_only_touched_entries():
    cfg = HashGridConfig(
        n_levels=4, n_features_per_level=2, log2_hashmap_size=10, base_resolution=4, per_level_scale=2.0
    )
    grid = TorchHashGrid(cfg)
    x = torch.rand(3, 3)
    grid(x).sum().backward()
    touched = (grid.params.grad != 0).sum().item()
    assert 0 < touched <= 3 * 8 * 4 * 2


def test_auto_backend_is_torch_on_cpu():
    g = make_hash_grid(dict(n_levels=2, log2_hashmap_size=8), backend="auto")
    if not torch.cuda.is_available():
        assert isinstance(g, TorchHashGrid)


def test_tcnn_model_without_tinycudann_gets_the_torch_grid(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "tinycudann", None)  # import fails
    with caplog.at_level("WARNING"):
        g = make_hash_grid(dict(n_levels=2, log2_hashmap_size=8), backend="tcnn")
    assert isinstance(g, TorchHashGrid) and "PyTorch hash grid is used" in caplog.text
    with pytest.raises(ValueError, match="unknown hash grid backend"):
        make_hash_grid(dict(n_levels=2), backend="cuda")


# ----------------------------------------------------------------------------- portable checkpoints


class StandInTcnnEncoding(nn.Module):
    """Stand-in for ``tinycudann.Encoding`` (tinycudann needs CUDA): the table is this module's
    ``params``, as in tcnn's ``Module``; the encoding is computed with tcnn's formulas."""

    def __init__(self, n_input_dims, encoding_config, seed=1337, dtype=None):
        super().__init__()
        c = encoding_config
        assert (
            n_input_dims == 3
            and c["otype"] == "HashGrid"
            and c.get("hash", "CoherentPrime") == "CoherentPrime"
        )
        self.cfg = HashGridConfig(
            c["n_levels"],
            c["n_features_per_level"],
            c["log2_hashmap_size"],
            c["base_resolution"],
            c["per_level_scale"],
        )
        self.params = nn.Parameter(torch.empty(hg.n_params(self.cfg)).uniform_(-1e-4, 1e-4))
        object.__setattr__(self, "_math", TorchHashGrid(self.cfg))

    def forward(self, x):
        idx, w = self._math.corners(x)
        out = hg._GridInterp.apply(self.params, idx, w, self.cfg.n_features_per_level)
        return out.permute(2, 0, 1).reshape(x.shape[0], self.cfg.out_dim)


class LegacyTcnnHashGrid(nn.Module):
    """The tinycudann wrapper as earlier versions built it: the tcnn module as submodule ``enc``,
    so checkpoints hold ``encoder.enc.params``."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.enc = StandInTcnnEncoding(3, hg.tcnn_encoding_config(cfg), dtype=torch.float32)

    out_dim = property(lambda self: self.cfg.out_dim)

    def forward(self, x):
        return self.enc(x).float()


@pytest.fixture
def standin_tcnn(monkeypatch):
    monkeypatch.setitem(sys.modules, "tinycudann", types.SimpleNamespace(Encoding=StandInTcnnEncoding))


def test_both_backends_save_and_load_one_layout(standin_tcnn):
    cfg = _grid().cfg
    tg, pg = make_hash_grid(cfg, "tcnn"), _grid()
    assert isinstance(tg, TcnnHashGrid)
    assert list(tg.state_dict()) == list(pg.state_dict()) == ["params"]
    x = torch.rand(500, 3)
    tg.load_state_dict(pg.state_dict())  # PyTorch -> tcnn
    assert torch.equal(tg(x), pg(x))
    with torch.no_grad():
        tg.params.mul_(-2.0)
    pg.load_state_dict(tg.state_dict())  # tcnn -> PyTorch
    assert torch.equal(tg(x), pg(x))
    # the tcnn module follows the registered table after load_state_dict(assign=True)
    tg.load_state_dict({"params": torch.randn_like(pg.params)}, assign=True)
    pg.load_state_dict(tg.state_dict())
    assert torch.equal(tg(x), pg(x))


def test_legacy_tcnn_name_loads_in_both_backends(standin_tcnn):
    legacy = LegacyTcnnHashGrid(_grid().cfg)
    with torch.no_grad():
        legacy.enc.params.normal_()
    sd = legacy.state_dict()
    assert list(sd) == ["enc.params"]
    x = torch.rand(500, 3)
    for backend in ("torch", "tcnn"):
        g = make_hash_grid(legacy.cfg, backend)
        g.load_state_dict(sd)  # strict
        assert torch.equal(g(x), legacy(x)), backend
    with pytest.raises(RuntimeError, match="params"):  # a wrong table is still refused
        TorchHashGrid(legacy.cfg).load_state_dict({"enc.params": torch.zeros(3)})


# ----------------------------------------------------------------------------- parity bound


def test_parity_tolerance_covers_a_few_ulp_of_cuda_exp2f():
    """Emulate tcnn's scales with exp2f off by +-2 ulp on every level (CUDA's documented bound):
    the outputs then differ from ours by at most ``parity_tolerance``, which is not loose by
    orders of magnitude."""
    grid = _grid(log2T=19, base=16, fin=2048, L=16, F=2)
    lay = level_layout(grid.cfg)
    x = torch.rand(20000, 3, generator=torch.Generator().manual_seed(5))
    ref = grid(x)
    tol = parity_tolerance(grid.cfg, x, grid.params)
    worst = 0.0
    for sign in (1, -1):
        off = TorchHashGrid(grid.cfg)
        off.load_state_dict(grid.state_dict())
        e = np.array([l["exp2"] for l in lay], np.float32)
        for _ in range(2):  # 2 ulp
            e = np.nextafter(e, np.float32(sign * np.inf), dtype=np.float32)
        e[0] = 1.0  # exp2f(0) is exact
        scales = [float(_fma32(v, 16, -1.0)) for v in e]
        off._scale64.copy_(torch.tensor(scales, dtype=torch.float64))
        with torch.no_grad():
            diff = (off(x) - ref).abs()
        assert (diff <= tol).all()
        worst = max(worst, float((diff / tol).max()))
    assert worst > 0.05, worst  # the bound is within 20x of what happens


@pytest.mark.gpu
def test_tcnn_matches_torch_grid_on_gpu():
    """Same table in both backends: outputs agree within the float32 bound of parity_tolerance
    (exp2f of CUDA within 2 ulp, fma roundings, 8-term sums)."""
    pytest.importorskip("tinycudann")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cfg = HashGridConfig.from_dict(
        dict(
            n_levels=16,
            n_features_per_level=2,
            log2_hashmap_size=19,
            base_resolution=16,
            finest_resolution=2048,
        )
    )
    tg = make_hash_grid(cfg, backend="tcnn").cuda()
    pg = TorchHashGrid(cfg).cuda()
    with torch.no_grad():
        pg.params.copy_(torch.randn_like(pg.params))
    copy_table(pg, tg)
    x = torch.rand(100_000, 3, device="cuda")
    diff = (tg(x) - pg(x)).abs().cpu()
    tol = parity_tolerance(cfg, x, pg.params)
    assert (diff <= tol).all(), f"max diff/bound {float((diff / tol).max()):.3g}"
    # table gradients: the encoding is linear in the table, so for any table v,
    # grad . v = sum_p w_p . enc(x_p; v), and the same bound (with v's values) applies; plus the
    # float32 accumulation of the gradient entries (1e-4 of the total)
    w = torch.randn(100_000, cfg.out_dim, device="cuda")
    gt = torch.autograd.grad((tg(x) * w).sum(), tg.params)[0].double().cpu()
    gp = torch.autograd.grad((pg(x) * w).sum(), pg.params)[0].double().cpu()
    for seed in range(3):
        v = torch.randn(gp.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        bound = float((w.abs().cpu() * parity_tolerance(cfg, x, v)).sum()) + 1e-4 * float(
            w.abs().sum()
        ) * float(v.abs().max())
        assert abs(float(gt @ v) - float(gp @ v)) <= bound


def test_tcnn_layout_checkpoint_renders_identical_pixels_in_torch_backend(
    tmp_path, standin_tcnn, monkeypatch
):
    """A checkpoint of a model whose grid is tcnn's module (``encoder.enc.params``, as GPU runs
    of earlier versions saved it) loads through ``load_renderer`` and resume on a machine without
    tinycudann (PyTorch grid) and renders the same pixels; and back: the PyTorch checkpoint
    loads into the tcnn backend."""
    from test_render import TINY_MODEL, _tiny_train, synthetic_subject

    from emohead_core.render.network import EmoNeRF
    from emohead_core.render.renderer import Renderer
    from emohead_core.render.train import Trainer, load_renderer

    torch.set_num_threads(1)
    data = synthetic_subject()
    tr = Trainer(data, TINY_MODEL, _tiny_train(iters=40), device="cpu")
    tr.fit(progress=False)
    gpu_model = EmoNeRF(TINY_MODEL)
    gpu_model.encoder = LegacyTcnnHashGrid(gpu_model.encoder.cfg)
    sd = tr.model.state_dict()
    sd["encoder.enc.params"] = sd.pop("encoder.params")
    gpu_model.load_state_dict(sd)  # strict: the tcnn naming
    assert "encoder.enc.params" in gpu_model.state_dict()
    ck = dict(tr.state_dict(), model=gpu_model.state_dict(), model_cfg=dict(TINY_MODEL, backend="tcnn"))
    torch.save(ck, tmp_path / "model.pt")

    i = int(data.test_idx[0])
    behind = data.behind(i)
    gpu_render = Renderer(gpu_model, tr.occ, tr.box["center_um"], tr.box["half_um"], tr.renderer.n_samples)
    want, _ = gpu_render.render_frame(data.poses[i], data.alpha[i], behind)
    standin = sys.modules["tinycudann"]
    monkeypatch.setitem(sys.modules, "tinycudann", None)  # the laptop: no tinycudann
    laptop = load_renderer(tmp_path / "model.pt", "cpu")
    assert isinstance(laptop.model.encoder, TorchHashGrid)
    got, acc = laptop.render_frame(data.poses[i], data.alpha[i], behind)
    assert np.array_equal(got, want) and acc.max() > 0.5
    resumed = Trainer(data, TINY_MODEL, _tiny_train(iters=40), device="cpu")
    resumed.load(tmp_path / "model.pt")
    assert torch.equal(resumed.model.encoder.params, tr.model.encoder.params)

    # and back: the PyTorch checkpoint in the tcnn backend
    monkeypatch.setitem(sys.modules, "tinycudann", standin)
    tr.save(tmp_path / "torch.pt")
    on_gpu = EmoNeRF(dict(TINY_MODEL, backend="tcnn"))
    assert isinstance(on_gpu.encoder, TcnnHashGrid)
    on_gpu.load_state_dict(torch.load(tmp_path / "torch.pt", weights_only=True)["model"])
    back, _ = Renderer(
        on_gpu, tr.occ, tr.box["center_um"], tr.box["half_um"], tr.renderer.n_samples
    ).render_frame(data.poses[i], data.alpha[i], behind)
    assert np.array_equal(back, want)
