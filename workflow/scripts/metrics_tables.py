"""Rule tables: Tables I, II, IV, VI (Markdown, LaTeX, CSV) from results/, with paper rows."""

from pathlib import Path

from emohead_core.logutil import log_to
from emohead_core.metrics import pipeline

with log_to(snakemake.log[0]):
    inp = snakemake.input
    tables = pipeline.make_tables(
        list(inp.rows),
        list(inp.fid),
        dict(snakemake.params.tables),
        dict(snakemake.params.datasets),
        snakemake.params.results,
        str(Path(snakemake.output.summary).parent),
        human_key=inp.human_key if hasattr(inp, "human_key") else None,
        filled_sheets=list(inp.filled),
        method_notes=dict(snakemake.params.method_notes),
        emotion_control=list(inp.emotion_control),
    )
    for tid, df in tables.items():
        print(tid, len(df), "rows")
