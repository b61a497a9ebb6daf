"""Dataset adapters (MEAD, CREMA-D, folder), splits, and bad-input errors, on real media."""

from __future__ import annotations

import csv
import os

import pandas as pd
import pytest

from emohead_core import media
from emohead_core.errors import AssetError, EmoheadInputError
from emohead_core.preprocess import datasets as ds


@pytest.fixture(scope="module")
def manifest_durations(mirror):
    with open(mirror / "data" / "MANIFEST.tsv") as f:
        return {
            r["file"].split("/")[-1].rsplit(".", 1)[0]: float(r["duration_s"])
            for r in csv.DictReader(f, delimiter="\t")
        }


@pytest.fixture(scope="module")
def m4a(mirror, tmp_path_factory):
    """A real AAC .m4a (MEAD's audio format) made from a CREMA-D recording."""
    out = tmp_path_factory.mktemp("m4a") / "speech.m4a"
    media.run_ffmpeg(
        ["-i", str(mirror / "data/crema-d/1002_DFA_HAP_XX.mp3"), "-c:a", "aac", "-b:a", "64k", str(out)]
    )
    return out


def _link(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)


def test_demo_crema_d_table(mirror, tmp_path, manifest_durations):
    spec = {"kind": "crema_d", "root": "asset:data/crema-d"}
    df = ds.build_table("cremad", spec, mirror=mirror, resources_dir="res", cache_path=tmp_path / "c.json")
    assert list(df.columns) == ds.COLUMNS
    assert len(df) == 9 and df["sample_id"].is_unique
    video = df[df["video_path"] != ""]
    audio_only = df[df["video_path"] == ""]
    assert sorted(video["sample_id"]) == [
        f"1001_DFA_{e}_XX" for e in ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
    ]
    assert set(audio_only["actor"]) == {"1002"} and len(audio_only) == 3
    assert set(df["emotion"]) <= set(ds.EMOTIONS)
    assert df.set_index("sample_id").at["1001_DFA_DIS_XX", "emotion"] == "disgusted"
    assert df["intensity"].dtype == "Int64" and df["intensity"].isna().all()  # XX = unspecified
    assert (df["sentence"] == "DFA").all() and (df["dataset"] == "cremad").all()
    assert df["actor"].map(type).eq(str).all()
    # the table points at the resolved asset location (rule fetch_asset), audio from the flv
    r = df.set_index("sample_id").loc["1001_DFA_ANG_XX"]
    assert r["video_path"] == "res/assets/data/crema-d/1001_DFA_ANG_XX.flv" == r["audio_path"]
    assert df.set_index("sample_id").at["1002_DFA_SAD_XX", "audio_path"].endswith("1002_DFA_SAD_XX.mp3")
    for sid, d in zip(df["sample_id"], df["duration_s"]):
        assert abs(d - manifest_durations[sid]) < 0.06, sid
    # every person has test and train material; same rule twice gives the same table
    for actor, g in df.groupby("actor"):
        assert {"train", "test"} <= set(g["split"]), actor
        assert set(g["split"]) <= {"train", "test"}  # less than the paper's budget: nothing unused
    again = ds.build_table("cremad", spec, mirror=mirror, resources_dir="res", cache_path=tmp_path / "c.json")
    pd.testing.assert_frame_equal(df, again)


def test_demo_folder_table_with_include(mirror, tmp_path):
    spec = {"kind": "folder", "root": "asset:data/talking-heads", "include": ["uncrop_Obama.mp4"]}
    df = ds.build_table("obama", spec, mirror=mirror, cache_path=tmp_path / "c.json")
    assert list(df["sample_id"]) == ["uncrop_Obama"] and list(df["actor"]) == ["uncrop_Obama"]
    assert list(df["emotion"]) == ["unknown"] and list(df["split"]) == ["train"]
    assert abs(df["duration_s"].iloc[0] - 20.02) < 0.06
    full = ds.build_table("th", {"kind": "folder", "root": "asset:data/talking-heads"}, mirror=mirror)
    assert len(full) == 3


