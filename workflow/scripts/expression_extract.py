"""Rule expression_extract: crop video -> per-frame 3DDFA_V2 expression Parquet."""

from pathlib import Path

import torch

from emohead_core.expression import FaceModel, extract_clip
from emohead_core.logutil import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    opts = snakemake.params.opts
    inp = snakemake.input
    onnx_dir = Path(inp.onnx).parent
    assert Path(inp.detector).parent == onnx_dir, "3DDFA and FaceBoxes ONNX files share resources/onnx"
    fm = FaceModel(
        Path(inp.checkpoint).parent,
        onnx_dir=onnx_dir,
        checkpoint=Path(inp.checkpoint).name,
        widen_factor=opts.get("widen_factor"),
        backend=opts["backend"],
        device=opts["device"],
        batch_size=opts["batch_size"],
        threads=snakemake.threads,
        detect_threshold=opts["detect_threshold"],
        bfm=inp.bfm,
    )
    data = extract_clip(inp.video, fm, snakemake.output[0], detect_every=opts["detect_every"])
    print(f"{inp.video}: {len(data['frame'])} frames, {int((~data['detected']).sum())} interpolated")
