"""Audio-expression module: each equation against a loop-based computation, the eq. (13)
pairing, exact resume, and learning on synthetic data (paper Sec. III-A/B/D, Appendix C/D)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emohead_core.audio2exp.data import FrameTable, aligned_frame, partners_of
from emohead_core.audio2exp.model import (
    EMOTION_INDEX,
    ModelConfig,
    build_model,
    renderer_input_without_refinement,
)
from emohead_core.audio2exp.synthetic import synthetic_corpus
from emohead_core.audio2exp.train import Interrupt, TrainConfig, contrastive_loss, evaluate, train
from emohead_core.emotion_edit import refine
from emohead_core.errors import EmoheadInputError

torch.set_num_threads(1)

DV, DE, DG, D, DH, N = 5, 4, 6, 4, 3, 3


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    cfg = ModelConfig(dim_v=DV, dim_e=DE, dim_gamma=DG, d=D, d_h=DH, n=N, ffn=(7, 5))
    model = build_model(cfg).double()
    # non-trivial input normalisation so the test also covers it
    model.norm_v.set_stats(torch.randn(DV).double(), torch.rand(DV).double() + 0.5)
    L = cfg.context
    x = (torch.randn(2, L, DV).double(), torch.randn(2, L, DE).double(), torch.randn(2, L, DG).double())
    return cfg, model, x


def _matvec(x, W):
    """Row vector x (list) times matrix W (list of rows), by loops."""
    return [sum(x[k] * W[k][j] for k in range(len(x))) for j in range(len(W[0]))]


def _softmax(row):
    mx = max(row)
    ex = [math.exp(r - mx) for r in row]
    s = sum(ex)
    return [e / s for e in ex]


def _loop_model(model, cfg, x, b):
    """The whole forward pass (eqs. 1-8) with Python loops for batch item b."""
    P = {k: p.detach().tolist() for k, p in model.named_parameters()}
    mean_v, std_v = model.norm_v.mean.tolist(), model.norm_v.std.tolist()
    L = cfg.context
    n = cfg.n
    vr, er, gr = (t[b].tolist() for t in x)
    vr = [[(r[k] - mean_v[k]) / std_v[k] for k in range(DV)] for r in vr]
    # eq. (1)
    v = [_matvec(r, P["E_1"]) for r in vr]
    e = [_matvec(r, P["E_2"]) for r in er]
    g = [_matvec(r, P["E_3"]) for r in gr]
    # F: window positions p = 0..n-1 correspond to raw frames L-n+p; each sums n frames
    F = []
    for p in range(n):
        j = L - n + p
        F.append([sum(v[jj][c] + e[jj][c] for jj in range(j - n + 1, j + 1)) for c in range(D)])
    vw, gw = v[L - n :], g[L - n :]

    def corr(X, Wq, Wk):  # eqs. (2)/(3): X Wq Wk^T X^T
        out = [[0.0] * n for _ in range(n)]
        for p in range(n):
            for q in range(n):
                s = 0.0
                for a in range(D):
                    for bb in range(D):
                        for c in range(DH):
                            s += X[p][a] * Wq[a][c] * Wk[bb][c] * X[q][bb]
                out[p][q] = s
        return out

    C_ve = corr(F, P["W_q1"], P["W_k1"])
    C_g = corr(gw, P["W_q2"], P["W_k2"])

    def attend(C, X, Wv):  # Softmax(C / sqrt(d_h)) X Wv, row-wise softmax over keys
        XW = [_matvec(r, Wv) for r in X]
        out = []
        for p in range(n):
            a = _softmax([C[p][q] / math.sqrt(DH) for q in range(n)])
            out.append([sum(a[q] * XW[q][c] for q in range(n)) for c in range(D)])
        return out

    C_sum = [[C_ve[p][q] + C_g[p][q] for q in range(n)] for p in range(n)]
    h_v = attend(C_sum, vw, P["W_v1"])  # eqs. (4)-(5)
    h_e = attend(C_ve, F, P["W_v2"])  # eq. (6)
    h_g = attend(C_g, gw, P["W_v3"])  # eq. (7)
    hcat = h_v[-1] + h_e[-1] + h_g[-1]

    def mlp(prefix, xin):  # eq. (8): Linear-ReLU-...-Linear
        idx = sorted({int(k.split(".")[1]) for k in P if k.startswith(prefix + ".")})
        h = xin
        for li, i in enumerate(idx):
            W, bias = P[f"{prefix}.{i}.weight"], P[f"{prefix}.{i}.bias"]
            h = [sum(W[o][k] * h[k] for k in range(len(h))) + bias[o] for o in range(len(W))]
            if li < len(idx) - 1:
                h = [max(0.0, t) for t in h]
        return h

    return {
        "v": v,
        "e": e,
        "gamma": g,
        "F": F,
        "C_ve": C_ve,
        "C_gamma": C_g,
        "h_v": h_v,
        "h_e": h_e,
        "h_gamma": h_g,
        "alpha_tilde": mlp("FFN_1", hcat),
        "tau": mlp("FFN_2", hcat)[0],
    }


def test_equations_1_to_8_match_loops(tiny):
    cfg, model, x = tiny
    v, e, g = model.project(*x)
    h = model.fused_attn(v, e, g)
    alpha_tilde, tau = model(*x)
    for b in range(2):
        ref = _loop_model(model, cfg, x, b)
        np.testing.assert_allclose(v[b].detach().numpy(), ref["v"], atol=1e-10)  # eq. (1)
        np.testing.assert_allclose(e[b].detach().numpy(), ref["e"], atol=1e-10)
        np.testing.assert_allclose(g[b].detach().numpy(), ref["gamma"], atol=1e-10)
        np.testing.assert_allclose(h["F"][b].detach().numpy(), ref["F"], atol=1e-10)  # F
        for k in ("C_ve", "C_gamma", "h_v", "h_e", "h_gamma"):  # eqs. (2), (3), (5), (6), (7)
            np.testing.assert_allclose(h[k][b].detach().numpy(), ref[k], atol=1e-9, err_msg=k)
        np.testing.assert_allclose(alpha_tilde[b].detach().numpy(), ref["alpha_tilde"], atol=1e-9)  # eq. (8)
        assert abs(float(tau[b].detach()) - ref["tau"]) < 1e-9


def test_parameters_named_and_shaped_as_in_paper(tiny):
    cfg, model, _ = tiny
    p = dict(model.named_parameters())
    assert p["E_1"].shape == (DV, D) and p["E_2"].shape == (DE, D) and p["E_3"].shape == (DG, D)
    for k in ("W_q1", "W_k1", "W_q2", "W_k2"):
        assert p[k].shape == (D, DH)
    for k in ("W_v1", "W_v2", "W_v3"):
        assert p[k].shape == (D, D)
    widths = [m.out_features for m in model.FFN_1 if isinstance(m, torch.nn.Linear)]
    assert widths == [7, 5, 10]
    assert [m.out_features for m in model.FFN_2 if isinstance(m, torch.nn.Linear)] == [7, 5, 1]


def test_paper_ffn_widths_default():
    cfg = ModelConfig(dim_v=768, dim_e=768, dim_gamma=4096)
    assert (cfg.d, cfg.d_h, cfg.n, tuple(cfg.ffn)) == (512, 512, 5, (512, 256, 256, 128))


def test_fusion_depends_on_the_last_n_frames_only(tiny):
    cfg, model, x = tiny
    with torch.no_grad():
        base = model(*x)[0]
        x2 = [t.clone() for t in x]
        # the first raw frame only enters F at window position 0 ...
        x2[0][:, 0] += 10.0
        assert not torch.allclose(model(*x2)[0], base)
        # ... and the text stream is used only inside the n-frame window
        x3 = [t.clone() for t in x]
        x3[2][:, : cfg.context - cfg.n] += 10.0
        assert torch.allclose(model(*x3)[0], base)


def test_refine_eq9_loop():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(7, 10, generator=g)
    tau = torch.randn(7, generator=g)
    w = torch.randn(10, generator=g)
    w = w / w.norm()
    out = refine(a, tau, w)
    for t in range(7):
        for k in range(10):
            assert abs(float(out[t, k]) - (float(a[t, k]) + float(tau[t]) * float(w[k]))) < 1e-6
    # moving along the unit normal changes the signed distance by exactly tau
    assert torch.allclose(out @ w - a @ w, tau, atol=1e-5)
    # per-frame normals (emotion timeline)
    W = torch.randn(7, 10, generator=g)
    out2 = refine(a, tau, W)
    assert torch.allclose(out2[3], a[3] + tau[3] * W[3])


def test_renderer_input_without_refinement():
    a = torch.randn(5, 10)
    r = renderer_input_without_refinement(EMOTION_INDEX["happy"], a)
    assert r.shape == (5, 11)
    assert torch.all(r[:, 0] == EMOTION_INDEX["happy"]) and torch.equal(r[:, 1:], a)
    assert min(EMOTION_INDEX.values()) >= 1  # z in N+


def test_loss_eq13_loop():
    g = torch.Generator().manual_seed(4)
    ah, a, ab = (torch.randn(6, 10, generator=g) for _ in range(3))
    own = torch.tensor([1, 1, 0, 1, 0, 1], dtype=torch.bool)
    hp = torch.tensor([1, 0, 1, 1, 0, 0], dtype=torch.bool)
    rho = 0.5
    loss, _, _ = contrastive_loss(ah, a, own, ab, hp, rho)
    ref = 0.0
    for i in range(6):
        l1 = math.sqrt(sum((float(a[i, k]) - float(ah[i, k])) ** 2 for k in range(10)))
        l2 = math.sqrt(sum((float(ab[i, k]) - float(ah[i, k])) ** 2 for k in range(10)))
        ref += (l1 if own[i] else 0.0) + rho * (l2 if hp[i] else 0.0)
    assert abs(float(loss) - ref / 6) < 1e-5


def test_pairing_rule_cross_individual_same_emotion_and_sentence():
    c = synthetic_corpus(actors=("A", "B"), audio_only=("C",), clips_per_emotion=2)
    clips = c.clips
    for _i, clip in enumerate(clips):
        ps = partners_of(clip, clips)
        for j in ps:
            p = clips[j]
            assert p.actor != clip.actor and p.emotion == clip.emotion and p.split == clip.split
            assert p.has_alpha and p.sentence == clip.sentence
        if clip.actor in ("A", "B", "C"):
            others = {"A", "B"} - {clip.actor}
            assert {clips[j].actor for j in ps} == others
    # an audio-only actor's frames are usable (cross term only), and their own term is off
    table = FrameTable(c, [i for i, cl in enumerate(clips) if cl.split == "train"], 5)
    audio_only = torch.from_numpy(np.array([clips[k].actor == "C" for k in table.clip_of]))
    assert not table.own[audio_only].any()
    assert (table.partner_n[audio_only] > 0).all()
    # relative-time alignment of partner frames
    f = aligned_frame(np.arange(11), 11, 21)
    assert f[0] == 0 and f[-1] == 20 and f[5] == 10


def test_sampled_partner_targets_follow_the_pairing_rule():
    c = synthetic_corpus(actors=("A", "B"), audio_only=("C",), clips_per_emotion=2, frames=25)
    c.clips[0].alpha_mask[5:9] = False  # undetected partner frames never serve as targets
    train_ids = [i for i, cl in enumerate(c.clips) if cl.split == "train"]
    table = FrameTable(c, train_ids, 3)
    b = table.sample_batch(400, torch.Generator().manual_seed(0))
    n_checked = 0
    for r in range(400):
        i = int(b["idx"][r])
        clip = c.clips[int(table.clip_of[i])]
        t = int(table.frame_of[i])
        if not b["has_partner"][r]:
            continue
        matches = []
        for j in partners_of(clip, [c.clips[k] for k in train_ids]):
            p = c.clips[train_ids[j]]
            f = int(aligned_frame(np.array([t]), clip.T, p.T)[0])
            if p.alpha_mask[f] and np.allclose(p.alpha[f], b["alpha_bar"][r].numpy()):
                matches.append(p.actor)
        assert matches and clip.actor not in matches
        n_checked += 1
    assert n_checked > 100
    # every audio-only frame drawn trains through the partner term only
    c_rows = [r for r in range(400) if c.clips[int(table.clip_of[int(b["idx"][r])])].actor == "C"]
    assert c_rows and not b["own"][c_rows].any()


def test_frame_table_windows_are_causal_and_silence_padded():
    c = synthetic_corpus(frames=20)
    for k in c.silence:
        c.silence[k] = np.full_like(c.silence[k], 7.0)
    table = FrameTable(c, [0, 1], 4)
    v, e, g = table.windows(torch.arange(table.n_frames))
    clip0 = c.clips[0]
    # frame 0: three silence frames then frame 0
    assert torch.all(v[0, :3] == 7.0) and torch.allclose(v[0, 3], torch.from_numpy(clip0.feats["v"][0]))
    # frame 10 of clip 0: frames 7..10 loop-wise
    for p in range(4):
        assert torch.allclose(v[10, p], torch.from_numpy(clip0.feats["v"][7 + p]))
    # first frame of the second clip does not see the first clip
    off = table.offsets[1]
    assert torch.all(g[off, :3] == 7.0)


def _tiny_cfgs(**kw):
    mcfg = ModelConfig(dim_v=6, dim_e=5, dim_gamma=4, d=16, d_h=16, n=3, ffn=(32, 16), **kw)
    return mcfg


def test_resume_after_interruption_is_exact(tmp_path):
    corpus = synthetic_corpus(frames=30, audio_only=("C",))
    mcfg = _tiny_cfgs()
    tcfg = TrainConfig(iterations=12, batch_size=8, ckpt_every=5, seed=3)
    full = train(corpus, mcfg, tcfg, tmp_path / "full", progress=False)
    with pytest.raises(Interrupt):
        train(corpus, mcfg, tcfg, tmp_path / "cut", progress=False, stop_at=7)  # killed after it. 7
    assert not (tmp_path / "cut" / "model.pt").exists()
    resumed = train(corpus, mcfg, tcfg, tmp_path / "cut", progress=False)  # resumes from it. 5
    a = torch.load(full, weights_only=False)["state_dict"]
    b = torch.load(resumed, weights_only=False)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "full" / "loss.csv").read_text() == (tmp_path / "cut" / "loss.csv").read_text()
    # a different seed really trains differently (the comparison above can fail)
    other = train(
        corpus,
        mcfg,
        TrainConfig(iterations=12, batch_size=8, ckpt_every=5, seed=4),
        tmp_path / "other",
        progress=False,
    )
    c = torch.load(other, weights_only=False)["state_dict"]
    assert not torch.equal(a["W_v1"], c["W_v1"])


def test_checkpoint_of_other_training_data_is_not_resumed(tmp_path, caplog):
    """A rerun after the training data changed (here the clips' eq. 9 directions, as when the
    hyperplanes are refitted) trains afresh: the interrupted run's checkpoint is of other
    inputs and is not continued."""
    import copy
    import logging

    corpus = synthetic_corpus(frames=30, audio_only=("C",))
    mcfg = _tiny_cfgs()
    tcfg = TrainConfig(iterations=12, batch_size=8, ckpt_every=5, seed=3)
    with pytest.raises(Interrupt):
        train(corpus, mcfg, tcfg, tmp_path / "run", progress=False, stop_at=7)
    changed = copy.deepcopy(corpus)
    for c in changed.clips:
        if c.w_z is not None:
            c.w_z = (c.w_z[::-1]).copy()
    with caplog.at_level(logging.WARNING, logger="emohead_core.audio2exp.train"):
        got = train(changed, mcfg, tcfg, tmp_path / "run", progress=False)
    assert "from another run" in caplog.text
    fresh = train(changed, mcfg, tcfg, tmp_path / "fresh", progress=False)
    a = torch.load(got, weights_only=False)["state_dict"]
    b = torch.load(fresh, weights_only=False)["state_dict"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize(
    "variant", [{}, {"architecture": "transformer", "transformer_heads": 2, "transformer_ff": 32}]
)
def test_training_beats_constant_mean_on_synthetic(tmp_path, variant):
    corpus = synthetic_corpus(frames=60, audio_only=("C",), clips_per_emotion=3)
    mcfg = _tiny_cfgs(**variant)
    tcfg = TrainConfig(iterations=300, batch_size=32, ckpt_every=1000, lr=5e-3)
    path = train(corpus, mcfg, tcfg, tmp_path, progress=False)
    ev = evaluate(corpus, path)
    assert ev["n_frames"] > 100
    assert ev["rmse_alpha_hat"] < 0.75 * ev["rmse_constant_mean"], ev
    assert (tmp_path / "loss.png").stat().st_size > 1000
    rows = (tmp_path / "loss.csv").read_text().splitlines()
    assert len(rows) == 301 and rows[0].startswith("iteration,loss")


def test_without_refinement_ignores_hyperplanes(tmp_path):
    from emohead_core.audio2exp.infer import predict_alpha

    corpus = synthetic_corpus(frames=30)
    mcfg = _tiny_cfgs(refinement=False)
    path = train(corpus, mcfg, TrainConfig(iterations=5, batch_size=8), tmp_path, progress=False)
    ev = evaluate(corpus, path)
    assert ev["rmse_alpha_hat"] == ev["rmse_alpha_tilde"]
    clip = corpus.clips[0]
    pred = predict_alpha(path, clip.feats, timeline="0:happy,0.6:sad", ramp_s=0.0)
    np.testing.assert_array_equal(pred.alpha_hat, pred.alpha_tilde)
    r = pred.renderer_input()  # [z; alpha_tilde]
    assert r.shape == (clip.T, 11)
    assert r[0, 0] == EMOTION_INDEX["happy"] and r[-1, 0] == EMOTION_INDEX["sad"]
    np.testing.assert_array_equal(r[:, 1:], pred.alpha_tilde)


def test_within_clip_split_partitions_every_clip_in_time():
    from emohead_core.audio2exp.data import split_corpus
    from emohead_core.errors import EmoheadInputError

    corpus = synthetic_corpus(frames=31, audio_only=("C",))
    s = split_corpus(corpus, "within_clip", 0.33)
    assert s.meta["split"] == {"mode": "within_clip", "test_fraction": 0.33}
    assert all(c.test_from is None for c in corpus.clips)  # the input corpus is not modified
    for c in s.clips:
        tr, te = c.frames_in("train"), c.frames_in("test")
        assert tr.shape == te.shape == (c.T,)
        if c.alpha is None:  # audio-only: train only (eq. 13 cross-individual term)
            assert tr.all() and not te.any()
            continue
        n_test = int(math.floor(0.33 * c.T + 0.5))
        assert not (tr & te).any() and (tr | te).all()  # disjoint, covering
        assert te.sum() == n_test and tr.sum() == c.T - n_test
        assert te[c.T - n_test :].all() and tr[: c.T - n_test].all()  # first part train, last test
    # the training table: targets, samples and partner targets only on train frames
    ids = [i for i, c in enumerate(s.clips) if c.in_split("train")]
    table = FrameTable(s, ids, 3, split="train")
    test_rows = torch.from_numpy(np.concatenate([s.clips[i].frames_in("test") for i in ids]))
    assert test_rows.sum() > 0 and not table.own[test_rows].any()
    assert not test_rows[table.usable].any()
    assert table.own.sum() == sum(int(c.target_mask("train").sum()) for c in s.clips)
    b = table.sample_batch(300, torch.Generator().manual_seed(1))
    rows_c = [r for r in range(300) if s.clips[int(table.clip_of[int(b["idx"][r])])].actor == "C"]
    assert (
        rows_c and b["has_partner"][rows_c].any() and not b["has_partner"][rows_c].all()
    )  # aligned to test: off
    for r in rows_c:
        if b["has_partner"][r]:
            hits = [
                c
                for c in s.clips
                if c.alpha is not None
                and c.emotion == s.clips[int(table.clip_of[int(b["idx"][r])])].emotion
                and any(
                    np.array_equal(c.alpha[t], b["alpha_bar"][r].numpy())
                    for t in np.flatnonzero(c.frames_in("train"))
                )
            ]
            assert hits
    # samples mode keeps the clip split; unknown modes are refused
    same = split_corpus(corpus, "samples")
    assert [c.frames_in("test").all() for c in same.clips] == [c.split == "test" for c in corpus.clips]
    with pytest.raises(EmoheadInputError):
        split_corpus(corpus, "random")
    with pytest.raises(EmoheadInputError):
        split_corpus(corpus, "within_clip", 1.0)


def test_within_clip_training_and_evaluation_touch_only_their_frames(tmp_path):
    """Breaks if the split leaks: training must not see test targets, evaluation must not read
    train targets, and the constant-mean baseline is the mean of the TRAIN targets."""
    import copy

    from emohead_core.audio2exp.data import split_corpus

    s = split_corpus(synthetic_corpus(frames=30, audio_only=("C",)), "within_clip", 0.33)
    mcfg, tcfg = _tiny_cfgs(), TrainConfig(iterations=15, batch_size=8, ckpt_every=100)
    path = train(s, mcfg, tcfg, tmp_path / "a", progress=False)
    # test targets replaced by garbage: training gives bit-identical weights
    garbled = copy.deepcopy(s)
    for c in garbled.clips:
        if c.alpha is not None:
            c.alpha[c.frames_in("test")] += 100.0
    path_g = train(garbled, mcfg, tcfg, tmp_path / "b", progress=False)
    wa, wb = (torch.load(p, weights_only=False) for p in (path, path_g))
    assert all(torch.equal(wa["state_dict"][k], wb["state_dict"][k]) for k in wa["state_dict"])
    train_alpha = np.concatenate([c.alpha[c.target_mask("train")] for c in s.clips if c.alpha is not None])
    np.testing.assert_allclose(wa["alpha_mean"].numpy(), train_alpha.mean(0), atol=1e-6)
    ev = evaluate(s, path)
    test_alpha = np.concatenate([c.alpha[c.target_mask("test")] for c in s.clips if c.alpha is not None])
    assert ev["n_frames"] == len(test_alpha) and ev["split_mode"]["mode"] == "within_clip"
    ref = float(np.sqrt(np.mean((test_alpha - train_alpha.mean(0)) ** 2)))
    assert ev["rmse_constant_mean"] == pytest.approx(ref, rel=1e-5)
    # train targets replaced by NaN: evaluation is unchanged (and finite)
    nan = copy.deepcopy(s)
    for c in nan.clips:
        if c.alpha is not None:
            c.alpha[c.frames_in("train")] = np.nan
    ev_nan = evaluate(nan, path)
    assert math.isfinite(ev_nan["rmse_alpha_hat"])
    assert (
        ev_nan["rmse_alpha_hat"] == ev["rmse_alpha_hat"]
        and ev_nan["per_clip_rmse_alpha_hat"] == ev["per_clip_rmse_alpha_hat"]
    )
    # ... while the test targets do matter (the comparison above can fail)
    ev_g = evaluate(garbled, path)
    assert ev_g["rmse_alpha_hat"] > ev["rmse_alpha_hat"] + 10
    # the train-split evaluation reads exactly the train frames' targets
    ev_tr = evaluate(s, path, split="train")
    assert ev_tr["n_frames"] == len(train_alpha)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    corpus = synthetic_corpus(frames=40)
    out = tmp_path_factory.mktemp("a2e")
    path = train(
        corpus, _tiny_cfgs(), TrainConfig(iterations=30, batch_size=16, ckpt_every=10), out, progress=False
    )
    return corpus, path


def test_predict_alpha_matches_training_forward_and_refines(trained):
    from emohead_core.audio2exp.infer import predict_alpha
    from emohead_core.audio2exp.train import load_model

    corpus, path = trained
    clip = corpus.clips[0]
    pred = predict_alpha(path.parent, clip.feats, emotion=clip.emotion)
    T = clip.T
    assert pred.alpha_hat.shape == (T, 10) and pred.tau.shape == (T,)
    # same numbers as a direct forward pass on the training-time windows
    net, _ = load_model(path)
    table = FrameTable(corpus, [0], net.cfg.context)
    with torch.no_grad():
        a, t = net(*table.windows(torch.arange(T)))
    np.testing.assert_allclose(pred.alpha_tilde, a.numpy(), atol=1e-5)
    np.testing.assert_allclose(
        pred.alpha_hat, (a + t[:, None] * torch.from_numpy(clip.w_z)).numpy(), atol=1e-5
    )
    # intensity 0 -> no refinement; fixed tau moves exactly intensity along w_z
    p0 = predict_alpha(path, clip.feats, emotion=clip.emotion, intensity=0.0)
    np.testing.assert_allclose(p0.alpha_hat, p0.alpha_tilde)
    pf = predict_alpha(path, clip.feats, emotion="sad", intensity=2.0, tau_mode="fixed")
    w_sad = next(c.w_z for c in corpus.clips if c.emotion == "sad")
    np.testing.assert_allclose(pf.alpha_hat - pf.alpha_tilde, np.tile(2.0 * w_sad, (T, 1)), atol=1e-5)
    # a checkpoint works as well as the final model
    pc = predict_alpha(sorted((path.parent / "ckpt").glob("iter_*.pt"))[-1], clip.feats, emotion=clip.emotion)
    np.testing.assert_allclose(pc.alpha_hat, pred.alpha_hat, atol=1e-6)


def test_predict_alpha_timeline_switches_hyperplane(trained):
    from emohead_core.audio2exp.infer import predict_alpha

    corpus, path = trained
    clip = corpus.clips[0]
    w = {c.emotion: c.w_z for c in corpus.clips}
    pred = predict_alpha(path, clip.feats, timeline="0:happy,0.8:sad", ramp_s=0.4, tau_mode="fixed")
    np.testing.assert_allclose(pred.w[0], w["happy"], atol=1e-6)  # before the switch
    np.testing.assert_allclose(pred.w[-1], w["sad"], atol=1e-6)  # after the ramp
    mid = int(0.8 * 25)  # centre of the ramp: half of each
    np.testing.assert_allclose(pred.w[mid], 0.5 * w["happy"] + 0.5 * w["sad"], atol=0.06)
    assert pred.renderer_input() is pred.alpha_hat
    with pytest.raises(EmoheadInputError, match="contempt"):
        predict_alpha(path, clip.feats, emotion="contempt")  # no hyperplane for it
    with pytest.raises((EmoheadInputError, RuntimeError, ValueError)):
        predict_alpha(path, {k: v[:, :-1] for k, v in clip.feats.items()}, emotion="sad")  # wrong dims


def _write_results(root, corpus, encoders):
    """Write a synthetic corpus in the results/ layout through the upstream stages' writers."""
    import json

    import pandas as pd

    from emohead_core.expression.schema import COLUMNS, write_expression
    from emohead_core.features.cache import encode_vector, write_features
    from emohead_core.layout import clip_file

    ds = root / "toy"
    rows = []
    for c in corpus.clips:
        rows.append(
            {
                "sample_id": c.sample_id,
                "dataset": "toy",
                "actor": c.actor,
                "emotion": c.emotion,
                "intensity": None,
                "sentence": c.sentence,
                "split": c.split,
                "video_path": "" if c.alpha is None else f"/x/{c.sample_id}.mp4",
                "audio_path": f"/x/{c.sample_id}.wav",
                "duration_s": c.T / 25,
            }
        )
        for k, name in encoders.items():
            write_features(
                clip_file(str(root), "toy", "features", c.actor, c.sample_id, name),
                c.feats[k],
                {"encoder": name, "role": k, "silence": encode_vector(corpus.silence[k] + 0.25)},
                dtype="float32",
            )
        if c.alpha is not None:
            T = c.T
            data = {n: np.zeros((T,) if w is None else (T, w), dtype=dt) for n, (_, w, dt) in COLUMNS.items()}
            data["frame"] = np.arange(T)
            data["exp"] = c.alpha
            data["detected"] = np.ones(T, bool)
            data["detected"][3] = False
            write_expression(
                clip_file(str(root), "toy", "expression", c.actor, c.sample_id), data, {"fps": 25}
            )
    pd.DataFrame(rows).to_parquet(ds / "samples.parquet")
    hp = {}
    for c in corpus.clips:
        hp[c.emotion] = {"w_z": c.w_z.tolist(), "b": 0.1}
    for actor in {c.actor for c in corpus.clips if c.alpha is not None}:
        p = ds / "hyperplanes" / actor / "hyperplanes.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({"hyperplanes": hp}))
    return ds