def test_crema_d_distribution_layout_merges_video_and_audio(mirror, tmp_path):
    """CREMA-D ships VideoFlash/*.flv and AudioWAV/*.wav: one row per stem, audio from the wav."""
    root = tmp_path / "crema"
    src = mirror / "data" / "crema-d"
    for e in ["ANG", "HAP"]:
        _link(src / f"1001_DFA_{e}_XX.flv", root / "VideoFlash" / f"1001_DFA_{e}_XX.flv")
    media.extract_audio(src / "1001_DFA_ANG_XX.flv", root / "AudioWAV" / "1001_DFA_ANG_XX.wav")
    _link(src / "1002_DFA_SAD_XX.mp3", root / "AudioMP3" / "1002_DFA_SAD_HI.mp3")
    (root / "README.txt").write_text("not media, ignored")
    df = ds.build_table("c", {"kind": "crema_d", "root": str(root)}).set_index("sample_id")
    assert list(df.index) == ["1001_DFA_ANG_XX", "1001_DFA_HAP_XX", "1002_DFA_SAD_HI"]
    assert df.at["1001_DFA_ANG_XX", "audio_path"].endswith("AudioWAV/1001_DFA_ANG_XX.wav")
    assert df.at["1001_DFA_ANG_XX", "video_path"].endswith("VideoFlash/1001_DFA_ANG_XX.flv")
    assert df.at["1001_DFA_HAP_XX", "audio_path"] == df.at["1001_DFA_HAP_XX", "video_path"]
    assert df.at["1002_DFA_SAD_HI", "intensity"] == 3 and df.at["1002_DFA_SAD_HI", "video_path"] == ""


def _make_mead(root, video_src, m4a, actors=("M003", "W009"), emotions=("angry", "happy", "neutral"), n=4):
    for a in actors:
        for e in emotions:
            for k in (1, 2) if e != "neutral" else (1,):
                for i in range(1, n + 1):
                    _link(video_src, root / a / "video" / "front" / e / f"level_{k}" / f"{i:03d}.mp4")
                    _link(m4a, root / a / "audio" / e / f"level_{k}" / f"{i:03d}.m4a")
            # other camera views are ignored
            _link(video_src, root / a / "video" / "left_30" / e / "level_1" / "001.mp4")


def test_mead_layout(mirror, m4a, tmp_path):
    root = tmp_path / "MEAD"
    _make_mead(root, mirror / "data/talking-heads/WDA_AlexandriaOcasioCortez_000.mp4", m4a)
    df = ds.build_table("mead", {"kind": "mead", "root": str(root)}, cache_path=tmp_path / "c.json")
    assert len(df) == 2 * (2 * 4 + 2 * 4 + 4)
    r = df.set_index("sample_id").loc["M003_angry_level2_003"]
    assert (r["actor"], r["emotion"], r["intensity"], r["sentence"]) == ("M003", "angry", 2, "003")
    assert r["video_path"].endswith("M003/video/front/angry/level_2/003.mp4")
    assert r["audio_path"].endswith("M003/audio/angry/level_2/003.m4a")
    assert abs(r["duration_s"] - 8.06) < 0.1
    for _actor, g in df.groupby("actor"):
        test = g[g["split"] == "test"]
        # paper: 10 min train / 2 min test per person -> 1/6 of a smaller person's material
        assert abs(test["duration_s"].sum() / g["duration_s"].sum() - 1 / 6) < 0.05
        assert test["emotion"].nunique() == len(test)  # stratified: test clips spread over emotions
        assert set(g["split"]) == {"train", "test"}
    # the same utterances go to test for both actors (content-aligned split)
    keys = lambda a: set(df[(df.actor == a) & (df.split == "test")]["sample_id"].str.split("_", n=1).str[1])  # noqa: E731
    assert keys("M003") == keys("W009")
    # actor / emotion filters
    sub = ds.build_table(
        "mead", {"kind": "mead", "root": str(root), "actors": ["W009"], "emotions": ["happy"]}
    )
    assert set(sub["actor"]) == {"W009"} and set(sub["emotion"]) == {"happy"} and len(sub) == 8


def test_assign_splits_budget_and_unused():
    rows = [
        {
            "sample_id": f"A_{e}_{i}",
            "actor": "A",
            "emotion": e,
            "intensity": 1,
            "sentence": str(i),
            "duration_s": 10.0,
        }
        for e in ["angry", "sad", "happy"]
        for i in range(10)
    ]
    df = pd.DataFrame(rows)
    split = ds.assign_splits(df, train_s=100.0, test_s=40.0)  # 300 s available > 140 s budget
    dur = df.groupby(split)["duration_s"].sum()
    assert dur["test"] == 40.0 and dur["train"] == 100.0 and dur["unused"] == 160.0
    test_emos = df[split == "test"]["emotion"].value_counts()
    assert test_emos.max() - test_emos.min() <= 1  # round-robin over emotions
    # a single clip stays train; two clips give one of each
    one = ds.assign_splits(df.iloc[:1], 120, 60)
    assert list(one) == ["train"]
    two = ds.assign_splits(df.iloc[:2], 120, 60)
    assert sorted(two) == ["test", "train"]


# ---------------------------------------------------------------- bad input


def test_unknown_crema_emotion_code(mirror, tmp_path):
    _link(mirror / "data/crema-d/1001_DFA_ANG_XX.flv", tmp_path / "1001_DFA_XYZ_XX.flv")
    with pytest.raises(EmoheadInputError) as e:
        ds.build_table("c", {"kind": "crema_d", "root": str(tmp_path)})
    assert "1001_DFA_XYZ_XX.flv" in str(e.value) and "'XYZ'" in str(e.value) and "ANG" in str(e.value)


