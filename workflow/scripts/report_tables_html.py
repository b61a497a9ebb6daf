"""Rule tables_html: a paper table (Markdown from rule tables) as an HTML page for the report."""

from emohead_core.logutil import log_to
from emohead_core.report import write_table_html

with log_to(snakemake.log[0]):
    table = write_table_html(snakemake.input[0], snakemake.output[0])
    print(snakemake.output[0], len(table.rows), "rows")
