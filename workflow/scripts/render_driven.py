"""Rule render_driven: held-out frames rendered from audio with one audio2exp variant."""

from pathlib import Path

from emohead_core.logutil import log_to
from emohead_core.render.pipeline import step_driven

with log_to(snakemake.log[0]):
    print(step_driven(snakemake.input.model, snakemake.input.prepared, Path(snakemake.input.a2e_model).parent,
                      snakemake.params.files["audio"], Path(snakemake.output.test_meta).parent,
                      snakemake.params.render, snakemake.wildcards.subject, snakemake.params.subject,
                      snakemake.wildcards.variant, dict(snakemake.params.pipeline),
                      hyperplanes=snakemake.input.hyperplanes, threads=snakemake.threads))
