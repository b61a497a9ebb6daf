"""Tables I, II, IV and VI regenerated from ``results/`` (Markdown, LaTeX, CSV).

Measured rows aggregate the per-clip metric rows (mean over clips; FID pooled over every frame of
a dataset/method's clips), human-evaluation means, and the audio-expression test RMSE
(``results/{dataset}/audio2exp/{variant}/eval.json``). The paper's published numbers are shown
alongside in separate rows whose ``Source`` is ``paper``. A cell that could not be measured
carries its reason ("n/a: set metrics.syncnet.weights"), never a number.

Table ids: ``table_I`` (MEAD-kind datasets, paper Table I), ``table_II`` (CREMA-D-kind datasets,
paper Table II), ``table_I_{dataset}`` for other datasets (no paper rows), ``table_IV``
(ablations), ``table_VI`` (loss ablations and hyperparameters).
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path, write_text_atomic
from . import fid as FID
from . import paper as P
from .evaluate import AUE_PROXY, GROUNDTRUTH_METHOD, LPIPS_HEAD, NO_REFERENCE, PSNR_HEAD, SSIM_HEAD
from .pairs import variant_of
from .plan import TABLE_FORMATS

PAPER = "paper"
NR = "n.r."  # not reported in the paper
LEGEND = (
    "Source `paper`: numbers published in the paper; `measured`: this run. "
    "n.r.: not reported in the paper; -: not applicable (as in the paper); "
    "n/a: could not be measured, with the reason."
)
MEASURED = "measured"
KIND_TABLE = {
    "mead": ("table_I", "MEAD", P.TABLE_I),
    "mead_clips": ("table_I", "MEAD", P.TABLE_I),  # MEAD clips named the MEAD way (video only)
    "crema_d": ("table_II", "CREMA-D", P.TABLE_II),
}
TITLES = {
    "table_I": "Table I: Quantitative comparison and human evaluation on MEAD",
    "table_II": "Table II: Quantitative comparison and human evaluation on CREMA-D",
    "table_IV": "Table IV: Ablation studies",
    "table_VI": "Table VI: Ablation studies of loss implementation and hyperparameters",
}
HUMAN = ["Fidelity", "Coherence", "Empathy"]
PER_CLIP_TITLE = "Image metrics per test clip (renders and trivial baselines of the same frames)"
# % of renders edited by tau = 1 along w_z that the hyperplanes classify as z (render/control.py)
EMOTION_CONTROL = "Emotion control"
RENDERER_METHODS = ("ours", "ours_gt_alpha")  # the renderer with hyperplane edits
EMOTION_CONTROL_COL = ("Emotion control ↑", EMOTION_CONTROL, 1)
FID_FRAMES = "FID frames"  # frames pooled into a FID cell (generated = ground-truth count)
# the trivial baselines of the renderer's test spans (render.plan.BASELINES), with their names
RENDER_BASELINES = {"baseline_last_frame": "Last training frame", "baseline_mean_head": "Mean training head"}
# (header, metric(s), decimals); a pair of metrics is shown "m/f". The head-region columns
# (ground-truth head mask, docs/decisions.md) come first; the whole-frame ones are labelled
# "(full frame)": at 128x128 most of a rendered frame is the ground truth pasted around the head.
HEAD_COLS = [
    ("SSIM (head) ↑", SSIM_HEAD, 3),
    ("PSNR (head) ↑", PSNR_HEAD, 3),
    ("LPIPS (head) ↓", LPIPS_HEAD, 4),
]
FULL_COLS = [("SSIM (full frame) ↑", "SSIM", 3), ("PSNR (full frame) ↑", "PSNR", 3)]
LPIPS_FULL_COL = ("LPIPS (full frame) ↓", "LPIPS", 4)
FID_COLS = [("FID ↓", "FID", 1), (FID_FRAMES, FID_FRAMES, 0)]
LMD_COL = ("M/F-LMD ↓", ("M-LMD", "F-LMD"), 3)
MOTION_COLS = [("AUE ↓", "AUE", 2), ("Sync. ↑", "LSE-C", 2), ("ER ↑", "ER", 2)]
MAIN_COLS = [
    *HEAD_COLS,
    *FULL_COLS,
    LMD_COL,
    *FID_COLS,
    *MOTION_COLS,
    ("Fidelity ↑", "Fidelity", 1),
    ("Coherence ↑", "Coherence", 1),
    ("Empathy ↑", "Empathy", 1),
]
AUE_PROXY_COL = (f"{AUE_PROXY} ↓", AUE_PROXY, 3)
EXTRA_COLS = [
    LPIPS_FULL_COL,
    ("LSE-D ↓", "LSE-D", 2),
    ("M/F-LMD (dlib) ↓", ("M-LMD (dlib)", "F-LMD (dlib)"), 3),
    AUE_PROXY_COL,
    ("ER (3DMM-exp baseline) ↑", "ER (3DMM-exp baseline)", 2),
    EMOTION_CONTROL_COL,
]
# Table IV: the test RMSE of alpha of the row's audio2exp variant (eval.json) beside the images'
RMSE_COL = ("α RMSE ↓", "RMSE", 3)
ABLATION_COLS = [
    RMSE_COL,
    *HEAD_COLS,
    *FULL_COLS,
    LMD_COL,
    *FID_COLS,
    *MOTION_COLS,
    LPIPS_FULL_COL,
    AUE_PROXY_COL,
    EMOTION_CONTROL_COL,
]
# trivial predictors of the test alphas (audio2exp/baselines.py; eval.json rmse_baseline_{key})
RMSE_BASELINES = [
    ("α baseline: clip's training-span mean", "clip_train_mean"),
    ("α baseline: last training frame, held", "last_train_frame"),
    ("α baseline: emotion tag's training mean", "emotion_mean"),
]
VI_COLS = [
    ("RMSE ↓", "RMSE", 2),
    ("M/F-LMD ↓", ("M-LMD", "F-LMD"), 3),
    ("AUE ↓", "AUE", 2),
    ("ER ↑", "ER", 2),
    AUE_PROXY_COL,
]


# ---------------------------------------------------------------------------- aggregation


def read_clip_rows(paths: list[str | Path]) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in paths]
    if not frames:
        return pd.DataFrame(columns=["dataset", "method", "clip", "metric", "value", "note"])
    return pd.concat(frames, ignore_index=True)


def aggregate(
    rows: pd.DataFrame, fid_files: list[str | Path] | None = None, fid_min_frames: int = 2
) -> pd.DataFrame:
    """Long table (dataset, method, metric, value, note, n_clips): mean over clips of finite
    values (+inf kept: PSNR of identical clips), the most frequent n/a note when none is finite,
    and 'FID' pooled over the clips' frame features."""
    out = []
    for (ds, m, met), g in rows.groupby(["dataset", "method", "metric"], sort=False):
        v = g["value"].to_numpy(float)
        ok = ~np.isnan(v)
        if ok.any():
            out.append(
                {
                    "dataset": ds,
                    "method": m,
                    "metric": met,
                    "value": float(np.mean(v[ok])),
                    "note": "",
                    "n_clips": int(ok.sum()),
                }
            )
        else:
            notes = Counter(n for n in g["note"] if n)
            out.append(
                {
                    "dataset": ds,
                    "method": m,
                    "metric": met,
                    "value": np.nan,
                    "note": notes.most_common(1)[0][0] if notes else "n/a",
                    "n_clips": 0,
                }
            )
    # pooled FID per dataset/method from the per-clip features
    pooled: dict[tuple[str, str], list] = {}
    for f in fid_files or []:
        f = Path(f)
        meta = f.with_name(f.name.replace(".fid.npz", ".parquet"))
        if not meta.is_file():
            continue
        clip = pd.read_parquet(meta, columns=["dataset", "method"]).iloc[0]
        z = np.load(f)
        if len(z["gen"]):
            pooled.setdefault((clip["dataset"], clip["method"]), []).append((z["gen"], z["gt"]))
    fid_rows = {}
    for (ds, m), parts in pooled.items():
        gen = np.concatenate([a for a, _ in parts])
        gt = np.concatenate([b for _, b in parts])
        if len(gen) >= fid_min_frames:
            fid_rows[(ds, m)] = {
                "dataset": ds,
                "method": m,
                "metric": "FID",
                "value": FID.fid_from_features(gen, gt),
                "note": "",
                "n_clips": len(parts),
            }
            fid_rows[(ds, m, FID_FRAMES)] = dict(fid_rows[(ds, m)], metric=FID_FRAMES, value=float(len(gen)))
    for (ds, m), g in rows.groupby(["dataset", "method"], sort=False):
        if (ds, m) in fid_rows:
            out += [fid_rows[(ds, m)], fid_rows[(ds, m, FID_FRAMES)]]
            continue
        clip_fid = g[g["metric"] == "FID (clip)"]
        if len(clip_fid) and m != GROUNDTRUTH_METHOD:
            notes = Counter(n for n in clip_fid["note"] if n)
            for metric in ("FID", FID_FRAMES):
                out.append(
                    {
                        "dataset": ds,
                        "method": m,
                        "metric": metric,
                        "value": np.nan,
                        "note": notes.most_common(1)[0][0] if notes else "n/a: no Inception features",
                        "n_clips": 0,
                    }
                )
    return pd.DataFrame(out, columns=["dataset", "method", "metric", "value", "note", "n_clips"])


