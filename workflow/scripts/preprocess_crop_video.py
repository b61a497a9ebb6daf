"""Rule crop_video: 25 fps face crop + per-frame boxes of one clip."""

from emohead_core.logutil import log_to
from emohead_core.preprocess import crop

with log_to(snakemake.log[0]):
    opts = dict(snakemake.params.opts)
    summary = crop.crop_clip(
        snakemake.input.video,
        snakemake.input.onnx,
        snakemake.output.video,
        snakemake.output.boxes,
        crop_size=int(snakemake.params.crop_size),
        opts=opts,
        threads=snakemake.threads,
    )
    print(summary)
