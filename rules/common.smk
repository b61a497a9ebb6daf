# Shared helpers: config validation, sample tables, input functions.
#
# API for every stage (see CONTRIBUTING.md):
#   SAMPLES[ds]            the sample table of dataset ds (pandas DataFrame, built at parse time)
#   video_samples(ds)      sample ids with a video (cropped by preprocess)
#   audio_samples(ds)      every sample id (all have a 16 kHz wav)
#   actors(ds)             sorted actor ids (str)
#   samples(ds, split=None, video=None)  sample ids filtered by split and/or having video
#   sample_row(ds, sample) one row of the table (read-only dict: column -> value)
#   asset(name)            path of a resolved asset (rule fetch_asset), name = key of config/assets.yaml
#   RESULTS, RESOURCES, LOGS, BENCH  directories
import os
import re
from pathlib import Path
from types import MappingProxyType

from snakemake.utils import validate

from emohead_core import config as ehconfig
from emohead_core import datasets as ehdatasets
from emohead_core import assets as ehassets

validate(config, "../config/schema.yaml")
ehconfig.apply_env_overrides(config)

RESULTS = config.get("results_dir", "results")
RESOURCES = config.get("resources_dir", "resources")
LOGS = config.get("logs_dir", "logs")
BENCH = config.get("benchmarks_dir", "benchmarks")

ASSET_MANIFEST = ehassets.load_manifest()

# Sample tables, one per configured dataset (asset: roots are sha256-checked in the mirror).
SAMPLES = ehdatasets.build_tables(config)


def samples(ds, split=None, video=None):
    df = SAMPLES[ds]
    if split is not None:
        df = df[df["split"] == split]
    if video is True:
        df = df[df["video_path"] != ""]
    elif video is False:
        df = df[df["video_path"] == ""]
    return list(df["sample_id"])


def video_samples(ds):
    return samples(ds, video=True)


def audio_samples(ds):
    return samples(ds)


def actors(ds):
    return sorted(SAMPLES[ds]["actor"].unique())


# sample_id -> row, per dataset: input functions call sample_row once per job, and a
# DataFrame filter per call made DAG building quadratic (30,000 MEAD clips: bench/bench_dag.py).
_ROW_INDEX = {}


def sample_row(ds, sample):
    index = _ROW_INDEX.get(ds)
    if index is None:
        df = SAMPLES[ds]
        index = _ROW_INDEX[ds] = dict(zip(df["sample_id"], df.to_dict("records")))
    if sample not in index:
        raise ValueError(f"unknown sample {sample!r} of dataset {ds!r}")
    return MappingProxyType(index[sample])


def asset(name):
    if name not in ASSET_MANIFEST:
        raise ValueError(f"unknown asset {name!r}: add it to config/assets.yaml")
    return f"{RESOURCES}/assets/{name}"


def _alternation(names):
    return "|".join(re.escape(str(n)) for n in sorted(names)) or "(?!)"


# Input functions of rules/preprocess.smk


def _video_of(wildcards):
    return sample_row(wildcards.dataset, wildcards.sample)["video_path"]


def _audio_inputs(wildcards):
    row = sample_row(wildcards.dataset, wildcards.sample)
    inputs = {"audio": row["audio_path"]}
    if row["video_path"]:
        # the wav is padded/trimmed to the length of the cropped video
        inputs["boxes"] = (
            f"{RESULTS}/{wildcards.dataset}/crop/{wildcards.sample}.boxes.parquet"
        )
    return inputs


def _table_inputs(wildcards):
    df = SAMPLES[wildcards.dataset]
    return sorted({p for p in list(df["video_path"]) + list(df["audio_path"]) if p})


wildcard_constraints:
    dataset=_alternation(SAMPLES),
    sample=r"[^/]+",
    actor=r"[^/]+",