def test_bad_crema_level_and_name(mirror, tmp_path):
    _link(mirror / "data/crema-d/1001_DFA_ANG_XX.flv", tmp_path / "a" / "1001_DFA_ANG_ZZ.flv")
    with pytest.raises(EmoheadInputError, match="1001_DFA_ANG_ZZ.flv.*intensity code 'ZZ'"):
        ds.build_table("c", {"kind": "crema_d", "root": str(tmp_path / "a")})
    _link(mirror / "data/crema-d/1001_DFA_ANG_XX.flv", tmp_path / "b" / "clip.flv")
    with pytest.raises(EmoheadInputError, match=r"clip.flv.*CREMA-D naming"):
        ds.build_table("c", {"kind": "crema_d", "root": str(tmp_path / "b")})


def test_unknown_mead_emotion(mirror, m4a, tmp_path):
    _link(
        mirror / "data/talking-heads/WDA_AlexandriaOcasioCortez_000.mp4",
        tmp_path / "M1/video/front/bored/level_1/001.mp4",
    )
    with pytest.raises(EmoheadInputError) as e:
        ds.build_table("m", {"kind": "mead", "root": str(tmp_path)})
    assert "bored" in str(e.value) and "surprised" in str(e.value) and "001.mp4" in str(e.value)


def test_mead_video_without_audio(mirror, tmp_path):
    _link(
        mirror / "data/talking-heads/WDA_AlexandriaOcasioCortez_000.mp4",
        tmp_path / "M1/video/front/sad/level_3/007.mp4",
    )
    with pytest.raises(EmoheadInputError, match=r"007.mp4.*no audio file.*m4a"):
        ds.build_table("m", {"kind": "mead", "root": str(tmp_path)})


def test_unreadable_and_empty_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1001_DFA_ANG_XX.flv").write_bytes(os.urandom(4096))
    with pytest.raises(EmoheadInputError, match="1001_DFA_ANG_XX.flv.*(readable|ffmpeg|duration)"):
        ds.build_table("c", {"kind": "crema_d", "root": str(tmp_path / "a")})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "talk.mp4").write_bytes(b"")
    with pytest.raises(EmoheadInputError, match="talk.mp4.*empty"):
        ds.build_table("f", {"kind": "folder", "root": str(tmp_path / "b")})


def test_duplicate_ids(mirror, tmp_path):
    _link(mirror / "data/crema-d/1001_DFA_ANG_XX.flv", tmp_path / "c" / "x" / "1001_DFA_ANG_XX.flv")
    _link(mirror / "data/crema-d/1001_DFA_ANG_XX.flv", tmp_path / "c" / "y" / "1001_DFA_ANG_XX.mp4")
    with pytest.raises(EmoheadInputError, match="duplicate sample id '1001_DFA_ANG_XX'"):
        ds.build_table("c", {"kind": "crema_d", "root": str(tmp_path / "c")})
    _link(mirror / "data/talking-heads/uncrop_Obama.mp4", tmp_path / "f" / "a" / "talk.mp4")
    _link(mirror / "data/talking-heads/uncrop_Obama.mp4", tmp_path / "f" / "b" / "talk.mp4")
    with pytest.raises(EmoheadInputError, match="duplicate sample id 'talk'"):
        ds.build_table("f", {"kind": "folder", "root": str(tmp_path / "f")})


def test_empty_or_missing_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    for kind in ["crema_d", "mead", "folder"]:
        with pytest.raises(EmoheadInputError) as e:
            ds.build_table("d", {"kind": kind, "root": str(tmp_path / "empty")})
        assert str(tmp_path / "empty") in str(e.value) and "expected" in str(e.value)
    with pytest.raises(EmoheadInputError, match="not a directory"):
        ds.build_table("d", {"kind": "folder", "root": str(tmp_path / "missing")})
    with pytest.raises(EmoheadInputError, match="no media assets under prefix"):
        ds.build_table("d", {"kind": "folder", "root": "asset:data/nothing-here"})


def test_asset_root_sha_mismatch(tmp_path):
    from emohead_core.assets import Asset

    mirror = tmp_path / "mirror"
    (mirror / "data" / "x").mkdir(parents=True)
    (mirror / "data" / "x" / "talk.mp4").write_bytes(b"not the pinned file")
    manifest = {"data/x/talk.mp4": Asset(name="data/x/talk.mp4", sha256="0" * 64, mirror="data/x/talk.mp4")}
    with pytest.raises(AssetError, match="sha256 mismatch"):
        ds.build_table("x", {"kind": "folder", "root": "asset:data/x"}, mirror=mirror, manifest=manifest)


