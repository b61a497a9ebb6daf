"""Head-region SSIM / PSNR / LPIPS (the tables' primary image columns): computed over the
ground-truth head mask only, so a difference outside the mask never changes them; the mask file
written beside a test span; the per-clip rows of a pair with and without masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emohead_core import media
from emohead_core.errors import EmoheadInputError
from emohead_core.headmask import load_masks, save_masks
from emohead_core.metrics import image as IM
from emohead_core.metrics import lpips as LP
from emohead_core.metrics.evaluate import HEAD_NOTE, MetricSuite, Pair, evaluate_pair


def _frames(seed=0, T=3, H=40, W=48):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 256, size=(T, H, W, 3), dtype=np.uint8)
    noise = rng.integers(-30, 31, size=gt.shape)
    gen = np.clip(gt.astype(int) + noise, 0, 255).astype(np.uint8)
    masks = np.zeros((T, H, W), bool)
    for t in range(T):
        masks[t, 8 + t : 30 + t, 10 : 30 + 2 * t] = True
    return gen, gt, masks


def test_head_psnr_is_the_psnr_of_the_mask_pixels_only():
    gen, gt, masks = _frames()
    got = IM.psnr_region_frames(gen, gt, masks)
    for t in range(len(gen)):
        d = gen[t][masks[t]].astype(float) - gt[t][masks[t]].astype(float)
        assert got[t] == pytest.approx(10 * np.log10(255**2 / np.mean(d * d)), rel=1e-12)
    # a difference outside the region does not change it; one inside does
    outside = gen.copy()
    outside[~masks] = 255 - outside[~masks]
    assert np.array_equal(IM.psnr_region_frames(outside, gt, masks), got)
    inside = gen.copy()
    inside[masks] = 255 - inside[masks]
    assert (IM.psnr_region_frames(inside, gt, masks) < got).all()
    # the full-frame PSNR does see the outside difference
    assert IM.psnr(outside, gt) < IM.psnr(gen, gt)
    # identical region: inf; an empty mask: NaN (left out of the clip's mean)
    same = np.where(masks[..., None], gt, gen)
    assert np.isinf(IM.psnr_region_frames(same, gt, masks)).all()
    empty = masks.copy()
    empty[1] = False
    assert np.isnan(IM.psnr_region_frames(gen, gt, empty)[1])


def test_head_ssim_averages_the_ssim_map_over_the_mask_and_ignores_the_outside():
    gen, gt, masks = _frames(1)
    got = IM.ssim_region_frames(gen, gt, masks)
    # the bounding-box crop computes the same map as the whole (equalised) frame at mask centres
    eq = IM.equalise_outside(gen, gt, masks)
    for t in range(len(gen)):
        want = np.mean([IM.ssim_map(eq[t, ..., c], gt[t, ..., c])[masks[t]].mean() for c in range(3)])
        assert got[t] == pytest.approx(want, rel=1e-10)
    outside = gen.copy()
    outside[~masks] = 0
    assert np.allclose(IM.ssim_region_frames(outside, gt, masks), got, rtol=0, atol=0)
    assert (got < 1).all()
    same = np.where(masks[..., None], gt, gen)
    assert np.allclose(IM.ssim_region_frames(same, gt, masks), 1.0)
    # the mask at the frame border (window clipped by the frame): still the whole-frame map
    border = np.zeros_like(masks)
    border[:, :6, :7] = True
    b = IM.ssim_region_frames(gen, gt, border)
    eqb = IM.equalise_outside(gen, gt, border)
    want0 = np.mean([IM.ssim_map(eqb[0, ..., c], gt[0, ..., c])[border[0]].mean() for c in range(3)])
    assert b[0] == pytest.approx(want0, rel=1e-10)


def test_head_lpips_weights_the_distance_maps_by_the_mask():
    torch.manual_seed(0)
    model = LP.LPIPSAlex().eval()  # random weights: the properties hold for any network
    with torch.no_grad():
        for lin in model.lins:  # LPIPS heads are non-negative (a distance)
            lin.weight.abs_()
    gen, gt, masks = _frames(2, T=2, H=64, W=64)
    full = LP.lpips_frames(model, gen, gt)
    # a mask over the whole frame is the plain LPIPS
    whole = LP.lpips_region_frames(model, gen, gt, np.ones(masks.shape, bool))
    assert np.allclose(whole, full, rtol=1e-5)
    got = LP.lpips_region_frames(model, gen, gt, masks)
    outside = gen.copy()
    outside[~masks] = 255 - outside[~masks]
    assert np.allclose(LP.lpips_region_frames(model, outside, gt, masks), got, rtol=1e-6)
    assert (LP.lpips_frames(model, outside, gt) > full).all()  # the full-frame one sees it
    same = np.where(masks[..., None], gt, gen)
    assert np.allclose(LP.lpips_region_frames(model, same, gt, masks), 0, atol=1e-6)
    empty = masks.copy()
    empty[0] = False
    assert np.isnan(LP.lpips_region_frames(model, gen, gt, empty)[0])


def test_mask_file_round_trip_and_errors(tmp_path):
    _, _, masks = _frames(3, W=45)  # a width that is not a multiple of 8
    save_masks(tmp_path / "m.npz", masks)
    assert np.array_equal(load_masks(tmp_path / "m.npz"), masks)
    with pytest.raises(EmoheadInputError, match="missing"):
        load_masks(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(EmoheadInputError, match="unreadable"):
        load_masks(tmp_path / "bad.npz")
    # masks of another size follow the ground-truth frames (nearest); too few masks is an error
    big = IM.region_masks(masks, 2, (80, 90))
    assert big.shape == (2, 80, 90) and big[0, 40, 40] == masks[0, 20, 20]
    with pytest.raises(EmoheadInputError, match="head masks for"):
        IM.region_masks(masks, 5, masks.shape[1:])


def test_pair_with_masks_gets_head_rows_and_one_without_says_why(tmp_path):
    gen, gt, masks = _frames(4, T=4, H=48, W=48)
    # outside the mask the generated frames are far off: full-frame PSNR low, head PSNR high
    gen[~masks] = 0
    gen[masks] = gt[masks]
    g, t = tmp_path / "gen.mp4", tmp_path / "gt.mp4"
    media.write_video(gen[..., ::-1], g, 25)
    media.write_video(gt[..., ::-1], t, 25)
    save_masks(tmp_path / "test_mask.npz", masks)
    suite = MetricSuite({"lmd": {"backends": []}, "er": {"model": None}})
    df, _ = evaluate_pair(Pair("d", "m", "c", str(g), str(t), mask=str(tmp_path / "test_mask.npz")), suite)
    v = df.set_index("metric")
    assert list(df["metric"][:3]) == ["SSIM (head)", "PSNR (head)", "LPIPS (head)"]
    assert v.loc["PSNR (head)", "value"] > v.loc["PSNR", "value"] + 5
    assert v.loc["SSIM (head)", "value"] > v.loc["SSIM", "value"]
    assert "metrics.lpips" in v.loc["LPIPS (head)", "note"]
    df2, _ = evaluate_pair(Pair("d", "m", "c", str(g), str(t)), suite)
    v2 = df2.set_index("metric")
    for m in ("SSIM (head)", "PSNR (head)", "LPIPS (head)"):
        assert np.isnan(v2.loc[m, "value"]) and v2.loc[m, "note"] == HEAD_NOTE
    # a mask file that is gone: n/a cells naming it and the fix, the other metrics computed
    gone = str(tmp_path / "gone" / "test_mask.npz")
    df3, _ = evaluate_pair(Pair("d", "m", "c", str(g), str(t), mask=gone), suite)
    v3 = df3.set_index("metric")
    assert np.isnan(v3.loc["PSNR (head)", "value"]) and gone in v3.loc["PSNR (head)", "note"]
    assert "rerun the render rule" in v3.loc["PSNR (head)", "note"]
    assert v3.loc["PSNR", "value"] == v.loc["PSNR", "value"]