def test_pipeline_reads_results_layout_and_writes_eval(tmp_path):
    import json

    from emohead_core.audio2exp.data import load_corpus
    from emohead_core.audio2exp.pipeline import evaluate_variant, train_variant

    corpus = synthetic_corpus(frames=30, audio_only=("C",))
    encoders = {"v": "aud", "e": "emo", "gamma": "txt"}
    _write_results(tmp_path, corpus, encoders)
    got = load_corpus(tmp_path, "toy", encoders)
    assert [c.sample_id for c in got.clips] == sorted(c.sample_id for c in corpus.clips)
    by_id = {c.sample_id: c for c in corpus.clips}
    for c in got.clips:
        ref = by_id[c.sample_id]
        np.testing.assert_allclose(c.feats["v"], ref.feats["v"])
        np.testing.assert_allclose(c.w_z, ref.w_z, atol=1e-6)  # audio-only C gets A's hyperplanes
        if ref.alpha is None:
            assert c.alpha is None
        else:
            np.testing.assert_allclose(c.alpha, ref.alpha)
            assert not c.alpha_mask[3] and c.alpha_mask.sum() == c.T - 1  # undetected frame masked
    np.testing.assert_allclose(got.silence["gamma"], corpus.silence["gamma"] + 0.25)
    # a forced hyperplane set (e.g. the expression stage's pooled "all") applies to every clip
    pooled = tmp_path / "toy" / "hyperplanes" / "all" / "hyperplanes.json"
    pooled.parent.mkdir(parents=True)
    w = np.eye(10)[2]
    pooled.write_text(
        json.dumps({"hyperplanes": {z: {"w_z": w.tolist(), "b": 0.0} for z in ("angry", "happy", "sad")}})
    )
    forced = load_corpus(tmp_path, "toy", encoders, hyperplane_actor="all")
    assert all(np.allclose(c.w_z, w) for c in forced.clips)
    section = {
        "features": encoders,
        "model": {"d": 16, "d_h": 16, "n": 3, "ffn": [32, 16]},
        "train": {"iterations": 20, "batch_size": 8, "ckpt_every": 10},
        "variants": {"main": {}, "wo_alignment": {"architecture": "transformer", "transformer_heads": 2}},
    }
    out = tmp_path / "toy" / "audio2exp" / "wo_alignment"
    model = train_variant(tmp_path, "toy", section, "wo_alignment", out, progress=False)
    ev = evaluate_variant(tmp_path, "toy", section, "wo_alignment", model, out / "eval.json")
    saved = json.loads((out / "eval.json").read_text())
    assert saved["model_config"]["architecture"] == "transformer" and saved["variant"] == "wo_alignment"
    assert saved["rmse_constant_mean"] == pytest.approx(ev["rmse_constant_mean"])
    assert saved["n_frames"] == sum(
        c.T - 1 for c in corpus.clips if c.split == "test" and c.alpha is not None
    )
    assert saved["split_mode"] == {"mode": "samples"}
    # the within-clip split mode from the config section reaches the corpus
    tw = load_corpus(tmp_path, "toy", encoders, split={"mode": "within_clip", "test_fraction": 0.25})
    assert tw.meta["split"]["mode"] == "within_clip"
    assert all((c.test_from is not None) == (c.alpha is not None) for c in tw.clips)


