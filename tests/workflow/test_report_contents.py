"""The Snakemake report holds the paper tables as HTML tables, the rendered test, audio-driven and
emotion-switch videos, and the hyperplane, loss, mask and emotion-control plots, each with its
caption.

Fast: a paper table as rule ``tables`` writes it has an HTML page (emohead_core/metrics/tables.py).
Slow: `snakemake --report report.html` after the real tiny run of config/examples/own_video.yaml
(tests/docs/own_video_run.py), opened and checked item by item."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs"))

from own_video_run import CLIP, SUBJECT, env, run_all, snakemake_cmd  # noqa: E402


class _Tables(HTMLParser):
    """Cell texts of every <table> of a page: [[row cells, ...], ...] per table."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell, self._row = [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def html_tables(page: str) -> list[list[list[str]]]:
    p = _Tables()
    p.feed(page)
    return p.tables


def test_paper_table_becomes_an_html_table(tmp_path):
    from emohead_core.metrics.tables import write_table

    df = pd.DataFrame(
        {
            "Method": ["Ours", "Ours", "A | B"],
            "Source": ["paper", "measured", "measured"],
            "PSNR ↑": ["28.262", "26.818", "n/a: set metrics.x <y>"],
        }
    )
    paths = write_table(df, tmp_path, "table_I", "Table I: a <test> & more")
    assert [p.name for p in paths] == ["table_I.md", "table_I.tex", "table_I.csv", "table_I.html"]
    page = (tmp_path / "table_I.html").read_text(encoding="utf-8")
    assert "<title>Table I: a &lt;test&gt; &amp; more</title>" in page
    assert "<h2>Table I: a &lt;test&gt; &amp; more</h2>" in page
    (rows,) = html_tables(page)
    # the escaped pipe and the markup in cells survive
    assert rows == [
        ["Method", "Source", "PSNR ↑"],
        ["Ours", "paper", "28.262"],
        ["Ours", "measured", "26.818"],
        ["A | B", "measured", "n/a: set metrics.x <y>"],
    ]
    assert page.count('<tr class="paper">') == 1 and page.count('class="na"') == 1
    assert "Source `paper`" in page  # the legend under the table


def _report_results(page: str) -> dict:
    """The report's embedded result records: path -> {name, labels, caption, data_uri, ...}."""
    start = [m.end() - 1 for m in re.finditer(r"var results = \{", page)][-1]  # after the bundled JS
    return json.JSONDecoder().raw_decode(page, start)[0]


def _data(record: dict) -> bytes:
    return base64.b64decode(record["data_uri"].split("base64,", 1)[1])


@pytest.mark.slow
def test_report_holds_tables_videos_and_plots(tmp_path_factory, mirror):
    wd = run_all(tmp_path_factory, mirror)
    res = wd / "results"
    r = subprocess.run(
        snakemake_cmd(wd, "--report", "report.html"),
        cwd=wd,
        env=env(mirror),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    page = (wd / "report.html").read_text(encoding="utf-8")
    records = _report_results(page)
    results = {str((wd / k).resolve().relative_to(res.resolve())): v for k, v in records.items()}

    # Tables I, II, IV, VI: real HTML tables with the rows of the CSV rule `tables` wrote
    for tid in ("table_I", "table_II", "table_IV", "table_VI"):
        rec = results[f"tables/{tid}.html"]
        assert rec["labels"] == {"table": tid} and "of the paper" in rec["caption"]
        (rows,) = html_tables(_data(rec).decode("utf-8"))
        csv = pd.read_csv(res / "tables" / f"{tid}.csv", dtype=str, keep_default_na=False)
        assert rows[0] == list(csv.columns) and len(rows) - 1 == len(csv) > 0
        assert [r[0] for r in rows[1:]] == list(csv.iloc[:, 0])
    # the measured row of the subject's table is in the file the report embeds (n/a cells included)
    assert (res / "tables" / f"table_I_{SUBJECT}.csv").is_file()

    # videos: the test render from ground-truth alphas, the audio-driven one, the emotion switch
    videos = {
        f"render/{SUBJECT}/test/{CLIP}/test_render.mp4": "ground-truth",
        f"render/{SUBJECT}/driven/main/{CLIP}/test_render.mp4": "audio-to-expression",
        f"render/{SUBJECT}/emotion_switch.mp4": "Emotion switch",
    }
    for path, caption in videos.items():
        rec = results[path]
        assert rec["data_uri"].startswith("data:video/mp4") and caption in rec["caption"], path
        assert _data(rec) == (res / path).read_bytes(), path  # the rule's output, byte for byte
        assert SUBJECT in rec["caption"]  # wildcards rendered into the caption

    # plots: hyperplanes, audio2exp and renderer losses, head masks, emotion control
    plots = [
        "cremad/hyperplanes/all/distances.png",
        "cremad/hyperplanes/all/projection.png",
        "cremad/hyperplanes/all/cv_accuracy.png",
        "cremad/audio2exp/main/loss.png",
        *(
            f"render/{SUBJECT}/{p}"
            for p in (
                "loss.png",
                "masks.png",
                "emotion_control.png",
                "intensity_sweep.png",
                "novel_views.png",
            )
        ),
    ]
    for path in plots:
        rec = results[path]
        assert rec["data_uri"].startswith("data:image/png"), path
        assert _data(rec) == (res / path).read_bytes() and rec["caption"].strip(), path

    cats = page[page.index("var categories = ") :][:5000]
    for name in ("Paper tables", "Rendered videos", "Renderer", "Expression hyperplanes"):
        assert re.search(re.escape(json.dumps(name)), cats), name
