# Shared helpers: config validation, sample tables, input functions.
import os
from pathlib import Path

from snakemake.utils import validate

from emohead_core import config as ehconfig


validate(config, "../config/schema.yaml")
ehconfig.apply_env_overrides(config)

RESULTS = config.get("results_dir", "results")
RESOURCES = config.get("resources_dir", "resources")
LOGS = config.get("logs_dir", "logs")
BENCH = config.get("benchmarks_dir", "benchmarks")