def test_variant_config_overrides():
    from emohead_core.audio2exp.config import make_configs
    from emohead_core.config import load_config
    from emohead_core.errors import EmoheadInputError

    sec = load_config()["audio2exp"]
    dims = {"v": 768, "e": 768, "gamma": 4096}
    m, t = make_configs(sec, "main", dims)
    assert (m.d, m.d_h, m.n, t.rho, t.lr, t.iterations) == (512, 512, 5, 0.5, 5e-4, 20000)
    assert make_configs(sec, "d256", dims)[0].d_h == 256
    assert make_configs(sec, "n12", dims)[0].n == 12
    assert make_configs(sec, "rho0.7", dims)[1].rho == 0.7
    assert make_configs(sec, "wo_alignment", dims)[0].architecture == "transformer"
    assert make_configs(sec, "wo_refinement", dims)[0].refinement is False
    with pytest.raises(EmoheadInputError):
        make_configs(sec, "nope", dims)
    with pytest.raises(EmoheadInputError):
        make_configs({**sec, "variants": {"bad": {"dd": 3}}}, "bad", dims)


def test_input_manifest_lists_every_clip_file_and_changes_when_one_is_rewritten(tmp_path, monkeypatch):
    """rule audio2exp_inputs: the train/evaluate jobs depend on this one manifest instead of
    every per-clip file, so it must cover each of them and change when one changes."""
    import json
    import os

    import pandas as pd

    from emohead_core.audio2exp.pipeline import write_input_manifest
    from emohead_core.audio2exp.plan import job_inputs, manifest_inputs

    df = pd.DataFrame(
        {
            "sample_id": ["a1", "a2", "b1", "b2"],
            "actor": ["A", "A", "B", "B"],
            "split": ["train", "test", "train", "val"],
            "video_path": ["x.mp4", "", "y.mp4", "z.mp4"],
        }
    )
    cfg = {"audio2exp": {"features": {"v": "enc1", "e": "enc2", "gamma": "enc1"}}}
    ins = manifest_inputs(cfg, {"ds": df}, "res", "ds")
    # per-clip files in the actor layout (emohead_core.layout.clip_file)
    actor = {"a1": "A", "a2": "A", "b1": "B"}
    assert sorted(ins["features"]) == sorted(
        f"res/ds/features/{e}/{actor[s]}/{s}.parquet" for e in ("enc1", "enc2") for s in ("a1", "a2", "b1")
    )
    assert ins["expression"] == ["res/ds/expression/A/a1.parquet", "res/ds/expression/B/b1.parquet"]
    job = job_inputs(cfg, {"ds": df}, "res", "ds")
    assert job["manifest"] == "res/ds/audio2exp/inputs.json"
    assert not any(
        p.endswith(("a1.parquet", "b1.parquet"))
        for v in job.values()
        for p in (v if isinstance(v, list) else [v])
    )
    assert job["hyperplanes"] == [
        "res/ds/hyperplanes/A/hyperplanes.json",
        "res/ds/hyperplanes/B/hyperplanes.json",
    ]

    monkeypatch.chdir(tmp_path)
    for p in ins["features"] + ins["expression"]:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(b"x")
    out = tmp_path / "m.json"
    write_input_manifest(ins, out)
    first = json.loads(out.read_text())
    assert [r[0] for r in first["files"]["features"]] == ins["features"]
    with open(ins["expression"][1], "wb") as f:
        f.write(b"longer")
    write_input_manifest(ins, out)
    assert json.loads(out.read_text()) != first
    os.remove(ins["features"][0])
    with pytest.raises(ValueError, match="missing"):
        write_input_manifest(ins, out)


