"""Rule render_outputs: test renders, validation PSNR, emotion switch video, novel views."""

from emohead_core.logutil import log_to
from emohead_core.render.pipeline import step_outputs

with log_to(snakemake.log[0]):
    print(step_outputs(snakemake.input.model, snakemake.input.prepared, dict(snakemake.output.items()),
                       snakemake.params.render, snakemake.wildcards.subject, snakemake.params.subject,
                       audio=snakemake.params.files["audio"], hyperplanes=snakemake.input.hyperplanes,
                       threads=snakemake.threads))
