"""Rule preprocess_actor: crops, boxes and wavs of all samples of one actor (batch: actor)."""

from emohead_core.logutil import log_to
from emohead_core.preprocess import crop

with log_to(snakemake.log[0]):
    counts = crop.preprocess_actor(
        [tuple(c) for c in snakemake.params.clips],
        snakemake.input.onnx,
        snakemake.output.crop,
        snakemake.output.audio,
        crop_size=int(snakemake.params.crop_size),
        opts=dict(snakemake.params.opts),
        sample_rate=int(snakemake.params.sample_rate),
        fps=float(snakemake.params.fps),
        threads=snakemake.threads,
    )
    print(counts)