def emotion_control_rows(files, agg: pd.DataFrame) -> pd.DataFrame:
    """Aggregated rows of the "Emotion control" column (in %, mean over the dataset's render
    subjects; docs/decisions.md): on the GT-alpha row the calibrated summary of
    emotion_control.json (mean over measurable tags of the change, from tau = 0 to tau = 1, of
    the share of renders classified as the tag); on the audio-driven row (``ours``) the share of
    its test renders classified as their clip's tag (driven_emotion.json); an explanatory n/a on
    the other audio2exp variants' rows."""
    cols = ["dataset", "method", "metric", "value", "note", "n_clips"]
    per: dict[tuple[str, str], list[float]] = {}
    notes: dict[tuple[str, str], str] = {}
    for f in files or []:
        doc = json.loads(Path(f).read_text())
        ds = str(doc.get("dataset", ""))
        if "accuracy" in doc and "clips" in doc:  # driven_emotion.json
            v = doc["accuracy"].get("mean")
            if v is not None and np.isfinite(v):
                per.setdefault((ds, "ours"), []).append(100.0 * float(v))
        elif doc.get("summary") is not None:
            per.setdefault((ds, "ours_gt_alpha"), []).append(100.0 * float(doc["summary"]))
        elif "summary" in doc:
            notes[(ds, "ours_gt_alpha")] = "n/a: no tag is measurable (the instrument's confusion matrix)"
    out = []
    datasets = {ds for ds, _ in per} | {ds for ds, _ in notes}
    for ds in sorted(datasets):
        methods = set(agg[agg["dataset"] == ds]["method"]) if len(agg) else set()
        for m in RENDERER_METHODS:
            if m not in methods:
                continue
            vals = per.get((ds, m))
            out.append(
                {
                    "dataset": ds,
                    "method": m,
                    "metric": EMOTION_CONTROL,
                    "value": float(np.mean(vals)) if vals else np.nan,
                    "note": "" if vals else notes.get((ds, m), "n/a: not measured"),
                    "n_clips": 0,
                }
            )
        for m in sorted(x for x in methods if x.startswith("ours_") and x not in RENDERER_METHODS):
            out.append(
                {
                    "dataset": ds,
                    "method": m,
                    "metric": EMOTION_CONTROL,
                    "value": np.nan,
                    "note": "n/a: measured for the renderer (Ours rows)",
                    "n_clips": 0,
                }
            )
    return pd.DataFrame(out, columns=cols)


