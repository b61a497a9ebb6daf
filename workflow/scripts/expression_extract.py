"""Rule expression_extract: crop video (+ its boxes) -> per-frame 3DDFA_V2 expression Parquet."""

from emohead_core.expression import extract_clip, face_model_for_job
from emohead_core.logutil import log_to

with log_to(snakemake.log[0]):
    opts = snakemake.params.opts
    if opts["backend"] == "torch":  # the onnx backend never loads torch
        import torch

        torch.set_num_threads(snakemake.threads)
    inp = snakemake.input
    fm = face_model_for_job(inp.checkpoint, inp.onnx, inp.detector, inp.bfm, opts, snakemake.threads)
    data = extract_clip(
        inp.video,
        fm,
        snakemake.output[0],
        detect_every=opts["detect_every"],
        boxes=inp.boxes if opts["face_boxes"] == "preprocess" else None,
        threads=snakemake.threads,
    )
    print(f"{inp.video}: {len(data['frame'])} frames, {int((~data['detected']).sum())} interpolated")
