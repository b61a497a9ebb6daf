"""Rule render_summary: val_psnr.json over a subject's ground-truth-alpha test renders."""

from emohead_core.logutil import log_to
from emohead_core.render.pipeline import step_summary

with log_to(snakemake.log[0]):
    print(step_summary(list(snakemake.input), snakemake.output[0]))
