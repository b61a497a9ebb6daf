"""Rule audio2exp_train: train the audio-expression module of one dataset x variant."""

from pathlib import Path

from emohead_core.audio2exp.pipeline import train_variant
from emohead_core.logutil import log_to

with log_to(snakemake.log[0]):
    train_variant(
        snakemake.params.results,
        snakemake.wildcards.dataset,
        snakemake.params.section,
        snakemake.wildcards.variant,
        Path(snakemake.output.model).parent,  # checkpoints go to its ckpt/ (resumed on rerun)
        threads=snakemake.threads,
    )
