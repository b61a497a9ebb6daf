"""Parse-time plan of ``rules/expression.smk``: the 3DDFA assets, each job's crops and boxes,
the hyperplane fits (which actors, which expression files) and the stage's outputs
(:mod:`emohead_core.plan` builds it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
    "direction_cosines.png",
]


def labelled_datasets(config: dict) -> list[str]:
    """Datasets with emotion labels (kind mead / crema_d / mead_clips)."""
    from ..preprocess.datasets import LABELLED_KINDS

    return [ds for ds, spec in config["datasets"].items() if spec["kind"] in LABELLED_KINDS]


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
        out += layout.deps(
            L.clip_file(results, ds, "expression", str(a), s)
            for s, a in zip(video["sample_id"], video["actor"])
        )
        if ds in labelled_datasets(config):
            out += [
                f"{results}/{ds}/hyperplanes/{a}/{f}"
                for a in hyperplane_actors(config, samples, ds)
                for f in HYPERPLANE_FILES
            ]
    return out


def held_out_fractions(config: dict, samples: dict, render_subjects: dict, a2e_datasets) -> dict:
    """{dataset: {sample: fraction}}: the share of each clip's frames (its last ones) that a later
    stage tests on: the render subjects' held-out spans (``within_clip``: their test fraction;
    ``clips``: 1 for a test clip) and the audio-expression module's (``within_clip``: its test
    fraction for every clip of its datasets; ``samples``: 1 for the sample table's test clips).
    With ``hyperplanes.exclude_held_out`` (the default) the hyperplane fit leaves these frames
    out, so edits, tau units and measures are never fitted on a frame that is tested."""
    out: dict[str, dict[str, float]] = {}

    def hold(ds: str, sample: str, fraction: float) -> None:
        d = out.setdefault(ds, {})
        d[sample] = max(d.get(sample, 0.0), float(fraction))

    if not config["hyperplanes"].get("exclude_held_out", True):
        return out
    for sp in render_subjects.values():
        for c in sp.clips:
            if sp.split_mode == "within_clip":
                hold(sp.dataset, c, sp.test_fraction)
            elif sp.test.get(c):
                hold(sp.dataset, c, 1.0)
    split = (config.get("audio2exp") or {}).get("split") or {}
    for ds in a2e_datasets or []:
        df = samples[ds]
        for sid, sp in zip(df["sample_id"].astype(str), df["split"].astype(str)):
            if split.get("mode") == "within_clip":
                hold(ds, sid, float(split.get("test_fraction", 0.33)))
            elif sp == "test":
                hold(ds, sid, 1.0)
    return out


def onnx_name(checkpoint: str) -> str:
    """ONNX file name of a checkpoint: mb05_120x120.pth -> 3ddfa_mb05.onnx."""
    return "3ddfa_" + Path(checkpoint).name.split("_")[0] + ".onnx"


PARAM_STATS_ASSET = "3ddfa_v2/param_mean_std_62d_120x120.pkl"


@dataclass(repr=False)
class ExpressionPlan:
    config: dict
    index: object  # emohead_core.plan.SampleIndex
    results: str
    resources: str
    layout: L.Layout
    asset: Callable[[str], str]  # asset name -> its path under resources/assets (rule fetch_asset)
    onnx: str = field(init=False)  # the exported 3DDFA regressor (rule export_3ddfa_onnx)
    # {dataset: {sample: held-out fraction}} (held_out_fractions; set once the later stages are planned)
    held_out: dict = field(default_factory=dict)

    def __post_init__(self):
        self.expr = self.config["expression"]
        self.onnx = f"{self.resources}/onnx/{onnx_name(self.expr['checkpoint'])}"

    def __repr__(self) -> str:  # short: Snakemake prints input functions by name
        return "ExpressionPlan()"

    def model_inputs(self, detector: str) -> dict[str, str]:
        """Inputs of both extraction rules besides the video(s): 3DDFA checkpoint, parameter
        statistics, BFM landmarks, the ONNX regressor and the FaceBoxes ONNX ``detector``."""
        return {
            "checkpoint": self.asset(self.expr["checkpoint"]),
            "stats": self.asset(PARAM_STATS_ASSET),
            "bfm": self.asset(self.expr["bfm"]),
            "onnx": self.onnx,
            "detector": detector,
        }

    # ------------------------------------------------------------------ rule expression_actor
    def actor_files(self, wildcards, kind: str) -> dict[str, str]:
        """sample -> per-clip file ``kind`` (crop | boxes) of one actor's video samples."""
        ds = wildcards.dataset
        samples = self.index.actor_samples(ds, wildcards.actor, video=True)
        return {s: self.index.clip_file(ds, kind, s) for s in samples}

    def actor_videos(self, wildcards) -> dict[str, str]:
        return self.actor_files(wildcards, "crop")

    def actor_boxes(self, wildcards) -> dict[str, str]:
        return self.actor_files(wildcards, "boxes")

    # ------------------------------------------------------------------ rule expression_hyperplanes
    def hyperplane_actors(self, ds: str) -> list[str]:
        return hyperplane_actors(self.config, self.index.tables, ds)

    def hyperplane_files(self, wildcards) -> list[str]:
        """The expression Parquets one hyperplane fit reads (params)."""
        return hyperplane_expression(
            self.config, self.index.tables, self.results, wildcards.dataset, wildcards.actor
        )

    def hyperplane_held_out(self, wildcards) -> dict[str, float]:
        """{sample: fraction} of the clips of one fit whose last frames a later stage tests on."""
        held = self.held_out.get(wildcards.dataset, {})
        files = {Path(p).stem for p in self.hyperplane_files(wildcards)}
        return {s: f for s, f in sorted(held.items()) if s in files}

    def hyperplane_inputs(self, wildcards) -> list[str]:
        """What produces them (the files, or their actor directories)."""
        return self.layout.deps(self.hyperplane_files(wildcards))

    def targets(self) -> list[str]:
        return targets(self.config, self.index.tables, self.results, self.layout)
