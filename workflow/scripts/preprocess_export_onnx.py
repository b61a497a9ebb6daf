"""Rule export_faceboxes_onnx: FaceBoxes weights -> ONNX (dynamic input size)."""

import torch

from emohead_core.logutil import log_to
from emohead_core.preprocess.facedetect import export_onnx

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    export_onnx(snakemake.input.weights, snakemake.output[0])
