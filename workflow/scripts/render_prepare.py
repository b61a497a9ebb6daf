"""Rule render_prepare: frames, cameras, alphas, head masks and background of one subject."""

from emohead_core.logutil import log_to
from emohead_core.render.pipeline import step_prepare

with log_to(snakemake.log[0]):
    print(step_prepare(snakemake.params.files["crop"], snakemake.params.files["expression"], snakemake.input.bfm,
                       snakemake.output.prepared, snakemake.output.preview, snakemake.params.render))