# ---------------------------------------------------------------------------- formatting


def fmt(value, decimals: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if np.isnan(value):
        return "n/a"
    if np.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{decimals}f}"


@dataclass
class Lookup:
    """Cell values of one (dataset, method) from the aggregated table (+ human-eval rows)."""

    agg: pd.DataFrame
    missing_note: dict = field(default_factory=dict)  # method -> note when it has no rows at all

    def get(self, ds: str, method: str, metric: str):
        a = self.agg
        hit = a[(a["dataset"] == ds) & (a["method"] == method) & (a["metric"] == metric)]
        if len(hit) == 0:
            return None
        r = hit.iloc[0]
        return (r["note"] or "n/a") if np.isnan(r["value"]) else float(r["value"])

    def has(self, ds, method) -> bool:
        a = self.agg
        return bool(((a["dataset"] == ds) & (a["method"] == method)).any())


def _cell(values, decimals, ref_free_only=False, metric=None) -> str:
    if ref_free_only and metric is not None and not _ref_free(metric):
        return "-"
    if isinstance(values, tuple):
        a, b = values
        if isinstance(a, str) and isinstance(b, str) and a == b:
            return a
        if a is None and b is None:
            return "-"
        return f"{fmt(a, decimals)}/{fmt(b, decimals)}"
    return fmt(values, decimals)