def _clip(sid, actor, emotion, alpha, mask=None, split="train"):
    from emohead_core.audio2exp.data import CorpusClip

    T = len(alpha) if alpha is not None else 3
    feats = {k: np.zeros((T, 1), np.float32) for k in ("v", "e", "gamma")}
    a = None if alpha is None else np.asarray(alpha, np.float32)
    m = None if alpha is None else (np.ones(T, bool) if mask is None else np.asarray(mask, bool))
    return CorpusClip(sid, actor, emotion, "s1", split, feats, a, m)


def test_alpha_baselines_match_hand_computed_rmse():
    """The three trivial predictors of eval.json on a tiny corpus, against values worked out by
    hand (within-clip split, test fraction 0.34: the last 2 of 6 frames, the last 1 of 3)."""
    from emohead_core.audio2exp.baselines import baseline_rmse
    from emohead_core.audio2exp.data import Corpus, split_corpus

    t = np.arange(6)
    clips = [
        # frames 0-3 train (frame 3 undetected: the last training target is frame 2), 4-5 test
        _clip("A_hap", "A", "happy", np.stack([t, 2 * t], 1), mask=[1, 1, 1, 0, 1, 1]),
        _clip("B_hap", "B", "happy", [[10, 0], [12, 0], [20, 0]]),  # frames 0-1 train, 2 test
        _clip("C_sad", "A", "sad", [[-1, -1], [-3, -3], [0, 0]]),
        _clip("D_aud", "C", "happy", None),  # audio only: never a target
    ]
    silence = {k: np.zeros(1, np.float32) for k in ("v", "e", "gamma")}
    corpus = split_corpus(Corpus(clips, silence, m=2), "within_clip", 0.34)
    got = baseline_rmse(corpus)
    # clip training-span means (1, 2), (11, 0), (-2, -2): squared errors 125 + 81 + 8 over 8 values
    assert got["rmse_baseline_clip_train_mean"] == pytest.approx(np.sqrt(214 / 8))
    # last training frames (2, 4), (12, 0), (-3, -3): 65 + 64 + 18
    assert got["rmse_baseline_last_train_frame"] == pytest.approx(np.sqrt(147 / 8))
    # tag means over the training frames of every clip: happy (5, 1.2), sad (-2, -2)
    assert got["rmse_baseline_emotion_mean"] == pytest.approx(np.sqrt((124.68 + 226.44 + 8) / 8))
    assert (
        got["baselines"]["emotion_mean"]["n_frames"] == 4 and got["baselines"]["emotion_mean"]["n_clips"] == 3
    )
    # an undetected training frame is never read; a detected one is
    clips[0].alpha[3] = [99, 99]
    assert baseline_rmse(split_corpus(Corpus(clips, silence, m=2), "within_clip", 0.34)) == got
    clips[1].alpha[0] = [14, 0]
    moved = baseline_rmse(split_corpus(Corpus(clips, silence, m=2), "within_clip", 0.34))
    assert moved["rmse_baseline_clip_train_mean"] != got["rmse_baseline_clip_train_mean"]
    assert moved["rmse_baseline_last_train_frame"] == got["rmse_baseline_last_train_frame"]
    clips[1].alpha[0] = [10, 0]
    # a tag without training frames takes the mean of all training frames; a clip without
    # training targets has no own-clip baseline (left out, counted)
    clips.append(_clip("E_fea", "B", "fear", [[7, 7], [7, 7], [1, 1]], mask=[0, 0, 1]))
    got2 = baseline_rmse(split_corpus(Corpus(clips, silence, m=2), "within_clip", 0.34))
    assert got2["baselines"]["clip_train_mean"]["n_frames"] == 4
    assert got2["rmse_baseline_clip_train_mean"] == got["rmse_baseline_clip_train_mean"]
    overall = np.array([0 + 1 + 2 + 10 + 12 - 1 - 3, 0 + 2 + 4 + 0 + 0 - 1 - 3]) / 7
    ss_e = float(((overall - [1, 1]) ** 2).sum())
    assert got2["rmse_baseline_emotion_mean"] == pytest.approx(np.sqrt((124.68 + 226.44 + 8 + ss_e) / 10))
    # samples mode: test clips are held out whole, so no own-clip baseline (None with the reason)
    held = [
        _clip("A_hap", "A", "happy", [[1, 1], [3, 3]]),
        _clip("B_hap", "B", "happy", [[5, 5]], split="test"),
    ]
    got3 = baseline_rmse(split_corpus(Corpus(held, silence, m=2), "samples"))
    assert got3["rmse_baseline_clip_train_mean"] is None and got3["rmse_baseline_last_train_frame"] is None
    assert "samples" in got3["baselines"]["clip_train_mean"]["note"]
    assert got3["rmse_baseline_emotion_mean"] == pytest.approx(3.0)  # (2, 2) against (5, 5)
