"""Feature encoders behind one interface (paper Sec. III-A, eq. 1; Table V).

Roles: ``v`` audio feature v~, ``e`` audio-emotion feature e~, ``gamma`` text feature gamma~.

Kinds (``features.profiles.<profile>.encoders.<name>.kind``):

=================  ======  ===============================================  ==========
kind               role    model / loader                                   native rate
=================  ======  ===============================================  ==========
hubert             v       transformers ``HubertModel`` + AutoFeatureExtractor  50 Hz
emotion2vec        e       FunASR ``AutoModel`` (``granularity="frame"``)    50 Hz
whisper_encoder    v       CTranslate2 Whisper encoder via faster-whisper    50 Hz
logmel             e (v)   log-mel filterbank, no weights                    100 Hz
hf_text            gamma   transformers ``AutoModel`` (LlamaModel, BertModel)  per word
=================  ======  ===============================================  ==========

Audio encoders return features at their native rate for one chunk of audio
(:meth:`AudioEncoder.encode_native`); :func:`encode_audio` chunks a clip with context, and pools
onto the 25 fps grid (``frames.pool_to_grid``). Text encoders return one vector per word
(:meth:`TextEncoder.encode_words`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EmoheadInputError
from .frames import pool_to_grid
from .sources import ModelSource, load_funasr_model, resolve_model_dir

ROLES = ("v", "e", "gamma")
AUDIO_KINDS = ("hubert", "emotion2vec", "whisper_encoder", "logmel")
TEXT_KINDS = ("hf_text",)


@dataclass(frozen=True)
class EncoderSpec:
    """One configured encoder: what the config says, plus the config path for messages."""

    name: str
    role: str
    kind: str
    model: str | None = None
    revision: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    config_key: str = "features"

    @staticmethod
    def from_config(name: str, entry: dict[str, Any], config_key: str) -> EncoderSpec:
        entry = dict(entry)
        role = entry.pop("role", None)
        kind = entry.pop("kind", None)
        if role not in ROLES:
            raise EmoheadInputError(
                f"encoder {name!r} has role {role!r}; expected one of {ROLES}.", path=f"{config_key}.role"
            )
        if kind not in AUDIO_KINDS + TEXT_KINDS:
            raise EmoheadInputError(
                f"encoder {name!r} has unknown kind {kind!r}; expected one of {AUDIO_KINDS + TEXT_KINDS}.",
                path=f"{config_key}.kind",
            )
        if (role == "gamma") != (kind in TEXT_KINDS):
            raise EmoheadInputError(
                f"encoder {name!r}: kind {kind!r} cannot take role {role!r}.", path=f"{config_key}.role"
            )
        return EncoderSpec(
            name=name,
            role=role,
            kind=kind,
            model=entry.pop("model", None),
            revision=entry.pop("revision", None),
            options=entry,
            config_key=config_key,
        )


class Encoder:
    """Common part: name, role, dim, model identity."""

    kind = "?"

    def __init__(self, spec: EncoderSpec, source: ModelSource | None):
        self.spec = spec
        self.source = source
        self.name = spec.name
        self.role = spec.role
        self.dim: int = 0

    @property
    def model_id(self) -> str:
        return self.spec.model or "none"

    @property
    def revision(self) -> str:
        return self.source.revision if self.source else "none"

    def identity(self) -> dict[str, Any]:
        """Everything that determines the output values (the cache key's encoder part)."""
        return identity_of(self.spec, self.source)

    def silence_vector(self) -> np.ndarray:
        raise NotImplementedError


class AudioEncoder(Encoder):
    native_hz: float = 50.0
    sample_rate: int = 16000
    max_chunk_s: float | None = None  # hard limit of the model (Whisper: 30 s)

    def encode_native(self, wave: np.ndarray) -> np.ndarray:
        """(N,) float32 at 16 kHz -> (M, D) float32 at ``native_hz``."""
        raise NotImplementedError

    @functools.cached_property
    def _silence(self) -> np.ndarray:
        # Fig. 9 "silence segment": the encoder's response to 1 s of digital silence, averaged.
        return self.encode_native(np.zeros(self.sample_rate, np.float32)).mean(axis=0).astype(np.float32)

    def silence_vector(self) -> np.ndarray:
        return self._silence


class TextEncoder(Encoder):
    def encode_words(self, words: list[str]) -> np.ndarray:
        raise NotImplementedError

    def silence_vector(self) -> np.ndarray:
        # Frames with no word (Fig. 9) get the zero vector: after the linear map E_3 of eq. (1)
        # this is E_3's bias (a learnable "silence" embedding) -- see docs/decisions.md.
        return np.zeros(self.dim, np.float32)


def _torch_threads(threads: int | None):
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    return torch


class HubertEncoder(AudioEncoder):
    """HuBERT-base (768-d, 50 Hz) through transformers' HubertModel (Table V: v~)."""

    kind = "hubert"

    def __init__(self, spec, source, threads=None):
        super().__init__(spec, source)
        torch = _torch_threads(threads)
        from transformers import AutoFeatureExtractor, HubertModel

        self._torch = torch
        self.extractor = AutoFeatureExtractor.from_pretrained(str(source.local_dir))
        self.model = HubertModel.from_pretrained(str(source.local_dir)).eval()
        cfg = self.model.config
        self.native_hz = self.sample_rate / float(np.prod(cfg.conv_stride))
        self.layer = int(spec.options.get("layer", -1))
        self.dim = int(cfg.hidden_size)

    def encode_native(self, wave):
        torch = self._torch
        inp = self.extractor(
            np.asarray(wave, np.float32), sampling_rate=self.sample_rate, return_tensors="pt"
        )
        with torch.inference_mode():
            out = self.model(inp["input_values"], output_hidden_states=self.layer != -1)
        h = out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer]
        return h[0].float().numpy()


