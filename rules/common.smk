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
#   clip_file(ds, kind, sample, encoder=None)  per-clip result file (emohead_core/layout.py):
#                          results/{ds}/<step>/{actor}/{sample}.<ext>, kind crop|boxes|audio|
#                          expression|features|transcript
#   LAYOUT.deps(paths)     dependencies for reading those files - the files (batch: clip)
#                          or their actors' directories (batch: actor, one job per actor)
#   ACTOR_DATASETS, CLIP_DATASETS  datasets by batch mode; actor_samples(ds, actor, video=None)
#   RESULTS, RESOURCES, LOGS, BENCH  directories
import os
import re
from pathlib import Path
from types import MappingProxyType

from emohead_core import config as ehconfig
from emohead_core.preprocess import datasets as ehdatasets
from emohead_core import assets as ehassets
from emohead_core import layout as ehlayout

# unknown keys (with the closest known one), invalid values, then the defaults
ehconfig.validate_config(config)
ehconfig.apply_env_overrides(config)

RESULTS = config.get("results_dir", "results")
RESOURCES = config.get("resources_dir", "resources")
LOGS = config.get("logs_dir", "logs")
BENCH = config.get("benchmarks_dir", "benchmarks")

ASSET_MANIFEST = ehassets.load_manifest()

# Sample tables, one per configured dataset (asset: roots are sha256-checked in the mirror).
SAMPLES = ehdatasets.build_tables(config)


LAYOUT = ehlayout.Layout.from_config(config, RESULTS)
ACTOR_DATASETS = [ds for ds in SAMPLES if LAYOUT.mode(ds) == "actor"]
CLIP_DATASETS = [ds for ds in SAMPLES if LAYOUT.mode(ds) == "clip"]


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


def clip_file(ds, kind, sample, encoder=None):
    actor = str(sample_row(ds, sample)["actor"])
    return ehlayout.clip_file(RESULTS, ds, kind, actor, sample, encoder)


# (dataset, actor) -> rows of the actor's samples, in sample-table order
_ACTOR_INDEX = {}


def actor_samples(ds, actor, video=None):
    index = _ACTOR_INDEX.get(ds)
    if index is None:
        index = _ACTOR_INDEX[ds] = {}
        for r in SAMPLES[ds].to_dict("records"):
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


def asset(name):
    if name not in ASSET_MANIFEST:
        raise ValueError(f"unknown asset {name!r}: add it to config/assets.yaml")
    return f"{RESOURCES}/assets/{name}"


def _alternation(names):
    return "|".join(re.escape(str(n)) for n in sorted(names)) or "(?!)"


# Input functions of rules/preprocess.smk


def _clip_row(wildcards):
    """The sample's row; the {actor} of a per-clip path must be the sample's actor."""
    row = sample_row(wildcards.dataset, wildcards.sample)
    if str(row["actor"]) != wildcards.actor:
        raise ValueError(
            f"sample {wildcards.sample!r} of {wildcards.dataset!r} belongs to actor "
            f"{row['actor']!r}, not {wildcards.actor!r}: per-clip results live in "
            f"results/{{dataset}}/<step>/{{actor}}/ (emohead_core/layout.py)"
        )
    return row


def _video_of(wildcards):
    return _clip_row(wildcards)["video_path"]


def _audio_inputs(wildcards):
    row = _clip_row(wildcards)
    inputs = {"audio": row["audio_path"]}
    if row["video_path"]:
        # the wav is padded/trimmed to the length of the cropped video
        inputs["boxes"] = clip_file(wildcards.dataset, "boxes", wildcards.sample)
    return inputs


def _actor_clips(wildcards):
    """(sample, video_path or "", audio_path) of one actor's samples (rule preprocess_actor)."""
    rows = [
        sample_row(wildcards.dataset, s)
        for s in actor_samples(wildcards.dataset, wildcards.actor)
    ]
    return [(r["sample_id"], r["video_path"], r["audio_path"]) for r in rows]


def _actor_sources(wildcards):
    """Source media of one actor's samples (inputs of rule preprocess_actor)."""
    clips = _actor_clips(wildcards)
    return {
        "videos": [v for _, v, _ in clips if v],
        "audios": [a for _, _, a in clips],
    }


def batch_runtime(minutes_per_clip, base=10):
    """SLURM runtime (minutes) of an actor batch: scales with the actor's clip count."""

    def f(wildcards, attempt):
        n = len(actor_samples(wildcards.dataset, wildcards.actor))
        return int((base + minutes_per_clip * n) * attempt)

    return f


def _table_inputs(wildcards):
    df = SAMPLES[wildcards.dataset]
    return sorted({p for p in list(df["video_path"]) + list(df["audio_path"]) if p})


# Input functions of rules/features.smk (feat, FEAT_SET: defined there)


def _feature_rows(ds, actor):
    return [
        (s, bool(sample_row(ds, s)["video_path"])) for s in actor_samples(ds, actor)
    ]


def _feature_job_config(encoder):
    return feat.smk_job_config(
        config, RESULTS, None if encoder == "asr" else encoder, asr=encoder == "asr"
    )


def _step_encoder(wildcards):
    """Encoder of an actor batch's step: features/{encoder}, or transcripts -> "asr"."""
    if wildcards.step == "transcripts":
        return "asr"
    return wildcards.step.removeprefix("features/")


def _actor_feature_inputs(wildcards):
    files = feat.smk_prefill_inputs(
        config,
        RESULTS,
        wildcards.dataset,
        wildcards.actor,
        _feature_rows(wildcards.dataset, wildcards.actor),
        _step_encoder(wildcards),
    )
    return {role: LAYOUT.deps(paths) for role, paths in files.items()}


def _actor_feature_clips(wildcards):
    ds = wildcards.dataset
    return [
        {
            "sample": s,
            "audio": clip_file(ds, "audio", s),
            "frames": (
                clip_file(ds, "boxes", s) if v and FEAT_SET["align_to_crop"] else ""
            ),
            "transcript": clip_file(ds, "transcript", s),
        }
        for s, v in _feature_rows(ds, wildcards.actor)
    ]


wildcard_constraints:
    dataset=_alternation(SAMPLES),
    sample=r"[^/]+",
    actor=r"[^/]+",
    subject=r"[^/]+",
