"""Tables I/II/IV/VI from synthetic metric rows (paper rows, n/a cells, pooled FID, RMSE),
the human-evaluation sheet round trip, the pair catalogue, and 3DDFA M/F-LMD on real frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emohead_core.metrics import human as HU
from emohead_core.metrics import pairs as PA
from emohead_core.metrics import paper as P
from emohead_core.metrics import tables as TB

NOTE_SYNC = "n/a: set metrics.syncnet.weights"


def _clip_rows(tmp_path, method, ds, clip, values, fid_shift=None):
    rows = []
    for metric, v in values.items():
        note = "" if np.isfinite(v) or np.isinf(v) else NOTE_SYNC
        rows.append(
            dict(
                dataset=ds,
                method=method,
                clip=clip,
                metric=metric,
                value=v,
                note=note,
                n_frames=10,
                emotion="sad",
                generated="g.mp4",
                ground_truth="t.mp4",
            )
        )
    d = tmp_path / "clips" / method / ds
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{clip}.parquet"
    pd.DataFrame(rows).to_parquet(p)
    f = d / f"{clip}.fid.npz"
    rng = np.random.default_rng(abs(hash(clip)) % 2**32)
    gt = rng.normal(size=(6, 16))
    gen = gt + (fid_shift if fid_shift is not None else 0.0)
    np.savez(f, gen=gen, gt=gt)
    return p, f


@pytest.fixture
def built(tmp_path):
    paths, fids = [], []
    for clip, psnr, ssim in [("a", 30.0, 0.9), ("b", 32.0, 0.8)]:
        p, f = _clip_rows(
            tmp_path,
            "ours",
            "cremad",
            clip,
            {
                "SSIM (head)": ssim - 0.1,
                "PSNR (head)": psnr - 8,
                "LPIPS (head)": 0.02,
                "SSIM": ssim,
                "PSNR": psnr,
                "M-LMD": 1.0,
                "F-LMD": 2.0,
                "LSE-C": np.nan,
                "LSE-D": np.nan,
                "ER": 50.0,
                "FID (clip)": 1.0,
                "AUE (blendshape proxy)": 0.04 if clip == "a" else 0.06,
            },
            fid_shift=1.0,
        )
        paths.append(p)
        fids.append(f)
    # the trivial render baselines of the same test spans (head-region and full-frame columns)
    for method, head in [("baseline_last_frame", 26.0), ("baseline_mean_head", 23.0)]:
        for clip in ("a", "b"):
            p, f = _clip_rows(
                tmp_path,
                method,
                "cremad",
                clip,
                {"SSIM (head)": 0.7, "PSNR (head)": head, "LPIPS (head)": 0.05, "SSIM": 0.95, "PSNR": 33.0},
                fid_shift=0.5,
            )
            paths.append(p)
            fids.append(f)
    p, f = _clip_rows(tmp_path, "groundtruth", "cremad", "a", {"ER": 80.0, "LSE-C": np.nan})
    paths.append(p)
    (tmp_path / "cremad" / "audio2exp" / "main").mkdir(parents=True)
    (tmp_path / "cremad" / "audio2exp" / "main" / "eval.json").write_text(
        json.dumps(
            {
                "rmse_alpha_hat": 0.123,
                "rmse_baseline_clip_train_mean": 0.391,
                "rmse_baseline_last_train_frame": 0.223,
                "rmse_baseline_emotion_mean": None,
                "baselines": {"emotion_mean": {"note": "n/a: no training frames"}},
                "model_config": {"d": 128, "d_h": 128, "n": 5},
                "train_config": {"rho": 0.5},
            }
        )
    )
    spec = TB.TableSpec(
        datasets={"cremad": "crema_d", "obama": "folder"},
        methods=["SadTalker", "ours", "groundtruth"],
        method_notes={"SadTalker": "n/a: set metrics.baselines_dir"},
        ablations=[
            {"label": "Ours", "method": "ours"},
            {"label": "w/o refinement", "method": "ours_wo_refinement"},
            {"label": "Ours (FaceVerse)", "method": None, "note": "n/a: FaceVerse not available"},
            {"label": "d = 512", "method": "ours", "requires": {"d": 512, "d_h": 512}},
            {"label": "n = 5", "method": "ours", "requires": {"n": 5}},
        ],
        loss_ablations=[
            {"label": "L_reg + L_reg^const", "variant": "main", "method": None},
            {"label": "rho = 0.5", "variant": "main", "method": None, "requires": {"rho": 0.5}},
            {"label": "rho = 0.7 (main)", "variant": "main", "method": None, "requires": {"rho": 0.7}},
            {"label": "L_reg", "variant": "wo_contrastive", "method": None},
            {"label": "full", "variant": None, "method": "ours"},
            {
                "label": "full with L_cord",
                "variant": None,
                "method": "ours",
                "requires_refine": {"clip": True, "shape": True},
            },
        ],
    )
    (tmp_path / "render" / "cremad_a").mkdir(parents=True)
    (tmp_path / "render" / "cremad_a" / "subject.json").write_text(
        json.dumps({"dataset": "cremad", "refine": {"clip": False, "shape": True}})
    )
    out = tmp_path / "tables"
    tables = TB.build_all(paths, fids, spec, tmp_path, out)
    return tables, out


def test_main_table_paper_and_measured_rows(built):
    tables, out = built
    t2 = tables["table_II"]
    paper = t2[t2["Source"] == "paper"]
    assert list(paper["Method"]) == [n for n, _ in P.TABLE_II]
    ours_paper = paper[paper["Method"] == "Ours"].iloc[0]
    assert ours_paper["SSIM (full frame) ↑"] == "0.914" and ours_paper["M/F-LMD ↓"] == "1.191/1.035"
    # the paper's numbers stay in the paper rows' full-frame columns (the paper gives no mask)
    assert ours_paper["SSIM (head) ↑"] == "n.r." and ours_paper["FID frames"] == "n.r."
    m = t2[(t2["Source"] == "measured")].set_index("Method")
    ours = m.loc["Ours"]
    assert ours["PSNR (full frame) ↑"] == "31.000" and ours["SSIM (full frame) ↑"] == "0.850"  # 2 clips
    assert ours["M/F-LMD ↓"] == "1.000/2.000"
    assert ours["Sync. ↑"] == NOTE_SYNC  # the n/a cell names the config key
    assert ours["Fidelity ↑"].startswith("n/a")
    # FID pooled over both clips' features: every gen = gt + 1 on 16 dims -> FID = 16
    assert float(ours["FID ↓"]) == pytest.approx(16.0, abs=1e-6)
    assert m.loc["SadTalker", "SSIM (head) ↑"] == "n/a: set metrics.baselines_dir"
    # the proxy is its own column, next to the paper's (OpenFace) AUE, never in it; paper rows: n.r.
    assert ours["AUE (blendshape proxy) ↓"] == "0.050" and ours["AUE ↓"] != "0.050"
    assert ours_paper["AUE (blendshape proxy) ↓"] == "n.r."
    gt = m.loc["Groundtruth"]
    assert gt["SSIM (head) ↑"] == "-" and gt["ER ↑"] == "80.00" and gt["AUE (blendshape proxy) ↓"] == "-"
    # no MEAD dataset configured: Table I has the paper rows and an explicit n/a row
    t1 = tables["table_I"]
    assert (t1["Source"] == "paper").sum() == len(P.TABLE_I)
    assert t1[t1["Source"] == "measured"].iloc[0]["SSIM (head) ↑"].startswith("n/a: no MEAD")
    for ext in ("md", "tex", "csv"):
        assert (out / f"table_II.{ext}").stat().st_size > 0
    md = (out / "table_II.md").read_text()
    assert "| Ours | paper | CREMA-D | n.r. | n.r. | n.r. | 0.914 |" in md and NOTE_SYNC in md
    tex = (out / "table_II.tex").read_text()
    assert "\\begin{tabular}" in tex and "$\\uparrow$" in tex and "n/a: set metrics.syncnet.weights" in tex
    assert pd.read_csv(out / "table_II.csv").shape[1] == t2.shape[1]


def test_ablation_and_loss_tables(built):
    tables, _ = built
    t4 = tables["table_IV"]
    assert (t4["Source"] == "paper").sum() == len(P.TABLE_IV)
    # obama (a folder dataset) has no rendered clips: no ablation rows of its own
    assert set(t4[t4["Source"] == "measured"]["Dataset"]) == {"cremad"}
    meas = t4[t4["Source"] == "measured"].set_index("Setting")
    assert meas.loc["Ours", "PSNR (full frame) ↑"] == "31.000"
    assert meas.loc["w/o refinement", "SSIM (head) ↑"].startswith("n/a: no clips of ours_wo_refinement")
    assert meas.loc["w/o refinement", "PSNR (full frame) ↑"] == "n/a"
    assert meas.loc["Ours (FaceVerse)", "α RMSE ↓"] == "n/a: FaceVerse not available"
    # a row that reuses the main model for a setting it does not have says so; one it has is filled
    assert meas.loc["d = 512", "α RMSE ↓"] == (
        "n/a: the main model has d = 128, d_h = 128, not d = 512, d_h = 512 "
        "(train a variant with that setting)"
    )
    assert meas.loc["n = 5", "PSNR (full frame) ↑"] == "31.000"
    t6 = tables["table_VI"]
    assert (t6["Source"] == "paper").sum() == 2 * len(P.TABLE_VI)
    m6 = t6[t6["Source"] == "measured"].set_index("Setting")
    assert m6.loc["L_reg + L_reg^const", "RMSE ↓"] == "0.12"
    assert m6.loc["L_reg", "RMSE ↓"].startswith("n/a: no ")
    assert m6.loc["rho = 0.5", "RMSE ↓"] == "0.12"
    assert m6.loc["rho = 0.7 (main)", "RMSE ↓"].startswith("n/a: the main model has rho = 0.5, not rho = 0.7")
    assert m6.loc["full", "RMSE ↓"] == "-" and m6.loc["full", "M/F-LMD ↓"] == "1.000/2.000"
    # the renderer behind "ours" was trained without L_cord: the row that claims it says so
    assert m6.loc["full with L_cord", "RMSE ↓"] == (
        "n/a: render subject cremad_a was trained with refine clip = false"
    )
    p6 = t6[(t6["Source"] == "paper") & (t6["Dataset"] == "CREMA-D")].set_index("Setting")
    assert p6.loc["rho = 0.2", "RMSE ↓"] == "0.22"


def test_head_region_columns_and_the_trivial_baselines_beside_ours(built):
    tables, out = built
    t2 = tables["table_II"]
    header = list(t2.columns)
    # the head-region columns come first, the whole-frame ones are labelled
    assert header[3:8] == [
        "SSIM (head) ↑",
        "PSNR (head) ↑",
        "LPIPS (head) ↓",
        "SSIM (full frame) ↑",
        "PSNR (full frame) ↑",
    ]
    assert "LPIPS (full frame) ↓" in header and "SSIM ↑" not in header and "PSNR ↑" not in header
    m = t2[t2["Source"] == "measured"].set_index("Method")
    assert m.loc["Ours", "PSNR (head) ↑"] == "23.000" and m.loc["Ours", "LPIPS (head) ↓"] == "0.0200"
    last, mean = m.loc["Last training frame"], m.loc["Mean training head"]
    assert last["PSNR (head) ↑"] == "26.000" and mean["PSNR (head) ↑"] == "23.000"
    assert last["PSNR (full frame) ↑"] == "33.000" and last["SSIM (head) ↑"] == "0.700"
    # the FID cell states its frame count: 2 clips x 6 frames pooled; gen = gt + 0.5 on 16 dims
    assert last["FID frames"] == "12" and float(last["FID ↓"]) == pytest.approx(4.0, abs=1e-6)
    assert last["Emotion control ↑"] == "-"  # a baseline has no emotion edit
    assert m.loc["Ours", "FID frames"] == "12" and m.loc["Groundtruth", "FID frames"] == "-"
    assert list(m.index)[-1] == "Groundtruth"  # under the methods and baselines of this run
    # per test clip: the renders and the baselines side by side
    pc = pd.read_csv(out / "per_clip.csv", dtype=str)
    assert list(pc["Method"][pc["Clip"] == "a"]) == ["Ours", "Last training frame", "Mean training head"]
    row = pc[(pc["Clip"] == "b") & (pc["Method"] == "Last training frame")].iloc[0]
    assert row["PSNR (head) ↑"] == "26.000" and row["PSNR (full frame) ↑"] == "33.000"
    assert "Groundtruth" not in set(pc["Method"])  # no head masks: not a render of a test span
    assert "| cremad | a | Ours |" in (out / "per_clip.md").read_text()


def test_alpha_rmse_beside_the_trivial_predictors(built):
    tables, _ = built
    t4 = tables["table_IV"]
    meas = t4[t4["Source"] == "measured"].set_index("Setting")
    assert meas.loc["Ours", "α RMSE ↓"] == "0.123" and meas.loc["n = 5", "α RMSE ↓"] == "0.123"
    assert meas.loc["w/o refinement", "α RMSE ↓"].startswith("n/a: no ")  # variant not trained
    assert meas.loc["α baseline: clip's training-span mean", "α RMSE ↓"] == "0.391"
    assert meas.loc["α baseline: last training frame, held", "α RMSE ↓"] == "0.223"
    assert meas.loc["α baseline: emotion tag's training mean", "α RMSE ↓"] == "n/a: no training frames"
    assert meas.loc["α baseline: last training frame, held", "PSNR (head) ↑"] == "-"
    # the render baselines' image columns in Table IV too, without an RMSE
    assert meas.loc["Last training frame", "PSNR (head) ↑"] == "26.000"
    assert meas.loc["Last training frame", "α RMSE ↓"] == "-"
    # paper rows: no RMSE in the paper's Table IV
    assert set(t4[t4["Source"] == "paper"]["α RMSE ↓"]) == {"n.r."}
    tex = TB.to_latex(t4)
    assert "$\\alpha$ RMSE $\\downarrow$" in tex and "α" not in tex
    m6 = tables["table_VI"][tables["table_VI"]["Source"] == "measured"].set_index("Setting")
    assert m6.loc["α baseline: clip's training-span mean", "RMSE ↓"] == "0.39"
    assert m6.loc["α baseline: last training frame, held", "M/F-LMD ↓"] == "-"


def test_ablation_rows_of_a_rendered_subject_dataset(tmp_path):
    """A renderer subject from a folder dataset gets Table IV rows once its audio-driven renders
    (ours, ours_{variant}) are evaluated."""
    paths, fids = [], []
    for method, psnr in [("ours", 30.0), ("ours_wo_refinement", 27.0)]:
        p, f = _clip_rows(tmp_path, method, "obama", "subj", {"SSIM": 0.9, "PSNR": psnr})
        paths.append(p)
        fids.append(f)
    spec = TB.TableSpec(
        datasets={"obama": "folder"},
        methods=["ours"],
        method_notes={},
        ablations=[
            {"label": "Ours", "method": "ours"},
            {"label": "w/o refinement", "method": "ours_wo_refinement"},
            {"label": "d = 256", "method": "ours_d256"},
        ],
        loss_ablations=[],
    )
    t4 = TB.build_all(paths, fids, spec, tmp_path, tmp_path / "tables")["table_IV"]
    meas = t4[t4["Source"] == "measured"].set_index("Setting")
    assert set(meas["Dataset"]) == {"obama"}
    assert meas.loc["Ours", "PSNR (full frame) ↑"] == "30.000"
    assert meas.loc["w/o refinement", "PSNR (full frame) ↑"] == "27.000"
    assert meas.loc["d = 256", "SSIM (head) ↑"].startswith("n/a: no clips of ours_d256")


def test_human_sheet_round_trip(tmp_path):
    clips = pd.DataFrame(
        {
            "dataset": ["d"] * 4,
            "method": ["ours", "ours", "EAT", "EAT"],
            "clip": ["a", "b", "a", "b"],
            "video": ["x1", "x2", "x3", "x4"],
            "emotion": ["sad"] * 4,
        }
    )
    HU.write_sheet(clips, tmp_path / "s.csv", tmp_path / "s.html", tmp_path / "k.csv", seed=1)
    sheet = pd.read_csv(tmp_path / "s.csv")
    assert "method" not in sheet.columns and set(HU.ASPECTS) <= set(sheet.columns)
    assert "<video" in (tmp_path / "s.html").read_text()
    key = pd.read_csv(tmp_path / "k.csv")
    ours_items = set(key[key["method"] == "ours"]["item"])
    for rater, (o, e) in {"r1": (4, 2), "r2": (5, 3)}.items():
        f = sheet.copy()
        for a in HU.ASPECTS:
            f[a] = [o if it in ours_items else e for it in f["item"]]
        f.to_csv(tmp_path / f"{rater}.csv", index=False)
    agg = HU.aggregate(HU.read_filled([tmp_path / "r1.csv", tmp_path / "r2.csv"]), key)
    v = agg.set_index(["method", "metric"])["value"]
    assert v[("ours", "Fidelity")] == 4.5 and v[("EAT", "Empathy")] == 2.5
    bad = sheet.copy()
    bad["Fidelity"] = 7
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="0-5"):
        HU.read_filled([tmp_path / "bad.csv"])


def test_pair_catalogue(tmp_path):
    # per-clip results are grouped by actor: results/{dataset}/crop/{actor}/{sample}.mp4
    samples = {
        "cremad": pd.DataFrame(
            {
                "sample_id": ["s1", "s2", "s3"],
                "actor": ["1001", "1001", "1002"],
                "emotion": ["sad", "happy", "angry"],
                "split": ["train", "test", "test"],
                "video_path": ["v1", "v2", ""],
            }
        )
    }
    bdir = tmp_path / "baselines"
    (bdir / "SadTalker" / "cremad").mkdir(parents=True)
    (bdir / "SadTalker" / "cremad" / "s2.mp4").write_bytes(b"")
    (bdir / "SadTalker" / "cremad" / "unknown.mp4").write_bytes(b"")
    cfg = {
        "baselines_dir": str(bdir),
        "reencode": {"datasets": ["cremad"]},
        "groundtruth_datasets": ["cremad"],
        "pairs": [{"generated": "/x/gen.mp4", "ground_truth": "/x/gt.mp4", "method": "my method"}],
    }
    render = [
        dict(
            method=m,
            group="subj",
            clip="s2",
            dataset="cremad",
            generated=f"R/render/subj/{d}/s2/test_render.mp4",
            ground_truth=f"R/render/subj/{d}/s2/test_gt.mp4",
            emotion="happy",
            meta=f"R/render/subj/{d}/s2/test_meta.json",
        )
        for m, d in (("ours", "driven/main"), ("ours_gt_alpha", "test"))
    ]
    df = PA.build_pairs(cfg, {"cremad": {"kind": "crema_d"}}, samples, "R", render)
    keys = set(zip(df["method"], df["group"], df["clip"]))
    # audio-driven render (audio2exp main) and the ground-truth-alpha reconstruction, per test clip
    assert ("ours", "subj", "s2") in keys and ("ours_gt_alpha", "subj", "s2") in keys
    assert (
        PA.build_pairs({**cfg, "render": False}, {}, samples, "R", render)["method"]
        .str.startswith("ours")
        .sum()
        == 0
    )
    assert ("SadTalker", "cremad", "s2") in keys and ("SadTalker", "cremad", "unknown") not in keys
    assert ("reencode", "cremad", "s2") in keys and ("reencode", "cremad", "s1") not in keys  # test split
    assert ("my_method", "pairs", "gen") in keys
    gt = df[df["method"] == "groundtruth"].iloc[0]
    assert gt["reference_free"] and gt["generated"] == gt["ground_truth"] == "R/cremad/crop/1001/s2.mp4"
    st = df[df["method"] == "SadTalker"].iloc[0]
    assert st["emotion"] == "happy" and st["audio"] == "R/cremad/audio/1001/s2.wav"
    assert st["ground_truth"] == "R/cremad/crop/1001/s2.mp4"
    re_ = df[df["method"] == "reencode"].iloc[0]
    assert (
        re_["generated"] == "R/metrics/reencode/cremad/s2.mp4"
        and re_["ground_truth"] == "R/cremad/crop/1001/s2.mp4"
    )
    # renderer rows: labels from test_meta.json at run time
    meta = tmp_path / "meta.json"
    meta.write_text(
        json.dumps({"dataset": "cremad", "sample": "s2", "frame_start": 50, "fps": 25, "emotion": "happy"})
    )
    row = df[df["method"] == "ours"].iloc[0].to_dict()
    assert row["dataset"] == "cremad" and row["emotion"] == "happy"
    row = {**row, "meta": str(meta), "dataset": "", "emotion": ""}
    pair = PA.resolve_pair(row, str(tmp_path))
    assert pair.dataset == "cremad" and pair.emotion == "happy"


def test_resolve_pair_finds_renderer_speech_in_actor_layout(tmp_path):
    """Renderer rows take their speech (and its start) from the subject's wav in the results."""
    from emohead_core.layout import clip_file

    wav = Path(clip_file(str(tmp_path), "cremad", "audio", "1001", "s2"))
    wav.parent.mkdir(parents=True)
    wav.write_bytes(b"RIFF")
    meta = tmp_path / "meta.json"
    meta.write_text(
        json.dumps({"dataset": "cremad", "sample": "s2", "frame_start": 50, "fps": 25, "emotion": "happy"})
    )
    row = {
        "method": "ours",
        "group": "render",
        "clip": "subj",
        "dataset": "",
        "generated": "g.mp4",
        "ground_truth": "t.mp4",
        "audio": "",
        "emotion": "",
        "reference_free": False,
        "meta": str(meta),
    }
    assert PA.resolve_pair(row, str(tmp_path)).audio is None  # no sample table: actor unknown
    import pandas as pd

    pd.DataFrame({"sample_id": ["s1", "s2"], "actor": ["1002", "1001"]}).to_parquet(
        tmp_path / "cremad" / "samples.parquet"
    )
    pair = PA.resolve_pair(row, str(tmp_path))
    assert pair.audio == str(wav) and pair.audio_start_s == 2.0
    # the renderer's test_meta.json names the wav it cut the speech from: used as is
    other = tmp_path / "other.wav"
    other.write_bytes(b"RIFF")
    meta.write_text(
        json.dumps({"dataset": "cremad", "sample": "s2", "frame_start": 25, "fps": 25, "audio": str(other)})
    )
    pair = PA.resolve_pair(row, str(tmp_path))
    assert pair.audio == str(other) and pair.audio_start_s == 1.0


