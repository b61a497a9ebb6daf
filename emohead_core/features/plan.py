"""Parse-time plan of ``rules/features.smk``: the encoders of the active profile, each job's
inputs and the part of the config it depends on, and the stage's outputs
(:mod:`emohead_core.plan` builds it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import layout as L
from .pipeline import active_profile, encoder_specs, role_encoders, settings


def job_config(cfg: dict[str, Any], results: str, encoder: str | None = None, asr: bool = False) -> dict:
    """The part of the config one feature job depends on, passed as its ``params`` so that
    editing another encoder's entry does not re-trigger this job."""
    sec = settings(cfg)
    pname, prof = active_profile(cfg)
    keep = {k: sec[k] for k in ("profile", "dtype", "chunk_s", "context_s", "threads", "store", "prefill")}
    sub: dict[str, Any] = {"encoders": {encoder: prof["encoders"][encoder]} if encoder else {}}
    if asr:
        sub["asr"] = prof.get("asr")
    pre = cfg.get("preprocess") or {}
    return {
        "results_dir": results,
        "preprocess": {"fps": pre.get("fps", 25), "sample_rate": pre.get("sample_rate", 16000)},
        "features": {**keep, "profiles": {pname: sub}},
    }


def clip_inputs(
    cfg: dict[str, Any], results: str, dataset: str, sample: str, has_video: bool, actor: str, encoder: str
) -> dict[str, str]:
    """Inputs of a per-clip feature job: the 16 kHz wav, the crop's boxes (T) for video samples,
    and with ``features.prefill: actor`` the actor's prefill manifest (``encoder`` "asr" for
    the transcript rule)."""
    inputs = {"audio": L.clip_file(results, dataset, "audio", actor, sample)}
    sec = settings(cfg)
    if sec["align_to_crop"] and has_video:
        inputs["frames"] = L.clip_file(results, dataset, "boxes", actor, sample)
    if sec["prefill"] == "actor":
        inputs["prefill"] = f"{results}/{dataset}/features_prefill/{encoder}/{actor}.json"
    return inputs


def actor_inputs(
    cfg: dict[str, Any],
    results: str,
    dataset: str,
    actor: str,
    rows: Iterable[tuple[str, bool]],
    encoder: str,
) -> dict[str, list[str]]:
    """Per-clip files one actor's clips need for ``encoder`` ("asr": transcripts): wavs, crop
    boxes (T) of video samples, transcripts (role gamma); ``rows``: (sample id, has video).
    Inputs of a per-actor prefill job, and (through the layout) of an actor batch."""
    rows = list(rows)
    sec = settings(cfg)
    out: dict[str, list[str]] = {"audio": [L.clip_file(results, dataset, "audio", actor, s) for s, _ in rows]}
    if encoder != "asr":
        if sec["align_to_crop"]:
            out["frames"] = [L.clip_file(results, dataset, "boxes", actor, s) for s, v in rows if v]
        if encoder_specs(cfg)[encoder].role == "gamma":
            out["transcripts"] = [L.clip_file(results, dataset, "transcript", actor, s) for s, _ in rows]
    return out


@dataclass(repr=False)
class FeaturesPlan:
    config: dict
    index: object  # emohead_core.plan.SampleIndex
    results: str
    layout: L.Layout
    settings: dict = field(init=False)  # the features section with defaults (pipeline.settings)
    specs: dict = field(init=False)  # encoder name -> EncoderSpec of the active profile
    audio_encoders: list = field(init=False)  # roles v and e
    text_encoders: list = field(init=False)  # role gamma (reads the transcripts)

    def __post_init__(self):
        self.settings = settings(self.config)
        self.specs = encoder_specs(self.config)
        self.audio_encoders = [n for n, s in self.specs.items() if s.role != "gamma"]
        self.text_encoders = [n for n, s in self.specs.items() if s.role == "gamma"]

    def __repr__(self) -> str:  # short: Snakemake prints input functions by name
        return f"FeaturesPlan({sorted(self.specs)})"

    def role_encoders(self) -> dict[str, str]:
        """``{"v": name, "e": name, "gamma": name}`` of the active profile."""
        return role_encoders(self.config)

    def actor_steps(self) -> list[str]:
        """The ``{step}`` values of rule features_actor: features/{encoder} and transcripts."""
        return [f"features/{e}" for e in self.specs] + ["transcripts"]

    def job_config(self, encoder: str) -> dict:
        """Config of a job of ``encoder`` ("asr": transcripts)."""
        asr = encoder == "asr"
        return job_config(self.config, self.results, None if asr else encoder, asr=asr)

    def encoder_job_config(self, wildcards) -> dict:
        return self.job_config(wildcards.encoder)

    def _rows(self, ds: str, actor: str) -> list[tuple[str, bool]]:
        return [(s, bool(self.index.row(ds, s)["video_path"])) for s in self.index.actor_samples(ds, actor)]

    # ------------------------------------------------------------------ batch: clip
    def prefill_inputs(self, wildcards) -> dict[str, list[str]]:
        ds, actor = wildcards.dataset, wildcards.actor
        return actor_inputs(self.config, self.results, ds, actor, self._rows(ds, actor), wildcards.encoder)

    def transcript_inputs(self, wildcards) -> dict[str, str]:
        return clip_inputs(
            self.config, self.results, wildcards.dataset, wildcards.sample, False, wildcards.actor, "asr"
        )

    def clip_inputs(self, wildcards) -> dict[str, str]:
        has_video = bool(self.index.row(wildcards.dataset, wildcards.sample)["video_path"])
        return clip_inputs(
            self.config,
            self.results,
            wildcards.dataset,
            wildcards.sample,
            has_video,
            wildcards.actor,
            wildcards.encoder,
        )

    # ------------------------------------------------------------------ batch: actor
    def step_encoder(self, wildcards) -> str:
        """Encoder of an actor batch's step: features/{encoder}, or transcripts -> "asr"."""
        if wildcards.step == "transcripts":
            return "asr"
        return wildcards.step.removeprefix("features/")

    def step_job_config(self, wildcards) -> dict:
        return self.job_config(self.step_encoder(wildcards))

    def actor_batch_inputs(self, wildcards) -> dict[str, list[str]]:
        ds, actor = wildcards.dataset, wildcards.actor
        encoder = self.step_encoder(wildcards)
        files = actor_inputs(self.config, self.results, ds, actor, self._rows(ds, actor), encoder)
        return {role: self.layout.deps(paths) for role, paths in files.items()}

    def actor_batch_clips(self, wildcards) -> list[dict[str, str]]:
        ds = wildcards.dataset
        clip_file = self.index.clip_file
        return [
            {
                "sample": s,
                "audio": clip_file(ds, "audio", s),
                "frames": clip_file(ds, "boxes", s) if v and self.settings["align_to_crop"] else "",
                "transcript": clip_file(ds, "transcript", s),
            }
            for s, v in self._rows(ds, wildcards.actor)
        ]

    # ------------------------------------------------------------------ targets
    def targets(self) -> list[str]:
        """Features of every sample for every encoder, transcripts when a text encoder reads them."""
        kinds = [("features", e) for e in self.specs] + ([("transcript", None)] if self.text_encoders else [])
        out = []
        for ds in self.index:
            samples = self.index.audio_samples(ds)
            files = (self.index.clip_file(ds, kind, s, enc) for s in samples for kind, enc in kinds)
            out += self.layout.deps(files)
        return out
