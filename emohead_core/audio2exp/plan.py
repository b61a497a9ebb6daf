"""Parse-time plan of ``rules/audio2exp.smk``: which datasets and variants are trained, the
inputs of the manifest / train / evaluate jobs, and the stage's outputs
(:mod:`emohead_core.plan` builds it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import layout as L
from .pipeline import resolve_encoders


def trained_datasets(config: dict, samples: dict) -> list[str]:
    """Datasets to train on: audio2exp.datasets, or every labelled dataset with speech (not kind
    folder; a video-only dataset such as MEAD style clips has nothing to learn from)."""
    names = (config.get("audio2exp") or {}).get("datasets")
    if names is None:
        names = [
            ds
            for ds, spec in config["datasets"].items()
            if spec["kind"] != "folder" and ds in samples and (samples[ds]["audio_path"] != "").any()
        ]
    return [ds for ds in names if ds in samples]


def run_variants(config: dict) -> list[str]:
    """Variants to run: audio2exp.run_variants, or every entry of audio2exp.variants."""
    a2e = config.get("audio2exp") or {}
    run = a2e.get("run_variants")
    return list(a2e.get("variants") or {"main": {}}) if run is None else list(run)


def variant_section(config: dict, variant: str) -> dict:
    """The config section with only this variant (edits of other variants trigger no rerun)."""
    a2e = config.get("audio2exp") or {}
    variants = a2e.get("variants") or {"main": {}}
    return {**a2e, "features": resolve_encoders(config), "variants": {variant: variants.get(variant) or {}}}


def _train_test(samples: dict, dataset: str):
    df = samples[dataset]
    df = df[df["split"].isin(["train", "test"])]
    return df, df[df["video_path"] != ""]


def manifest_inputs(config: dict, samples: dict, results: str, dataset: str) -> dict:
    """Inputs of rule audio2exp_inputs (once per dataset): the feature files of every
    train/test sample for the encoders of audio2exp.features and the expression Parquets of
    the video samples. The 26 train/evaluate jobs depend on its one manifest instead of on
    these ~4 files per clip (DAG build time, bench/bench_dag.py)."""
    df, video = _train_test(samples, dataset)
    encoders = sorted(set(resolve_encoders(config).values()))
    return {
        "features": [
            L.clip_file(results, dataset, "features", str(a), s, enc)
            for enc in encoders
            for s, a in zip(df["sample_id"], df["actor"])
        ],
        "expression": [
            L.clip_file(results, dataset, "expression", str(a), s)
            for s, a in zip(video["sample_id"], video["actor"])
        ],
    }


def manifest_path(results: str, dataset: str) -> str:
    return f"{results}/{dataset}/audio2exp/inputs.json"


def job_inputs(config: dict, samples: dict, results: str, dataset: str) -> dict:
    """Inputs of training/evaluation: sample table, the input manifest of the dataset (rule
    audio2exp_inputs: feature files of every train/test sample for the three encoders,
    expression Parquet of the video samples), hyperplanes of the video samples' actors."""
    _, video = _train_test(samples, dataset)
    hp_actors = sorted(video["actor"].astype(str).unique())
    forced = (config.get("audio2exp") or {}).get("hyperplane_actor")
    if forced is not None and str(forced) not in hp_actors:
        hp_actors.append(str(forced))  # e.g. the pooled "all" hyperplanes
    return {
        "samples": f"{results}/{dataset}/samples.parquet",
        "manifest": manifest_path(results, dataset),
        "hyperplanes": [f"{results}/{dataset}/hyperplanes/{a}/hyperplanes.json" for a in hp_actors],
    }


@dataclass(repr=False)
class Audio2ExpPlan:
    config: dict
    samples: dict  # dataset -> sample table
    results: str
    layout: L.Layout
    datasets: list = field(init=False)  # datasets this stage trains on
    variants: list = field(init=False)  # variants it trains

    def __post_init__(self):
        self.datasets = trained_datasets(self.config, self.samples)
        self.variants = run_variants(self.config)

    def __repr__(self) -> str:  # short: Snakemake prints input functions by name
        return f"Audio2ExpPlan({self.datasets}, {self.variants})"

    def manifest_path(self, dataset: str) -> str:
        return manifest_path(self.results, dataset)

    def manifest_files(self, wildcards) -> dict[str, list[str]]:
        """The files the manifest lists (params of rule audio2exp_inputs)."""
        return manifest_inputs(self.config, self.samples, self.results, wildcards.dataset)

    def manifest_inputs(self, wildcards) -> dict[str, list[str]]:
        """What produces them (the files, or their actor directories)."""
        return {role: self.layout.deps(files) for role, files in self.manifest_files(wildcards).items()}

    def job_inputs(self, wildcards) -> dict:
        return job_inputs(self.config, self.samples, self.results, wildcards.dataset)

    def section(self, wildcards) -> dict:
        return variant_section(self.config, wildcards.variant)

    def targets(self) -> list[str]:
        return [
            f"{self.results}/{ds}/audio2exp/{v}/{f}"
            for ds in self.datasets
            for v in self.variants
            for f in ("eval.json", "loss.png")
        ]
