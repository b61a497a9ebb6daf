"""Rule metrics_human_sheet: blind Fidelity / Coherence / Empathy sheet (CSV + HTML + key)."""

import pandas as pd

from emohead_core.logutil import log_to
from emohead_core.metrics import pipeline
from emohead_core.metrics.pairs import COLUMNS

with log_to(snakemake.log[0]):
    pipeline.human_sheet(
        pd.DataFrame(snakemake.params.pairs, columns=COLUMNS),
        snakemake.output.csv,
        snakemake.output.html,
        snakemake.output.key,
        seed=int(snakemake.params.seed),
    )
