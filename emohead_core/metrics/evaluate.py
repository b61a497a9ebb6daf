"""Per-clip evaluation: one (generated, ground-truth) pair -> one row per metric.

Row schema (``results/metrics/clips/{method}/{group}/{clip}.parquet``):
dataset, method, clip, metric, value (float; NaN when not computed), note ("n/a: <why>" when
value is NaN), n_frames, emotion, generated, ground_truth. FID needs sets of frames, so the
Inception features of both sides are stored beside it (``.fid.npz``) and pooled per dataset and
method by the tables; the per-clip "FID (clip)" row is the FID of that clip's frames only.

``MetricSuite`` loads every configured model once from the ``metrics:`` config section; a metric
whose model is not configured yields a NaN row with the note naming the config key to set.
Each metric is a :class:`Metric` of :func:`metric_registry` (its rows, whether it needs the
ground-truth frames, ``compute(clip)`` on the decoded :class:`ClipFrames`); :func:`evaluate_pair`
runs the registry in order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import EmoheadInputError
from . import au as AU
from . import emotion as ER
from . import face_landmarker as FL
from . import fid as FID
from . import image as IM
from . import landmarks as LM
from . import lpips as LP
from . import sync as SY
from .weights import resolve_weights

log = logging.getLogger(__name__)

COLUMNS = [
    "dataset",
    "method",
    "clip",
    "metric",
    "value",
    "note",
    "n_frames",
    "emotion",
    "generated",
    "ground_truth",
]
# metrics computed without a reference (also for the "Groundtruth" row of Tables I/II)
NO_REFERENCE = ["LSE-C", "LSE-D", "Sync offset", "ER", "ER (3DMM-exp baseline)"]
GROUNDTRUTH_METHOD = "groundtruth"
AUE_PROXY = "AUE (blendshape proxy)"
# head-region rows (the ground-truth frame's head mask; image.psnr_region_frames & co.)
SSIM_HEAD, PSNR_HEAD, LPIPS_HEAD = "SSIM (head)", "PSNR (head)", "LPIPS (head)"
HEAD_NOTE = "n/a: no head masks for this pair (only the renderer's test spans carry them)"
SYNC_NOTE = "n/a: set metrics.syncnet.weights (syncnet_v2.model of joonson/syncnet_python)"


class Unavailable(Exception):
    """A metric cannot be computed for a stated, non-bug reason (no model configured, no face)."""


def _check_target_emotion(pair, classes, no_class_note: str) -> None:
    """ER needs the clip's emotion tag and a classifier that knows it (else an n/a cell)."""
    if not pair.emotion or pair.emotion == "unknown":
        raise Unavailable("n/a: clip has no target emotion tag")
    if pair.emotion not in classes:
        raise Unavailable(no_class_note.format(pair.emotion))


@dataclass
class Pair:
    dataset: str
    method: str
    clip: str
    generated: str
    ground_truth: str
    emotion: str | None = None
    audio: str | None = None  # 16 kHz speech for Sync when the generated video has no audio
    audio_start_s: float = 0.0
    reference_free_only: bool = False  # the ground-truth row: only Sync / ER
    mask: str | None = None  # head masks of the ground-truth frames (test_mask.npz): head-region metrics


