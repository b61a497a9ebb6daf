"""Rule export_3ddfa_onnx: 3DDFA_V2 MobileNet checkpoint -> ONNX (dynamic batch)."""

import torch

from emohead_core.expression.facemodel import widen_from_name
from emohead_core.expression.runtime import export_onnx
from emohead_core.logutil import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    widen = snakemake.params.widen_factor or widen_from_name(snakemake.input.checkpoint)
    export_onnx(snakemake.input.checkpoint, snakemake.output[0], widen)
