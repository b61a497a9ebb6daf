"""Entry points of the metrics rules (workflow/scripts/metrics_*.py call these)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .. import media
from . import human as HU
from . import tables as TB
from .emotion import ExpEmotionBaseline
from .evaluate import MetricSuite, evaluate_pair, write_clip_outputs
from .pairs import resolve_pair

log = logging.getLogger(__name__)


def reencode(src: str | Path, dst: str | Path, crf: int = 40, fps: float = 25.0) -> None:
    """The demo's stand-in generated clip: the crop decoded and re-encoded at H.264 ``crf``."""
    frames = media.read_frames(src, fps=fps)
    audio = src if media.probe(src).has_audio else None
    media.write_video(frames, dst, fps, audio=audio, crf=int(crf))


def face_model(
    checkpoint: str | Path,
    onnx_dir: str | Path,
    bfm: str | Path | None = None,
    expression_cfg: dict | None = None,
    threads: int = 1,
    backend: str | None = None,
):
    """The expression stage's 3DDFA_V2 FaceModel (same checkpoint, BFM, backend and detector), so
    M/F-LMD and the ER baseline see the landmarks and parameters the pipeline uses."""
    from ..expression import FaceModel

    e = expression_cfg or {}
    checkpoint = Path(checkpoint)
    return FaceModel(
        checkpoint.parent,
        onnx_dir=onnx_dir,
        checkpoint=checkpoint.name,
        widen_factor=e.get("widen_factor"),
        backend=backend or e.get("backend", "torch"),
        device=e.get("device", "cpu"),
        batch_size=int(e.get("batch_size", 64)),
        threads=threads,
        detect_threshold=float(e.get("detect_threshold", 0.5)),
        bfm=str(bfm) if bfm else None,
    )


def run_clip(
    row: dict,
    mcfg: dict,
    results: str,
    out_parquet,
    out_npz,
    *,
    checkpoint=None,
    bfm=None,
    onnx_dir=None,
    expression_cfg=None,
    backend=None,
    er_baseline=None,
    threads: int = 1,
) -> pd.DataFrame:
    fm = face_model(checkpoint, onnx_dir, bfm, expression_cfg, threads, backend) if checkpoint else None
    base = ExpEmotionBaseline.load(er_baseline) if er_baseline else None
    suite = MetricSuite(mcfg, face_model=fm, er_baseline=base, threads=threads)
    pair = resolve_pair(row, results)
    df, feats = evaluate_pair(pair, suite)
    write_clip_outputs(df, feats, out_parquet, out_npz)
    log.info(
        "%s/%s/%s:\n%s", pair.method, pair.dataset, pair.clip, df[["metric", "value", "note"]].to_string()
    )
    return df


def train_er_baseline(
    expression_files: list[str | Path],
    labels: list[str],
    out_json,
    *,
    C: float = 1.0,
    detected_only: bool = True,
) -> ExpEmotionBaseline:
    """Fit the 3DMM-expression ER baseline on the frames of ground-truth training clips."""
    from ..expression import read_expression

    xs, ys = [], []
    for f, lab in zip(expression_files, labels):
        d = read_expression(f)
        exp = np.asarray(d["exp"], np.float64)
        if detected_only:
            exp = exp[np.asarray(d["detected"], bool)]
        xs.append(exp)
        ys += [lab] * len(exp)
    model = ExpEmotionBaseline.fit(np.concatenate(xs), ys, C=C)
    model.save(
        out_json,
        n_frames=len(ys),
        n_clips=len(expression_files),
        note="ER (3DMM-exp baseline): logistic regression on ground-truth 3DDFA expression parameters",
    )
    return model


def human_sheet(pairs: pd.DataFrame, csv_path, html_path, key_path, seed: int = 0) -> None:
    """The blind sheet of the evaluated clips; with no clips (e.g. a config with only a folder
    dataset and no renderer subject yet) an empty sheet that says so."""
    cols = ["dataset", "method", "clip", "generated", "emotion"]
    clips = pairs.reindex(columns=cols)[cols].rename(columns={"generated": "video"})
    HU.write_sheet(clips, csv_path, html_path, key_path, seed=seed)


def make_tables(
    clip_parquets,
    fid_files,
    tcfg: dict,
    datasets: dict,
    results: str,
    out_dir,
    human_key=None,
    filled_sheets=(),
    method_notes=None,
    emotion_control=(),
) -> dict:
    human_rows = None
    if human_key and filled_sheets:
        human_rows = HU.aggregate(HU.read_filled(list(filled_sheets)), pd.read_csv(human_key))
    spec = TB.TableSpec(
        datasets={ds: spec["kind"] for ds, spec in datasets.items()},
        methods=list(tcfg.get("methods") or TB.TableSpec.__dataclass_fields__["methods"].default_factory()),
        method_names=dict(tcfg.get("method_names") or {}),
        method_notes=dict(method_notes or {}),
        ablations=list(tcfg.get("ablations") or []),
        loss_ablations=list(tcfg.get("loss_ablations") or []),
        paper=bool(tcfg.get("paper", True)),
    )
    return TB.build_all(
        clip_parquets,
        fid_files,
        spec,
        results,
        out_dir,
        human_rows=human_rows,
        emotion_control=list(emotion_control),
    )
