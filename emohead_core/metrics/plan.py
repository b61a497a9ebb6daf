"""Parse-time plan of ``rules/metrics.smk``: which clips (renderer test clips, metrics.pairs,
baselines_dir, the demo's re-encoded crops, the ground-truth row), which inputs, which tables
(:mod:`emohead_core.plan` builds it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..layout import Layout, actors_of, clip_file
from .pairs import build_pairs, variant_of

STATS_ASSET = "3ddfa_v2/param_mean_std_62d_120x120.pkl"
TABLE_IDS = ["table_I", "table_II", "table_IV", "table_VI"]
TABLE_FORMATS = ("md", "tex", "csv", "html")  # what metrics.tables.write_table writes per table


@dataclass(repr=False)
class MetricsPlan:
    config: dict
    samples: dict  # dataset -> sample table
    results: str
    resources: str
    asset: Callable[[str], str]
    render_pairs: list | None = None  # the renderer's test-clip pairs (RenderPlan.metric_pairs)
    emotion_control: dict | None = None  # dataset -> the render subjects' emotion_control.json
    expression_onnx: str | None = None  # the expression stage's 3DDFA ONNX (ExpressionPlan.onnx)
    a2e_datasets: list | None = None  # datasets the audio2exp stage trains on
    a2e_variants: list | None = None  # and its variants
    layout: Layout | None = None  # per-actor batches: depend on actor directories, not clip files
    pairs: pd.DataFrame = field(init=False)

    def __post_init__(self):
        self.met = self.config.get("metrics") or {}
        self.tab = self.config.get("tables") or {}
        self.render_pairs = list(self.render_pairs or [])
        self.emotion_control = dict(self.emotion_control or {})
        self.pairs = build_pairs(
            self.met, self.config["datasets"], self.samples, self.results, self.render_pairs
        )
        if self.layout is None:
            self.layout = Layout(self.results, [])
        self._actors: dict[str, dict[str, str]] = {}

    def __repr__(self) -> str:  # short: Snakemake prints input functions by name
        return f"MetricsPlan({len(self.pairs)} clips)"

    # ------------------------------------------------------------------ per clip
    def pair_row(self, wildcards) -> dict:
        df = self.pairs
        hit = df[
            (df["method"] == wildcards.method)
            & (df["group"] == wildcards.group)
            & (df["clip"] == wildcards.clip)
        ]
        if len(hit) != 1:
            raise ValueError(f"unknown metric clip {wildcards.method}/{wildcards.group}/{wildcards.clip}")
        return hit.iloc[0].to_dict()

    def er_train_samples(self, ds: str) -> list[str]:
        df = self.samples[ds]
        return list(df[(df["split"] == "train") & (df["video_path"] != "")]["sample_id"])

    def er_train_labels(self, ds: str) -> list[str]:
        df = self.samples[ds].set_index("sample_id")
        return [str(df.loc[s, "emotion"]) for s in self.er_train_samples(ds)]

    def er_baseline_possible(self, ds: str) -> bool:
        if not (self.met.get("er") or {}).get("baseline", True) or ds not in self.samples:
            return False
        labels = set(self.er_train_labels(ds))
        return len(labels) >= 2 and "unknown" not in labels

    def uses_3ddfa(self, row: dict) -> bool:
        backends = (self.met.get("lmd") or {}).get("backends") or []
        return "3ddfa" in backends or self.er_baseline_possible(row["dataset"])

    def clip_inputs(self, wildcards) -> dict:
        row = self.pair_row(wildcards)
        dep = self.layout.dep  # the files are read from params.row; inputs = what produces them
        inputs = {"generated": dep(row["generated"]), "ground_truth": dep(row["ground_truth"])}
        if row["audio"]:
            inputs["audio"] = dep(row["audio"])
        if row["meta"]:
            inputs["meta"] = row["meta"]
        if row.get("mask"):
            inputs["mask"] = row["mask"]
        if self.uses_3ddfa(row):
            expr = self.config["expression"]
            inputs["checkpoint"] = self.asset(expr["checkpoint"])
            inputs["stats"] = self.asset(STATS_ASSET)
            inputs["bfm"] = self.asset(expr["bfm"])
            inputs["detector"] = f"{self.resources}/onnx/faceboxes.onnx"
            if self.expression_onnx:
                inputs["onnx"] = self.expression_onnx
        if self.er_baseline_possible(row["dataset"]):
            inputs["er_baseline"] = f"{self.results}/metrics/er_baseline/{row['dataset']}.json"
        return inputs

    def clip_outputs(self, ext: str) -> list[str]:
        return [
            f"{self.results}/metrics/clips/{r.method}/{r.group}/{r.clip}.{ext}"
            for r in self.pairs.itertuples()
        ]

    def actor_of(self, ds: str, sample: str) -> str:
        """The actor of a sample (sample -> actor map built once per dataset)."""
        if ds not in self._actors:
            self._actors[ds] = actors_of(self.samples[ds])
        if sample not in self._actors[ds]:
            raise ValueError(f"unknown sample {sample!r} of {ds!r}")
        return self._actors[ds][sample]

    def er_files(self, wildcards) -> list[str]:
        """The expression Parquets the ER baseline trains on (params of metrics_er_baseline)."""
        ds = wildcards.dataset
        return [
            clip_file(self.results, ds, "expression", self.actor_of(ds, s), s)
            for s in self.er_train_samples(ds)
        ]

    def er_inputs(self, wildcards) -> list[str]:
        return self.layout.deps(self.er_files(wildcards))

    def reencode_input(self, wildcards) -> str:
        return self.layout.dep(self.crop_file(wildcards))

    def crop_file(self, wildcards) -> str:
        ds, sample = wildcards.dataset, wildcards.sample
        return clip_file(self.results, ds, "crop", self.actor_of(ds, sample), sample)

    # ------------------------------------------------------------------ tables
    def filled_sheets(self) -> list[str]:
        d = (self.met.get("human") or {}).get("filled_dir")
        return sorted(str(p) for p in Path(d).glob("*.csv")) if d and Path(d).is_dir() else []

    def table_inputs(self, wildcards=None) -> dict:
        inputs = {
            "rows": self.clip_outputs("parquet"),
            "fid": self.clip_outputs("fid.npz"),
            "filled": self.filled_sheets(),
            "emotion_control": [p for files in self.emotion_control.values() for p in files],
        }
        if inputs["filled"]:
            inputs["human_key"] = f"{self.results}/metrics/human/key.csv"
        if self.a2e_variants is not None and self.a2e_datasets is not None:
            run = set(self.a2e_variants)
            wanted = {r.get("variant") for r in self.tab.get("loss_ablations") or [] if r.get("variant")}
            # Table IV: the RMSE of each ablation row's variant and the trivial predictors (main)
            wanted |= {variant_of(r.get("method")) for r in self.tab.get("ablations") or []} - {None}
            wanted.add("main")
            inputs["rmse"] = [
                f"{self.results}/{ds}/audio2exp/{v}/eval.json"
                for ds in self.a2e_datasets
                for v in sorted(wanted & run)
            ]
        return inputs

    def method_notes(self) -> dict:
        notes = {}
        if not self.render_pairs:
            notes["ours"] = "n/a: no renderer test clips (set render.subjects)"
        bdir = self.met.get("baselines_dir")
        for m in self.tab.get("methods") or []:
            if m not in ("ours", "groundtruth"):
                notes[m] = (
                    f"n/a: no videos in {bdir}/{m}/<dataset>/" if bdir else "n/a: set metrics.baselines_dir"
                )
        if not self.met.get("groundtruth_datasets"):
            notes["groundtruth"] = "n/a: set metrics.groundtruth_datasets"
        return notes

    def table_outputs(self) -> list[str]:
        """The tables' Markdown, LaTeX and CSV files (the HTML pages: :meth:`table_pages`)."""
        return [
            f"{self.results}/tables/{t}.{ext}" for t in TABLE_IDS for ext in TABLE_FORMATS if ext != "html"
        ]

    def table_pages(self) -> dict[str, str]:
        """Table id -> its HTML page (shown in the Snakemake report)."""
        return {t: f"{self.results}/tables/{t}.html" for t in TABLE_IDS}
