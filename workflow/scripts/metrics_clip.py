"""Rule metrics_clip: every metric of one (generated, ground-truth) clip -> Parquet rows."""

from pathlib import Path

from emohead_core.logutil import log_to
from emohead_core.metrics import pipeline

with log_to(snakemake.log[0]):
    inp = snakemake.input
    assets = list(inp.face_assets) if hasattr(inp, "face_assets") else []
    pipeline.run_clip(
        dict(snakemake.params.row),
        dict(snakemake.params.metrics),
        str(Path(snakemake.output.rows).parents[4]),  # {results}/metrics/clips/{method}/{group}/{clip}
        snakemake.output.rows,
        snakemake.output.fid,
        assets_dir=str(Path(assets[0]).parent) if assets else None,
        onnx_dir=str(Path(inp.faceboxes).parent) if hasattr(inp, "faceboxes") else None,
        expression_cfg=dict(snakemake.params.expression),
        er_baseline=inp.er_baseline if hasattr(inp, "er_baseline") else None,
        threads=snakemake.threads,
    )
