"""Rule features_prefill: fill the feature store for all clips of one actor (model loaded once)."""

from emohead_core.features import pipeline
from emohead_core.logutil import log_to

with log_to(snakemake.log[0]):
    pipeline.prefill(
        snakemake.params.cfg,
        snakemake.wildcards.encoder,
        list(snakemake.input.audio),
        snakemake.output[0],
        frames=list(snakemake.input.get("frames", [])),
        transcripts=list(snakemake.input.get("transcripts", [])),
        threads=snakemake.threads,
    )
