"""Rule extract_audio: 16 kHz mono wav (padded/trimmed to the crop video's length)."""

from emohead_core.logutil import log_to
from emohead_core.preprocess import crop

with log_to(snakemake.log[0]):
    boxes = snakemake.input.get("boxes")
    crop.extract_clip_audio(
        snakemake.input.audio,
        snakemake.output[0],
        sample_rate=int(snakemake.params.sample_rate),
        fps=float(snakemake.params.fps),
        boxes_path=boxes,
    )
