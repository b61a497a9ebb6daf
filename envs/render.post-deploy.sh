#!/usr/bin/env bash
# Snakemake runs this once after creating the conda env of envs/render.yaml (env activated, cwd =
# Snakemake's working directory). It installs emohead_core from this repository, editable:
# Snakemake copies the env file to .snakemake/conda/<hash>.yaml before `conda env create`, so a
# relative pip entry such as `-e ../` would resolve against .snakemake/conda/, not the repo.
set -euo pipefail
ROOT="${EMOHEAD_ROOT:-$PWD}"
if [ ! -f "$ROOT/emohead_core/__init__.py" ]; then
    echo "envs/render.post-deploy.sh: $ROOT is not the EmoHead repository; run Snakemake from the repository root or set EMOHEAD_ROOT" >&2
    exit 1
fi
python -m pip install --no-deps -e "$ROOT"