def _ref_free(metric) -> bool:
    ms = metric if isinstance(metric, tuple) else (metric,)
    return all(m in NO_REFERENCE or m in HUMAN for m in ms)


NOT_COMPUTED = "n/a: not computed in this run"


def _measured_cells(look: Lookup, ds: str, method: str, cols, human_note: str) -> list[str]:
    cells = []
    gt = method == GROUNDTRUTH_METHOD

    def get(m):
        v = look.get(ds, method, m)
        return v if v is not None else (human_note if m in HUMAN else NOT_COMPUTED)

    for _, metric, dec in cols:
        if gt and not _ref_free(metric):
            cells.append("-")
            continue
        if method in RENDER_BASELINES and metric == EMOTION_CONTROL:  # no emotion edit to measure
            cells.append("-")
            continue
        vals = tuple(get(m) for m in metric) if isinstance(metric, tuple) else get(metric)
        cells.append(_cell(vals, dec))
    return cells


def _note_once(note: str, applicable: list[bool]) -> list[str]:
    """A row without any measurement: the reason in its first applicable cell, 'n/a' after."""
    out, said = [], False
    for a in applicable:
        if not a:
            out.append("-")
        else:
            out.append("n/a" if said else note)
            said = True
    return out


def _paper_cells(values: dict, cols) -> list[str]:
    cells = []
    for _, metric, dec in cols:
        if isinstance(metric, tuple):
            vals = tuple(values.get(m, NR) if m in values else NR for m in metric)
            if all(v == NR for v in vals):
                cells.append(NR)
                continue
        else:
            vals = values[metric] if metric in values else NR
        cells.append(_cell(vals, dec))
    return cells


# ---------------------------------------------------------------------------- tables


@dataclass
class TableSpec:
    datasets: dict  # dataset name -> kind
    methods: list[str] = field(
        default_factory=lambda: [
            "SadTalker",
            "LivePortrait",
            "EAMM",
            "EAT",
            "EDTalk",
            "ours",
            GROUNDTRUTH_METHOD,
        ]
    )
    method_names: dict = field(default_factory=dict)
    method_notes: dict = field(default_factory=dict)  # method -> n/a note when no clip was evaluated
    human_note: str = "n/a: no filled sheets in metrics.human.filled_dir"
    ablations: list = field(default_factory=list)  # [{label, method}]
    loss_ablations: list = field(default_factory=list)  # [{label, variant, method}]
    paper: bool = True

    def name(self, method: str) -> str:
        default = {"ours": "Ours", GROUNDTRUTH_METHOD: "Groundtruth", **RENDER_BASELINES}.get(method, method)
        return self.method_names.get(method, default)


def _unique_tables() -> list[tuple]:
    """(table id, label, paper rows) once per table (several dataset kinds share Table I)."""
    return list({v[0]: v for v in KIND_TABLE.values()}.values())