def test_3ddfa_lmd_on_real_frames(mirror, tmp_path):
    from emohead_core import media
    from emohead_core.metrics import landmarks as LM
    from emohead_core.metrics.pipeline import face_model

    fm = face_model(mirror / "models" / "3ddfa_v2" / "mb05_120x120.pth", tmp_path / "onnx", backend="torch")
    frames = media.read_frames(mirror / "data" / "crema-d" / "1001_DFA_HAP_XX.flv", fps=25)[:14]
    frames = np.ascontiguousarray(frames[:, 20:340, 80:400])
    fit = LM.tddfa_fit(fm, frames)
    lm, exp = fit["landmarks"], fit["exp"]
    assert lm.shape == (14, 68, 3) and exp.shape == (14, 10) and np.isfinite(lm).all()
    assert LM.m_lmd(lm, lm) == 0
    assert 0 < LM.m_lmd(lm[1:8], lm[0:7]) < LM.m_lmd(lm[7:14], lm[0:7])  # further in time: larger


def test_mead_clips_datasets_fill_table_one_once(tmp_path):
    """A dataset of kind mead_clips (MEAD clips named the MEAD way) is MEAD: its measured rows go
    to Table I, whose paper rows appear once although two kinds share the table."""
    p, f = _clip_rows(tmp_path, "ours_gt_alpha", "mead", "m030", {"SSIM": 0.8, "PSNR": 25.0})
    spec = TB.TableSpec(
        datasets={"mead": "mead_clips"},
        methods=["ours_gt_alpha"],
        method_notes={},
        ablations=[],
        loss_ablations=[],
    )
    t1 = TB.build_all([p], [f], spec, tmp_path, tmp_path / "tables")["table_I"]
    meas = t1[t1["Source"] == "measured"]
    assert list(meas["Dataset"]) == ["mead"] and meas.iloc[0]["PSNR (full frame) ↑"] == "25.000"
    paper = t1[t1["Source"] == "paper"]
    assert paper["Method"].is_unique and "Ours" in set(paper["Method"])
