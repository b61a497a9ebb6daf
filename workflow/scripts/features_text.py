"""Rule features_text: one clip's text features (role gamma): word vectors on frames (Fig. 9)."""

from emohead_core.features import pipeline
from emohead_core.logutil import log_to

with log_to(snakemake.log[0]):
    pipeline.run_text_features(
        snakemake.params.cfg,
        snakemake.wildcards.encoder,
        snakemake.input.audio,
        snakemake.input.transcript,
        snakemake.output[0],
        frames_ref=snakemake.input.get("frames"),
        threads=snakemake.threads,
    )
