"""Parse-time plan of the render stage (rules/render.smk): subjects, their clips and splits, the
per-clip test renders, the audio-driven variants and every input function of the render rules.

A subject (``render.subjects.<name>``) is one person's video clips, in one of three forms:

* ``{dataset, actor}``: every video clip of that actor (the paper's per-person renderer);
* ``{dataset, samples: [...]}``: the listed clips;
* ``{dataset, sample}``: one video (e.g. a person's own recording).

Optional keys: ``split`` (``clips`` | ``within_clip`` or ``{mode, test_fraction}``; default
``render.split``, and ``within_clip`` for a single video), ``exclude`` (sample ids),
``emotions`` (keep only these tags), ``emotion`` (the tag of clips without a label, default
neutral), ``hyperplanes`` and ``audio2exp`` (paths; ``{results}`` expands to the results
directory; defaults: the actor's own hyperplanes of the expression stage and the ``main``
audio-expression model of the subject's dataset when the workflow trains one).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import layout as L
from ..errors import EmoheadInputError

DEFAULT_SPLIT = {"mode": "clips", "test_fraction": 0.1}
# trivial baselines of every test span (rule render_baseline, render/infer.py; metrics methods
# baseline_{name}): nothing learned, the held-out frames' head masks filled from training frames
BASELINES = {
    "last_frame": "the clip's last training frame pasted into each held-out frame's head mask",
    "mean_head": "the per-pixel mean of the clip's training frames' heads pasted into each held-out "
    "frame's head mask",
}


@dataclass
class SubjectPlan:
    name: str
    dataset: str
    actor: str
    clips: list[str]  # sample ids, training and test clips, in sample-table order
    emotions: dict[str, str]  # sample -> emotion tag z
    test: dict[str, bool]  # split mode "clips": sample -> is a test clip
    split_mode: str
    test_fraction: float
    hyperplanes: str | None
    audio2exp: str | None
    spec: dict = field(default_factory=dict)

    @property
    def test_clips(self) -> list[str]:
        """Clips with test frames: every clip (``within_clip``) or the test clips (``clips``)."""
        if self.split_mode == "within_clip":
            return list(self.clips)
        return [c for c in self.clips if self.test[c]]


def expand_results(path: str | None, results: str) -> str | None:
    """``{results}`` in a configured path -> the workflow's results directory."""
    return None if path is None else str(path).replace("{results}", str(results).rstrip("/"))


def _split_of(spec: dict, rcfg: dict, single: bool) -> tuple[str, float]:
    base = dict(DEFAULT_SPLIT, **(rcfg.get("split") or {}))
    s = spec.get("split")
    if s is None and single:
        s = "within_clip"  # one video: its last test_fraction is the test span
    if isinstance(s, str):
        s = {"mode": s}
    out = dict(base, **(s or {}))
    if out["mode"] not in ("clips", "within_clip"):
        raise EmoheadInputError(
            f"unknown split mode {out['mode']!r}.",
            path="config render.split",
            fix="use clips (the sample table's split) or within_clip.",
        )
    return out["mode"], float(out["test_fraction"])


