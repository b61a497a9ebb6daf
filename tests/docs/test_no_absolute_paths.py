"""No absolute path of any machine in the user-facing text: README.md, CONTRIBUTING.md, docs/
and config/ may only name paths relative to the repository (or `../shared`-style examples)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Top-level directories of Linux / macOS machines and clusters.
TOP_LEVEL = [
    "work",
    "home",
    "tmp",
    "opt",
    "usr",
    "mnt",
    "root",
    "Users",
    "data",
    "scratch",
    "var",
    "etc",
    "srv",
    "media",
    "private",
    "Volumes",
    "gpfs",
    "lustre",
    "nfs",
    "net",
    "cluster",
    "shared",
    "proj",
    "project",
    "projects",
    "group",
    "storage",
    "bin",
    "lib",
]
# A `/` that starts a path (not inside `a/b`, `../x`, `{results}/x`, a URL or a `~/` path) followed
# by a top-level directory name that ends there or continues with `/`.
ABSOLUTE = re.compile(r"(?<![\w.~:/})\]\-$])/(?:" + "|".join(TOP_LEVEL) + r")(?=/|\b(?![.\-]))")


def user_facing_files() -> list[Path]:
    files = [REPO / "README.md", REPO / "CONTRIBUTING.md"]
    files += sorted(p for p in (REPO / "docs").rglob("*") if p.is_file())
    files += sorted(p for p in (REPO / "config").rglob("*") if p.is_file())
    return [p for p in files if p.is_file()]


def absolute_paths(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line naming an absolute path."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if ABSOLUTE.search(line)]


@pytest.mark.parametrize(
    "line,hit",
    [
        ("EMOHEAD_MIRROR=/work/shared make demo", True),
        ("`mead: {kind: mead, root: /data/MEAD}`", True),
        ("--config results_dir=/tmp/a2e/results", True),
        ("/usr/bin/time -v make demo", True),
        ("cd /home/me/emohead", True),
        ("scratch space: /scratch", True),
        ("EMOHEAD_MIRROR=../shared make demo", False),
        ("results/tables/table_I.md and data/MEAD", False),
        ("{results}/cremad/hyperplanes/all/hyperplanes.json", False),
        ("https://github.com/joonson/syncnet_python/data/x", False),
        ("a 2-core machine with 24 GB of RAM/data rate", False),
        ("2 min train / 1 min test", False),
    ],
)
def test_the_pattern(line, hit):
    assert bool(absolute_paths(line)) == hit, line


def test_no_absolute_paths_in_readme_docs_and_config():
    files = user_facing_files()
    assert REPO / "README.md" in files and any(p.parent.name == "docs" for p in files)
    hits = [
        f"{p.relative_to(REPO)}:{n}: {line}"
        for p in files
        for n, line in absolute_paths(p.read_text(encoding="utf-8", errors="replace"))
    ]
    assert not hits, (
        "absolute machine paths (write them relative, e.g. EMOHEAD_MIRROR=../shared):\n" + "\n".join(hits)
    )