def test_table_roundtrip_and_duration_cache(mirror, tmp_path):
    import json
    import shutil

    root = tmp_path / "c"
    root.mkdir()
    for f in ["1001_DFA_ANG_XX.flv", "1002_DFA_ANG_XX.mp3"]:
        shutil.copy(mirror / "data/crema-d" / f, root / f)
    spec = {"kind": "crema_d", "root": str(root)}
    cache = tmp_path / "cache.json"
    df = ds.build_table("c", spec, cache_path=cache)
    ds.write_table(df, tmp_path / "samples.parquet")
    back = ds.read_table(tmp_path / "samples.parquet")
    pd.testing.assert_frame_equal(df, back, check_dtype=False)
    assert back["intensity"].dtype == "Int64"
    # cached durations are used while size and mtime are unchanged, re-probed after a change
    data = json.loads(cache.read_text())
    key = str((root / "1002_DFA_ANG_XX.mp3").resolve())
    data[key][2] = 99.0
    cache.write_text(json.dumps(data))
    assert (
        ds.build_table("c", spec, cache_path=cache).set_index("sample_id").at["1002_DFA_ANG_XX", "duration_s"]
        == 99.0
    )
    os.utime(root / "1002_DFA_ANG_XX.mp3", ns=(1, 1))
    d = ds.build_table("c", spec, cache_path=cache).set_index("sample_id").at["1002_DFA_ANG_XX", "duration_s"]
    assert abs(d - 2.61) < 0.06


def test_exclude_drops_broken_files(mirror, tmp_path):
    _link(mirror / "data/crema-d/1001_DFA_ANG_XX.flv", tmp_path / "1001_DFA_ANG_XX.flv")
    (tmp_path / "1001_DFA_SAD_XX.flv").write_bytes(b"broken")
    with pytest.raises(
        EmoheadInputError, match=r"(?s)1001_DFA_SAD_XX.flv: not a readable.*datasets.c.exclude"
    ):
        ds.build_table("c", {"kind": "crema_d", "root": str(tmp_path)})
    df = ds.build_table("c", {"kind": "crema_d", "root": str(tmp_path), "exclude": ["1001_DFA_SAD_XX"]})
    assert list(df["sample_id"]) == ["1001_DFA_ANG_XX"]


def test_mead_clips_from_the_mirror_are_labelled_video_only_samples(mirror, tmp_path):
    """The mirror's MEAD style clips (kind mead_clips): eight emotions per actor, each row
    labelled from its file name, no audio (the clips have no sound track)."""
    spec = {"kind": "mead_clips", "root": "asset:data/mead-clips"}
    df = ds.build_table("mead", spec, mirror=mirror, resources_dir="res", cache_path=tmp_path / "c.json")
    assert len(df) == 24 and set(df["actor"]) == {"M030", "W009", "W011"}
    m030 = df[df["actor"] == "M030"]
    assert sorted(m030["emotion"]) == sorted(ds.EMOTIONS)
    row = df.set_index("sample_id").loc["M030_angry_level3_001"]
    assert row["intensity"] == 3 and row["audio_path"] == "" and row["video_path"].endswith(".mp4")
    assert df.set_index("sample_id").loc["W009_neutral_level1_001", "intensity"] == 1
    assert (df["split"] == "train").all()


def test_mead_clips_audio_from_a_same_stem_file_or_the_video(mirror, m4a, tmp_path):
    """A same-stem audio file is the clip's speech; a video with a sound track is its own audio;
    other views are ignored; a file named otherwise is a bad file naming the layout."""
    root = tmp_path / "clips"
    flv = mirror / "data/crema-d/1001_DFA_HAP_XX.flv"  # has a sound track
    silent = mirror / "data/mead-clips/M030_front_sad_level3_001.mp4"  # has none
    _link(silent, root / "M030_front_happy_level3_001.mp4")
    _link(m4a, root / "M030_front_happy_level3_001.m4a")
    _link(flv, root / "M031_front_sad_level2_004.flv")
    _link(silent, root / "M030_left_30_sad_level3_001.mp4")
    df = ds.build_table("m", {"kind": "mead_clips", "root": str(root)}, cache_path=tmp_path / "c.json")
    got = df.set_index("sample_id")
    assert sorted(got.index) == ["M030_happy_level3_001", "M031_sad_level2_004"]
    assert got.loc["M030_happy_level3_001", "audio_path"].endswith(".m4a")
    assert got.loc["M031_sad_level2_004", "audio_path"] == got.loc["M031_sad_level2_004", "video_path"]
    _link(silent, root / "clip7.mp4")
    with pytest.raises(EmoheadInputError, match="MEAD clip naming") as e:
        ds.build_table("m", {"kind": "mead_clips", "root": str(root)}, cache_path=tmp_path / "c.json")
    assert "clip7.mp4" in str(e.value)