@dataclass
class MetricSuite:
    cfg: dict = field(default_factory=dict)
    face_model: object | None = None  # emohead_core.expression.FaceModel for the 3ddfa backend
    er_baseline: ER.ExpEmotionBaseline | None = None
    threads: int = 1

    def __post_init__(self):
        import torch

        torch.set_num_threads(max(1, int(self.threads)))
        c = self.cfg
        self.fps = float(c.get("fps", 25))
        lp = c.get("lpips") or {}
        b = resolve_weights(lp.get("backbone"), key="metrics.lpips.backbone")
        h = resolve_weights(lp.get("heads"), key="metrics.lpips.heads")
        self.lpips = LP.LPIPSAlex.from_files(b, h) if (b and h) else None
        fw = resolve_weights((c.get("fid") or {}).get("weights"), key="metrics.fid.weights")
        self.inception = FID.InceptionFeatures(fw) if fw else None
        self.fid_max_frames = (c.get("fid") or {}).get("max_frames")
        lmc = c.get("lmd") or {}
        self.lmd_backends = list(lmc.get("backends") or [])
        self.lmd_detect_every = int(lmc.get("detect_every", 1))
        dp = (
            resolve_weights(lmc.get("dlib_predictor"), key="metrics.lmd.dlib_predictor")
            if "dlib" in self.lmd_backends
            else None
        )
        self.dlib = LM.DlibLandmarks(dp) if dp else None
        sc = c.get("syncnet") or {}
        sw = resolve_weights(sc.get("weights"), key="metrics.syncnet.weights", fix=SY.SYNCNET_FIX)
        self.syncnet = SY.SyncNet.load(sw) if sw else None
        self.vshift = int(sc.get("vshift", SY.VSHIFT))
        lw = resolve_weights(c.get("landmarker"), key="metrics.landmarker")
        self.landmarker = FL.FaceLandmarker(lw, threads=self.threads) if lw else None
        ec = c.get("er") or {}
        em = resolve_weights(ec.get("model"), key="metrics.er.model")
        self.fer = (
            ER.TFLiteFER(
                em,
                kind=ec.get("kind"),
                classes=ec.get("classes"),
                crop=ER.FaceCrop.from_config(ec.get("crop")),
                threads=self.threads,
                landmarker=self.landmarker,
            )
            if em
            else None
        )
        ac = c.get("aue") or {}
        self.openface_dir = ac.get("openface_dir")
        am = resolve_weights(ac.get("model"), key="metrics.aue.model")
        self.au_model = (
            AU.TorchScriptAU(am, ac.get("au_names") or [], int(ac.get("size", 224))) if am else None
        )


def _row(pair: Pair, metric: str, value: float | None, note: str = "", n: int = 0) -> dict:
    v = float("nan") if value is None else float(value)
    if not np.isfinite(v) and not np.isinf(v) and not note:
        note = "n/a: not computable for this clip"
    return {
        "dataset": pair.dataset,
        "method": pair.method,
        "clip": pair.clip,
        "metric": metric,
        "value": v,
        "note": note,
        "n_frames": int(n),
        "emotion": pair.emotion or "",
        "generated": str(pair.generated),
        "ground_truth": str(pair.ground_truth),
    }


def _speech(pair: Pair, n_frames: int, fps: float) -> np.ndarray:
    from .. import media

    gen_info = media.probe(pair.generated)
    if gen_info.has_audio:
        return media.load_audio(pair.generated, SY.SAMPLE_RATE)
    if pair.audio:
        a = media.load_audio(pair.audio, SY.SAMPLE_RATE)
        s = int(round(pair.audio_start_s * SY.SAMPLE_RATE))
        return a[s : s + int(np.ceil(n_frames / fps * SY.SAMPLE_RATE))]
    gt_info = media.probe(pair.ground_truth)
    if gt_info.has_audio:
        return media.load_audio(pair.ground_truth, SY.SAMPLE_RATE)
    raise Unavailable("n/a: no audio (generated and ground-truth videos have none, pair has no audio)")


