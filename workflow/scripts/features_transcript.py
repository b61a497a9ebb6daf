"""Rule features_transcript: ASR words with start/end seconds for one clip."""

from emohead_core.features import pipeline
from emohead_core.logutil import log_to

with log_to(snakemake.log[0]):
    pipeline.run_transcript(
        snakemake.params.cfg, snakemake.input.audio, snakemake.output[0], threads=snakemake.threads
    )
