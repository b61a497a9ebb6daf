"""Rule render_baseline: one test clip's held-out span as a trivial baseline (no model)."""

from pathlib import Path

from emohead_core.logutil import log_to
from emohead_core.render.pipeline import step_baseline_clip

with log_to(snakemake.log[0]):
    print(
        step_baseline_clip(
            snakemake.input.prepared,
            snakemake.wildcards.clip,
            snakemake.wildcards.baseline,
            snakemake.params.audio,
            Path(snakemake.output.test_meta).parent,
            snakemake.wildcards.subject,
        )
    )