class ClipFrames:
    """One pair's frames, decoded and aligned once, and what several metrics share: the
    landmarker's face tracks and the 3DDFA fits (computed on first use), the FID features."""

    def __init__(self, pair: Pair, suite: MetricSuite):
        from .. import media

        self.pair, self.suite = pair, suite
        gen_bgr = media.read_frames(pair.generated, fps=suite.fps)
        gt_bgr = gen_bgr if pair.reference_free_only else media.read_frames(pair.ground_truth, fps=suite.fps)
        self.aligned = IM.align_frames(gen_bgr, gt_bgr, suite.fps)  # RGB
        self.n = len(self.aligned.gen)
        self.gen_bgr = np.ascontiguousarray(self.aligned.gen[..., ::-1])
        self.gt_bgr = np.ascontiguousarray(self.aligned.gt[..., ::-1])
        self.feats: dict[str, np.ndarray] = {}  # FID features {'gen', 'gt'} (the .fid.npz)
        self.tracks: dict[str, FL.FaceTrack] = {}
        self._tddfa: dict[str, dict | None] = {}
        self._masks: np.ndarray | None = None

    @property
    def masks(self) -> np.ndarray:
        """(n, H, W) bool head masks of the aligned ground-truth frames (the pair's mask file);
        :class:`Unavailable` for a pair without one (only the renderer's test spans carry masks)."""
        if self._masks is None:
            if not self.pair.mask:
                raise Unavailable(HEAD_NOTE)
            from ..headmask import load_masks

            self._masks = IM.region_masks(load_masks(self.pair.mask), self.n, self.aligned.gt.shape[1:3])
        return self._masks

    def face_track(self, side: str) -> FL.FaceTrack:
        """Landmarker results of the aligned generated / ground-truth frames, computed once."""
        if side not in self.tracks:
            self.tracks[side] = self.suite.landmarker(self.aligned.gen if side == "gen" else self.aligned.gt)
        return self.tracks[side]

    def tddfa(self, side: str) -> dict | None:
        """3DDFA fit of the generated / ground-truth frames (LMD and the ER baseline share it);
        None without a face model or when the fit fails."""
        if side not in self._tddfa:
            fit = None
            if self.suite.face_model is not None:
                try:
                    fit = LM.tddfa_fit(
                        self.suite.face_model,
                        self.gen_bgr if side == "gen" else self.gt_bgr,
                        self.suite.lmd_detect_every,
                    )
                except EmoheadInputError as e:
                    log.warning("3DDFA fit failed on %s: %s", self.pair.clip, e)
            self._tddfa[side] = fit
        return self._tddfa[side]


@dataclass(frozen=True)
class Metric:
    """One metric of the registry: the rows it writes (the first is its name), whether it
    compares against the ground-truth frames (skipped for the ground-truth row), and
    ``compute(clip)`` -> a value, or {row: value} for several rows; raises :class:`Unavailable`
    (every row n/a with the reason)."""

    rows: tuple[str, ...]
    reference: bool
    compute: Callable[[ClipFrames], float | dict]

    @property
    def name(self) -> str:
        return self.rows[0]


def _ssim(c: ClipFrames) -> float:
    return IM.ssim(c.aligned.gen, c.aligned.gt)


def _psnr(c: ClipFrames) -> float:
    return IM.psnr(c.aligned.gen, c.aligned.gt)


def _region_mean(values: np.ndarray) -> float:
    """Mean over frames with a non-empty head mask (+inf kept: an identical region)."""
    v = np.asarray(values, np.float64)
    v = v[~np.isnan(v)]
    if not len(v):
        raise Unavailable("n/a: every head mask of this clip is empty")
    return float(np.mean(v))


def _ssim_head(c: ClipFrames) -> float:
    return _region_mean(IM.ssim_region_frames(c.aligned.gen, c.aligned.gt, c.masks))


def _psnr_head(c: ClipFrames) -> float:
    return _region_mean(IM.psnr_region_frames(c.aligned.gen, c.aligned.gt, c.masks))


def _lpips_head(c: ClipFrames) -> float:
    masks = c.masks  # no masks: that reason first
    if c.suite.lpips is None:
        raise Unavailable("n/a: set metrics.lpips.backbone and metrics.lpips.heads")
    return _region_mean(LP.lpips_region_frames(c.suite.lpips, c.aligned.gen, c.aligned.gt, masks))


