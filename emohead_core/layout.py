"""Where per-clip results live, and which job produces them (per-clip or per-actor batches).

Per-clip results are grouped by actor (the results/ contract, CONTRIBUTING.md)::

    results/{dataset}/crop/{actor}/{sample}.mp4             face crop, 25 fps CFR
    results/{dataset}/crop/{actor}/{sample}.boxes.parquet   per-frame boxes
    results/{dataset}/audio/{actor}/{sample}.wav            16 kHz mono
    results/{dataset}/expression/{actor}/{sample}.parquet   3DDFA_V2 parameters
    results/{dataset}/features/{encoder}/{actor}/{sample}.parquet
    results/{dataset}/transcripts/{actor}/{sample}.parquet

The files are the same whichever way a dataset is batched (``datasets.<name>.batch``):

- ``clip``: one Snakemake job per clip and step; each file is a job output.
- ``actor``: one job per actor and step writes the whole ``{actor}`` directory (a Snakemake
  ``directory()`` output). MEAD has ~30,000 clips of a few seconds: one job per clip and step
  (~7 per clip) costs more in DAG building and scheduling than the work itself.

Consumers always name the per-clip files they read (:func:`clip_file`); :class:`Layout` maps
such a file to what a rule must depend on (the file itself, or its actor directory).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .errors import EmoheadInputError

BATCH_MODES = ("clip", "actor")
# Corpora of thousands of short clips batch per actor by default; a folder of long videos
# (one person per file) runs per clip.
DEFAULT_BATCH = {"mead": "actor", "crema_d": "actor", "folder": "clip", "mead_clips": "actor"}

# kind -> (stage directory, file suffix)
KINDS = {
    "crop": ("crop", ".mp4"),
    "boxes": ("crop", ".boxes.parquet"),
    "audio": ("audio", ".wav"),
    "expression": ("expression", ".parquet"),
    "features": ("features", ".parquet"),
    "transcript": ("transcripts", ".parquet"),
}
# stage directories written per clip (and per actor in batch mode "actor")
CLIP_STAGES = ("crop", "audio", "expression", "features", "transcripts")


def batch_mode(config: Mapping, dataset: str) -> str:
    """``clip`` or ``actor`` for one configured dataset (``datasets.<name>.batch``)."""
    spec = config["datasets"][dataset]
    mode = spec.get("batch") or DEFAULT_BATCH.get(spec.get("kind"), "clip")
    if mode not in BATCH_MODES:
        raise EmoheadInputError(
            f"unknown batch mode {mode!r}",
            path=f"config datasets.{dataset}.batch",
            fix=f"use one of {', '.join(BATCH_MODES)}.",
        )
    return mode


def _check(name: str, value: str) -> str:
    value = str(value)
    if not value or "/" in value or value in (".", ".."):
        raise EmoheadInputError(
            f"{name} {value!r} cannot be a path component",
            path="sample table",
            fix="fix the dataset adapter's id (no '/', not empty).",
        )
    return value


def actor_dir(results: str, dataset: str, kind: str, actor: str, encoder: str | None = None) -> str:
    """The directory holding one actor's files of ``kind`` (the output of an actor batch)."""
    stage, _ = KINDS[kind]
    results = str(results).rstrip("/") or "/"
    if kind == "features":
        if not encoder:
            raise ValueError("features paths need the encoder")
        return f"{results}/{dataset}/features/{encoder}/{_check('actor', actor)}"
    return f"{results}/{dataset}/{stage}/{_check('actor', actor)}"


def clip_file(
    results: str, dataset: str, kind: str, actor: str, sample: str, encoder: str | None = None
) -> str:
    """The per-clip result file of ``kind`` (crop, boxes, audio, expression, features, transcript)."""
    _, suffix = KINDS[kind]
    return f"{actor_dir(results, dataset, kind, actor, encoder)}/{_check('sample', sample)}{suffix}"


def actors_of(samples) -> dict[str, str]:
    """sample id -> actor (str) of a sample table."""
    return dict(zip(samples["sample_id"].astype(str), samples["actor"].astype(str)))


class Layout:
    """Maps per-clip result files to the Snakemake targets that produce them.

    ``actor_datasets``: the datasets batched per actor. A per-clip file of such a dataset is
    produced as part of its actor directory, so a rule depends on that directory; any other
    path (other datasets, other stages, files outside ``results``) is its own dependency.
    """

    def __init__(self, results: str, actor_datasets: Iterable[str]):
        self.results = str(results).rstrip("/")
        self.actor_datasets = set(actor_datasets)

    @classmethod
    def from_config(cls, config: Mapping, results: str | None = None) -> Layout:
        res = results if results is not None else config.get("results_dir", "results")
        return cls(res, [ds for ds in config["datasets"] if batch_mode(config, ds) == "actor"])

    def mode(self, dataset: str) -> str:
        return "actor" if dataset in self.actor_datasets else "clip"

    def dep(self, path) -> str:
        """The target a rule must depend on to read ``path``."""
        p = str(path)
        prefix = self.results + "/"
        if not self.actor_datasets or not p.startswith(prefix):
            return p
        parts = p[len(prefix) :].split("/")
        # {ds}/{stage}/{actor}/{file} or {ds}/features/{encoder}/{actor}/{file}
        depth = 5 if len(parts) > 1 and parts[1] == "features" else 4
        if len(parts) == depth and parts[0] in self.actor_datasets and parts[1] in CLIP_STAGES:
            return p.rsplit("/", 1)[0]
        return p

    def deps(self, paths: Iterable) -> list[str]:
        """:meth:`dep` of each path, duplicates removed (first occurrence kept)."""
        seen: dict[str, None] = {}
        for p in paths:
            if p:
                seen.setdefault(self.dep(p), None)
        return list(seen)
