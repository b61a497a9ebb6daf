"""Loss curves of the training stages (audio2exp, render): one CSV row per logged step and a
PNG plot, both written atomically (:func:`write_loss_curves`)."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable

from .io import atomic_path


def write_loss_curves(
    rows: Iterable[dict],
    columns: list[str],
    csv_path: str | os.PathLike,
    png_path: str | os.PathLike,
    draw: Callable,
    figsize: tuple[float, float],
) -> None:
    """``rows`` (dicts; keys outside ``columns`` are left out of the CSV, missing ones left
    empty) -> ``csv_path``; ``draw(fig, rows)`` fills a matplotlib figure of ``figsize`` inches
    that is saved to ``png_path``."""
    rows = list(rows)
    with atomic_path(csv_path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=figsize)
    draw(fig, rows)
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