def plan_subject(
    name: str,
    spec: dict,
    rcfg: dict,
    samples: dict[str, pd.DataFrame],
    results: str,
    *,
    hyperplane_actors: Callable[[str], list[str]] | None = None,
    a2e_datasets: list[str] | None = None,
) -> SubjectPlan:
    where = f"config render.subjects.{name}"
    ds = spec.get("dataset")
    if ds not in samples:
        raise EmoheadInputError(
            f"render subject {name!r} names dataset {ds!r}; configured: {sorted(samples)}.",
            path=where,
            fix="set `dataset` to a key of `datasets`.",
        )
    table = samples[ds]
    video = table[table["video_path"] != ""]
    forms = [k for k in ("actor", "samples", "sample") if spec.get(k) not in (None, [], "")]
    if len(forms) != 1:
        raise EmoheadInputError(
            f"render subject {name!r} needs exactly one of actor, samples, sample (has {forms or 'none'}).",
            path=where,
            fix="e.g. {dataset: cremad, actor: '1001'} or {dataset: obama, sample: uncrop_Obama}.",
        )
    if "actor" in forms:
        actor = str(spec["actor"])
        rows = video[video["actor"].astype(str) == actor]
        if rows.empty:
            have = sorted(video["actor"].astype(str).unique())
            raise EmoheadInputError(
                f"render subject {name!r}: actor {actor!r} has no video clips in {ds!r} "
                f"(actors with video: {have[:20]}{' ...' if len(have) > 20 else ''}).",
                path=where,
                fix="set `actor` to one of them.",
            )
    else:
        wanted = [str(spec["sample"])] if "sample" in forms else [str(s) for s in spec["samples"]]
        known = set(video["sample_id"].astype(str))
        missing = [s for s in wanted if s not in known]
        if missing:
            raise EmoheadInputError(
                f"render subject {name!r}: no video sample(s) {missing} in dataset {ds!r}.",
                path=where,
                fix="use sample ids of the sample table "
                f"({L.clip_file(results, ds, 'crop', '<actor>', '<sample>')}).",
            )
        rows = video.set_index(video["sample_id"].astype(str)).loc[wanted].reset_index(drop=True)
        actors = sorted(rows["actor"].astype(str).unique())
        actor = actors[0] if len(actors) == 1 else "all"
    exclude = {str(s) for s in spec.get("exclude") or []}
    rows = rows[~rows["sample_id"].astype(str).isin(exclude)]
    if spec.get("emotions"):
        rows = rows[rows["emotion"].astype(str).isin([str(e) for e in spec["emotions"]])]
    mode, frac = _split_of(spec, rcfg, single="sample" in forms)
    if mode == "clips":
        rows = rows[rows["split"].astype(str) != "unused"]
    clips = [str(s) for s in rows["sample_id"]]
    if not clips:
        raise EmoheadInputError(
            f"render subject {name!r} has no clips left (after exclude / emotions).",
            path=where,
            fix="check `exclude` and `emotions`.",
        )
    default_tag = str(spec.get("emotion") or "neutral")
    emotions = {
        str(s): (str(e) if str(e) not in ("", "unknown", "nan") else default_tag)
        for s, e in zip(rows["sample_id"], rows["emotion"])
    }
    test = {str(s): str(sp) == "test" for s, sp in zip(rows["sample_id"], rows["split"])}
    if mode == "clips" and not any(test.values()):
        raise EmoheadInputError(
            f"render subject {name!r}: split mode `clips` but none of its {len(clips)} clips "
            "is in the sample table's test split.",
            path=where,
            fix="use split: within_clip (each clip's last test_fraction is tested).",
        )
    if mode == "clips" and all(test.values()):
        raise EmoheadInputError(
            f"render subject {name!r}: split mode `clips` but all its clips are test clips.",
            path=where,
            fix="use split: within_clip.",
        )
    hyper = expand_results(spec.get("hyperplanes"), results)
    if hyper is None and hyperplane_actors is not None:
        have = hyperplane_actors(ds)
        pick = actor if actor in have else ("all" if "all" in have else None)
        hyper = f"{results}/{ds}/hyperplanes/{pick}/hyperplanes.json" if pick else None
    a2e = expand_results(spec.get("audio2exp"), results)
    if a2e is None and a2e_datasets and ds in a2e_datasets:
        a2e = f"{results}/{ds}/audio2exp/main"
    return SubjectPlan(name, ds, actor, clips, emotions, test, mode, frac, hyper, a2e, dict(spec))