def main_tables(agg: pd.DataFrame, spec: TableSpec) -> dict[str, pd.DataFrame]:
    """Tables I / II (and one per dataset of another kind)."""
    look = Lookup(agg)
    cols = MAIN_COLS + EXTRA_COLS
    header = ["Method", "Source", "Dataset", *[h for h, _, _ in cols], "Clips"]
    tables: dict[str, list] = {}
    # paper rows first
    if spec.paper:
        for tid, label, rows in _unique_tables():
            tables.setdefault(tid, [])
            for name, vals in rows:
                tables[tid].append([name, PAPER, label, *_paper_cells(vals, cols), "-"])
    measured_methods = list(dict.fromkeys(list(spec.methods) + list(agg["method"].unique())))
    # the Groundtruth row last, under the methods and the baselines measured in this run
    measured_methods = [m for m in measured_methods if m != GROUNDTRUTH_METHOD] + [
        m for m in measured_methods if m == GROUNDTRUTH_METHOD
    ]
    for ds, kind in spec.datasets.items():
        tid = KIND_TABLE[kind][0] if kind in KIND_TABLE else f"table_I_{ds}"
        tables.setdefault(tid, [])
        for m in measured_methods:
            if look.has(ds, m):
                note = spec.human_note
                cells = _measured_cells(look, ds, m, cols, note)
                n = agg[(agg["dataset"] == ds) & (agg["method"] == m)]["n_clips"].max()
            elif kind in KIND_TABLE:
                note = spec.method_notes.get(m, f"n/a: no clips of {m} evaluated for {ds}")
                cells = _note_once(
                    note, [not (m == GROUNDTRUTH_METHOD and not _ref_free(met)) for _, met, _ in cols]
                )
                n = 0
            else:
                continue
            tables[tid].append([spec.name(m), MEASURED, ds, *cells, str(int(n))])
    for tid, label, _ in _unique_tables():
        if tid in tables and not any(r[1] == MEASURED for r in tables[tid]):
            tables[tid].append(
                [
                    "(this run)",
                    MEASURED,
                    "-",
                    *_note_once(f"n/a: no {label} dataset configured", [True] * len(cols)),
                    "0",
                ]
            )
    return {tid: pd.DataFrame(rows, columns=header) for tid, rows in tables.items() if rows}


def read_setting(results_dir: str | Path, dataset: str, variant: str = "main") -> dict | None:
    """The audio2exp variant's model and training settings (eval.json ``model_config`` and
    ``train_config`` merged), or None when it has not been evaluated."""
    p = Path(results_dir) / dataset / "audio2exp" / variant / "eval.json"
    if not p.is_file():
        return None
    d = json.loads(p.read_text())
    return {**(d.get("train_config") or {}), **(d.get("model_config") or {})}


def render_refine_mismatch(ab: dict, results_dir, dataset: str) -> str | None:
    """A Table VI row's ``requires_refine`` (e.g. {clip: true, shape: true}: L_cord and L_shape,
    eq. 16) against the ``refine`` of the render subjects of ``dataset`` (their subject.json)."""
    req = ab.get("requires_refine") or {}
    if not req:
        return None
    for p in sorted((Path(results_dir) / "render").glob("*/subject.json")):
        doc = json.loads(p.read_text())
        if doc.get("dataset") != dataset:
            continue
        have = doc.get("refine") or {}
        wrong = [k for k, v in req.items() if bool(have.get(k)) != bool(v)]
        if wrong:
            got = ", ".join(f"{k} = {str(bool(have.get(k))).lower()}" for k in wrong)
            return f"n/a: render subject {p.parent.name} was trained with refine {got}"
    return None


def setting_mismatch(ab: dict, results_dir, dataset: str, variant: str = "main") -> str | None:
    """The n/a note of a row whose model lacks what its label claims, else None: ``requires``
    (e.g. {d: 512, d_h: 512}) against the settings of audio2exp ``variant`` (the main model for
    the rows that reuse ``ours`` for the paper's default setting), ``requires_refine`` against
    the dataset's render subjects (:func:`render_refine_mismatch`)."""
    if results_dir is None:
        return None
    req = ab.get("requires") or {}
    have = read_setting(results_dir, dataset, variant) if req else None
    wrong = {k: have.get(k) for k, v in req.items() if have.get(k) != v} if have is not None else {}
    if wrong:
        got = ", ".join(f"{k} = {v}" for k, v in wrong.items())
        want = ", ".join(f"{k} = {req[k]}" for k in wrong)
        return f"n/a: the {variant} model has {got}, not {want} (train a variant with that setting)"
    return render_refine_mismatch(ab, results_dir, dataset)


