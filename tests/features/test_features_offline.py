"""The offline profile (real pretrained models shipped in PyPI wheels: Whisper tiny.en in
CTranslate2 format, MiniLM-L6, log-mel) on the real CREMA-D audio of ../shared: every feature
file has one row per 25 fps video frame (+/- 1), transcripts are real speech."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from emohead_core import media
from emohead_core.config import load_config
from emohead_core.features import pipeline, read_features, read_transcript
from emohead_core.features.frames import count_video_frames, reference_frame_count


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory, mirror, repo_root):
    tmp = tmp_path_factory.mktemp("offline")
    cfg = load_config(repo_root / "config" / "demo.yaml")
    cfg["results_dir"] = str(tmp / "results")
    cfg["features"]["store"] = str(tmp / "store")
    clips = []
    for src in sorted((mirror / "data" / "crema-d").glob("*")):
        if src.suffix not in (".flv", ".mp3"):
            continue
        wav = tmp / "audio" / f"{src.stem}.wav"
        media.extract_audio(src, wav)  # plain 16 kHz decode, not trimmed to the video
        clips.append({"sample": src.stem, "actor": src.stem.split("_")[0], "audio": str(wav), "src": src})
    assert len(clips) == 9
    counts = pipeline.extract_clips(cfg, "cremad", clips, threads=1)
    return cfg, clips, tmp / "results" / "cremad", counts


def test_offline_features_match_video_frames(offline_run):
    cfg, clips, res, counts = offline_run
    assert counts == {"computed": 9 * 4, "hit": 0}  # 3 encoders + transcript per clip
    names = pipeline.encoder_specs(cfg)
    dims = {"whisper": 384, "logmel": 80, "minilm": 384}
    n_video = 0
    for c in clips:
        Ts = set()
        for enc in names:
            frames, feats, meta = read_features(
                res / "features" / enc / c["actor"] / f"{c['sample']}.parquet"
            )
            assert feats.shape[1] == dims[enc] == meta["dim"]
            assert np.all(np.isfinite(feats))
            assert frames.tolist() == list(range(len(frames)))
            assert meta["fps"] == 25.0 and meta["sample_rate"] == 16000
            Ts.add(len(frames))
        assert len(Ts) == 1, (c["sample"], Ts)
        T = Ts.pop()
        if c["src"].suffix == ".flv":
            # the 25 fps video of this clip (ffmpeg fps filter, as preprocessing's crop)
            n = sum(1 for _ in media.iter_frames(c["src"], fps=25, size=(32, 24)))
            assert abs(T - n) <= 1, (c["sample"], T, n)
            n_video += 1
        else:  # audio-only: T from the audio duration
            assert abs(T - sf.info(c["audio"]).duration * 25) <= 0.5
    assert n_video == 6


def test_offline_features_are_informative(offline_run):
    """Real speech gives real features: Whisper states differ between speech and the silence
    vector, log-mel energy rises during speech, the text feature is the silence vector exactly
    where no word is spoken."""
    cfg, clips, res, _ = offline_run
    for c in clips[:3]:
        _, w, wm = read_features(res / "features" / "whisper" / c["actor"] / f"{c['sample']}.parquet")
        _, m, _ = read_features(res / "features" / "logmel" / c["actor"] / f"{c['sample']}.parquet")
        _, t, tm = read_features(res / "features" / "minilm" / c["actor"] / f"{c['sample']}.parquet")
        tr = read_transcript(res / "transcripts" / c["actor"] / f"{c['sample']}.parquet")
        energy = m.mean(axis=1)
        assert energy.max() - energy.min() > 3.0  # speech vs pauses (natural-log mel)
        assert np.linalg.norm(w - wm["silence"], axis=1).max() > 1.0
        spoken = np.zeros(len(t), bool)
        for a, b in zip(tr.start_s, tr.end_s):
            spoken[int(np.floor(a * 25 + 0.5)) : int(np.floor(b * 25 + 0.5))] = True
        silent_rows = ~np.any(np.abs(t - tm["silence"]) > 0, axis=1)
        assert silent_rows.any() and (~silent_rows).any()
        assert not np.any(silent_rows & spoken & np.roll(spoken, 1) & np.roll(spoken, -1))


def test_offline_transcripts_are_the_sentence(offline_run):
    """Every CREMA-D clip says "Don't forget a jacket"; Whisper tiny.en gets most of it."""
    _, clips, res, _ = offline_run
    hits = 0
    for c in clips:
        tr = read_transcript(res / "transcripts" / c["actor"] / f"{c['sample']}.parquet")
        assert len(tr) >= 2 and (tr.end_s >= tr.start_s).all() and tr.start_s.is_monotonic_increasing
        assert tr.end_s.max() <= media.probe(c["audio"]).duration_s + 0.1
        text = " ".join(tr.token).lower()
        hits += ("forget" in text) + ("jacket" in text)
    assert hits >= 12, hits  # of 18 word occurrences


def test_offline_rerun_hits_cache(offline_run):
    cfg, clips, res, _ = offline_run
    counts = pipeline.extract_clips(cfg, "cremad", clips[:2], threads=1)
    assert counts == {"computed": 0, "hit": 8}


def test_preprocessed_audio_gives_exact_crop_length(tmp_path, mirror):
    """With preprocessing's wav (padded/trimmed to n_frames/fps) and its frame reference,
    features have exactly the crop's frame count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from emohead_core.preprocess.crop import extract_clip_audio

    src = mirror / "data" / "crema-d" / "1001_DFA_NEU_XX.flv"
    n = sum(1 for _ in media.iter_frames(src, fps=25, size=(32, 24)))
    wav = tmp_path / "a.wav"
    extract_clip_audio(src, wav, n_frames=n)
    boxes = tmp_path / "a.boxes.parquet"
    pq.write_table(pa.table({"frame": np.arange(n, dtype=np.int32)}), boxes)
    assert reference_frame_count(boxes) == n
    crop = tmp_path / "crop.mp4"
    media.write_video(np.zeros((n, 32, 32, 3), np.uint8), crop, 25)
    assert count_video_frames(crop) == n
    base = {
        "results_dir": str(tmp_path / "r"),
        "preprocess": {"fps": 25, "sample_rate": 16000},
        "features": {
            "profile": "t",
            "dtype": "float16",
            "profiles": {"t": {"encoders": {"logmel": {"role": "e", "kind": "logmel"}}}},
        },
    }
    for ref in (None, boxes, crop):
        out = tmp_path / f"f_{ref is None}_{getattr(ref, 'suffix', '')}.parquet"
        pipeline.run_audio_features(base, "logmel", wav, out, frames_ref=ref)
        assert len(read_features(out)[0]) == n
