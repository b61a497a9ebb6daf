"""Rule metrics_clip: every metric of one (generated, ground-truth) clip -> Parquet rows."""

from pathlib import Path

import torch

from emohead_core.logutil import log_to
from emohead_core.metrics import pipeline

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    inp = snakemake.input
    has = lambda k: hasattr(inp, k)  # noqa: E731
    pipeline.run_clip(
        dict(snakemake.params.row),
        dict(snakemake.params.metrics),
        snakemake.params.results,
        snakemake.output.rows,
        snakemake.output.fid,
        checkpoint=inp.checkpoint if has("checkpoint") else None,
        bfm=inp.bfm if has("bfm") else None,
        onnx_dir=str(Path(inp.detector).parent) if has("detector") else None,
        expression_cfg=dict(snakemake.params.expression),
        backend=None if has("onnx") else "torch",  # the stage's ONNX when its rule is included
        er_baseline=inp.er_baseline if has("er_baseline") else None,
        threads=snakemake.threads,
    )
