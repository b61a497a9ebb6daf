"""Render stage: volume rendering vs direct integration, camera ray geometry, occupancy skipping,
ray marching (packed compositing, early termination, gradients) against the stratified sampler,
a tiny training run, exact resume, new vs previous renderer on a trained subject, CLIP and 3DDFA
refinement losses through production loaders."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from emohead_core.render.camera import (
    DEFAULT_BOX_CENTER,
    DEFAULT_BOX_HALF,
    HeadCamera,
    fit_affine_pose,
    ray_box,
    rotate_pose,
    scale_pose,
    yaw_matrix,
)
from emohead_core.render.volume import (
    T_STOP,
    OccupancyGrid,
    composite,
    composite_packed,
    march_rays,
    render_rays,
)

S = 32  # synthetic image size


def _rot(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _pose(rng=None, size=S):
    """Scaled orthographic pose like 3DDFA's after its ROI mapping (y flipped)."""
    s = size / (2 * DEFAULT_BOX_HALF) * 0.9
    R = np.eye(3) if rng is None else _rot(rng)
    M = s * np.diag([1.0, -1.0, 1.0]) @ R
    c = np.asarray(DEFAULT_BOX_CENTER)
    t = np.array([size / 2 - 0.5, size / 2 - 0.5, 7.0]) - M @ c
    return np.concatenate([M, t[:, None]], axis=1)


# ----------------------------------------------------------------------------- volume rendering


def test_composite_matches_direct_integration_of_eqs_11_12():
    """Piecewise-constant sigma/colour along a ray: the quadrature equals eq. (11) with T(t) of
    eq. (12) integrated numerically on a fine grid."""
    g = torch.Generator().manual_seed(0)
    R, N = 3, 7
    sigma = torch.rand(R, N, generator=g) * 4
    rgb = torch.rand(R, N, 3, generator=g)
    deltas = torch.rand(R, N, generator=g) * 0.3 + 0.05
    ours, acc, w = composite(sigma, rgb, deltas)
    K = 1500  # sub-steps per interval (midpoint rule)
    for r in range(R):
        C = np.zeros(3)
        opt_depth = 0.0  # integral of sigma from t_n to t
        for i in range(N):
            ds = float(deltas[r, i]) / K
            for _ in range(K):
                s_mid = opt_depth + float(sigma[r, i]) * ds / 2
                C += float(sigma[r, i]) * rgb[r, i].numpy() * math.exp(-s_mid) * ds  # eq. (11)
                opt_depth += float(sigma[r, i]) * ds  # eq. (12)
        np.testing.assert_allclose(ours[r].numpy(), C, rtol=1e-4, atol=1e-6)
        assert float(acc[r]) == pytest.approx(1 - math.exp(-opt_depth), rel=1e-5)


def test_composite_constant_medium_closed_form():
    sigma = torch.full((1, 50), 2.0)
    rgb = torch.tensor([0.2, 0.4, 0.6]).expand(1, 50, 3)
    deltas = torch.full((1, 50), 0.01)
    c, acc, _ = composite(sigma, rgb, deltas)
    assert float(acc[0]) == pytest.approx(1 - math.exp(-1.0), rel=1e-6)
    np.testing.assert_allclose(c[0].numpy(), np.array([0.2, 0.4, 0.6]) * (1 - math.exp(-1.0)), rtol=1e-6)


# ----------------------------------------------------------------------------- cameras


