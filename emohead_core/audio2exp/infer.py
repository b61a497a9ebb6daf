"""Inference API of the audio-expression module: audio features (or a wav) + an emotion tag or
a timeline of tags + an intensity -> per-frame alpha_hat at 25 fps (eqs. 8-9, Appendix B (3)).

    from emohead_core.audio2exp.infer import predict_alpha
    pred = predict_alpha("results/cremad/audio2exp/main", wav="speech.wav",
                         config=cfg, timeline="0:happy,2.5:sad", intensity=1.0)
    pred.alpha_hat  # (T, 10) float32, frame i covers [i/25, (i+1)/25) s of the audio
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import EmoheadInputError
from .data import MODALITIES, read_feature
from .train import load_model, predict_clip_windows


@dataclass
class Prediction:
    alpha_hat: np.ndarray  # (T, m) refined expression (eq. 9) -> renderer input
    alpha_tilde: np.ndarray  # (T, m) FFN_1 output (eq. 8)
    tau: np.ndarray  # (T,) FFN_2 output (eq. 8)
    tau_used: np.ndarray  # (T,) the weight applied along w (intensity-scaled, see tau_mode)
    w: np.ndarray  # (T, m) per-frame hyperplane direction (w_z, or the timeline's ramp)
    emotions: list[str]
    weights: np.ndarray  # (T, K) weight of each of ``emotions`` per frame (timeline ramp)
    refinement: bool = True
    fps: float = 25.0

    def renderer_input(self) -> np.ndarray:
        """What the renderer consumes: alpha_hat (T, m); for a w/o-refinement model (Appendix D)
        [z; alpha_tilde] (T, 1 + m) with z the per-frame dominant tag of the timeline."""
        if self.refinement:
            return self.alpha_hat
        from .model import EMOTION_INDEX, renderer_input_without_refinement

        z = np.asarray([EMOTION_INDEX[self.emotions[k]] for k in self.weights.argmax(1)], np.float32)
        return renderer_input_without_refinement(torch.from_numpy(z), self.alpha_tilde).numpy()


def _windows(feats: dict[str, np.ndarray], silence: dict[str, np.ndarray], context: int):
    T = min(int(f.shape[0]) for f in feats.values())
    rel = np.arange(-context + 1, 1)
    j = np.arange(T)[:, None] + rel[None, :]
    idx = torch.from_numpy(np.where(j >= 0, j + 1, 0))
    out = []
    for k in MODALITIES:
        s = np.asarray(silence[k], np.float32)[None]
        table = torch.from_numpy(np.concatenate([s, np.asarray(feats[k][:T], np.float32)], 0))
        out.append(table[idx])
    return T, out


def features_from_wav(
    wav: str | Path, config: dict, encoders: dict[str, str], *, transcript=None, threads: int | None = None
) -> dict[str, np.ndarray]:
    """v~, e~, gamma~ (T, D) of a wav on the 25 fps grid, computed with the features stage's
    encoders (``emohead_core.features``) named ``encoders`` (those the model was trained with)
    from the pipeline ``config`` (its ``features`` and ``preprocess`` sections). T =
    round(duration * fps). gamma~: the transcript (a (token, start_s, end_s) table or
    transcript Parquet; default: the profile's ASR) with words assigned to frames (Fig. 9)."""
    import pandas as pd

    from ..features import n_frames_for, read_transcript
    from ..features.encoders import encode_audio
    from ..features.pipeline import encoder_specs, get_asr, get_encoder, settings, text_frame_features
    from ..media import load_audio

    sec = settings(config)
    specs = encoder_specs(config)
    missing = [n for n in encoders.values() if n not in specs]
    if missing:
        raise EmoheadInputError(
            f"the model was trained on encoders {encoders}, "
            f"the config's features profile has {sorted(specs)}",
            fix="select the features profile the model was trained with (features.profile)",
        )
    fps, sr = sec["fps"], sec["sample_rate"]
    wave = load_audio(wav, sr)
    T = n_frames_for(len(wave) / sr, fps)
    out = {}
    for k in ("v", "e"):
        enc = get_encoder(config, encoders[k], threads)
        out[k] = encode_audio(enc, wave, T, fps, float(sec["chunk_s"]), float(sec["context_s"]))
    if transcript is None:
        df = get_asr(config, threads).transcribe(wave)
    elif isinstance(transcript, pd.DataFrame):
        df = transcript
    else:
        df = read_transcript(transcript)
    out["gamma"] = text_frame_features(get_encoder(config, encoders["gamma"], threads), df, T, fps)
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def _directions(hyperplanes: dict[str, np.ndarray], T: int, fps: float, emotion, timeline, ramp_s: float):
    """Per-frame w (T, m), the emotions in order, and their per-frame weights (T, K)."""
    from ..emotion_edit import timeline_directions  # Appendix B (3): w_1 -> w_2 with a linear ramp

    if timeline is None:
        if emotion is None:
            raise EmoheadInputError(
                "predict_alpha needs an emotion tag or a timeline",
                fix='pass emotion="happy" or timeline="0:happy,2.5:sad"',
            )
        timeline = [(0.0, str(emotion))]
    td = timeline_directions(timeline, T, fps, hyperplanes, ramp_s=ramp_s)
    return td.W.astype(np.float32), list(td.emotions), np.asarray(td.weights, np.float32)


def predict_alpha(
    model: str | Path | tuple,
    features: dict[str, np.ndarray | str | Path] | None = None,
    *,
    wav: str | Path | None = None,
    config: dict | None = None,
    transcript=None,
    emotion: str | None = None,
    timeline: str | Sequence[tuple[float, str]] | None = None,
    intensity: float | Sequence[float] | np.ndarray = 1.0,
    tau_mode: str = "model",
    hyperplanes: str | Path | dict | None = None,
    ramp_s: float = 0.5,
    fps: float = 25.0,
) -> Prediction:
    """Per-frame alpha_hat (T, m) at 25 fps for one utterance.

    model: ``results/{dataset}/audio2exp/{variant}`` directory, its ``model.pt``, a training
        checkpoint, or an already loaded ``(module, payload)`` from :func:`train.load_model`.
    features: {'v', 'e', 'gamma'} -> (T, D) arrays or feature-cache Parquet paths; or
    wav (+ config, the pipeline config; optional transcript table/Parquet, else the features
        profile's ASR): features computed with the encoders the model was trained on.
    emotion: tag z for the whole clip, or timeline: ``"0:happy,2.5:sad"`` / [(t_s, tag), ...]
        (switch w_1 -> w_2 with a linear ramp of ``ramp_s`` seconds, Appendix B (3)).
    intensity: scalar or per-frame (T,) factor on tau.
    tau_mode: ``"model"``: tau_used = intensity * tau from FFN_2 (eqs. 8-9 as trained);
        ``"fixed"``: tau_used = intensity (Appendix B's manual probing along w_z).
    hyperplanes: w_z to use (hyperplanes.json path / {emotion: w or (w, b)}); default: the
        hyperplanes the model was trained with. Ignored by a w/o-refinement model
        (alpha_hat = alpha_tilde; the renderer then takes [z; alpha_tilde]).
    """
    net, payload = load_model(model) if not isinstance(model, tuple) else model
    mcfg = net.cfg
    if features is None:
        if wav is None:
            raise EmoheadInputError("predict_alpha needs features or a wav")
        if config is None:
            raise EmoheadInputError(
                "predict_alpha(wav=...) needs the pipeline config (features profile)",
                fix="pass config=emohead_core.config.load_config(...)",
            )
        features = features_from_wav(wav, config, payload.get("encoders", {}), transcript=transcript)
    feats = {}
    for k in MODALITIES:
        f = features[k]
        feats[k] = read_feature(f)[1] if isinstance(f, (str, Path)) else np.asarray(f, np.float32)
    silence = {k: np.asarray(v, np.float32) for k, v in payload["silence"].items()}
    for k, dim in (("v", mcfg.dim_v), ("e", mcfg.dim_e), ("gamma", mcfg.dim_gamma)):
        if feats[k].ndim != 2 or feats[k].shape[1] != dim:
            raise EmoheadInputError(
                f"feature {k} has shape {feats[k].shape}, the model expects (T, {dim})",
                fix="use the encoders the model was trained with",
            )
    if hyperplanes is None:  # the directions the model was trained with
        hyperplanes = payload["hyperplanes"]
    from ..emotion_edit import edit_directions  # a file's d_z, or a dict of directions / (w, b)

    hp = {k: v.astype(np.float32) for k, v in edit_directions(hyperplanes).items()}
    T, (v, e, g) = _windows(feats, silence, mcfg.context)
    W, emotions, weights = _directions(hp, T, fps, emotion, timeline, ramp_s)
    with torch.no_grad():
        _, alpha_tilde, tau = predict_clip_windows(net, v, e, g, torch.zeros(T, mcfg.m), refinement=False)
    inten = (
        np.broadcast_to(np.asarray(intensity, np.float32), (T,))
        if np.ndim(intensity) == 0
        else np.asarray(intensity, np.float32)
    )
    if inten.shape != (T,):
        raise EmoheadInputError(f"intensity has {inten.shape[0]} values for {T} frames")
    if tau_mode == "model":
        tau_used = inten * tau.numpy()
    elif tau_mode == "fixed":
        tau_used = inten.copy()
    else:
        raise EmoheadInputError(f"tau_mode must be 'model' or 'fixed', got {tau_mode!r}")
    a_t = alpha_tilde.numpy()
    if mcfg.refinement:
        from ..emotion_edit import refine

        alpha_hat = refine(
            torch.from_numpy(a_t), torch.from_numpy(tau_used.astype(np.float32)), torch.from_numpy(W)
        ).numpy()  # eq. (9)
    else:
        alpha_hat = a_t.copy()
    return Prediction(
        alpha_hat.astype(np.float32),
        a_t.astype(np.float32),
        tau.numpy().astype(np.float32),
        tau_used.astype(np.float32),
        W,
        emotions,
        weights,
        bool(mcfg.refinement),
        fps,
    )
