"""Rule expression_actor: crop videos (+ boxes) of one actor -> per-frame 3DDFA_V2 expression Parquets."""

from emohead_core.expression import extract_actor, face_model_for_job
from emohead_core.logutil import log_to

with log_to(snakemake.log[0]):
    opts = snakemake.params.opts
    if opts["backend"] == "torch":  # the onnx backend never loads torch
        import torch

        torch.set_num_threads(snakemake.threads)
    inp = snakemake.input
    fm = face_model_for_job(inp.checkpoint, inp.onnx, inp.detector, inp.bfm, opts, snakemake.threads)
    counts = extract_actor(
        dict(snakemake.params.videos),
        fm,
        snakemake.output[0],
        detect_every=opts["detect_every"],
        params={"opts": dict(opts)},
        boxes=dict(snakemake.params.boxes) if opts["face_boxes"] == "preprocess" else None,
        threads=snakemake.threads,
    )
    print(counts)