class Emotion2vecEncoder(AudioEncoder):
    """emotion2vec-base (768-d, 50 Hz frame-level) through FunASR's AutoModel (Table V: e~)."""

    kind = "emotion2vec"

    def __init__(self, spec, source, threads=None):
        super().__init__(spec, source)
        _torch_threads(threads)
        self.model = load_funasr_model(
            source.local_dir,
            threads=threads,
            config_key=spec.config_key,
            what="emotion2vec",
            fix="point it at a FunASR model directory (config.yaml + model.pt), e.g. the "
            "emotion2vec/emotion2vec_base snapshot.",
        )
        self.dim = int(self.model.model.cfg.get("embed_dim"))

    def encode_native(self, wave):
        res = self.model.generate(
            input=np.asarray(wave, np.float32), granularity="frame", extract_embedding=True, disable_pbar=True
        )
        return np.asarray(res[0]["feats"], np.float32).reshape(-1, self.dim)


@functools.lru_cache(maxsize=4)
def load_faster_whisper(local_dir: str, compute_type: str, threads: int):
    """One CTranslate2 Whisper per process, shared by the ASR and the encoder feature."""
    from faster_whisper import WhisperModel

    return WhisperModel(local_dir, device="cpu", compute_type=compute_type, cpu_threads=threads)


class WhisperEncoderFeatures(AudioEncoder):
    """Whisper encoder states (tiny.en: 384-d, 50 Hz) from CTranslate2's ``Whisper.encode``;
    the offline profile's stand-in for HuBERT."""

    kind = "whisper_encoder"
    max_chunk_s = 30.0

    def __init__(self, spec, source, threads=None):
        super().__init__(spec, source)
        self.fw = load_faster_whisper(
            str(source.local_dir), spec.options.get("compute_type", "float32"), int(threads or 1)
        )
        fe = self.fw.feature_extractor
        self.n_samples = int(fe.n_samples)  # 30 s
        self.native_hz = self.sample_rate / (2.0 * fe.hop_length)  # conv stride 2 over 100 Hz mel
        self.dim = int(self.silence_vector().shape[0])

    def encode_native(self, wave):
        import ctranslate2
        from faster_whisper.audio import pad_or_trim

        wave = np.asarray(wave, np.float32)
        if len(wave) > self.n_samples:
            raise ValueError("Whisper encoder chunks must be <= 30 s")
        mel = pad_or_trim(self.fw.feature_extractor(wave))
        out = self.fw.model.encode(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], np.float32)), to_cpu=True
        )
        h = np.asarray(out, dtype=np.float32)[0]
        n = max(1, math.ceil(len(wave) * self.native_hz / self.sample_rate))
        return h[:n]