def _lpips(c: ClipFrames) -> float:
    if c.suite.lpips is None:
        raise Unavailable("n/a: set metrics.lpips.backbone and metrics.lpips.heads")
    return float(LP.lpips_frames(c.suite.lpips, c.aligned.gen, c.aligned.gt).mean())


def _fid(c: ClipFrames) -> float:
    if c.suite.inception is None:
        raise Unavailable("n/a: set metrics.fid.weights")
    idx = FID.subsample(c.n, c.suite.fid_max_frames)
    c.feats["gen"] = c.suite.inception(c.aligned.gen[idx])
    c.feats["gt"] = c.suite.inception(c.aligned.gt[idx])
    return FID.fid_from_features(c.feats["gen"], c.feats["gt"]) if len(idx) > 1 else float("nan")


def _lmd(backend: str, suffix: str) -> Callable[[ClipFrames], dict]:
    def compute(c: ClipFrames) -> dict:
        if not c.suite.lmd_backends:
            raise Unavailable("n/a: set metrics.lmd.backends")
        if backend == "3ddfa":
            gen = c.tddfa("gen")
            gt = c.tddfa("gt") if gen is not None else None
            if gen is None or gt is None:
                raise Unavailable("n/a: no 3DDFA face model (expression assets) or no face fitted")
            g, t = gen["landmarks"], gt["landmarks"]
        elif backend == "dlib":
            if c.suite.dlib is None:
                raise Unavailable("n/a: set metrics.lmd.dlib_predictor")
            g, t = c.suite.dlib(c.aligned.gen), c.suite.dlib(c.aligned.gt)
        else:
            raise Unavailable(f"n/a: unknown landmark backend {backend!r}")
        return {f"M-LMD{suffix}": LM.m_lmd(g, t), f"F-LMD{suffix}": LM.f_lmd(g, t)}

    return compute


def _aue(c: ClipFrames) -> float:
    suite, pair = c.suite, c.pair
    if suite.openface_dir:
        base = Path(suite.openface_dir)
        g = base / pair.method / pair.dataset / f"{pair.clip}.csv"
        t = base / GROUNDTRUTH_METHOD / pair.dataset / f"{pair.clip}.csv"
        if g.is_file() and t.is_file():
            return AU.aue(AU.read_openface_csv(g), AU.read_openface_csv(t))
        if suite.au_model is None:
            raise Unavailable(f"n/a: OpenFace CSVs {g} / {t} missing")
    if suite.au_model is None:
        raise Unavailable("n/a: set metrics.aue.openface_dir or metrics.aue.model")
    return AU.aue(suite.au_model(c.aligned.gen), suite.au_model(c.aligned.gt))


def _aue_proxy(c: ClipFrames) -> float:
    if c.suite.landmarker is None:
        raise Unavailable("n/a: set metrics.landmarker (MediaPipe face_landmarker.task)")
    d = AU.aue(
        AU.blendshape_aus(c.face_track("gen").blendshapes), AU.blendshape_aus(c.face_track("gt").blendshapes)
    )
    if not np.isfinite(d):
        raise Unavailable("n/a: no aligned frame with a face on both sides (MediaPipe landmarker)")
    return d


def _sync(c: ClipFrames) -> dict:
    if c.suite.syncnet is None:
        raise Unavailable(SYNC_NOTE)
    audio = _speech(c.pair, c.n, c.suite.fps)
    try:
        r = SY.lse(c.suite.syncnet, c.gen_bgr, audio, c.suite.vshift)
    except ValueError as e:
        raise Unavailable(f"n/a: {e}") from e
    return {"LSE-C": r.lse_c, "LSE-D": r.lse_d, "Sync offset": float(r.offset)}


