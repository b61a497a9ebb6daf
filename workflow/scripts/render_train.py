"""Rule render_train: train the expression-conditioned NeRF of one subject (resumes from ckpt)."""

from emohead_core.logutil import log_to
from emohead_core.render.pipeline import step_train

with log_to(snakemake.log[0]):
    out = dict(snakemake.output.items())
    out["ckpt"] = snakemake.params.ckpt
    print(
        step_train(
            snakemake.input.prepared,
            out,
            snakemake.params.render,
            dict(snakemake.params.info),
            shape_ckpt=snakemake.input.shape_ckpt,
            param_stats=snakemake.input.param_stats,
            threads=snakemake.threads,
        )
    )