def test_rays_pass_through_projected_points_and_are_parallel():
    rng = np.random.default_rng(1)
    P = _pose(rng)
    cam = HeadCamera(P)
    X = np.asarray(DEFAULT_BOX_CENTER) + rng.normal(size=(20, 3)) * 50000
    p = X @ P[:, :3].T + P[:, 3]
    o, d = cam.rays(torch.as_tensor(p[:, :2], dtype=torch.float32))
    xn = (X - np.asarray(DEFAULT_BOX_CENTER)) / DEFAULT_BOX_HALF
    o, d = o.double().numpy(), d.double().numpy()
    # distance of each normalised point to its pixel's ray
    v = xn - o
    dist = np.linalg.norm(v - (v * d).sum(1, keepdims=True) * d, axis=1)
    assert dist.max() < 1e-5
    # parallel rays, pointing away from the viewer (-z of image space)
    assert np.allclose(d, d[0], atol=1e-6)
    away = np.linalg.inv(P[:, :3]) @ np.array([0, 0, -1.0])
    assert np.allclose(d[0], away / np.linalg.norm(away), atol=1e-6)
    # points further along the ray are further from the viewer (smaller image z)
    X2 = (o[0] + 0.5 * d[0]) * DEFAULT_BOX_HALF + np.asarray(DEFAULT_BOX_CENTER)
    X1 = (o[0] + 0.1 * d[0]) * DEFAULT_BOX_HALF + np.asarray(DEFAULT_BOX_CENTER)
    assert (P[2, :3] @ X2) < (P[2, :3] @ X1)


def test_frontal_camera_looks_at_the_face():
    d = HeadCamera(_pose()).direction.numpy()
    assert d[2] < -0.99  # canonical -z: from the nose tip towards the back of the head


def test_novel_view_rotation_and_affine_fit():
    rng = np.random.default_rng(2)
    P = _pose(rng)
    X = np.asarray(DEFAULT_BOX_CENTER) + rng.normal(size=(30, 3)) * 40000
    c = np.asarray(DEFAULT_BOX_CENTER)
    Pr = rotate_pose(P, 20.0)
    Rot = yaw_matrix(20.0)
    lhs = X @ Pr[:, :3].T + Pr[:, 3]
    rhs = ((X - c) @ Rot.T + c) @ P[:, :3].T + P[:, 3]
    np.testing.assert_allclose(lhs, rhs, atol=1e-8)
    np.testing.assert_allclose(rotate_pose(P, 0.0), P, atol=1e-12)
    Pf, res = fit_affine_pose(X, X @ P[:, :3].T + P[:, 3])
    assert res < 1e-6 and np.allclose(Pf, P, atol=1e-6)
    # resizing: pixel centre (u + 0.5) k - 0.5
    Pk = scale_pose(P, 2.0)
    u1 = (X[0] @ P[:, :3].T + P[:, 3])[:2]
    u2 = (X[0] @ Pk[:, :3].T + Pk[:, 3])[:2]
    np.testing.assert_allclose(u2, (u1 + 0.5) * 2 - 0.5, atol=1e-9)


