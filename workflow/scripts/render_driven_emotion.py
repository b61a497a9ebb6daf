"""Rule render_driven_emotion: the emotion of a subject's audio-driven test renders, measured."""

from emohead_core.logutil import log_to
from emohead_core.render.pipeline import step_driven_emotion

with log_to(snakemake.log[0]):
    fm = {k: snakemake.input[k] for k in ("checkpoint", "onnx", "detector", "bfm")}
    doc = step_driven_emotion(
        dict(snakemake.params.videos),
        snakemake.input.prepared,
        snakemake.input.hyperplanes,
        snakemake.output[0],
        fm,
        dict(snakemake.params.expression),
        threads=snakemake.threads,
    )
    print({k: doc[k] for k in ("accuracy", "real_accuracy", "chance")})
