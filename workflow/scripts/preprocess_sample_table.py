"""Rule sample_table: write results/{dataset}/samples.parquet."""

from pathlib import Path

from emohead_core.logutil import log_to
from emohead_core.preprocess import datasets

with log_to(snakemake.log[0]):
    ds = snakemake.wildcards.dataset
    table = datasets.build_table(
        ds,
        snakemake.params.spec,
        mirror=(snakemake.config.get("assets") or {}).get("mirror"),
        resources_dir=snakemake.params.resources,
        cache_path=Path(snakemake.params.resources) / "cache" / f"durations_{ds}.json",
    )
    datasets.write_table(table, snakemake.output[0])
    print(table.to_string())
