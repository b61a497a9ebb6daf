"""Rule render_test: one test clip rendered from its ground-truth alphas and poses."""

from pathlib import Path

from emohead_core.logutil import log_to
from emohead_core.render.pipeline import step_test_clip

with log_to(snakemake.log[0]):
    print(
        step_test_clip(
            snakemake.input.model,
            snakemake.input.prepared,
            snakemake.wildcards.clip,
            snakemake.params.audio,
            Path(snakemake.output.test_meta).parent,
            snakemake.params.render,
            snakemake.wildcards.subject,
            threads=snakemake.threads,
        )
    )
