"""Rule render_driven: one test clip rendered from its audio by one audio2exp variant."""

from pathlib import Path

from emohead_core.logutil import log_to
from emohead_core.render.pipeline import step_driven_clip

with log_to(snakemake.log[0]):
    print(
        step_driven_clip(
            snakemake.input.model,
            snakemake.input.prepared,
            snakemake.wildcards.clip,
            snakemake.params.audio,
            Path(snakemake.input.a2e_model).parent,
            Path(snakemake.output.test_meta).parent,
            snakemake.params.render,
            snakemake.wildcards.subject,
            snakemake.wildcards.variant,
            dict(snakemake.params.pipeline),
            hyperplanes=snakemake.input.get("hyperplanes"),
            features=dict(snakemake.params.features),
            threads=snakemake.threads,
        )
    )
