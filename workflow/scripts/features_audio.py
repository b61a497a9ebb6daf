"""Rule features_audio: one clip's audio-side features (role v or e), via the feature store."""

from emohead_core.features import pipeline
from emohead_core.logutil import log_to

with log_to(snakemake.log[0]):
    pipeline.run_audio_features(
        snakemake.params.cfg,
        snakemake.wildcards.encoder,
        snakemake.input.audio,
        snakemake.output[0],
        frames_ref=snakemake.input.get("frames"),
        threads=snakemake.threads,
    )