class LogMelEncoder(AudioEncoder):
    """Log-mel filterbank energies (no weights): 25 ms Hann window, 10 ms hop, ``n_mels`` bands
    (default 80), natural log with 1e-6 floor; 100 Hz, pooled 4:1 to 25 fps."""

    kind = "logmel"

    def __init__(self, spec, source=None, threads=None):
        super().__init__(spec, None)
        o = spec.options
        self.n_mels = int(o.get("n_mels", 80))
        self.win = int(o.get("win_length", 400))
        self.hop = int(o.get("hop_length", 160))
        self.n_fft = int(o.get("n_fft", 512))
        self.native_hz = self.sample_rate / self.hop
        self.dim = self.n_mels
        import librosa

        self._fb = librosa.filters.mel(sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels).astype(
            np.float32
        )
        self._window = np.hanning(self.win + 1)[:-1].astype(np.float32)

    @property
    def revision(self) -> str:
        return "none"

    def encode_native(self, wave):
        wave = np.asarray(wave, np.float32)
        n = max(1, math.ceil(len(wave) / self.hop))
        # frame k is centred at k*hop (reflect-free zero padding)
        padded = np.pad(wave, (self.win // 2, self.win + n * self.hop))
        idx = np.arange(self.win)[None, :] + (np.arange(n) * self.hop)[:, None]
        frames = padded[idx] * self._window
        spec = np.abs(np.fft.rfft(frames, n=self.n_fft, axis=1)) ** 2
        return np.log(spec.astype(np.float32) @ self._fb.T + 1e-6)


class HFTextEncoder(TextEncoder):
    """Contextual word vectors from a transformers text model (LlamaModel for LLaMA2-7B, 4096-d;
    BertModel for MiniLM, 384-d): hidden states of ``layer`` (-1: the model's final output),
    mean-pooled over each word's sub-word tokens. Long transcripts are encoded in windows of
    ``max_words`` words."""

    kind = "hf_text"

    def __init__(self, spec, source, threads=None):
        super().__init__(spec, source)
        torch = _torch_threads(threads)
        from transformers import AutoModel, AutoTokenizer

        self._torch = torch
        d = str(source.local_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(d)
        if not getattr(self.tokenizer, "is_fast", False):
            raise EmoheadInputError(
                "the tokenizer must be a fast (Rust) tokenizer (offsets are needed "
                "to pool sub-words per word).",
                path=f"{spec.config_key}.model",
            )
        dtype = spec.options.get("torch_dtype", "float32")
        self.model = AutoModel.from_pretrained(d, dtype=getattr(torch, dtype)).eval()
        self.layer = int(spec.options.get("layer", -1))
        self.max_words = int(spec.options.get("max_words", 128))
        import inspect

        self._takes_token_types = "token_type_ids" in inspect.signature(self.model.forward).parameters
        self.dim = int(self.model.config.hidden_size)

    def _encode_window(self, words: list[str]) -> np.ndarray:
        torch = self._torch
        text, spans = "", []
        for w in words:
            if text:
                text += " "
            spans.append((len(text), len(text) + len(w)))
            text += w
        enc = self.tokenizer(text, return_offsets_mapping=True, return_tensors="pt")
        offsets = enc.pop("offset_mapping")[0].tolist()
        if "token_type_ids" in enc and not self._takes_token_types:
            enc.pop("token_type_ids")
        with torch.inference_mode():
            out = self.model(**enc, output_hidden_states=self.layer != -1)
        h = (out.last_hidden_state if self.layer == -1 else out.hidden_states[self.layer])[0].float().numpy()
        starts = np.array([s for s, _ in spans])
        vecs = np.zeros((len(words), h.shape[1]), np.float64)
        counts = np.zeros(len(words), np.int64)
        for t, (s, e) in enumerate(offsets):
            if e <= s:  # special token (BOS/CLS/SEP)
                continue
            j = int(np.searchsorted(starts, e - 1, side="right") - 1)  # word holding the last char
            if 0 <= j < len(words) and s < spans[j][1]:
                vecs[j] += h[t]
                counts[j] += 1
        missing = np.where(counts == 0)[0]
        if len(missing):
            raise EmoheadInputError(
                f"tokenizer produced no token for words {[words[i] for i in missing]}.",
                path=f"{self.spec.config_key}.model",
            )
        return (vecs / counts[:, None]).astype(np.float32)

    def encode_words(self, words):
        words = [w for w in words]
        if not words:
            return np.zeros((0, self.dim), np.float32)
        parts = [
            self._encode_window(words[i : i + self.max_words]) for i in range(0, len(words), self.max_words)
        ]
        return np.concatenate(parts, axis=0)


KIND_CLASSES: dict[str, type[Encoder]] = {
    "hubert": HubertEncoder,
    "emotion2vec": Emotion2vecEncoder,
    "whisper_encoder": WhisperEncoderFeatures,
    "logmel": LogMelEncoder,
    "hf_text": HFTextEncoder,
}


def resolve_source(spec: EncoderSpec) -> ModelSource | None:
    """Where the encoder's weights are (None for weight-free kinds); no model is loaded."""
    if spec.kind == "logmel":
        return None
    return resolve_model_dir(spec.model or "", config_key=f"{spec.config_key}.model", revision=spec.revision)


def identity_of(spec: EncoderSpec, source: ModelSource | None) -> dict[str, Any]:
    """The encoder identity of the cache key: kind, model id, revision (hub commit or weight
    sha256) and options. Computable without loading the model, so a cache hit costs a hash."""
    return {
        "kind": spec.kind,
        "model": spec.model or "none",
        "revision": source.revision if source else "none",
        "options": dict(sorted(spec.options.items())),
    }


def build_encoder(spec: EncoderSpec, threads: int | None = 1, source: ModelSource | None = None) -> Encoder:
    """Resolve the weights (local dir / package dir / hub id) and load the encoder."""
    cls = KIND_CLASSES[spec.kind]
    if source is None:
        source = resolve_source(spec)
    return cls(spec, source, threads=threads)


def encode_audio(
    encoder: AudioEncoder,
    wave: np.ndarray,
    n_frames: int,
    fps: float = 25.0,
    chunk_s: float = 20.0,
    context_s: float = 1.0,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """A clip's features on the video grid (n_frames, D), computed chunk by chunk.

    Chunks hold ``chunk_s`` seconds (a whole number of native frames) plus ``context_s`` on each
    side; only the native frames of the chunk core are kept, so memory is bounded by the chunk
    size and chunk borders see context like the interior."""
    sr = encoder.sample_rate
    wave = np.asarray(wave, np.float32)
    hop = sr / encoder.native_hz  # samples per native frame
    if encoder.max_chunk_s is not None:
        chunk_s = min(chunk_s, encoder.max_chunk_s - 2 * context_s)
    core = max(1, int(round(chunk_s * encoder.native_hz)))  # native frames per chunk
    total = max(1, math.ceil(len(wave) / hop))
    ctx = int(round(context_s * encoder.native_hz))
    parts = []
    for c0 in range(0, total, core):
        c1 = min(total, c0 + core)
        f0 = max(0, c0 - ctx)
        s0, s1 = int(round(f0 * hop)), int(round(min(total, c1 + ctx) * hop))
        seg = wave[s0:s1]
        if len(seg) < int(hop) * 2:  # a tail shorter than the model's receptive field
            seg = np.pad(seg, (0, int(hop) * 2 - len(seg)))
        nat = encoder.encode_native(seg)
        part = nat[c0 - f0 : c1 - f0]
        if part.shape[0] < c1 - c0:  # model emitted fewer frames at the end: edge-pad
            fill = nat[-1:] if part.shape[0] == 0 else part[-1:]
            part = np.concatenate([part, np.repeat(fill, c1 - c0 - part.shape[0], axis=0)])
        parts.append(part)
        if progress:
            progress(1)
    native = np.concatenate(parts, axis=0)
    return pool_to_grid(native, encoder.native_hz, n_frames, fps)
