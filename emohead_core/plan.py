"""Parse-time plan of the whole workflow, built once by ``rules/common.smk``.

* :class:`SampleIndex`: the sample tables with the lookups every stage's input functions use
  (sample rows, an actor's samples, per-clip result files);
* :func:`build_plans`: one plan object per stage (``emohead_core/<stage>/plan.py``), wired
  together here, in Python, so that no ``.smk`` file reads another stage's state: the render
  plan gets the expression stage's hyperplane actors, the audio-expression datasets and variants
  and the feature encoders; the metrics plan gets the renderer's test pairs and the 3DDFA ONNX.

Rules call the plans' methods as input functions (``input: PLANS.render.prepare_inputs``) and
read their attributes; every stage registers ``TARGETS[stage] = PLANS.<stage>.targets()``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType

import pandas as pd

from . import layout as L


class SampleIndex:
    """The sample table of every dataset (``results/{dataset}/samples.parquet``, built at parse
    time) with O(1) lookups: input functions call them once per job, and a DataFrame filter per
    call made DAG building quadratic (30,000 MEAD clips: bench/bench_dag.py)."""

    def __init__(self, tables: dict[str, pd.DataFrame], results: str):
        self.tables = tables
        self.results = results
        self._rows: dict[str, dict] = {}
        self._actors: dict[str, dict[str, list[dict]]] = {}

    def __repr__(self) -> str:  # short: Snakemake prints input functions by name
        return f"SampleIndex({sorted(self.tables)})"

    def __contains__(self, ds: str) -> bool:
        return ds in self.tables

    def __iter__(self):
        return iter(self.tables)

    def samples(self, ds: str, split: str | None = None, video: bool | None = None) -> list[str]:
        """Sample ids of ``ds``, filtered by split and/or having a video."""
        df = self.tables[ds]
        if split is not None:
            df = df[df["split"] == split]
        if video is True:
            df = df[df["video_path"] != ""]
        elif video is False:
            df = df[df["video_path"] == ""]
        return list(df["sample_id"])

    def video_samples(self, ds: str) -> list[str]:
        """Sample ids with a video (cropped by preprocess)."""
        return self.samples(ds, video=True)

    def audio_samples(self, ds: str) -> list[str]:
        """Sample ids with speech (a 16 kHz wav): all but video-only clips (empty audio_path)."""
        df = self.tables[ds]
        return [str(x) for x in df.loc[df["audio_path"] != "", "sample_id"]]

    def row(self, ds: str, sample: str) -> MappingProxyType:
        """One row of the table (read-only dict: column -> value)."""
        index = self._rows.get(ds)
        if index is None:
            df = self.tables[ds]
            index = self._rows[ds] = dict(zip(df["sample_id"], df.to_dict("records")))
        if sample not in index:
            raise ValueError(f"unknown sample {sample!r} of dataset {ds!r}")
        return MappingProxyType(index[sample])

    def actor_of(self, ds: str, sample: str) -> str:
        return str(self.row(ds, sample)["actor"])

    def actor_samples(self, ds: str, actor: str, video: bool | None = None) -> list[str]:
        """Sample ids of one actor, in sample-table order (``video``: only with / without video)."""
        index = self._actors.get(ds)
        if index is None:
            index = self._actors[ds] = {}
            for r in self.tables[ds].to_dict("records"):
                index.setdefault(str(r["actor"]), []).append(r)
        rows = index.get(str(actor))
        if rows is None:
            raise ValueError(
                f"unknown actor {actor!r} of dataset {ds!r}; per-clip results live in "
                f"results/{ds}/<step>/<actor>/<sample>.<ext> (emohead_core/layout.py)"
            )
        if video is not None:
            rows = [r for r in rows if bool(r["video_path"]) == video]
        return [r["sample_id"] for r in rows]

    def clip_file(self, ds: str, kind: str, sample: str, encoder: str | None = None) -> str:
        """Per-clip result file of a sample (:func:`emohead_core.layout.clip_file`)."""
        return L.clip_file(self.results, ds, kind, self.actor_of(ds, sample), sample, encoder)

    def clip_row(self, wildcards) -> MappingProxyType:
        """The row of ``{dataset}``/``{sample}``; the ``{actor}`` of a per-clip path must be the
        sample's actor."""
        row = self.row(wildcards.dataset, wildcards.sample)
        if str(row["actor"]) != wildcards.actor:
            raise ValueError(
                f"sample {wildcards.sample!r} of {wildcards.dataset!r} belongs to actor "
                f"{row['actor']!r}, not {wildcards.actor!r}: per-clip results live in "
                f"results/{{dataset}}/<step>/{{actor}}/ (emohead_core/layout.py)"
            )
        return row


def alternation(names: Iterable) -> str:
    """Regex matching exactly one of ``names`` (a wildcard constraint); matches nothing when empty."""
    return "|".join(re.escape(str(n)) for n in sorted(names)) or "(?!)"


def batch_runtime(index: SampleIndex, minutes_per_clip: float, base: float = 10) -> Callable:
    """SLURM runtime (minutes) of an actor batch: scales with the actor's clip count."""

    def runtime(wildcards, attempt):
        n = len(index.actor_samples(wildcards.dataset, wildcards.actor))
        return int((base + minutes_per_clip * n) * attempt)

    return runtime


@dataclass(repr=False)
class WorkflowPlans:
    """One plan per stage (see :func:`build_plans`)."""

    results: str
    preprocess: object
    expression: object
    features: object
    audio2exp: object
    render: object
    metrics: object

    def __repr__(self) -> str:
        return "WorkflowPlans()"

    def results_dir(self, wildcards) -> str:
        """The results directory, for scripts that read several stages' files under it (a
        function: a plain path param is what `snakemake --lint` flags as a hardcoded prefix)."""
        return self.results


def build_plans(
    config: dict,
    index: SampleIndex,
    results: str,
    resources: str,
    layout: L.Layout,
    asset: Callable[[str], str],
) -> WorkflowPlans:
    """Every stage's plan, in dependency order (the config is validated, defaults applied)."""
    from .audio2exp.plan import Audio2ExpPlan
    from .expression.plan import ExpressionPlan
    from .features.plan import FeaturesPlan
    from .metrics.plan import MetricsPlan
    from .preprocess.plan import PreprocessPlan
    from .render.plan import RenderPlan

    preprocess = PreprocessPlan(config, index, results, layout)
    expression = ExpressionPlan(config, index, results, resources, layout, asset)
    features = FeaturesPlan(config, index, results, layout)
    audio2exp = Audio2ExpPlan(config, index.tables, results, layout)
    render = RenderPlan(
        config,
        index.tables,
        results,
        layout,
        hyperplane_actors=expression.hyperplane_actors,
        a2e_datasets=audio2exp.datasets,
        a2e_variants=audio2exp.variants,
        feature_encoders=features.role_encoders(),
    )
    from .expression.plan import held_out_fractions

    expression.held_out = held_out_fractions(config, index.tables, render.subjects, audio2exp.datasets)
    metrics = MetricsPlan(
        config,
        index.tables,
        results,
        resources,
        asset,
        render_pairs=render.metric_pairs(),
        emotion_control=render.emotion_control_files(),
        expression_onnx=expression.onnx,
        a2e_datasets=audio2exp.datasets,
        a2e_variants=audio2exp.variants,
        layout=layout,
    )
    return WorkflowPlans(results, preprocess, expression, features, audio2exp, render, metrics)