def _rmse_cell(results_dir, ds: str, variant: str | None, key: str = "rmse_alpha_hat") -> str:
    if results_dir is None or variant is None:
        return "-"
    return _cell(read_rmse(results_dir, ds, variant, key), RMSE_COL[2])


def ablation_table(agg: pd.DataFrame, spec: TableSpec, results_dir: str | Path | None = None) -> pd.DataFrame:
    """Table IV: the paper's rows, then per dataset the configured ablation rows (the test RMSE
    of alpha of the row's audio2exp variant and the metrics of its renders), the trivial render
    baselines (image columns) and the trivial alpha predictors (RMSE column), measured."""
    look = Lookup(agg)
    cols = ABLATION_COLS
    rest = cols[1:]  # RMSE_COL first
    rows = []
    if spec.paper:
        for name, vals in P.TABLE_IV:
            rows.append([name, PAPER, "MEAD", *_paper_cells(vals, cols)])
    for ds, kind in spec.datasets.items():
        # MEAD / CREMA-D always; another dataset (a renderer subject's) once its renders exist
        if kind not in KIND_TABLE and not any(
            ab.get("method") and look.has(ds, ab["method"]) for ab in spec.ablations
        ):
            continue
        for ab in spec.ablations:
            m = ab.get("method")
            mismatch = setting_mismatch(ab, results_dir, ds) if m else None
            if m is None:
                cells = _note_once(ab.get("note", "n/a: not implemented"), [True] * len(cols))
            elif mismatch:
                cells = _note_once(mismatch, [True] * len(cols))
            elif look.has(ds, m):
                cells = [_rmse_cell(results_dir, ds, variant_of(m))] + _measured_cells(
                    look, ds, m, rest, "n/a"
                )
            else:
                cells = [_rmse_cell(results_dir, ds, variant_of(m))] + _note_once(
                    f"n/a: no clips of {m} evaluated (render this variant)", [True] * len(rest)
                )
            rows.append([ab["label"], MEASURED, ds, *cells])
        for m in RENDER_BASELINES:
            if look.has(ds, m):
                rows.append([spec.name(m), MEASURED, ds, "-", *_measured_cells(look, ds, m, rest, "n/a")])
        if results_dir is not None:
            for label, key in RMSE_BASELINES:
                rmse = _rmse_cell(results_dir, ds, "main", f"rmse_baseline_{key}")
                rows.append([label, MEASURED, ds, rmse, *["-"] * len(rest)])
    return pd.DataFrame(rows, columns=["Setting", "Source", "Dataset", *[h for h, _, _ in cols]])


def read_rmse(results_dir: str | Path, dataset: str, variant: str, key: str = "rmse_alpha_hat"):
    """A test RMSE of ``results/{dataset}/audio2exp/{variant}/eval.json``: the model's
    (``rmse_alpha_hat``) or a trivial predictor's (``rmse_baseline_{name}``)."""
    p = Path(results_dir) / dataset / "audio2exp" / variant / "eval.json"
    if not p.is_file():
        return f"n/a: no {p}"
    d = json.loads(p.read_text())
    v = d.get(key, d.get("rmse")) if key == "rmse_alpha_hat" else d.get(key)
    if v is None and key.startswith("rmse_baseline_"):
        note = ((d.get("baselines") or {}).get(key[len("rmse_baseline_") :]) or {}).get("note")
        return note or f"n/a: no {key} in {p} (rerun audio2exp_evaluate)"
    return float(v) if v is not None else f"n/a: no RMSE in {p}"


