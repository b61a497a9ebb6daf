"""Rule render_prepare: every clip of a subject (frames, cameras, alphas, head masks, backgrounds)."""

from emohead_core.logutil import log_to
from emohead_core.render.pipeline import step_prepare

with log_to(snakemake.log[0]):
    print(
        step_prepare(
            snakemake.params.subject,
            snakemake.input.bfm,
            snakemake.output.prepared,
            snakemake.output.preview,
            snakemake.params.render,
            snakemake.wildcards.subject,
        )
    )
