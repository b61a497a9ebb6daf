"""Rule metrics_er_baseline: train the ER (3DMM-exp baseline) on GT expression parameters."""

from emohead_core.logutil import log_to
from emohead_core.metrics import pipeline

with log_to(snakemake.log[0]):
    m = pipeline.train_er_baseline(
        list(snakemake.params.expression),
        list(snakemake.params.labels),
        snakemake.output[0],
        C=float(snakemake.params.C),
    )
    print("classes:", m.classes)
