"""Input helpers of rules/expression.smk (kept out of the Snakefile, see snakemake --lint)."""

from __future__ import annotations

from pathlib import Path

from .. import layout as L

HYPERPLANE_FILES = [
    "hyperplanes.json",
    "hyperplanes.parquet",
    "accuracy.csv",
    "accuracy.md",
    "distances.png",
    "projection.png",
    "cv_accuracy.png",
]


def labelled_datasets(config: dict) -> list[str]:
    """Datasets with emotion labels (kind mead / crema_d)."""
    return [ds for ds, spec in config["datasets"].items() if spec["kind"] in ("mead", "crema_d")]


def _labelled_video(df):
    return df[(df["video_path"] != "") & (df["emotion"] != "unknown")]


def hyperplane_actors(config: dict, samples: dict, ds: str) -> list[str]:
    """Actors of ``hyperplanes.actors``: 'each' = every actor with labelled video, 'all' =
    pooled, anything else an actor id."""
    have = sorted(_labelled_video(samples[ds])["actor"].astype(str).unique())
    out: list[str] = []
    for a in config["hyperplanes"]["actors"]:
        for b in have if str(a) == "each" else [str(a)]:
            if b not in out:
                out.append(b)
    return out


def hyperplane_expression(config: dict, samples: dict, results: str, ds: str, actor: str) -> list[str]:
    """Expression Parquets of the labelled video samples of ``actor`` ('all': every actor) in
    the configured splits."""
    df = _labelled_video(samples[ds])
    df = df[df["split"].isin(config["hyperplanes"]["splits"])]
    if actor != "all":
        df = df[df["actor"].astype(str) == actor]
    return [L.clip_file(results, ds, "expression", str(a), s) for s, a in zip(df["sample_id"], df["actor"])]


def targets(config: dict, samples: dict, results: str, layout: L.Layout) -> list[str]:
    """Expression files (or actor directories) of every video sample, and the hyperplanes."""
    out = []
    for ds, df in samples.items():
        video = df[df["video_path"] != ""]
        out += layout.deps(L.clip_file(results, ds, "expression", str(a), s)
                           for s, a in zip(video["sample_id"], video["actor"]))
        if ds in labelled_datasets(config):
            out += [f"{results}/{ds}/hyperplanes/{a}/{f}" for a in hyperplane_actors(config, samples, ds)
                    for f in HYPERPLANE_FILES]
    return out


def onnx_name(checkpoint: str) -> str:
    """ONNX file name of a checkpoint: mb05_120x120.pth -> 3ddfa_mb05.onnx."""
    return "3ddfa_" + Path(checkpoint).name.split("_")[0] + ".onnx"