def loss_table(agg: pd.DataFrame, spec: TableSpec, results_dir: str | Path) -> pd.DataFrame:
    look = Lookup(agg)
    rows = []
    if spec.paper:
        for name, vals in P.TABLE_VI:
            for ds in ("MEAD", "CREMA-D"):
                cells = []
                for _, metric, dec in VI_COLS:
                    if isinstance(metric, tuple):
                        cells.append(_cell(tuple(vals[(ds, m)] for m in metric), dec))
                    else:
                        cells.append(_cell(vals.get((ds, metric), NR), dec))
                rows.append([name, PAPER, ds, *cells])
    for ds, kind in spec.datasets.items():
        if kind not in KIND_TABLE:
            continue
        for ab in spec.loss_ablations:
            variant, m = ab.get("variant"), ab.get("method")
            mismatch = setting_mismatch(ab, results_dir, ds, variant or "main")
            if mismatch:
                rows.append([ab["label"], MEASURED, ds, *_note_once(mismatch, [True] * len(VI_COLS))])
                continue
            rmse = read_rmse(results_dir, ds, variant) if variant else None
            cells = [_cell(rmse, 2)]
            if m is None:
                cells += ["-"] * (len(VI_COLS) - 1)
            elif look.has(ds, m):
                cells += _measured_cells(look, ds, m, VI_COLS[1:], "n/a")
            else:
                cells += _note_once(
                    f"n/a: no clips of {m} evaluated (render this variant)", [True] * (len(VI_COLS) - 1)
                )
            rows.append([ab["label"], MEASURED, ds, *cells])
        for label, key in RMSE_BASELINES:
            rmse = read_rmse(results_dir, ds, "main", f"rmse_baseline_{key}")
            rows.append([label, MEASURED, ds, _cell(rmse, 2), *["-"] * (len(VI_COLS) - 1)])
    return pd.DataFrame(rows, columns=["Setting", "Source", "Dataset", *[h for h, _, _ in VI_COLS]])


# ---------------------------------------------------------------------------- writers


def to_markdown(df: pd.DataFrame, title: str = "") -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(esc(c) for c in df.columns) + " |")
    lines.append("|" + "|".join("---" for _ in df.columns) + "|")
    for r in df.itertuples(index=False):
        lines.append("| " + " | ".join(esc(c) for c in r) + " |")
    lines += ["", LEGEND]
    return "\n".join(lines) + "\n"


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "α": r"$\alpha$",
}


def tex_escape(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(s))


def to_latex(df: pd.DataFrame, title: str = "", label: str = "") -> str:
    cols = "l" * len(df.columns)
    out = ["\\begin{table*}[t]", "\\centering", "\\scriptsize"]
    if title:
        out.append(f"\\caption{{{tex_escape(title)}}}")
    if label:
        out.append(f"\\label{{tab:{label}}}")
    out += [
        f"\\begin{{tabular}}{{{cols}}}",
        "\\hline",
        " & ".join(tex_escape(c) for c in df.columns) + " \\\\",
        "\\hline",
    ]
    prev_source = None
    for r in df.itertuples(index=False):
        src = r[1] if len(r) > 1 else None
        if prev_source is not None and src != prev_source:
            out.append("\\hline")
        prev_source = src
        out.append(" & ".join(tex_escape(c) for c in r) + " \\\\")
    out += ["\\hline", "\\end{tabular}", "\\end{table*}"]
    return "\n".join(out) + "\n"


_HTML_STYLE = """
body { font-family: sans-serif; font-size: 13px; margin: 1em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; position: sticky; top: 0; }
tr.paper td { color: #555; background: #fafafa; }
td.na { color: #999; font-size: 11px; max-width: 14em; }
p.note { color: #444; max-width: 60em; }
"""


def to_html(df: pd.DataFrame, title: str = "") -> str:
    """A standalone HTML page (the Snakemake report shows it inline): rows whose Source is
    ``paper`` (the published numbers) are set off from the measured ones, cells that could not
    be measured (``n/a: reason``) are muted, the legend follows the table."""
    esc = lambda s: html.escape(str(s))  # noqa: E731
    paper = list(df["Source"] == "paper") if "Source" in df.columns else [False] * len(df)
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{esc(title or 'table')}</title><style>{_HTML_STYLE}</style></head><body>",
    ]
    if title:
        parts.append(f"<h2>{esc(title)}</h2>")
    parts.append(
        "<table><thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in df.columns) + "</tr></thead><tbody>"
    )
    for is_paper, row in zip(paper, df.itertuples(index=False)):
        cells = "".join(
            f'<td class="na">{esc(c)}</td>' if str(c).startswith("n/a") else f"<td>{esc(c)}</td>" for c in row
        )
        parts.append(('<tr class="paper">' if is_paper else "<tr>") + cells + "</tr>")
    parts += ["</tbody></table>", f'<p class="note">{esc(LEGEND)}</p>', "</body></html>"]
    return "\n".join(parts) + "\n"