@dataclass(repr=False)
class RenderPlan:
    """Every render subject of the config, planned at parse time; input functions for the rules."""

    config: dict
    samples: dict
    results: str
    layout: L.Layout
    hyperplane_actors: Callable[[str], list[str]] | None = None
    a2e_datasets: list[str] | None = None
    a2e_variants: list[str] | None = None
    feature_encoders: dict[str, str] | None = None  # role (v, e, gamma) -> encoder of the features stage
    subjects: dict[str, SubjectPlan] = field(init=False)

    def __post_init__(self):
        self.rcfg = self.config.get("render") or {}
        self.subjects = {
            name: plan_subject(
                name,
                spec or {},
                self.rcfg,
                self.samples,
                self.results,
                hyperplane_actors=self.hyperplane_actors,
                a2e_datasets=self.a2e_datasets,
            )
            for name, spec in (self.rcfg.get("subjects") or {}).items()
        }
        self.driven = driven_models(self.config, self.results, self.subjects, self.a2e_variants)

    def __repr__(self) -> str:  # short: Snakemake prints input functions by name
        return f"RenderPlan({sorted(self.subjects)})"

    def subject(self, name: str) -> SubjectPlan:
        if name not in self.subjects:
            raise EmoheadInputError(
                f"unknown render subject {name!r}; configured: {sorted(self.subjects)}.",
                path="config render.subjects",
            )
        return self.subjects[name]

    def dir(self, name: str) -> str:
        return f"{self.results}/render/{name}"

    def _file(self, sp: SubjectPlan, kind: str, sample: str) -> str:
        actor = L.actors_of(self.samples[sp.dataset])[sample]
        return L.clip_file(self.results, sp.dataset, kind, actor, sample)

    def _audio(self, sp: SubjectPlan, sample: str) -> str | None:
        """The clip's wav, None for a video-only clip (no speech: nothing to mux or drive)."""
        df = self.samples[sp.dataset]
        has = df.loc[df["sample_id"].astype(str) == sample, "audio_path"]
        return self._file(sp, "audio", sample) if len(has) and str(has.iloc[0]) else None

    # ------------------------------------------------------------------ render_prepare
    def clip_inputs(self, name: str) -> list[dict]:
        """The subject's clips as :class:`~emohead_core.render.data.ClipInput` keyword dicts."""
        sp = self.subject(name)
        return [
            dict(
                sample=s,
                crop=self._file(sp, "crop", s),
                expression=self._file(sp, "expression", s),
                audio=self._audio(sp, s),
                emotion=sp.emotions[s],
                dataset=sp.dataset,
                test=bool(sp.test[s]),
            )
            for s in sp.clips
        ]

    def prepare_inputs(self, wildcards) -> list[str]:
        clips = self.clip_inputs(wildcards.subject)
        return self.layout.deps([c["crop"] for c in clips] + [c["expression"] for c in clips])

    def prepare_params(self, wildcards) -> dict:
        sp = self.subject(wildcards.subject)
        return dict(clips=self.clip_inputs(sp.name), split_mode=sp.split_mode, test_fraction=sp.test_fraction)

    def subject_info(self, wildcards) -> dict:
        """What render_train records in subject.json (paths resolved for this results dir)."""
        sp = self.subject(wildcards.subject)
        return dict(
            name=sp.name,
            dataset=sp.dataset,
            actor=sp.actor,
            clips=sp.clips,
            emotions=sp.emotions,
            split_mode=sp.split_mode,
            test_fraction=sp.test_fraction,
            hyperplanes=sp.hyperplanes,
            audio2exp=sp.audio2exp,
        )

    def train_hyperplanes(self, wildcards) -> list[str]:
        """render_train copies the subject's hyperplanes into its directory (subject.json; the
        subject is self-contained for `emohead render`): an input, so that they exist by then."""
        sp = self.subject(wildcards.subject)
        return [sp.hyperplanes] if sp.hyperplanes else []

    # ------------------------------------------------------------------ per test clip
    def test_clip_inputs(self, wildcards) -> dict:
        sp = self.subject(wildcards.subject)
        if wildcards.clip not in sp.test_clips:
            raise EmoheadInputError(
                f"{wildcards.clip!r} is not a test clip of render subject {sp.name!r}.",
                path="config render.subjects",
                fix=f"test clips: {sp.test_clips}.",
            )
        d = self.dir(sp.name)
        audio = self._audio(sp, wildcards.clip)
        return {
            "model": f"{d}/model.pt",
            "prepared": f"{d}/prepared",
            **({"audio": self.layout.dep(audio)} if audio else {}),
        }

    def driven_inputs(self, wildcards) -> dict:
        sp = self.subject(wildcards.subject)
        inputs = self.test_clip_inputs(wildcards)
        inputs["a2e_model"] = f"{self.driven[sp.name][wildcards.variant]}/model.pt"
        if sp.hyperplanes:
            inputs["hyperplanes"] = sp.hyperplanes
        feats = self.clip_features(wildcards)
        if feats:
            inputs["features"] = self.layout.deps(feats.values())
        return inputs

    def baseline_inputs(self, wildcards) -> dict:
        """A baseline of a test clip reads only the prepared subject (and the clip's audio)."""
        sp = self.subject(wildcards.subject)
        if wildcards.baseline not in BASELINES:
            raise EmoheadInputError(
                f"unknown render baseline {wildcards.baseline!r}.", fix=f"use one of {sorted(BASELINES)}."
            )
        inputs = self.test_clip_inputs(wildcards)
        return {
            "prepared": f"{self.dir(sp.name)}/prepared",
            **({"audio": inputs["audio"]} if "audio" in inputs else {}),
        }

    def clip_features(self, wildcards) -> dict[str, str]:
        """The features stage's v~, e~, gamma~ files of a test clip, when the subject's
        audio-expression model is one this workflow trains (so on these very encoders): the
        driven render then reads them instead of running the encoders and the ASR again. {} for
        an external model (its encoders may differ: features are computed from the wav)."""
        sp = self.subject(wildcards.subject)
        a2e = self.driven.get(sp.name, {}).get(getattr(wildcards, "variant", "main"), "")
        trained = str(a2e).startswith(f"{str(self.results).rstrip('/')}/") and "/audio2exp/" in str(a2e)
        if not (trained and self.feature_encoders):
            return {}
        return {role: self._file_enc(sp, wildcards.clip, enc) for role, enc in self.feature_encoders.items()}

    def _file_enc(self, sp: SubjectPlan, sample: str, encoder: str) -> str:
        actor = L.actors_of(self.samples[sp.dataset])[sample]
        return L.clip_file(self.results, sp.dataset, "features", actor, sample, encoder)

    def clip_audio(self, wildcards) -> str:
        """The clip's wav ("" for a video-only clip: the test render has no sound)."""
        return self._audio(self.subject(wildcards.subject), wildcards.clip) or ""

    def clip_emotion(self, wildcards) -> str:
        return self.subject(wildcards.subject).emotions[wildcards.clip]

    def test_outputs(self, name: str) -> list[str]:
        return [f"{self.dir(name)}/test/{c}/test_meta.json" for c in self.subject(name).test_clips]

    def driven_outputs(self, name: str, variant: str | None = None) -> list[str]:
        variants = [variant] if variant else list(self.driven.get(name) or {})
        return [
            f"{self.dir(name)}/driven/{v}/{c}/test_meta.json"
            for v in variants
            for c in self.subject(name).test_clips
        ]

    def baseline_outputs(self, name: str) -> list[str]:
        return [
            f"{self.dir(name)}/baseline/{b}/{c}/test_meta.json"
            for b in BASELINES
            for c in self.subject(name).test_clips
        ]

    def summary_inputs(self, wildcards) -> list[str]:
        return self.test_outputs(wildcards.subject)

    # ------------------------------------------------------------------ per subject showcase
    def showcase_inputs(self, wildcards) -> dict:
        sp = self.subject(wildcards.subject)
        d = self.dir(sp.name)
        inputs = {"model": f"{d}/model.pt", "prepared": f"{d}/prepared"}
        if not sp.hyperplanes:
            raise EmoheadInputError(
                f"render subject {sp.name!r} has no emotion hyperplanes.",
                path=f"config render.subjects.{sp.name}.hyperplanes",
                fix="set hyperplanes (e.g. {results}/cremad/hyperplanes/all/hyperplanes.json).",
            )
        inputs["hyperplanes"] = sp.hyperplanes
        return inputs

    def driven_emotion_inputs(self, wildcards) -> dict:
        """The main audio-driven test renders of a subject (rule render_driven_emotion)."""
        inputs = self.showcase_inputs(wildcards)
        inputs.pop("model")
        for c, path in self.driven_emotion_videos(wildcards.subject).items():
            inputs[f"video_{c}"] = path
        return inputs

    def driven_emotion_videos(self, name: str) -> dict[str, str]:
        """{clip: driven/main/{clip}/test_render.mp4} (empty without audio-driven renders)."""
        sp = self.subject(name)
        variants = self.driven.get(name) or {}
        if "main" not in variants:
            return {}
        return {c: f"{self.dir(name)}/driven/main/{c}/test_render.mp4" for c in sp.test_clips}

    def driven_emotion_params(self, wildcards) -> dict[str, str]:
        return self.driven_emotion_videos(wildcards.subject)

    # ------------------------------------------------------------------ targets, metrics
    def targets(self) -> list[str]:
        out = []
        for name in self.subjects:
            d = self.dir(name)
            out += [
                f"{d}/{f}"
                for f in (
                    "val_psnr.json",
                    "loss.png",
                    "masks.png",
                    "emotion_switch.mp4",
                    "intensity_sweep.png",
                    "emotion_control.json",
                    "emotion_control.png",
                    "novel_views.png",
                )
            ]
            out += self.driven_outputs(name)
            out += self.baseline_outputs(name)
            if self.driven_emotion_videos(name):
                out.append(f"{self.dir(name)}/driven_emotion.json")
        return out

    def metric_pairs(self) -> list[dict]:
        """(generated, ground truth) pairs of every test clip for the metrics stage: method
        ``ours_gt_alpha`` (rendered from the clip's ground-truth alphas), ``ours`` /
        ``ours_{variant}`` (rendered from the clip's audio with its emotion tag) and the trivial
        baselines ``baseline_{name}`` (:data:`BASELINES`); group = subject; ``mask``: the
        ground-truth frames' head masks (the head-region metrics)."""
        from ..headmask import MASK_FILE
        from ..metrics.pairs import baseline_method, driven_method

        rows = []
        for name, sp in self.subjects.items():
            d = self.dir(name)
            for c in sp.test_clips:
                renders = [(driven_method(v), f"{d}/driven/{v}/{c}") for v in self.driven.get(name) or {}]
                renders.append(("ours_gt_alpha", f"{d}/test/{c}"))
                renders += [(baseline_method(b), f"{d}/baseline/{b}/{c}") for b in BASELINES]
                for method, base in renders:
                    rows.append(
                        dict(
                            method=method,
                            group=name,
                            clip=c,
                            dataset=sp.dataset,
                            generated=f"{base}/test_render.mp4",
                            ground_truth=f"{base}/test_gt.mp4",
                            emotion=sp.emotions[c],
                            meta=f"{base}/test_meta.json",
                            mask=f"{base}/{MASK_FILE}",
                        )
                    )
        return rows

    def emotion_control_files(self) -> dict[str, list[str]]:
        """dataset -> emotion_control.json of its subjects (the tables' Emotion control column)."""
        out: dict[str, list[str]] = {}
        for name, sp in self.subjects.items():
            out.setdefault(sp.dataset, []).append(f"{self.dir(name)}/emotion_control.json")
            if self.driven_emotion_videos(name):
                out[sp.dataset].append(f"{self.dir(name)}/driven_emotion.json")
        return out


