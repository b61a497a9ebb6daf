# Shared state, built once before the stages: config validation, sample tables, the plan of
# every stage.
#
# API for every stage (see CONTRIBUTING.md):
#   RESULTS, RESOURCES, LOGS, BENCH  directories
#   SAMPLES                the sample tables (emohead_core.plan.SampleIndex: .tables[ds] is
#                          the pandas DataFrame; .row(ds, sample), .actor_samples(ds, actor),
#                          .clip_file(ds, kind, sample[, encoder]), ...)
#   LAYOUT                 per-clip files by batch mode (emohead_core/layout.py); LAYOUT.deps(paths):
#                          the files (batch: clip) or their actors' directories (batch: actor)
#   ACTOR_DATASETS, CLIP_DATASETS  datasets by batch mode
#   asset(name)            path of a resolved asset (rule fetch_asset), name = key of config/assets.yaml
#   alternation(names)     wildcard constraint matching one of names
#   batch_runtime(SAMPLES, minutes_per_clip)  SLURM runtime of an actor batch
#   PLANS.<stage>          parse-time plan of each stage (emohead_core/<stage>/plan.py): the
#                          rules' input functions, params and TARGETS[stage]
import sys

from emohead_core import assets as ehassets
from emohead_core import config as ehconfig
from emohead_core import layout as ehlayout
from emohead_core import runlock as ehrunlock
from emohead_core.plan import SampleIndex, alternation, batch_runtime, build_plans
from emohead_core.preprocess import datasets as ehdatasets

# unknown keys (with the closest known one), invalid values, then the defaults
ehconfig.validate_config(config)
ehconfig.apply_env_overrides(config)

RESULTS = config["results_dir"]
RESOURCES = config["resources_dir"]
LOGS = config["logs_dir"]
BENCH = config["benchmarks_dir"]

# `snakemake --unlock` while a run holds the results directory (rules/cluster.smk) would remove
# that live run's Snakemake lock: refused, naming the holder (emohead_core/runlock.py)
if workflow.is_main_process and "--unlock" in sys.argv:
    ehrunlock.refuse_unlock_while_held(RESULTS)

ASSET_MANIFEST = ehassets.load_manifest()


def asset(name):
    if name not in ASSET_MANIFEST:
        raise ValueError(f"unknown asset {name!r}: add it to config/assets.yaml")
    return f"{RESOURCES}/assets/{name}"


# Sample tables, one per configured dataset (asset: roots are sha256-checked in the mirror).
SAMPLES = SampleIndex(ehdatasets.build_tables(config), RESULTS)
LAYOUT = ehlayout.Layout.from_config(config, RESULTS)
ACTOR_DATASETS = [ds for ds in SAMPLES if LAYOUT.mode(ds) == "actor"]
CLIP_DATASETS = [ds for ds in SAMPLES if LAYOUT.mode(ds) == "clip"]

PLANS = build_plans(config, SAMPLES, RESULTS, RESOURCES, LAYOUT, asset)


wildcard_constraints:
    dataset=alternation(SAMPLES),
    sample=r"[^/]+",
    actor=r"[^/]+",
    subject=r"[^/]+",
