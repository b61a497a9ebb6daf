"""Parse-time plan of ``rules/preprocess.smk``: the source media each job reads and the outputs
of the stage (input functions of the rules; :mod:`emohead_core.plan` builds it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..layout import Layout
from ..plan import SampleIndex
from .datasets import crop_size


@dataclass(repr=False)
class PreprocessPlan:
    config: dict
    index: SampleIndex
    results: str
    layout: Layout

    def __repr__(self) -> str:  # short: Snakemake prints input functions by name
        return "PreprocessPlan()"

    # ------------------------------------------------------------------ rule sample_table
    def table_inputs(self, wildcards) -> list[str]:
        """Every source file of the dataset (the table is rebuilt when one changes)."""
        df = self.index.tables[wildcards.dataset]
        return sorted({p for p in list(df["video_path"]) + list(df["audio_path"]) if p})

    def dataset_spec(self, wildcards) -> dict:
        return self.config["datasets"][wildcards.dataset]

    def crop_size(self, wildcards) -> int:
        return crop_size(self.config["datasets"][wildcards.dataset])

    # ------------------------------------------------------------------ per clip (batch: clip)
    def video_of(self, wildcards) -> str:
        return self.index.clip_row(wildcards)["video_path"]

    def audio_inputs(self, wildcards) -> dict[str, str]:
        row = self.index.clip_row(wildcards)
        inputs = {"audio": row["audio_path"]}
        if row["video_path"]:
            # the wav is padded/trimmed to the length of the cropped video
            inputs["boxes"] = self.index.clip_file(wildcards.dataset, "boxes", wildcards.sample)
        return inputs

    # ------------------------------------------------------------------ per actor (batch: actor)
    def actor_clips(self, wildcards) -> list[tuple[str, str, str]]:
        """(sample, video_path or "", audio_path) of one actor's samples (rule preprocess_actor)."""
        ds = wildcards.dataset
        rows = [self.index.row(ds, s) for s in self.index.actor_samples(ds, wildcards.actor)]
        return [(r["sample_id"], r["video_path"], r["audio_path"]) for r in rows]

    def actor_sources(self, wildcards) -> dict[str, list[str]]:
        """Source media of one actor's samples (inputs of rule preprocess_actor)."""
        clips = self.actor_clips(wildcards)
        return {"videos": [v for _, v, _ in clips if v], "audios": [a for _, _, a in clips if a]}

    # ------------------------------------------------------------------ targets
    def targets(self) -> list[str]:
        """Sample tables, crops + boxes of the video samples, wavs of every sample (or the
        actor directories that hold them)."""
        out = []
        for ds in self.index:
            video = self.index.video_samples(ds)
            out.append(f"{self.results}/{ds}/samples.parquet")
            out += self.layout.deps(
                [self.index.clip_file(ds, "crop", s) for s in video]
                + [self.index.clip_file(ds, "boxes", s) for s in video]
                + [self.index.clip_file(ds, "audio", s) for s in self.index.audio_samples(ds)]
            )
        return out
