"""Rule audio2exp_evaluate: test-split RMSE of alpha (Table VI) and the constant-mean baseline."""

from emohead_core.audio2exp.pipeline import evaluate_variant
from emohead_core.logutil import log_to

with log_to(snakemake.log[0]):
    evaluate_variant(
        snakemake.params.results,
        snakemake.wildcards.dataset,
        snakemake.params.section,
        snakemake.wildcards.variant,
        snakemake.input.model,
        snakemake.output.eval,
        threads=snakemake.threads,
    )
