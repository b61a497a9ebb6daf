"""The catalogue of clips to evaluate (built at Snakemake parse time).

Sources, each giving (method, group, clip) -> generated video, ground-truth video, audio, emotion:

* ``ours`` / ``ours_{variant}``: each render subject's test clips rendered from their audio and
  emotion tag with the audio2exp model of ``variant`` (main -> ``ours``),
  ``results/render/{subject}/driven/{variant}/{clip}/test_render.mp4`` vs ``test_gt.mp4``;
  ``ours_gt_alpha``: the same frames rendered from their ground-truth 3DDFA alphas
  (``results/render/{subject}/test/{clip}/``, the reconstruction upper bound);
  ``baseline_last_frame`` / ``baseline_mean_head``: the trivial baselines of the same frames
  (``results/render/{subject}/baseline/{name}/{clip}/``, RenderPlan.metric_pairs). Group = the
  subject; frame range and audio from ``test_meta.json`` at run time; the ground-truth frames'
  head masks (``test_mask.npz``, column ``mask``) for the head-region metrics.
* ``metrics.pairs``: any (generated, ground-truth) pairs listed in the config.
* ``metrics.baselines_dir``: baseline methods' videos dropped by the user as
  ``{baselines_dir}/{method}/{dataset}/{sample}.mp4`` (SadTalker, LivePortrait, EAMM, EAT, EDTalk,
  ...), compared with ``results/{dataset}/crop/{actor}/{sample}.mp4``.
* ``reencode``: the crop re-encoded at a low quality (``metrics.reencode.crf``), a degraded copy
  that exercises every metric before any renderer exists (demo).
* ``groundtruth``: the crop itself, for the "Groundtruth" row (Sync. and ER only, as the paper).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..layout import clip_file


def driven_method(variant: str) -> str:
    """Method name of an audio-driven render: ``ours`` for audio2exp variant main, else
    ``ours_{variant}`` (the names of Table IV's rows, config tables.ablations)."""
    return "ours" if variant == "main" else f"ours_{variant}"


def variant_of(method: str | None) -> str | None:
    """The audio2exp variant of an audio-driven render's method (inverse of
    :func:`driven_method`): ``ours`` -> main, ``ours_{variant}`` -> variant; None otherwise."""
    if method == "ours":
        return "main"
    if method and method.startswith("ours_") and method != "ours_gt_alpha":
        return method[len("ours_") :]
    return None


def baseline_method(name: str) -> str:
    """Method name of a trivial render baseline (render.plan.BASELINES): ``baseline_{name}``."""
    return f"baseline_{name}"


SLUG = re.compile(r"[^A-Za-z0-9_.\-]+")
COLUMNS = [
    "method",
    "group",
    "clip",
    "dataset",
    "generated",
    "ground_truth",
    "audio",
    "emotion",
    "reference_free",
    "meta",
    "mask",
]


def slug(s: str) -> str:
    return SLUG.sub("_", str(s)).strip("_") or "x"


def eval_samples(table: pd.DataFrame, split: str | None) -> list[str]:
    """Video samples of ``split`` (all video samples when that split has none)."""
    vid = table[table["video_path"] != ""]
    if split:
        sel = vid[vid["split"] == split]
        if len(sel):
            vid = sel
    return list(vid["sample_id"])


def build_pairs(
    mcfg: dict,
    datasets: dict,
    samples: dict[str, pd.DataFrame],
    results: str,
    render_pairs: list[dict] | None = None,
) -> pd.DataFrame:
    """The catalogue (see the module docstring). ``render_pairs``: the renderer's per-test-clip
    pairs (:meth:`emohead_core.render.plan.RenderPlan.metric_pairs`)."""
    rows = []
    split = mcfg.get("split", "test")
    eval_ds = mcfg.get("datasets") or [d for d in samples]

    # sample -> (actor, emotion) per dataset, built once (a DataFrame filter per clip is
    # quadratic in the number of evaluated clips)
    lookup: dict[str, dict[str, tuple[str, str]]] = {}

    def row(ds, s):
        if ds not in lookup:
            t = samples[ds]
            lookup[ds] = dict(
                zip(t["sample_id"].astype(str), zip(t["actor"].astype(str), t["emotion"].astype(str)))
            )
        return lookup[ds].get(s)

    def emo(ds, s):
        r = row(ds, s)
        return r[1] if r else ""

    def crop_of(ds, s):
        return clip_file(results, ds, "crop", row(ds, s)[0], s)

    def audio_of(ds, s):
        return clip_file(results, ds, "audio", row(ds, s)[0], s)

    def add(method, group, clip, dataset, gen, gt, audio="", emotion="", ref_free=False, meta="", mask=""):
        rows.append(
            dict(
                method=slug(method),
                group=slug(group),
                clip=slug(clip),
                dataset=dataset,
                generated=str(gen),
                ground_truth=str(gt),
                audio=str(audio or ""),
                emotion=emotion or "",
                reference_free=bool(ref_free),
                meta=str(meta or ""),
                mask=str(mask or ""),
            )
        )

    # renderer outputs: every test clip of every subject
    if mcfg.get("render", True):
        for p in render_pairs or []:
            add(
                p["method"],
                p["group"],
                p["clip"],
                p["dataset"],
                p["generated"],
                p["ground_truth"],
                emotion=p.get("emotion", ""),
                meta=p.get("meta", ""),
                mask=p.get("mask", ""),
            )
    # explicit pairs
    for p in mcfg.get("pairs") or []:
        add(
            p.get("method", "pair"),
            p.get("dataset", "pairs"),
            p.get("clip", Path(p["generated"]).stem),
            p.get("dataset", ""),
            p["generated"],
            p["ground_truth"],
            p.get("audio", ""),
            p.get("emotion", ""),
        )
    # baselines dropped by the user
    bdir = mcfg.get("baselines_dir")
    if bdir and Path(bdir).is_dir():
        for mdir in sorted(Path(bdir).iterdir()):
            if not mdir.is_dir():
                continue
            for ds in eval_ds:
                if ds not in samples:
                    continue
                known = set(samples[ds][samples[ds]["video_path"] != ""]["sample_id"])
                for v in sorted((mdir / ds).glob("*.mp4")) if (mdir / ds).is_dir() else []:
                    if v.stem in known:
                        add(
                            mdir.name,
                            ds,
                            v.stem,
                            ds,
                            v,
                            crop_of(ds, v.stem),
                            audio_of(ds, v.stem),
                            emo(ds, v.stem),
                        )
    # re-encoded crops (demo pair) and the ground-truth row
    rc = mcfg.get("reencode") or {}
    for ds in (rc.get("datasets") or []) if rc.get("enabled", bool(rc)) else []:
        if ds not in samples:
            continue
        for s in eval_samples(samples[ds], split):
            add(
                "reencode",
                ds,
                s,
                ds,
                f"{results}/metrics/reencode/{ds}/{s}.mp4",
                crop_of(ds, s),
                audio_of(ds, s),
                emo(ds, s),
            )
    for ds in mcfg.get("groundtruth_datasets") or []:
        if ds not in samples:
            continue
        for s in eval_samples(samples[ds], split):
            crop = crop_of(ds, s)
            add("groundtruth", ds, s, ds, crop, crop, audio_of(ds, s), emo(ds, s), ref_free=True)
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.drop_duplicates(subset=["method", "group", "clip"], keep="first").reset_index(drop=True)


def _sample_wav(results: str, dataset: str, sample: str) -> str | None:
    """The 16 kHz wav of a sample, its actor looked up in the dataset's sample table."""
    table = Path(results) / dataset / "samples.parquet"
    if not table.is_file():
        return None
    df = pd.read_parquet(table, columns=["sample_id", "actor"])
    hit = df[df["sample_id"].astype(str) == str(sample)]
    return clip_file(results, dataset, "audio", str(hit["actor"].iloc[0]), str(sample)) if len(hit) else None


def resolve_pair(row: dict, results: str):
    """A :class:`~emohead_core.metrics.evaluate.Pair` from a catalogue row; renderer rows read
    ``test_meta.json`` (dataset, sample, first frame, fps, emotion) for the labels and the speech."""
    import json

    from .evaluate import Pair

    pair = Pair(
        dataset=row.get("dataset") or "",
        method=row["method"],
        clip=row["clip"],
        generated=row["generated"],
        ground_truth=row["ground_truth"],
        emotion=row.get("emotion") or None,
        audio=row.get("audio") or None,
        reference_free_only=bool(row.get("reference_free")),
        mask=row.get("mask") or None,
    )
    meta_path = row.get("meta")
    if meta_path and Path(meta_path).is_file():
        meta = json.loads(Path(meta_path).read_text())
        pair.dataset = pair.dataset or str(meta.get("dataset", ""))
        pair.emotion = pair.emotion or meta.get("emotion") or meta.get("emotion_tag")
        sample = meta.get("sample") or meta.get("sample_id")
        fps = float(meta.get("fps", 25))
        start = meta.get("frame_start")
        if start is None:
            rng = meta.get("frame_range") or meta.get("frames")
            start = rng[0] if isinstance(rng, (list, tuple)) and rng else 0
        wav = meta.get("audio") or (
            _sample_wav(results, pair.dataset, sample) if pair.dataset and sample else None
        )
        if wav and Path(wav).is_file():
            pair.audio = str(wav)
            pair.audio_start_s = float(start) / fps
    pair.dataset = pair.dataset or row.get("group", "")
    return pair