def write_table(df: pd.DataFrame, out_dir: str | Path, tid: str, title: str | None = None) -> list[Path]:
    """``{tid}.md``, ``.tex``, ``.csv`` and ``.html`` (for the report) in ``out_dir``."""
    out_dir = Path(out_dir)
    title = title or TITLES.get(tid, tid.replace("_", " "))
    paths = [out_dir / f"{tid}.{ext}" for ext in TABLE_FORMATS]
    write_text_atomic(paths[0], to_markdown(df, title))
    write_text_atomic(paths[1], to_latex(df, title, tid))
    with atomic_path(paths[2]) as tmp:
        df.to_csv(tmp, index=False)
    write_text_atomic(paths[3], to_html(df, title))
    return paths


PER_CLIP_COLS = [*HEAD_COLS, *FULL_COLS, LPIPS_FULL_COL]


def per_clip_table(rows: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """The image columns per evaluated clip (one row per clip and method), for the clips that
    carry head masks (the renderer's test spans: its renders and the trivial baselines side by
    side); mean over the clip's frames, as the per-clip metric rows."""
    metrics = [m for _, m, _ in PER_CLIP_COLS]
    header = ["Dataset", "Clip", "Method", *[h for h, _, _ in PER_CLIP_COLS], "Frames"]
    sel = rows[rows["metric"].isin(metrics)] if len(rows) else rows
    if not len(sel):
        return pd.DataFrame(columns=header)
    head = sel[sel["metric"].isin([m for _, m, _ in HEAD_COLS])]
    keep = {
        (r.dataset, r.clip, r.method) for r in head.itertuples() if np.isfinite(r.value) or np.isinf(r.value)
    }
    out = []
    order = list(dict.fromkeys(sel["method"]))
    for (ds, clip, method), g in sel.groupby(["dataset", "clip", "method"], sort=False):
        if (ds, clip, method) not in keep:
            continue
        vals = dict(zip(g["metric"], g["value"]))
        notes = dict(zip(g["metric"], g["note"]))
        cells = [
            fmt(vals[m], dec) if m in vals and not np.isnan(vals[m]) else (notes.get(m) or "n/a")
            for _, m, dec in PER_CLIP_COLS
        ]
        n = int(g["n_frames"].max()) if "n_frames" in g else 0
        out.append([ds, clip, spec.name(method), *cells, str(n), order.index(method)])
    df = pd.DataFrame(out, columns=[*header, "_order"]).sort_values(
        ["Dataset", "Clip", "_order"], kind="stable"
    )
    return df.drop(columns="_order").reset_index(drop=True)


def build_all(
    clip_parquets,
    fid_files,
    spec: TableSpec,
    results_dir,
    out_dir,
    human_rows: pd.DataFrame | None = None,
    emotion_control=(),
) -> dict[str, pd.DataFrame]:
    rows = read_clip_rows(clip_parquets)
    agg = aggregate(rows, fid_files)
    ec = emotion_control_rows(emotion_control, agg)
    if len(ec):
        agg = pd.concat([agg, ec], ignore_index=True)
    if human_rows is not None and len(human_rows):
        h = human_rows.rename(columns={"n": "n_clips"}).assign(note="")
        agg = pd.concat(
            [agg, h[["dataset", "method", "metric", "value", "note", "n_clips"]]], ignore_index=True
        )
    tables = main_tables(agg, spec)
    tables["table_IV"] = ablation_table(agg, spec, results_dir)
    tables["table_VI"] = loss_table(agg, spec, results_dir)
    for tid, df in tables.items():
        title = TITLES.get(tid) or f"Table I/II layout: dataset {tid[len('table_I_') :]}"
        write_table(df, out_dir, tid, title)
    pc = per_clip_table(rows, spec)
    write_text_atomic(Path(out_dir) / "per_clip.md", to_markdown(pc, PER_CLIP_TITLE))
    with atomic_path(Path(out_dir) / "per_clip.csv") as tmp:
        pc.to_csv(tmp, index=False)
    with atomic_path(Path(out_dir) / "summary.csv") as tmp:
        agg.to_csv(tmp, index=False)
    return tables
