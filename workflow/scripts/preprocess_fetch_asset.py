"""Rule fetch_asset: resolve one manifest asset (mirror or upstream), sha256-checked."""

from pathlib import Path

from emohead_core import assets
from emohead_core.logutil import log_to

with log_to(snakemake.log[0]):
    name = snakemake.wildcards.name
    out = Path(snakemake.output[0])
    root = Path(str(out)[: -len(name)])  # output is <root>/<name>
    # the mirror location is read from the config, not params: moving it must not rerun jobs
    mirror = (snakemake.config.get("assets") or {}).get("mirror")
    got = assets.resolve(name, root, mirror=mirror)
    assert got.resolve() == out.resolve(), (got, out)
    print(f"{name} -> {got}")
