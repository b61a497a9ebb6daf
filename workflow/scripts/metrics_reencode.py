"""Rule metrics_reencode: the crop re-encoded at crf (the demo's stand-in generated clip)."""

from emohead_core.logutil import log_to
from emohead_core.metrics import pipeline

with log_to(snakemake.log[0]):
    pipeline.reencode(
        snakemake.params.crop, snakemake.output[0], crf=snakemake.params.crf, fps=snakemake.params.fps
    )
