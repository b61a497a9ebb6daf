"""Emotion hyperplanes (Appendix B) on synthetic expression data with known directions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from emohead_core import emotion_edit as E
from emohead_core.errors import EmoheadInputError
from emohead_core.expression import hyperplanes as H

K = 6
SCALES = np.array([0.3, 0.5, 1.0, 2.0, 3.0, 0.7, 1.5, 0.4, 2.5, 1.0])  # raw-space axis scales


def simplex_dirs(rng, k=K, dim=10):
    """k unit vectors (regular simplex, pairwise cos -1/(k-1)) in a random (k-1)-d subspace.

    For one-vs-rest with identically shaped class clouds around s * mu_j, symmetry puts the
    separating normal of class k exactly along mu_k (sum_j mu_j = 0)."""
    E = np.eye(k) - 1.0 / k
    _, _, Vt = np.linalg.svd(E)
    V = E @ Vt[: k - 1].T
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    Q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return V @ Q[: k - 1], Q[k - 1 :]  # (k, dim) directions, orthonormal complement rows


def synthetic(rng, n=500, sep=2.0, noise=0.5, confound=0.0):
    """Frames y = sep * mu_k + noise in a whitened space, raw alpha = y * SCALES.

    ``confound`` > 0: a mouth-opening direction m (orthogonal to every mu) is added with
    amplitude MAR * confound, and emotion e0 is spoken with a wider-open mouth (larger MAR), so
    MAR and the e0 label are correlated."""
    mu, comp = simplex_dirs(rng)
    m_dir = comp[0]
    X, L, M, C = [], [], [], []
    for k in range(K):
        # speech-like mouth openings spread over the MAR range; e0 opens wider when confounded
        a, b = (4.0, 1.5) if (k == 0 and confound > 0) else (2.0, 2.0)
        mar = 0.05 + 0.8 * rng.beta(a, b, size=n)
        y = sep * mu[k] + noise * rng.normal(size=(n, 10)) + confound * mar[:, None] * m_dir
        X.append(y * SCALES)
        L += [f"e{k}"] * n
        M.append(mar)
        C += [f"clip{k}"] * n
    truth = mu / SCALES  # normal in raw space: w_y . y = (w_y / SCALES) . alpha
    truth /= np.linalg.norm(truth, axis=1, keepdims=True)
    return np.concatenate(X), np.concatenate(M), np.array(L, dtype=object), np.array(C, dtype=object), truth


def test_recovers_known_normals_in_raw_space():
    # 1,500 frames per class: with 500 the estimation error alone (amplified on the small-scale
    # raw axes) brings some normals to cos ~0.9 depending on the data draw
    rng = np.random.default_rng(0)
    X, M, L, C, truth = synthetic(rng, n=1500)
    res = H.train_hyperplanes(X, M, L, C, n_groups=5, C=1.0, cv_folds=5, seed=0)
    assert set(res["hyperplanes"]) == {f"e{k}" for k in range(K)}
    for k in range(K):
        h = res["hyperplanes"][f"e{k}"]
        assert np.isclose(np.linalg.norm(h.w_z), 1.0)
        assert h.w_z @ truth[k] >= 0.95, (k, h.w_z @ truth[k])
        # signed distance: positives on the positive side
        d = h.distance(X)
        assert (d[L == f"e{k}"] > 0).mean() > 0.9 and (d[L != f"e{k}"] < 0).mean() > 0.9
        assert h.cv["bacc_balanced"] > 0.9
    # an identity-scaled fit would point elsewhere: the raw-space mapping matters
    naive = truth[0] * SCALES
    naive /= np.linalg.norm(naive)
    assert res["hyperplanes"]["e0"].w_z @ naive < 0.95


def test_mar_balancing_removes_mouth_confound():
    rng = np.random.default_rng(1)
    X, M, L, C, truth = synthetic(rng, n=600, confound=6.0)
    res = H.train_hyperplanes(X, M, L, C, emotions=["e0"], seed=0, cv_folds=0)
    w_bal = res["hyperplanes"]["e0"].w_z
    w_unbal, _ = H.fit_linear_svm(X, L == "e0")
    cos_bal, cos_unbal = float(w_bal @ truth[0]), float(w_unbal @ truth[0])
    assert cos_bal >= 0.95, cos_bal
    assert cos_bal > cos_unbal + 0.02, (cos_bal, cos_unbal)


def test_balanced_sampling_equal_counts_per_group():
    rng = np.random.default_rng(2)
    n = 3000
    mar = rng.gamma(2.0, 0.15, size=n)
    pos = rng.random(n) < 0.2 + 0.5 * (mar > 0.4)  # positives skewed to open mouths
    edges = H.mar_group_edges(mar, 5)
    assert np.allclose(np.diff(edges), (mar.max() - mar.min()) / 5)
    g = H.mar_groups(mar, edges)
    assert g.min() == 0 and g.max() == 4 and g[np.argmax(mar)] == 4
    idx, counts = H.balanced_indices(pos, g, 5, rng)
    usable = [k for k in range(5) if (pos & (g == k)).any() and (~pos & (g == k)).any()]
    assert len(usable) >= 4
    per_group = [int((g[idx] == k).sum()) for k in range(5)]
    assert per_group == counts.tolist()
    assert len({per_group[k] for k in usable}) == 1  # equal counts in every usable group
    for k in usable:
        sel = idx[g[idx] == k]
        assert pos[sel].sum() == (~pos[sel]).sum()  # balanced positives / negatives
    # a cell with fewer frames than the quota is oversampled, others are not duplicated
    for k in usable:
        for cls in (True, False):
            cell = idx[(g[idx] == k) & (pos[idx] == cls)]
            if ((pos == cls) & (g == k)).sum() >= len(cell):
                assert len(np.unique(cell)) == len(cell)


def test_refine_matches_direct_computation():
    rng = np.random.default_rng(3)
    alpha = rng.normal(size=(7, 10))
    w = rng.normal(size=10)
    w /= np.linalg.norm(w)
    assert np.allclose(E.refine(alpha, 0.8, w), alpha + 0.8 * w)  # eq. (9), scalar tau
    tau = rng.normal(size=7)
    direct = np.stack([alpha[t] + tau[t] * w for t in range(7)])
    assert np.allclose(E.refine(alpha, tau, w), direct)
    assert np.allclose(E.refine(alpha, tau[:, None], w), direct)
    W = rng.normal(size=(7, 10))
    assert np.allclose(E.refine(alpha, tau, W), alpha + tau[:, None] * W)
    out = E.refine(torch.tensor(alpha), torch.tensor(tau), torch.tensor(w))
    assert torch.allclose(out, torch.tensor(direct))


def test_timeline_switch_with_linear_ramp():
    assert E.parse_timeline("2.5:sad, 0:happy") == [(0.0, "happy"), (2.5, "sad")]
    with pytest.raises(EmoheadInputError):
        E.parse_timeline("happy")
    rng = np.random.default_rng(4)
    hp = {
        z: (v / np.linalg.norm(v), 0.1)
        for z, v in (("happy", rng.normal(size=10)), ("sad", rng.normal(size=10)))
    }
    fps, n = 25.0, 125
    td = E.timeline_directions("0:happy,2.5:sad", n, fps, hp, ramp_s=1.0)
    t = np.arange(n) / fps
    lam = np.clip((t - 2.5) / 1.0 + 0.5, 0, 1)
    direct = (1 - lam)[:, None] * hp["happy"][0] + lam[:, None] * hp["sad"][0]
    assert np.allclose(td.W, direct)
    assert td.emotions == ["happy", "sad"] and np.allclose(td.weights.sum(1), 1.0)
    assert np.allclose(td.W[t < 2.0], hp["happy"][0]) and np.allclose(td.W[t >= 3.0], hp["sad"][0])
    assert np.allclose(td.weights[:, 1], lam)  # half-way (0.5) exactly at the switch time
    assert np.isclose(E.timeline_directions("0:happy,2:sad", n, fps, hp, ramp_s=1.0).weights[50, 1], 0.5)
    hard = E.timeline_directions([(0.0, "happy"), (2.5, "sad")], n, fps, hp, ramp_s=0.0)
    assert np.allclose(hard.W[t < 2.5], hp["happy"][0]) and np.allclose(hard.W[t >= 2.5], hp["sad"][0])
    tau = np.linspace(0, 1, n)
    alpha = rng.normal(size=(n, 10))
    assert np.allclose(E.refine(alpha, tau, td.W), alpha + tau[:, None] * direct)
    with pytest.raises(EmoheadInputError, match="no hyperplane"):
        E.timeline_directions("0:angry", n, fps, hp)


def test_save_load_plots_and_table(tmp_path):
    rng = np.random.default_rng(5)
    X, M, L, C, _ = synthetic(rng, n=150)
    res = H.train_hyperplanes(X, M, L, C, cv_folds=3)
    paths = H.save_hyperplanes(
        res, tmp_path, meta={"dataset": "syn", "actor": "x"}, frames={"exp": X, "emotion": L}
    )
    for key in ("json", "parquet", "csv", "md", "distances", "projection", "cv_accuracy"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0, key
    for key in ("distances", "projection", "cv_accuracy"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    a, b = H.load_hyperplanes(paths["json"]), H.load_hyperplanes(paths["parquet"])
    assert H.load_hyperplanes(tmp_path).keys() == a.keys()
    for z, h in res["hyperplanes"].items():
        assert np.allclose(a[z][0], h.w_z) and np.allclose(b[z][0], h.w_z)
        assert np.isclose(a[z][1], h.b) and np.isclose(b[z][1], h.b)
    table = pd.read_csv(paths["csv"])
    assert list(table["emotion"]) == list(res["hyperplanes"])
    assert {"bacc_balanced", "bacc_unbalanced"} <= set(table.columns)
    md = paths["md"].read_text()
    assert "| e3 |" in md and "mean" in md


def test_collect_frames_uses_train_split_of_actor(tmp_path):
    from emohead_core.expression.schema import COLUMNS, write_expression

    def fake_clip(path, n, exp_value, detected=None):
        data = {}
        for name, (_, width, dtype) in COLUMNS.items():
            shape = (n,) if width is None else (n, width)
            data[name] = np.zeros(shape, dtype)
        data["frame"] = np.arange(n)
        data["detected"] = np.ones(n, bool) if detected is None else detected
        data["exp"][:] = exp_value
        data["mar"][:] = 0.3
        write_expression(path, data, {"fps": 25})

    rows = []
    for i, (actor, emo, split) in enumerate(
        [("1", "happy", "train"), ("1", "sad", "train"), ("1", "angry", "test"), ("2", "happy", "train")]
    ):
        sid = f"s{i}"
        fake_clip(tmp_path / f"{sid}.parquet", 10, i, detected=np.arange(10) >= 2)
        rows.append({"sample_id": sid, "actor": actor, "emotion": emo, "split": split, "video_path": "v.mp4"})
    df = pd.DataFrame(rows)
    paths = {r["sample_id"]: tmp_path / f"{r['sample_id']}.parquet" for r in rows}
    f = H.collect_frames(df, paths, actor="1")
    assert len(f["exp"]) == 16 and set(f["emotion"]) == {
        "happy",
        "sad",
    }  # test split, undetected frames dropped
    assert set(np.unique(f["exp"][:, 0])) == {0.0, 1.0}
    pooled = H.collect_frames(df, paths, actor="all", splits=("train", "test"))
    assert len(pooled["exp"]) == 32
    with pytest.raises(EmoheadInputError):
        H.collect_frames(df, paths, actor="9")


# ----------------------------------------------------------------------------- edit directions


def test_whitened_edit_direction_is_the_shortest_step_in_mahalanobis_length():
    """d = Sigma w / |Sigma w| raises w . alpha by a given amount with the smallest Mahalanobis
    length of any direction (the raw normal w included); raw space returns w itself."""
    rng = np.random.default_rng(3)
    A = rng.normal(size=(10, 10)) * SCALES
    cov = A @ A.T + 0.01 * np.eye(10)
    w = rng.normal(size=10)
    w /= np.linalg.norm(w)
    d = H.edit_direction(w, cov, "whitened")
    assert np.linalg.norm(d) == pytest.approx(1.0)
    assert np.allclose(H.edit_direction(w, cov, "raw"), w)
    icov = np.linalg.inv(cov)

    def maha_len_for_unit_gain(v):  # step t v with w . (t v) = 1
        step = v / float(w @ v)
        return float(np.sqrt(step @ icov @ step))

    best = maha_len_for_unit_gain(d)
    assert best < maha_len_for_unit_gain(w) * 0.9  # strictly better than the raw normal here
    for v in rng.normal(size=(200, 10)):
        if abs(w @ v) > 1e-3:
            assert best <= maha_len_for_unit_gain(v) + 1e-9
    with pytest.raises(EmoheadInputError, match="edit space"):
        H.edit_direction(w, cov, "pca")


def test_whitened_edit_follows_the_class_mean_shift_the_raw_normal_does_not():
    """Classes that differ by a mean shift under a shared, anisotropic covariance: the whitened
    edit direction is the raw-space shift of the class mean (the way that emotion's frames really
    move); the raw normal w_z points elsewhere (towards the small-scale axes)."""
    rng = np.random.default_rng(0)
    X, M, L, C, _ = synthetic(rng, n=800)
    res = H.train_hyperplanes(X, M, L, C, cv_folds=0)
    assert res["edit_space"] == "whitened"
    for z, h in res["hyperplanes"].items():
        shift = X[L == z].mean(0) - X[L != z].mean(0)
        shift /= np.linalg.norm(shift)
        assert float(h.d_z @ shift) > 0.97, z
        assert float(h.w_z @ shift) < 0.9, z  # the test tells the two apart
        # moving along d_z raises the score: w . d > 0
        assert float(h.w_z @ h.d_z) > 0
    raw = H.train_hyperplanes(X, M, L, C, cv_folds=0, edit_space="raw")
    for h in raw["hyperplanes"].values():
        assert np.allclose(h.d_z, h.w_z)
    with pytest.raises(EmoheadInputError, match="edit space"):
        H.train_hyperplanes(X, M, L, C, cv_folds=0, edit_space="pca")


def test_edit_directions_saved_loaded_and_used_by_the_edit(tmp_path):
    rng = np.random.default_rng(1)
    X, M, L, C, _ = synthetic(rng, n=200)
    res = H.train_hyperplanes(X, M, L, C, cv_folds=0)
    paths = H.save_hyperplanes(res, tmp_path / "hp", plots=False)
    for p in (paths["json"], paths["parquet"]):
        dirs = H.load_edit_directions(p)
        hp = H.load_hyperplanes(p)
        for z, h in res["hyperplanes"].items():
            assert np.allclose(dirs[z], h.d_z) and np.allclose(hp[z][0], h.w_z)
        assert H.read_hyperplanes(p).edit_space == "whitened"
    # eq. (9) through the run-time edit moves along d_z, not w_z
    assert np.allclose(E.emotion_directions(paths["json"])["e2"], res["hyperplanes"]["e2"].d_z, atol=1e-6)
    td = E.timeline_directions([(0.0, "e1"), (1.0, "e3")], 50, 25.0, paths["json"], ramp_s=0.0)
    assert np.allclose(td.W[0], res["hyperplanes"]["e1"].d_z) and np.allclose(
        td.W[-1], res["hyperplanes"]["e3"].d_z
    )
    # a file written before edit directions existed: its edits moved along the raw normal
    import json

    doc = json.loads(paths["json"].read_text())
    for h in doc["hyperplanes"].values():
        del h["d_z"]
    del doc["edit_space"]
    old = tmp_path / "old" / "hyperplanes.json"
    old.parent.mkdir()
    old.write_text(json.dumps(doc))
    assert np.allclose(H.load_edit_directions(old)["e1"], res["hyperplanes"]["e1"].w_z)
    assert H.read_hyperplanes(old).edit_space == "raw"


# ----------------------------------------------------------------------------- edit spaces, held-out


def test_edit_spaces_class_mean_within_and_shrunk():
    """class_mean is the tag's mean minus the neutral frames' mean; within uses the pooled
    within-class covariance (frames minus their class mean); shrunk the Ledoit-Wolf estimate; all
    are unit vectors, and every file reports the pairwise cosines of its directions."""
    from sklearn.covariance import LedoitWolf

    rng = np.random.default_rng(5)
    X, M, L, C, _ = synthetic(rng, n=300)
    L = np.where(L == "e0", "neutral", L).astype(object)
    stats = H.ExpressionStats(X, L)
    for z in ("e1", "e4"):
        shift = X[L == z].mean(0) - X[L == "neutral"].mean(0)
        assert np.allclose(
            H.direction_for("class_mean", z, np.ones(10), stats), shift / np.linalg.norm(shift)
        )
    others = np.mean([X[L == t].mean(0) for t in set(L) - {"neutral"}], axis=0)
    neu = X[L == "neutral"].mean(0) - others
    assert np.allclose(
        H.direction_for("class_mean", "neutral", np.ones(10), stats), neu / np.linalg.norm(neu)
    )
    R = X - np.stack([X[L == t].mean(0) for t in L])
    Sw = R.T @ R / (len(X) - len(set(L)))
    w = rng.normal(size=10)
    w /= np.linalg.norm(w)
    assert np.allclose(H.direction_for("within", "e1", w, stats), Sw @ w / np.linalg.norm(Sw @ w))
    S = LedoitWolf().fit(X).covariance_
    assert np.allclose(H.direction_for("shrunk", "e1", w, stats), S @ w / np.linalg.norm(S @ w))
    # within-class whitening ignores the emotion shifts that dominate the total covariance
    assert not np.allclose(
        H.direction_for("within", "e1", w, stats), H.direction_for("whitened", "e1", w, stats)
    )
    res = H.train_hyperplanes(X, M, L, C, cv_folds=0, edit_space="class_mean")
    cos = res["direction_cosines"]
    D = np.stack([res["hyperplanes"][z].d_z for z in cos["tags"]])
    assert np.allclose(np.asarray(cos["cos"]), D @ D.T, atol=1e-5)
    off = np.abs(D @ D.T)[~np.eye(len(D), dtype=bool)]
    assert cos["max_abs_cos"] == pytest.approx(off.max(), abs=1e-6)
    assert set(res["edit_spaces"]) == set(H.EDIT_SPACES)
    assert all(0 <= v["agreement_mean"] <= 1 for v in res["edit_spaces"].values())


def test_direction_cosines_and_requested_agreement_on_known_directions():
    dirs = {"a": np.array([1.0, 0, 0]), "b": np.array([0.6, 0.8, 0]), "c": np.array([0, 0, -1.0])}
    cos = H.direction_cosines(dirs)
    assert cos["max_abs_cos"] == pytest.approx(0.6) and cos["closest_pair"] == ["a", "b"]
    # two tags on a line: moving the other tag's frames by tau = 1 person unit along the tag's
    # mean shift lands them on the tag's side of its hyperplane
    X = np.concatenate([np.zeros((20, 10)), np.zeros((20, 10))])
    X[20:, 0] = 2.0
    X += np.random.default_rng(0).normal(scale=0.1, size=X.shape)
    labels = np.array(["neutral"] * 20 + ["happy"] * 20, dtype=object)
    e = np.eye(10)[0]
    clf = {"happy": (e, -1.0), "neutral": (-e, 1.0)}
    agree = H.requested_agreement(clf, {"happy": e, "neutral": -e}, X, labels)
    assert agree["happy"] >= 0.8 and agree["neutral"] >= 0.8
    # a direction that does not raise the score cannot be requested
    assert np.isnan(H.requested_agreement(clf, {"happy": np.eye(10)[1]}, X, labels)["happy"])


def _write_clip_expression(path, exp, mar):
    from emohead_core.expression.schema import COLUMNS, write_expression

    T = len(exp)
    data = {name: np.zeros((T, width) if width else T, dtype) for name, (_, width, dtype) in COLUMNS.items()}
    data.update(frame=np.arange(T), detected=np.ones(T, bool), exp=np.asarray(exp), mar=np.asarray(mar))
    write_expression(path, data, {"sample": path.stem})


def test_held_out_frames_never_enter_the_fit(tmp_path):
    """The last frames of a clip that a later stage tests on (held_out) are left out of the
    hyperplane fit: replacing their alphas by anything leaves every output unchanged, while the
    same change to a kept frame moves the fit (the test can fail)."""
    rng = np.random.default_rng(2)
    X, M, L, C, _ = synthetic(rng, n=60)
    table, paths = [], {}
    for k in range(K):
        sid = f"clip{k}"
        sel = C == sid
        _write_clip_expression(tmp_path / f"{sid}.parquet", X[sel], M[sel])
        paths[sid] = tmp_path / f"{sid}.parquet"
        table.append(dict(sample_id=sid, actor="a", emotion=f"e{k}", split="train", video_path="v.mp4"))
    table = pd.DataFrame(table)
    held = {f"clip{k}": 0.33 for k in range(K)}

    def fit():
        fr = H.collect_frames(table, paths, actor="a", held_out=held)
        res = H.train_hyperplanes(fr["exp"], fr["mar"], fr["emotion"], fr["clip"], cv_folds=0)
        return fr, np.stack([res["hyperplanes"][f"e{k}"].d_z for k in range(K)])

    fr, before = fit()
    from emohead_core.splits import held_out_count

    n_out = held_out_count(60, 0.33)
    assert fr["held_out_frames"] == {f"clip{k}": n_out for k in range(K)} and len(fr["exp"]) == K * (
        60 - n_out
    )
    sel = C == "clip3"
    poisoned = X[sel].copy()
    poisoned[-n_out:] = 50.0  # every held-out frame of clip3
    _write_clip_expression(tmp_path / "clip3.parquet", poisoned, M[sel])
    assert np.array_equal(fit()[1], before)
    poisoned[0] = 50.0  # a training frame: now the fit must move
    _write_clip_expression(tmp_path / "clip3.parquet", poisoned, M[sel])
    assert not np.allclose(fit()[1], before)


def test_held_out_fractions_cover_the_renderer_and_audio2exp_test_spans():
    """The plan hands each hyperplane fit the held-out share of every clip: a render subject's
    within_clip fraction, 1 for a clips-mode test clip, audio2exp's within_clip fraction."""
    from types import SimpleNamespace

    from emohead_core.expression.plan import held_out_fractions

    samples = {
        "cremad": pd.DataFrame(
            {"sample_id": ["a", "b", "c"], "split": ["train", "test", "train"], "video_path": ["x"] * 3}
        )
    }
    subj = {
        "p": SimpleNamespace(
            dataset="cremad", clips=["a", "b"], split_mode="within_clip", test_fraction=0.25, test={}
        ),
        "q": SimpleNamespace(
            dataset="cremad",
            clips=["b", "c"],
            split_mode="clips",
            test_fraction=0.1,
            test={"b": True, "c": False},
        ),
    }
    cfg = {
        "hyperplanes": {"exclude_held_out": True},
        "audio2exp": {"split": {"mode": "within_clip", "test_fraction": 0.33}},
    }
    got = held_out_fractions(cfg, samples, subj, ["cremad"])
    assert got == {"cremad": {"a": 0.33, "b": 1.0, "c": 0.33}}
    cfg["audio2exp"]["split"] = {"mode": "samples"}
    assert held_out_fractions(cfg, samples, subj, ["cremad"]) == {"cremad": {"a": 0.25, "b": 1.0}}
    cfg["hyperplanes"]["exclude_held_out"] = False
    assert held_out_fractions(cfg, samples, subj, ["cremad"]) == {}


def test_held_out_count_is_shared_by_every_stage():
    from emohead_core.render.data import split_frames
    from emohead_core.splits import held_out_count

    for n in range(2, 130):
        for f in (0.1, 0.2, 0.25, 0.33, 0.5):
            assert split_frames(n, "within_clip", f, False) == n - held_out_count(n, f)
    assert held_out_count(10, 1.0) == 10 and held_out_count(10, 0.0) == 0 and held_out_count(1, 0.5) == 0
