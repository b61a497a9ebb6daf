"""Human-evaluation sheet (paper Sec. IV-B): Fidelity, Coherence, Empathy on a 0-5 scale per clip.

``write_sheet`` makes a blind sheet: clips get shuffled anonymous ids; the rater sees the video path
(or link) and the target emotion tag, never the method. The key (id -> dataset, method, clip) is
written beside it. Raters fill the three score columns of a copy of the CSV (one file per rater) and
drop it into ``metrics.human.filled_dir``; ``aggregate`` averages the scores per dataset and method
(over clips and raters) into the table columns.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import EmoheadInputError
from ..io import atomic_path, write_text_atomic

ASPECTS = ["Fidelity", "Coherence", "Empathy"]
INSTRUCTIONS = {
    "Fidelity": "reconstruction quality of the generated video",
    "Coherence": "consistency of the shown emotion with the face's expression",
    "Empathy": "how much the video makes you respond with emotion",
}


def write_sheet(
    clips: pd.DataFrame, csv_path: str | Path, html_path: str | Path, key_path: str | Path, seed: int = 0
) -> None:
    """clips: columns dataset, method, clip, video, emotion."""
    rng = np.random.default_rng(seed)
    df = clips.reset_index(drop=True).iloc[rng.permutation(len(clips))].reset_index(drop=True)
    df.insert(0, "item", [f"item{i + 1:04d}" for i in range(len(df))])
    key = df[["item", "dataset", "method", "clip"]]
    sheet = df[["item", "video", "emotion"]].copy()
    for a in ASPECTS:
        sheet[a] = ""
    with atomic_path(csv_path) as tmp:
        sheet.to_csv(tmp, index=False)
    with atomic_path(key_path) as tmp:
        key.to_csv(tmp, index=False)
    rows = "\n".join(
        f"<tr><td>{html.escape(r.item)}</td>"
        f'<td><video src="{html.escape(str(r.video))}" controls width=256></video>'
        f"<br><small>{html.escape(str(r.video))}</small></td><td>{html.escape(str(r.emotion))}</td>"
        + "".join(f'<td><input type=number min=0 max=5 step=0.5 name="{r.item}:{a}"></td>' for a in ASPECTS)
        + "</tr>"
        for r in sheet.itertuples()
    )
    head = "".join(f"<th>{a}<br><small>{INSTRUCTIONS[a]}</small></th>" for a in ASPECTS)
    if sheet.empty:
        rows = (
            "<tr><td colspan=6>No clips to rate yet: the metrics stage found no generated clips (set "
            "render.subjects, metrics.pairs or metrics.baselines_dir).</td></tr>"
        )
    page = (
        "<!doctype html><meta charset=utf-8><title>EmoHead human evaluation</title>"
        "<h1>EmoHead human evaluation</h1><p>Score every clip from 0 (worst) to 5 (best) on each aspect "
        "for the given target emotion. Enter the scores in the CSV sheet (same item ids).</p>"
        f"<table border=1><tr><th>item</th><th>video</th><th>target emotion</th>{head}</tr>\n"
        f"{rows}\n</table>\n"
    )
    write_text_atomic(html_path, page)


def read_filled(paths: list[str | Path]) -> pd.DataFrame:
    frames = []
    for p in paths:
        df = pd.read_csv(p)
        miss = [c for c in ["item", *ASPECTS] if c not in df.columns]
        if miss:
            raise EmoheadInputError(
                f"filled sheet lacks columns {miss}.",
                path=p,
                fix="fill a copy of results/metrics/human/sheet.csv.",
            )
        for a in ASPECTS:
            v = pd.to_numeric(df[a], errors="coerce")
            if ((v < 0) | (v > 5)).any():
                raise EmoheadInputError(f"{a} scores must be within 0-5.", path=p)
            df[a] = v
        df["rater"] = Path(p).stem
        frames.append(df[["item", "rater", *ASPECTS]])
    return (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["item", "rater", *ASPECTS])
    )


def aggregate(filled: pd.DataFrame, key: pd.DataFrame) -> pd.DataFrame:
    """Long metric rows (dataset, method, metric, value, n) of the mean score per dataset/method."""
    df = filled.merge(key, on="item", how="inner")
    rows = []
    for (ds, m), g in df.groupby(["dataset", "method"]):
        for a in ASPECTS:
            v = g[a].dropna()
            if len(v):
                rows.append(
                    {"dataset": ds, "method": m, "metric": a, "value": float(v.mean()), "n": int(len(v))}
                )
    return pd.DataFrame(rows, columns=["dataset", "method", "metric", "value", "n"])