def test_ray_box_bounds():
    o = torch.tensor([[0.2, -0.3, 5.0], [3.0, 3.0, 5.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    near, far, hit = ray_box(o, d)
    assert hit.tolist() == [True, False]
    assert float(near[0]) == pytest.approx(4.0) and float(far[0]) == pytest.approx(6.0)


# ----------------------------------------------------------------------------- occupancy


class _Ball(torch.nn.Module):
    """Analytic field: a coloured ball of radius 0.4 (density 20), empty elsewhere."""

    def forward(self, x, d, a):
        inside = (x.norm(dim=-1) < 0.4).float()
        return 20 * inside, torch.sigmoid(x * 3 + a[:, :3])

    def density(self, x, a):
        return 20 * (x.norm(dim=-1) < 0.4).float()


def test_occupancy_skips_empty_space_without_changing_the_image():
    model = _Ball()
    g = torch.Generator().manual_seed(0)
    o = torch.rand(256, 3, generator=g) * 2 - 1
    o[:, 2] = 1.5
    d = torch.zeros_like(o)
    d[:, 2] = -1
    a = torch.zeros(10)
    full = render_rays(model, o, d, a, n_samples=64)
    occ = OccupancyGrid(res=16, decay=0.0, threshold=1.0)
    occ.update(lambda x: model.density(x, a), generator=g)
    # a conservative grid: cells the ball touches are occupied (corner test)
    occ.occupied.fill_(False)
    r = occ.res
    idx = torch.arange(r).float()
    gx, gy, gz = torch.meshgrid(idx, idx, idx, indexing="ij")
    lo = torch.stack([gx, gy, gz], -1) / r * 2 - 1
    hi = lo + 2 / r
    nearest = torch.clamp(torch.zeros(3), lo, hi)
    occ.occupied.copy_(nearest.norm(dim=-1) < 0.4)
    skip = render_rays(model, o, d, a, n_samples=64, occupancy=occ)
    assert skip["n_eval"] < 0.5 * full["n_eval"]
    torch.testing.assert_close(skip["rgb"], full["rgb"])
    empty = OccupancyGrid(res=8)
    empty.occupied.fill_(False)
    bg = torch.rand(256, 3, generator=g)
    out = render_rays(model, o, d, a, n_samples=16, occupancy=empty, bg=bg)
    assert out["n_eval"] == 0 and torch.equal(out["rgb"], bg)


# ----------------------------------------------------------------------------- ray marching


def test_composite_packed_matches_dense_composite():
    """Segment sums over packed samples == the dense per-ray composite with zero-padded rows,
    also after a ray of huge optical depth (no float32 cancellation in the running sum)."""
    g = torch.Generator().manual_seed(0)
    counts = [3, 0, 7, 1, 5, 4]
    R, N = len(counts), max(counts)
    sigma = torch.zeros(R, N)
    rgb = torch.zeros(R, N, 3)
    deltas = torch.zeros(R, N)
    for r, c in enumerate(counts):
        sigma[r, :c] = torch.rand(c, generator=g) * 8
        rgb[r, :c] = torch.rand(c, 3, generator=g)
        deltas[r, :c] = torch.rand(c, generator=g) * 0.3 + 0.01
    sigma[0, :3] = 1e7  # optical depth ~1e6 before the other rays
    mask = torch.arange(N)[None] < torch.tensor(counts)[:, None]
    ray = torch.arange(R)[:, None].expand(R, N)[mask]
    ours, acc, w = composite_packed(sigma[mask], rgb[mask], deltas[mask], ray, R)
    ref, ref_acc, ref_w = composite(sigma, rgb, deltas)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(acc, ref_acc, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(w, ref_w[mask], atol=1e-6, rtol=1e-5)
    assert float(acc[1]) == 0.0 and torch.isfinite(ours).all()


class _OpaqueBall(_Ball):
    """The ball with a density that stops rays within a few samples."""

    def forward(self, x, d, a):
        s, c = super().forward(x, d, a)
        return 20 * s, c

    def density(self, x, a):
        return 20 * super().density(x, a)


def _parallel_rays(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = torch.rand(n, 3, generator=g) * 2 - 1
    o[:, 2] = 1.5
    d = torch.zeros_like(o)
    d[:, 2] = -1
    return o, d, g


def _ball_occupancy(res=16, radius=0.4):
    """Conservative grid: cells the ball touches are occupied (nearest-point test)."""
    occ = OccupancyGrid(res=res)
    idx = torch.arange(res).float()
    gx, gy, gz = torch.meshgrid(idx, idx, idx, indexing="ij")
    lo = torch.stack([gx, gy, gz], -1) / res * 2 - 1
    nearest = torch.clamp(torch.zeros(3), lo, lo + 2 / res)
    occ.occupied.copy_(nearest.norm(dim=-1) < radius)
    return occ


def test_march_matches_stratified_and_stops_early():
    model = _OpaqueBall()
    o, d, g = _parallel_rays(400)
    a = torch.zeros(10)
    bg = torch.rand(400, 3, generator=g)
    occ = _ball_occupancy()
    old = render_rays(model, o, d, a, n_samples=64, occupancy=occ, bg=bg)
    new = march_rays(model, o, d, a, n_samples=64, occupancy=occ, bg=bg)
    # the same lattice points; only what lies behind T < T_STOP is left out
    assert (new["rgb"] - old["rgb"]).abs().max() <= 2 * T_STOP
    assert (new["acc"] - old["acc"]).abs().max() <= T_STOP
    assert (old["acc"] > 0.99).sum() > 30  # rays through the ball (1 in 8) are opaque...
    assert new["n_eval"] < 0.6 * old["n_eval"]  # ...and stop early
    full = march_rays(model, o, d, a, n_samples=64, occupancy=occ, bg=bg, t_stop=0.0)
    assert full["n_eval"] == old["n_eval"]
    torch.testing.assert_close(full["rgb"], old["rgb"], atol=1e-6, rtol=0)
    # same points with or without the occupancy grid (its empty cells hold no density)
    free = march_rays(model, o, d, a, n_samples=64, bg=bg)
    torch.testing.assert_close(free["rgb"], new["rgb"], atol=2 * T_STOP, rtol=0)
    assert free["n_eval"] > new["n_eval"]
    empty = OccupancyGrid(res=8)
    empty.occupied.fill_(False)
    out = march_rays(model, o, d, a, n_samples=16, occupancy=empty, bg=bg)
    assert out["n_eval"] == 0 and torch.equal(out["rgb"], bg)


def _tiny_field(seed=0):
    from emohead_core.render.network import EmoNeRF

    torch.manual_seed(seed)
    m = EmoNeRF(TINY_MODEL)
    with torch.no_grad():
        m.encoder.params.normal_(0, 1.0)  # some structure: density and colour vary in space
        m.set_alpha_stats(torch.zeros(10), torch.ones(10))
    return m


@pytest.mark.parametrize("per_ray", [False, True])
def test_march_gradients_match_stratified(per_ray):
    """Training through the marcher: with the same jittered points (same generator state) and no
    early stop, loss and every parameter gradient equal the stratified sampler's."""
    R = 300
    o, d, g = _parallel_rays(R, seed=1)
    d = torch.nn.functional.normalize(d + torch.tensor([0.2, -0.1, 0.0]), dim=1)  # oblique, parallel
    cond = torch.randn(R, 10, generator=g) if per_ray else torch.randn(10, generator=g)
    target = torch.rand(R, 3, generator=g)
    bg = torch.rand(R, 3, generator=g)
    grads = {}
    for name, fn in (("old", render_rays), ("new", march_rays)):
        model = _tiny_field()
        kw = dict(t_stop=0.0) if fn is march_rays else {}
        out = fn(
            model,
            o,
            d,
            cond,
            n_samples=24,
            perturb=True,
            generator=torch.Generator().manual_seed(7),
            bg=bg,
            **kw,
        )
        loss = torch.nn.functional.mse_loss(out["rgb"], target)
        loss.backward()
        grads[name] = (float(loss), {k: p.grad.clone() for k, p in model.named_parameters()})
    assert grads["new"][0] == pytest.approx(grads["old"][0], rel=1e-5)
    for k, v in grads["old"][1].items():
        assert v.abs().max() > 0, k
        torch.testing.assert_close(grads["new"][1][k], v, atol=1e-6, rtol=1e-4, msg=k)


def test_shared_and_per_ray_expressions_agree():
    """Rays of two frames in one call with per-ray expressions (general path) == each frame with
    its own expression (frame-constant inputs folded into the biases)."""
    model = _tiny_field(seed=3)
    o, d, g = _parallel_rays(200, seed=2)
    a1, a2 = torch.randn(10, generator=g), torch.randn(10, generator=g)
    cond = torch.where((torch.arange(200) < 80)[:, None], a1, a2)
    both = march_rays(model, o, d, cond, n_samples=20)
    first = march_rays(model, o[:80], d[:80], a1, n_samples=20)
    second = march_rays(model, o[80:], d[80:], a2, n_samples=20)
    torch.testing.assert_close(both["rgb"], torch.cat([first["rgb"], second["rgb"]]), atol=1e-5, rtol=0)
    assert (first["rgb"] - second["rgb"][:80]).abs().max() > 1e-3  # the expression matters


# ----------------------------------------------------------------------------- training


def synthetic_subject(T=12, size=S, seed=0):
    """A ball-shaped 'head' whose colour follows alpha[0], over a textured background."""
    rng = np.random.default_rng(seed)
    P = _pose(None, size)
    alpha = rng.normal(size=(T, 10)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    bg = np.stack([0.2 + 0.3 * xx / size, 0.6 * np.ones_like(xx), 0.3 + 0.4 * yy / size], -1)
    c = np.array([size / 2 - 0.5, size / 2 - 0.5])
    rad = 70000 * abs(P[0, 0])
    disk = (xx - c[0]) ** 2 + (yy - c[1]) ** 2 < rad**2
    frames = np.empty((T, size, size, 3), np.uint8)
    for t in range(T):
        col = np.array([0.5 + 0.35 * np.tanh(alpha[t, 0]), 0.3, 0.55 - 0.2 * np.tanh(alpha[t, 0])])
        shade = 1 - 0.3 * ((xx - c[0]) ** 2 + (yy - c[1]) ** 2) / rad**2
        img = np.where(disk[..., None], col * shade[..., None], bg)
        frames[t] = (img * 255).round().astype(np.uint8)
    ang = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    lm = np.stack([c[0] + 0.9 * rad * np.cos(ang), c[1] + 0.9 * rad * np.sin(ang), np.zeros(68)], -1)
    from emohead_core.render.data import SubjectData

    return SubjectData.from_arrays(
        frames=frames,
        bg=(bg * 255).round().astype(np.uint8),
        head_mask=np.repeat(disk[None], T, 0),
        poses=np.repeat(P[None], T, 0),
        alpha=alpha,
        shape=rng.normal(size=(T, 40)).astype(np.float32),
        landmarks=np.repeat(lm[None], T, 0).astype(np.float32),
        train_idx=np.arange(T - 2),
        test_idx=np.arange(T - 2, T),
        clips=[dict(sample="s", dataset="d", emotion="neutral", fps=25.0)],
        subject="synth",
    )


TINY_MODEL = dict(
    grid=dict(
        n_levels=4, n_features_per_level=2, log2_hashmap_size=10, base_resolution=4, finest_resolution=32
    ),
    hidden=16,
    sigma_layers=1,
    color_hidden=16,
    color_layers=1,
)


def _tiny_train(**kw):
    cfg = dict(
        iters=60,
        rays=128,
        n_samples=12,
        lr_grid=3e-2,
        lr_mlp=1e-2,
        log_every=10,
        ckpt_every=1000,
        occupancy=dict(res=8, warmup=10, update_every=10, n_cond=1),
    )
    cfg.update(kw)
    return cfg


def test_tiny_training_lowers_loss_and_beats_background():
    from emohead_core.render.train import Trainer

    torch.set_num_threads(1)
    tr = Trainer(synthetic_subject(), TINY_MODEL, _tiny_train(iters=120), device="cpu")
    v0 = tr.validate()
    hist = tr.fit(progress=False)
    first = np.mean([r["photo"] for r in hist[:10]])
    last = np.mean([r["photo"] for r in hist[-10:]])
    assert last < 0.5 * first
    v = tr.validate()
    assert v["val_psnr_head"] > v["baseline_psnr_head"] + 3
    assert v["val_psnr_head"] > v0["val_psnr_head"] + 3
    assert 0 < tr.occ.fraction() < 1  # empty space (never-seen cells at least) is skipped
    assert not tr.occ.trainable[0, 0, 0] and tr.occ.trainable[4, 4, 4]


def test_new_renderer_matches_previous_on_trained_subject():
    """Same weights, the held-out frames of a trained subject: the new renderer (marching,
    vectorised grid) and the previous one (stratified samples, reference grid) differ by at most
    2/255 per pixel, on renders that reproduce the subject."""
    from emohead_core.render.data import sampling_region
    from emohead_core.render.train import Trainer, psnr

    torch.set_num_threads(1)
    data = synthetic_subject()
    tr = Trainer(data, TINY_MODEL, _tiny_train(iters=120), device="cpu")
    tr.fit(progress=False)
    assert tr.validate()["val_psnr_head"] > tr.validate()["baseline_psnr_head"] + 3
    r = tr.renderer
    for i in data.test_idx:
        m = data.mask(i)
        behind = data.behind(i)
        for region in (sampling_region(m), None):
            new, acc = r.render_frame(data.poses[i], data.alpha[i], behind, region=region)
            tr.model.encoder.reference = True
            old, _ = r.render_frame(data.poses[i], data.alpha[i], behind, region=region, sampler="stratified")
            tr.model.encoder.reference = False
            assert np.abs(new - old).max() <= 2 / 255
            assert acc[m].mean() > 0.5
            assert psnr(new, data.frame(i) / 255.0, m) > psnr(behind / 255.0, data.frame(i) / 255.0, m) + 3


def test_stratified_sampler_still_trains():
    from emohead_core.render.train import Trainer

    torch.set_num_threads(1)
    tr = Trainer(synthetic_subject(), TINY_MODEL, _tiny_train(iters=60, sampler="stratified"), device="cpu")
    assert tr.renderer.sampler == "stratified"
    hist = tr.fit(progress=False)
    assert np.mean([r["photo"] for r in hist[-10:]]) < 0.5 * np.mean([r["photo"] for r in hist[:10]])
    with pytest.raises(ValueError, match="sampler"):
        tr.renderer.render_rays(
            torch.zeros(1, 3), torch.tensor([[0.0, 0.0, -1.0]]), torch.zeros(10), sampler="dense"
        )


def test_resume_is_exact(tmp_path):
    from emohead_core.render.train import Trainer

    torch.set_num_threads(1)
    data = synthetic_subject()
    a = Trainer(data, TINY_MODEL, _tiny_train(iters=30), device="cpu")
    a.fit(progress=False)
    b = Trainer(data, TINY_MODEL, _tiny_train(iters=30), device="cpu")
    b.fit(steps=17, progress=False, ckpt_path=tmp_path / "ck.pt")
    c = Trainer(data, TINY_MODEL, _tiny_train(iters=30), device="cpu")
    c.load(tmp_path / "ck.pt")
    assert c.step == 17
    c.fit(progress=False)
    for (ka, va), (_kc, vc) in zip(a.model.state_dict().items(), c.model.state_dict().items()):
        assert torch.equal(va, vc), ka
    assert torch.equal(a.occ.occupied, c.occ.occupied)
    assert [r["photo"] for r in a.history] == [r["photo"] for r in c.history]


# ----------------------------------------------------------------------------- refinement losses


def _tiny_clip(path):
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    path.mkdir(parents=True, exist_ok=True)
    chars = list("abcdefghijklmnopqrstuvwxyz")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in chars:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (path / "vocab.json").write_text(__import__("json").dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"))
    tok.save_pretrained(path)
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=64,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(cfg).save_pretrained(path)
    return path


def test_clip_cord_loss_through_saved_tiny_model(tmp_path):
    from transformers import CLIPModel

    from emohead_core.render.losses import ClipEmotionLoss

    path = _tiny_clip(tmp_path / "clip")
    loss_fn = ClipEmotionLoss(str(path))
    img = torch.rand(1, 3, 20, 20, requires_grad=True)
    loss = loss_fn(img, "happy")
    loss.backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    # -cosine similarity == -logits_per_image / logit_scale of the model's own forward pass
    model = CLIPModel.from_pretrained(path).eval()
    x = torch.nn.functional.interpolate(img.detach(), size=(32, 32), mode="bicubic", align_corners=False)
    x = (x.clamp(0, 1) - loss_fn.mean) / loss_fn.std
    tok = loss_fn.tokenizer(["a photo of a happy face"], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], pixel_values=x)
    ref = -(out.logits_per_image / model.logit_scale.exp()).item()
    assert float(loss.detach()) == pytest.approx(ref, abs=1e-5)
    assert float(loss_fn(img.detach(), "sad")) != pytest.approx(float(loss.detach()), abs=1e-7)


def test_stage_two_uses_clip_and_shape_losses(tmp_path, mirror):
    from emohead_core.render.losses import ClipEmotionLoss, ShapeLoss
    from emohead_core.render.train import Trainer

    torch.set_num_threads(1)
    m = mirror / "models" / "3ddfa_v2"
    shape = ShapeLoss(m / "mb05_120x120.pth", m / "param_mean_std_62d_120x120.pkl")
    clip = ClipEmotionLoss(str(_tiny_clip(tmp_path / "clip")))
    tr = Trainer(
        synthetic_subject(),
        TINY_MODEL,
        _tiny_train(iters=6, refine_start=3, patch_size=16),
        device="cpu",
        clip_loss=clip,
        shape_loss=shape,
    )
    hist = tr.fit(progress=False)
    assert all("cord" not in r for r in hist[:3])
    assert all("cord" in r and "shape" in r for r in hist[3:])
    r = hist[-1]
    assert r["loss"] == pytest.approx(r["photo"] + 1e-3 * r["cord"] + 1e-9 * r["shape"], rel=1e-4)
    # L_shape is differentiable w.r.t. the rendered image
    img = torch.rand(1, 3, 24, 24, requires_grad=True)
    shape(img, torch.zeros(40)).backward()
    assert img.grad.abs().sum() > 0


@pytest.mark.gpu
def test_tiny_training_on_cuda_with_auto_backend():
    """On a GPU: the same tiny run with the auto backend (tinycudann when importable)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from emohead_core.render.train import Trainer

    tr = Trainer(synthetic_subject(), dict(TINY_MODEL, backend="auto"), _tiny_train(iters=120), device="cuda")
    hist = tr.fit(progress=False)
    assert np.mean([r["photo"] for r in hist[-10:]]) < 0.5 * np.mean([r["photo"] for r in hist[:10]])
    v = tr.validate()
    assert v["val_psnr_head"] > v["baseline_psnr_head"] + 3


@pytest.mark.gpu
def test_cuda_frames_in_half_precision_match_cpu():
    """Frames on CUDA (float16 MLPs under inference_mode) vs float32 on the CPU, same weights:
    at most 2/255 apart; training rays on CUDA draw the same jitter as on the CPU."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from emohead_core.render.renderer import Renderer
    from emohead_core.render.train import Trainer

    data = synthetic_subject()
    tr = Trainer(data, dict(TINY_MODEL, backend="torch"), _tiny_train(iters=120), device="cpu")
    tr.fit(progress=False)
    cpu = tr.renderer
    gpu = Renderer(
        copy.deepcopy(tr.model).cuda(),
        copy.deepcopy(tr.occ).cuda(),
        cpu.box_center,
        cpu.box_half,
        cpu.n_samples,
    )
    for i in data.test_idx:
        behind = data.behind(i)
        a, _ = cpu.render_frame(data.poses[i], data.alpha[i], behind)
        b, _ = gpu.render_frame(data.poses[i], data.alpha[i], behind)
        assert np.abs(a - b).max() <= 2 / 255
    uv = torch.rand(64, 2) * 31
    bg = torch.rand(64, 3)
    outs = [
        r.render_uv(
            data.poses[0],
            uv,
            data.alpha[0],
            bg.to(r.device),
            perturb=True,
            generator=torch.Generator().manual_seed(5),
        )["rgb"]
        .float()
        .cpu()
        for r in (cpu, gpu)
    ]
    torch.testing.assert_close(outs[1], outs[0], atol=1e-4, rtol=0)
