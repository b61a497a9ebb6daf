"""Rule features_actor: one actor's features for one encoder (or its transcripts), model loaded once."""

from emohead_core.features import pipeline
from emohead_core.logutil import log_to

with log_to(snakemake.log[0]):
    counts = pipeline.features_actor(
        snakemake.params.cfg,
        snakemake.params.encoder,
        [dict(c) for c in snakemake.params.clips],
        snakemake.output[0],
        threads=snakemake.threads,
    )
    print(counts)