def _er(c: ClipFrames) -> float:
    fer = c.suite.fer
    if fer is None:
        raise Unavailable("n/a: set metrics.er.model")
    _check_target_emotion(c.pair, fer.classes, "n/a: classifier has no class {!r}")
    # the BlazeFace boxes of the landmarker's pass over these frames when it already ran
    shared = fer.crop.detector == "blazeface" and "gen" in c.tracks
    pred = fer.predict(c.gen_bgr, c.tracks["gen"].boxes if shared else None)
    if all(p is None for p in pred):
        raise Unavailable("n/a: no face detected in the generated frames")
    return ER.accuracy(pred, c.pair.emotion, fer.classes)


def _er_baseline(c: ClipFrames) -> float:
    base = c.suite.er_baseline
    if base is None:
        raise Unavailable("n/a: no ER baseline model (metrics.er.baseline, needs expression stage)")
    _check_target_emotion(c.pair, base.classes, "n/a: baseline was not trained on {!r} clips")
    fit = c.tddfa("gen")
    if fit is None:
        raise Unavailable("n/a: no 3DDFA fit of the generated frames")
    pred = base.predict(fit["exp"])
    if all(p is None for p in pred):
        raise Unavailable("n/a: no face fitted on the generated frames")
    return ER.accuracy(pred, c.pair.emotion, base.classes)


def metric_registry(lmd_backends: list[str]) -> list[Metric]:
    """Every metric of a clip, in row order; one M-LMD / F-LMD pair per landmark backend (the
    first unsuffixed: the tables' column)."""
    lmd = [
        Metric((f"M-LMD{s}", f"F-LMD{s}"), True, _lmd(b, s))
        for i, b in enumerate(lmd_backends or ["3ddfa"])
        for s in ["" if i == 0 else f" ({b})"]
    ]
    return [
        Metric((SSIM_HEAD,), True, _ssim_head),
        Metric((PSNR_HEAD,), True, _psnr_head),
        Metric((LPIPS_HEAD,), True, _lpips_head),
        Metric(("SSIM",), True, _ssim),
        Metric(("PSNR",), True, _psnr),
        Metric(("LPIPS",), True, _lpips),
        Metric(("FID (clip)",), True, _fid),
        *lmd,
        Metric(("AUE",), True, _aue),
        Metric((AUE_PROXY,), True, _aue_proxy),
        Metric(("LSE-C", "LSE-D", "Sync offset"), False, _sync),
        Metric(("ER",), False, _er),
        Metric(("ER (3DMM-exp baseline)",), False, _er_baseline),
    ]


def measure(metric: Metric, clip: ClipFrames) -> list[dict]:
    """The rows of one metric on one clip (n/a rows with the reason when it is unavailable)."""
    pair, n = clip.pair, clip.n
    try:
        out = metric.compute(clip)
    except Unavailable as e:
        note = str(e)
    except EmoheadInputError as e:
        note = f"n/a: {e}"
    else:
        if isinstance(out, dict):
            return [
                _row(pair, k, v, "" if np.isfinite(v) or np.isinf(v) else "n/a: no face fitted", n)
                for k, v in out.items()
            ]
        return [_row(pair, metric.name, out, "", n)]
    return [_row(pair, r, None, note, n) for r in metric.rows]


def evaluate_pair(pair: Pair, suite: MetricSuite) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """All metric rows of one clip and the FID features {'gen': (T, 2048), 'gt': (T, 2048)}."""
    clip = ClipFrames(pair, suite)
    rows = [
        row
        for metric in metric_registry(suite.lmd_backends)
        if not (metric.reference and pair.reference_free_only)
        for row in measure(metric, clip)
    ]
    return pd.DataFrame(rows, columns=COLUMNS), clip.feats


def write_clip_outputs(df: pd.DataFrame, feats: dict[str, np.ndarray], parquet_path, npz_path) -> None:
    from ..io import atomic_path

    with atomic_path(parquet_path) as tmp:
        df.to_parquet(tmp, index=False)
    with atomic_path(npz_path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f, gen=feats.get("gen", np.zeros((0, 2048))), gt=feats.get("gt", np.zeros((0, 2048)))
            )
