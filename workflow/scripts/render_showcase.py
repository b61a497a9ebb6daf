"""Rule render_showcase: emotion switch video, novel views, emotion control measured."""

from emohead_core.logutil import log_to
from emohead_core.render.pipeline import step_showcase

with log_to(snakemake.log[0]):
    out = dict(snakemake.output.items())
    fm = {k: snakemake.input[k] for k in ("checkpoint", "onnx", "detector", "bfm")}
    print(
        step_showcase(
            snakemake.input.model,
            snakemake.input.prepared,
            snakemake.input.hyperplanes,
            out,
            snakemake.params.render,
            fm,
            dict(snakemake.params.expression),
            threads=snakemake.threads,
        )
    )
