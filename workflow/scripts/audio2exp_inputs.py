"""Rule audio2exp_inputs: manifest of the per-clip files the audio2exp jobs of a dataset read."""

from emohead_core.audio2exp.pipeline import write_input_manifest
from emohead_core.logutil import log_to

with log_to(snakemake.log[0]):
    write_input_manifest(
        {role: list(files) for role, files in snakemake.params.files.items()},
        snakemake.output.manifest,
    )