def driven_models(
    config: dict, results: str, subjects: dict[str, SubjectPlan], variants=None
) -> dict[str, dict[str, str]]:
    """subject -> {audio2exp variant: model directory} of the audio-driven test renders.

    A subject whose audio-expression model is one this workflow trains
    (``{results}/{dataset}/audio2exp/{variant}``) is rendered with every variant the workflow
    trains for that dataset (``variants``: list, default just that one), so that the ablation
    rows of Table IV come from renders; any other model directory is rendered as ``main``.
    ``render.driven.variants`` (a list) renders only those of the trained variants;
    ``render.driven.enabled: false`` turns the audio-driven renders off."""
    rcfg = config.get("render") or {}
    dcfg = rcfg.get("driven") or {}
    if not dcfg.get("enabled", True):
        return {}
    if dcfg.get("variants") is not None and variants:
        variants = [v for v in variants if v in dcfg["variants"]]
    out: dict[str, dict[str, str]] = {}
    pattern = re.compile(rf"{re.escape(str(results).rstrip('/'))}/([^/]+)/audio2exp/([^/]+)")
    for name, sp in subjects.items():
        a2e = sp.audio2exp
        if not a2e:
            continue
        a2e = str(a2e).rstrip("/").removesuffix("/model.pt")
        m = pattern.fullmatch(a2e)
        if m:
            names = list(variants) if variants else [m[2]]
            out[name] = {v: f"{results}/{m[1]}/audio2exp/{v}" for v in names}
        else:
            out[name] = {"main": a2e}
    return out


def relative_to(path: str | None, base: str | Path) -> str | None:
    """``path`` relative to directory ``base`` (for subject.json: a subject directory stays valid
    when the results directory moves or the command runs from elsewhere)."""
    import os

    if path is None:
        return None
    return os.path.relpath(Path(path).resolve(), Path(base).resolve())
