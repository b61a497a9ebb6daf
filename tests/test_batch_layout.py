"""Unit tests of the per-clip results layout (emohead_core/layout.py) and of resumable actor
batches (emohead_core/batch.py). Pure Python on tmp_path: no media, no models, well under 10 s."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from emohead_core import layout
from emohead_core.batch import STATE_DIR, BatchError, Clip, fingerprint, run_batch, stash_of
from emohead_core.errors import EmoheadInputError
from emohead_core.io import atomic_path
from emohead_core.layout import Layout, actor_dir, batch_mode, clip_file

R = "results"

# --------------------------------------------------------------------------------------------
# layout.py: paths
# --------------------------------------------------------------------------------------------

EXPECTED = {
    "crop": ("results/mead/crop/M003", "results/mead/crop/M003/M003_x.mp4"),
    "boxes": ("results/mead/crop/M003", "results/mead/crop/M003/M003_x.boxes.parquet"),
    "audio": ("results/mead/audio/M003", "results/mead/audio/M003/M003_x.wav"),
    "expression": ("results/mead/expression/M003", "results/mead/expression/M003/M003_x.parquet"),
    "features": ("results/mead/features/hubert/M003", "results/mead/features/hubert/M003/M003_x.parquet"),
    "transcript": ("results/mead/transcripts/M003", "results/mead/transcripts/M003/M003_x.parquet"),
}


def test_expected_covers_every_kind():
    assert set(EXPECTED) == set(layout.KINDS)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_clip_file_and_actor_dir_paths(kind):
    enc = "hubert" if kind == "features" else None
    want_dir, want_file = EXPECTED[kind]
    assert actor_dir(R, "mead", kind, "M003", enc) == want_dir
    f = clip_file(R, "mead", kind, "M003", "M003_x", enc)
    assert f == want_file
    assert os.path.dirname(f) == actor_dir(R, "mead", kind, "M003", enc)
    assert str(Path(f).parent) == want_dir


def test_every_kind_writes_into_a_clip_stage():
    # Layout.dep only maps stages listed in CLIP_STAGES: a kind outside would never be batched
    for kind, (stage, _) in layout.KINDS.items():
        assert stage in layout.CLIP_STAGES, kind


def test_encoder_ignored_outside_features():
    assert actor_dir(R, "mead", "crop", "M003", "hubert") == "results/mead/crop/M003"
    assert clip_file(R, "mead", "audio", "M003", "s", "hubert") == "results/mead/audio/M003/s.wav"


def test_features_encoder_is_part_of_the_path():
    a = clip_file(R, "mead", "features", "M003", "s", "hubert")
    b = clip_file(R, "mead", "features", "M003", "s", "wav2vec2")
    assert a != b and "/wav2vec2/" in b


@pytest.mark.parametrize("enc", [None, ""])
def test_features_without_encoder_raises(enc):
    with pytest.raises(ValueError, match="encoder"):
        actor_dir(R, "mead", "features", "M003", enc)
    with pytest.raises(ValueError, match="encoder"):
        clip_file(R, "mead", "features", "M003", "s", enc)


def test_unknown_kind_raises():
    with pytest.raises(KeyError):
        clip_file(R, "mead", "video", "M003", "s")


@pytest.mark.parametrize("bad", ["", "a/b", "/abs", "M003/", ".", ".."])
@pytest.mark.parametrize("kind", ["crop", "features"])
def test_bad_actor_raises(bad, kind):
    with pytest.raises(EmoheadInputError, match="actor"):
        actor_dir(R, "mead", kind, bad, "hubert")
    with pytest.raises(EmoheadInputError, match="actor"):
        clip_file(R, "mead", kind, bad, "s", "hubert")


@pytest.mark.parametrize("bad", ["", "a/b", "../x", ".", ".."])
@pytest.mark.parametrize("kind", ["crop", "boxes", "features"])
def test_bad_sample_raises(bad, kind):
    with pytest.raises(EmoheadInputError, match="sample"):
        clip_file(R, "mead", kind, "M003", bad, "hubert")


def test_numeric_actor_is_stringified():
    # CREMA-D actors are numbers (1001): a sample table may hold ints
    assert (
        clip_file(R, "crema_d", "audio", 1001, "1001_DFA_ANG_XX")
        == "results/crema_d/audio/1001/1001_DFA_ANG_XX.wav"
    )


# --------------------------------------------------------------------------------------------
# layout.py: batch mode
# --------------------------------------------------------------------------------------------


def _cfg(**datasets):
    return {"datasets": datasets}


@pytest.mark.parametrize("kind,mode", [("mead", "actor"), ("crema_d", "actor"), ("folder", "clip")])
def test_batch_mode_defaults(kind, mode):
    assert batch_mode(_cfg(ds={"kind": kind}), "ds") == mode


def test_batch_mode_default_for_unknown_or_missing_kind_is_clip():
    assert batch_mode(_cfg(ds={"kind": "something"}), "ds") == "clip"
    assert batch_mode(_cfg(ds={}), "ds") == "clip"


@pytest.mark.parametrize(
    "kind,explicit", [("mead", "clip"), ("crema_d", "clip"), ("folder", "actor"), ("mead", "actor")]
)
def test_batch_mode_explicit_override(kind, explicit):
    assert batch_mode(_cfg(ds={"kind": kind, "batch": explicit}), "ds") == explicit


@pytest.mark.parametrize("bad", ["per_actor", "Actor", "clips"])
def test_batch_mode_unknown_raises_naming_the_key(bad):
    with pytest.raises(EmoheadInputError) as ei:
        batch_mode(_cfg(mydata={"kind": "mead", "batch": bad}), "mydata")
    msg = str(ei.value)
    assert "datasets.mydata.batch" in msg
    assert repr(bad) in msg
    assert "clip" in msg and "actor" in msg  # the fix lists the valid modes
    assert "datasets.mydata.batch" in ei.value.path


def test_batch_mode_unknown_dataset_raises():
    with pytest.raises(KeyError):
        batch_mode(_cfg(a={"kind": "mead"}), "b")


# --------------------------------------------------------------------------------------------
# layout.py: Layout.dep / deps
# --------------------------------------------------------------------------------------------

CONFIG = {
    "results_dir": "res",
    "datasets": {
        "mead": {"kind": "mead"},
        "cremad": {"kind": "crema_d"},
        "vids": {"kind": "folder"},
        "mead_clip": {"kind": "mead", "batch": "clip"},
        "vids_actor": {"kind": "folder", "batch": "actor"},
    },
}


def test_from_config():
    lay = Layout.from_config(CONFIG)
    assert lay.results == "res"
    assert lay.actor_datasets == {"mead", "cremad", "vids_actor"}
    assert [lay.mode(d) for d in CONFIG["datasets"]] == ["actor", "actor", "clip", "clip", "actor"]
    assert lay.mode("unconfigured") == "clip"
    assert Layout.from_config(CONFIG, "elsewhere/").results == "elsewhere"
    assert Layout.from_config({"datasets": {}}).results == "results"


def test_from_config_raises_on_bad_mode():
    with pytest.raises(EmoheadInputError, match="datasets.x.batch"):
        Layout.from_config({"datasets": {"x": {"kind": "mead", "batch": "nope"}}})


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_dep_actor_mode_maps_clip_file_to_actor_dir(kind):
    lay = Layout(R, ["mead"])
    enc = "hubert" if kind == "features" else None
    f = clip_file(R, "mead", kind, "M003", "M003_x", enc)
    assert lay.dep(f) == actor_dir(R, "mead", kind, "M003", enc)
    assert lay.dep(Path(f)) == actor_dir(R, "mead", kind, "M003", enc)


def test_dep_features_maps_to_encoder_actor_dir():
    lay = Layout(R, ["mead"])
    assert lay.dep("results/mead/features/hubert/M003/s.parquet") == "results/mead/features/hubert/M003"
    # a features file one level too shallow (no encoder) is not a per-clip file
    assert lay.dep("results/mead/features/M003/s.parquet") == "results/mead/features/M003/s.parquet"
    # a features file one level too deep neither
    deep = "results/mead/features/hubert/M003/sub/s.parquet"
    assert lay.dep(deep) == deep


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_dep_clip_mode_is_identity(kind):
    lay = Layout(R, ["mead"])
    enc = "hubert" if kind == "features" else None
    f = clip_file(R, "vids", kind, "person", "clip1", enc)
    assert lay.dep(f) == f
    # no actor datasets at all
    assert Layout(R, []).dep(f) == f


@pytest.mark.parametrize(
    "path",
    [
        "elsewhere/mead/crop/M003/s.mp4",  # outside results
        "results2/mead/crop/M003/s.mp4",  # sibling directory sharing the prefix
        "/abs/results/mead/crop/M003/s.mp4",
        "results/mead/hyperplanes/M003/hyperplanes.json",  # non-clip stage, clip depth
        "results/mead/hyperplanes/A/hyperplanes.json",
        "results/mead/samples.parquet",  # dataset-level file
        "results/mead/crop/M003",  # the actor directory itself
        "results/mead/crop/M003/sub/s.mp4",  # too deep
        "results/mead/crop",  # too shallow
        "results/mead",
        "results/meadx/crop/M003/s.mp4",  # dataset with an actor dataset's name as prefix
        "results/crop/mead/M003/s.mp4",  # stage and dataset swapped
        "results/mead/features/hubert/M003",  # features actor dir itself
        "results/mead/crop/M003.mp4",  # depth 3
    ],
)
def test_dep_non_clip_paths_map_to_themselves(path):
    lay = Layout(R, ["mead"])
    assert lay.dep(path) == path


def test_dep_every_clip_stage_in_actor_mode():
    lay = Layout(R, ["mead"])
    for stage in layout.CLIP_STAGES:
        if stage == "features":
            continue
        assert lay.dep(f"results/mead/{stage}/M003/s.any") == f"results/mead/{stage}/M003"


def test_dep_results_with_trailing_slash():
    lay = Layout("results/", ["mead"])
    assert lay.results == "results"
    assert lay.dep("results/mead/crop/M003/s.mp4") == "results/mead/crop/M003"
    assert lay.dep("results/mead/features/hubert/M003/s.parquet") == "results/mead/features/hubert/M003"
    assert lay.dep("results/vids/crop/p/s.mp4") == "results/vids/crop/p/s.mp4"


def test_dep_nested_results_dir():
    lay = Layout("/scratch/u/results", ["mead"])
    assert lay.dep("/scratch/u/results/mead/audio/M003/s.wav") == "/scratch/u/results/mead/audio/M003"
    assert lay.dep("results/mead/audio/M003/s.wav") == "results/mead/audio/M003/s.wav"


def test_deps_dedups_preserving_order_and_drops_empty():
    lay = Layout(R, ["mead"])
    paths = [
        "results/mead/crop/M003/a.mp4",
        "",
        "other/file.txt",
        "results/mead/crop/M003/b.mp4",  # same actor dir: dropped
        "results/vids/audio/p/c.wav",
        None,
        "results/mead/crop/M003/a.boxes.parquet",  # same actor dir again
        "results/mead/crop/W009/a.mp4",
        "other/file.txt",  # duplicate plain path
        "results/mead/audio/M003/a.wav",
    ]
    assert lay.deps(paths) == [
        "results/mead/crop/M003",
        "other/file.txt",
        "results/vids/audio/p/c.wav",
        "results/mead/crop/W009",
        "results/mead/audio/M003",
    ]
    assert lay.deps([]) == []
    assert lay.deps(iter(["", ""])) == []
    assert Layout(R, []).deps(["x", "y", "x", ""]) == ["x", "y"]


def test_deps_returns_strings_for_paths():
    lay = Layout(R, ["mead"])
    out = lay.deps([Path("results/mead/crop/M003/a.mp4"), Path("x/y")])
    assert out == ["results/mead/crop/M003", "x/y"]
    assert all(type(p) is str for p in out)


def test_dep_of_clip_file_built_with_trailing_slash_results():
    res = "results/"
    lay = Layout(res, ["mead"])
    f = clip_file(res, "mead", "crop", "M003", "s")
    assert lay.dep(f) == lay.dep(actor_dir(res, "mead", "crop", "M003") + "/s.mp4")
    assert lay.dep(f).rstrip("/").endswith("mead/crop/M003")
    assert os.path.normpath(lay.dep(f)) == "results/mead/crop/M003"


# --------------------------------------------------------------------------------------------
# batch.py
# --------------------------------------------------------------------------------------------


class Worker:
    """Work function writing ``{sample}|{role}|{tag}`` to each target through atomic_path.

    fail: samples raising RuntimeError after writing their first target; interrupt: samples
    raising KeyboardInterrupt mid-write; lazy: samples returning without writing anything."""

    def __init__(self, tag="v1", fail=(), interrupt=(), lazy=(), fail_after=()):
        self.tag, self.fail, self.interrupt, self.lazy = tag, set(fail), set(interrupt), set(lazy)
        self.fail_after = set(fail_after)
        self.calls: list[str] = []

    def __call__(self, clip: Clip, targets: dict[str, Path]) -> None:
        self.calls.append(clip.sample)
        if clip.sample in self.lazy:
            return None
        for n, (role, path) in enumerate(targets.items()):
            assert path.name == clip.outputs[role][1]
            with atomic_path(path) as tmp:
                tmp.write_text(f"{clip.sample}|{role}|{self.tag}")
                if clip.sample in self.interrupt:
                    raise KeyboardInterrupt
                if clip.sample in self.fail and n > 0:
                    raise RuntimeError("decoder exploded")
        if clip.sample in self.fail:  # single-output clip
            raise RuntimeError("decoder exploded")
        if clip.sample in self.fail_after:  # every file written, then an error
            raise RuntimeError("late failure")


@pytest.fixture
def env(tmp_path):
    """Inputs of four clips; outputs crop/M003 (index 0) and audio/M003 (index 1).

    A, B, D: video clips writing {s}.mp4 + {s}.boxes.parquet into dir 0 and {s}.wav into dir 1;
    C: audio-only, writing only C.wav into dir 1."""
    inp = tmp_path / "in"
    inp.mkdir()
    for s in "ABCD":
        (inp / f"{s}.wav").write_text(f"audio {s}")
        if s != "C":
            (inp / f"{s}.flv").write_text(f"video {s}")
    out0 = tmp_path / "results" / "mead" / "crop" / "M003"
    out1 = tmp_path / "results" / "mead" / "audio" / "M003"

    def clip(s):
        if s == "C":
            return Clip(s, {"video": "", "audio": str(inp / "C.wav")}, {"audio": (1, "C.wav")})
        return Clip(
            s,
            {"video": str(inp / f"{s}.flv"), "audio": str(inp / f"{s}.wav")},
            {"video": (0, f"{s}.mp4"), "boxes": (0, f"{s}.boxes.parquet"), "audio": (1, f"{s}.wav")},
        )

    class Env:
        pass

    e = Env()
    e.inp, e.out0, e.out1, e.clip = inp, out0, out1, clip
    e.clips3 = [clip(s) for s in "ABC"]
    e.clips4 = [clip(s) for s in "ABCD"]
    return e


def _listing(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def _files(samples) -> tuple[set[str], set[str]]:
    d0, d1 = set(), set()
    for s in samples:
        if s != "C":
            d0 |= {f"{s}.mp4", f"{s}.boxes.parquet"}
        d1.add(f"{s}.wav")
    return d0, d1


def _assert_final(e, samples, tag="v1"):
    d0, d1 = _files(samples)
    assert _listing(e.out0) == d0
    assert _listing(e.out1) == d1
    for name in d0:
        role = "boxes" if name.endswith(".boxes.parquet") else "video"
        assert (e.out0 / name).read_text() == f"{name.split('.')[0]}|{role}|{tag}"
    for name in d1:
        assert (e.out1 / name).read_text() == f"{name.split('.')[0]}|audio|{tag}"
    assert not stash_of(e.out0).exists()
    assert not stash_of(e.out1).exists()
    assert not (e.out0 / STATE_DIR).exists() and not (e.out1 / STATE_DIR).exists()
    # nothing else left beside the outputs (no stash, no temps)
    assert sorted(p.name for p in e.out0.parent.iterdir()) == ["M003"]
    assert sorted(p.name for p in e.out1.parent.iterdir()) == ["M003"]


def _counts(c):
    return {k: c[k] for k in ("clips", "computed", "reused", "failed")}


def test_stash_of():
    assert stash_of("results/mead/crop/M003") == Path("results/mead/crop/.M003.partial")
    assert stash_of(Path("/a/b/M003/")) == Path("/a/b/.M003.partial")
    assert stash_of("x").parent == Path(".")


def test_batch_error_is_input_error():
    assert issubclass(BatchError, EmoheadInputError)


def test_success(env):
    w = Worker()
    counts = run_batch([env.out0, env.out1], env.clips3, w, params={"p": 1}, desc="pre M003")
    assert _counts(counts) == {"clips": 3, "computed": 3, "reused": 0, "failed": 0}
    assert isinstance(counts["seconds"], float) and counts["seconds"] >= 0
    assert w.calls == ["A", "B", "C"]
    _assert_final(env, "ABC")
    # C (audio-only) wrote nothing into dir 0
    assert not any(p.name.startswith("C") for p in env.out0.iterdir())


def test_accepts_str_out_dirs(env):
    counts = run_batch([str(env.out0), str(env.out1)], env.clips3, Worker(), params={})
    assert counts["computed"] == 3
    _assert_final(env, "ABC")


def test_out_dir_without_outputs_still_created(env):
    # only audio-only clips: dir 0 gets no file but must exist (a directory() output)
    run_batch([env.out0, env.out1], [env.clip("C")], Worker(), params={})
    assert env.out0.is_dir() and _listing(env.out0) == set()
    assert _listing(env.out1) == {"C.wav"}


def test_empty_batch(env):
    counts = run_batch([env.out0, env.out1], [], Worker(), params={})
    assert _counts(counts) == {"clips": 0, "computed": 0, "reused": 0, "failed": 0}
    assert env.out0.is_dir() and env.out1.is_dir()
    assert _listing(env.out0) == set() and _listing(env.out1) == set()


def test_failing_clip_then_fixed_rerun(env):
    out = [env.out0, env.out1]
    bad = Worker(fail={"B"})
    with pytest.raises(BatchError) as ei:
        run_batch(out, env.clips4, bad, params={"p": 1}, desc="preprocess M003")
    msg = str(ei.value)
    # names the failed sample, its input files, the error, and nothing about good clips
    assert "B (" in msg
    assert str(env.inp / "B.flv") in msg and str(env.inp / "B.wav") in msg
    assert "decoder exploded" in msg
    assert "1 of 4 clips failed in preprocess M003" in msg
    for good in "ACD":
        assert f"  {good} (" not in msg
    assert ei.value.path == str(env.out0)
    assert ei.value.fix and str(stash_of(env.out0)) in ei.value.fix and "3 finished" in ei.value.fix
    # the clips after the failure were still processed
    assert bad.calls == ["A", "B", "C", "D"]
    # no output directory, the good clips are in the stash
    assert not env.out0.exists() and not env.out1.exists()
    s0, s1 = stash_of(env.out0), stash_of(env.out1)
    for name in ("A.mp4", "A.boxes.parquet", "D.mp4", "D.boxes.parquet"):
        assert (s0 / name).is_file()
    for name in ("A.wav", "C.wav", "D.wav"):
        assert (s1 / name).is_file()
    state = s0 / STATE_DIR
    assert {p.name for p in state.iterdir()} == {"A.json", "C.json", "D.json"}
    assert json.loads((state / "A.json").read_text())["fingerprint"] == fingerprint(env.clip("A"), {"p": 1})
    # atomic writes: the failed write left no temp file, and B's wav was never written
    assert not [p for p in s0.iterdir() if ".tmp" in p.name]
    assert not [p for p in s1.iterdir() if ".tmp" in p.name]
    assert not (s1 / "B.wav").exists()

    good = Worker()
    counts = run_batch(out, env.clips4, good, params={"p": 1}, desc="preprocess M003")
    assert good.calls == ["B"]
    assert _counts(counts) == {"clips": 4, "computed": 1, "reused": 3, "failed": 0}
    _assert_final(env, "ABCD")


def test_several_failures_all_named(env):
    w = Worker(fail={"A", "C"})
    with pytest.raises(BatchError) as ei:
        run_batch([env.out0, env.out1], env.clips4, w, params={})
    msg = str(ei.value)
    assert "2 of 4 clips failed" in msg
    assert f"A ({env.inp / 'A.flv'}, {env.inp / 'A.wav'})" in msg
    # audio-only clip: its empty video input is not listed
    assert f"C ({env.inp / 'C.wav'})" in msg
    assert w.calls == ["A", "B", "C", "D"]
    assert not env.out0.exists() and not env.out1.exists()


def test_rerun_still_failing_keeps_failing(env):
    out = [env.out0, env.out1]
    with pytest.raises(BatchError):
        run_batch(out, env.clips3, Worker(fail={"B"}), params={})
    again = Worker(fail={"B"})
    with pytest.raises(BatchError, match="1 of 3"):
        run_batch(out, env.clips3, again, params={})
    assert again.calls == ["B"]  # A, C reused; B retried
    assert not env.out0.exists()


def test_params_change_recomputes_all(env):
    out = [env.out0, env.out1]
    with pytest.raises(BatchError):
        run_batch(out, env.clips3, Worker(fail={"C"}), params={"crop_size": 256})
    w = Worker(tag="v2")
    counts = run_batch(out, env.clips3, w, params={"crop_size": 512})
    assert w.calls == ["A", "B", "C"]
    assert _counts(counts) == {"clips": 3, "computed": 3, "reused": 0, "failed": 0}
    _assert_final(env, "ABC", tag="v2")  # A, B overwritten with the new version


def test_same_params_reused(env):
    out = [env.out0, env.out1]
    with pytest.raises(BatchError):
        run_batch(out, env.clips3, Worker(fail={"C"}), params={"opts": {"a": 1, "b": [1, 2]}})
    w = Worker(tag="v2")
    # equal params (other dict order) -> same fingerprint
    counts = run_batch(out, env.clips3, w, params={"opts": {"b": [1, 2], "a": 1}})
    assert w.calls == ["C"]
    assert _counts(counts) == {"clips": 3, "computed": 1, "reused": 2, "failed": 0}
    assert (env.out0 / "A.mp4").read_text() == "A|video|v1"
    assert (env.out1 / "C.wav").read_text() == "C|audio|v2"


@pytest.mark.parametrize("change", ["mtime", "size", "delete"])
def test_input_change_recomputes_only_that_clip(env, change):
    out = [env.out0, env.out1]
    with pytest.raises(BatchError):
        run_batch(out, env.clips4, Worker(fail={"D"}), params={})
    f = env.inp / "B.flv"
    st = f.stat()
    if change == "mtime":  # same size, newer mtime
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    elif change == "size":  # same mtime, other size
        f.write_text("video B, re-encoded")
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        f.unlink()
    w = Worker(tag="v2")
    counts = run_batch(out, env.clips4, w, params={})
    assert w.calls == ["B", "D"]
    assert _counts(counts) == {"clips": 4, "computed": 2, "reused": 2, "failed": 0}
    assert (env.out0 / "A.mp4").read_text() == "A|video|v1"
    assert (env.out0 / "B.mp4").read_text() == "B|video|v2"
    assert (env.out1 / "B.wav").read_text() == "B|audio|v2"


def test_missing_stash_target_recomputes(env):
    out = [env.out0, env.out1]
    with pytest.raises(BatchError):
        run_batch(out, env.clips3, Worker(fail={"C"}), params={})
    (stash_of(env.out1) / "A.wav").unlink()  # marker matches, a target is gone
    w = Worker(tag="v2")
    run_batch(out, env.clips3, w, params={})
    assert w.calls == ["A", "C"]
    assert (env.out1 / "A.wav").read_text() == "A|audio|v2"


def test_failed_redo_of_a_marked_clip_is_not_reused(env):
    """A clip with a valid marker that is redone (a target went missing) and fails after
    rewriting all its files must not count as done on the next run."""
    out = [env.out0, env.out1]
    with pytest.raises(BatchError):
        run_batch(out, env.clips3, Worker(fail={"C"}), params={})
    (stash_of(env.out1) / "A.wav").unlink()
    with pytest.raises(BatchError, match="late failure"):
        run_batch(out, env.clips3, Worker(tag="bad", fail_after={"A"}), params={})
    assert not (stash_of(env.out0) / STATE_DIR / "A.json").exists()
    w = Worker(tag="v2")
    run_batch(out, env.clips3, w, params={})
    assert w.calls == ["A"]
    assert (env.out1 / "A.wav").read_text() == "A|audio|v2"


def test_corrupt_marker_recomputes(env):
    out = [env.out0, env.out1]
    with pytest.raises(BatchError):
        run_batch(out, env.clips3, Worker(fail={"C"}), params={})
    (stash_of(env.out0) / STATE_DIR / "B.json").write_text("{not json")
    w = Worker()
    counts = run_batch(out, env.clips3, w, params={})
    assert w.calls == ["B", "C"]
    assert counts["reused"] == 1


def test_fingerprint_properties(env):
    a = env.clip("A")
    fp = fingerprint(a, {"x": 1})
    assert fp == fingerprint(env.clip("A"), {"x": 1})  # deterministic
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert fingerprint(a, {"x": 2}) != fp
    assert fingerprint(a, {"x": 1, "y": None}) != fp
    assert fingerprint(env.clip("B"), {"x": 1}) != fp
    # outputs are part of the identity
    other_out = Clip("A", a.inputs, {**a.outputs, "audio": (1, "A.flac")})
    assert fingerprint(other_out, {"x": 1}) != fp
    # input content change (size) and mtime change
    f = env.inp / "A.wav"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert fingerprint(a, {"x": 1}) != fp
    # input path change with same content
    moved = Clip("A", {**a.inputs, "audio": str(env.inp / "B.wav")}, a.outputs)
    assert fingerprint(moved, {"x": 1}) != fingerprint(a, {"x": 1})


def test_fingerprint_missing_and_empty_inputs(env):
    c = Clip("Z", {"video": "", "audio": str(env.inp / "nope.wav")}, {"audio": (1, "Z.wav")})
    fp = fingerprint(c, {})
    # an empty input is skipped, a missing one fingerprints (appearing later changes it)
    assert fingerprint(Clip("Z", {"audio": str(env.inp / "nope.wav")}, c.outputs), {}) == fp
    (env.inp / "nope.wav").write_text("now here")
    assert fingerprint(c, {}) != fp


def test_fingerprint_non_json_params(env):
    a = env.clip("A")
    fp = fingerprint(a, {"model": Path("/m/x.onnx"), "t": (1, 2)})
    assert fp == fingerprint(a, {"model": Path("/m/x.onnx"), "t": (1, 2)})
    assert fp != fingerprint(a, {"model": Path("/m/y.onnx"), "t": (1, 2)})


def test_dropped_clip_and_stray_temp_removed(env):
    out = [env.out0, env.out1]
    # first run with D, failing on C so the stash stays
    with pytest.raises(BatchError):
        run_batch(out, env.clips4, Worker(fail={"C"}), params={})
    s0, s1 = stash_of(env.out0), stash_of(env.out1)
    assert (s0 / "D.mp4").exists() and (s1 / "D.wav").exists()
    # leftovers of a killed write and a stray directory
    (s0 / ".A.abc123.tmp.mp4").write_text("partial")
    (s1 / ".Z.xyz.tmp.wav").write_text("partial")
    (s1 / "junkdir").mkdir()
    (s1 / "junkdir" / "f").write_text("x")
    # D removed from the batch (e.g. excluded)
    w = Worker()
    counts = run_batch(out, env.clips3, w, params={})
    assert w.calls == ["C"]
    assert _counts(counts) == {"clips": 3, "computed": 1, "reused": 2, "failed": 0}
    _assert_final(env, "ABC")


def test_extra_file_written_by_work_is_dropped(env):
    def work(clip, targets):
        Worker()(clip, targets)
        for p in targets.values():
            (p.parent / f"{clip.sample}.debug.log").write_text("dbg")

    run_batch([env.out0, env.out1], env.clips3, work, params={})
    _assert_final(env, "ABC")


def test_clip_writing_nothing_fails(env):
    w = Worker(lazy={"B"})
    with pytest.raises(BatchError) as ei:
        run_batch([env.out0, env.out1], env.clips3, w, params={})
    msg = str(ei.value)
    assert "produced no" in msg
    assert "B (" in msg
    assert str(stash_of(env.out0) / "B.mp4") in msg
    assert "1 of 3" in msg
    assert w.calls == ["A", "B", "C"]
    assert not (stash_of(env.out0) / STATE_DIR / "B.json").exists()
    assert not env.out0.exists()


def test_clip_writing_only_some_targets_fails(env):
    def work(clip, targets):
        for role, p in targets.items():
            if clip.sample == "A" and role == "boxes":
                continue
            with atomic_path(p) as tmp:
                tmp.write_text("x")

    with pytest.raises(BatchError, match="produced no") as ei:
        run_batch([env.out0, env.out1], env.clips3, work, params={})
    assert "A.boxes.parquet" in str(ei.value)
    assert "A.mp4" not in str(ei.value).split("produced no", 1)[1]


def test_duplicate_sample_ids(env):
    w = Worker()
    with pytest.raises(ValueError, match="duplicate"):
        run_batch([env.out0, env.out1], [env.clip("A"), env.clip("B"), env.clip("A")], w, params={})
    assert w.calls == []
    assert not env.out0.exists() and not env.out1.exists()


def test_kill_mid_batch_then_resume(env):
    out = [env.out0, env.out1]
    killed = Worker(interrupt={"C"})  # third clip
    with pytest.raises(KeyboardInterrupt):
        run_batch(out, env.clips4, killed, params={"p": 1})
    assert killed.calls == ["A", "B", "C"]  # D never started
    assert not env.out0.exists() and not env.out1.exists()
    s0, s1 = stash_of(env.out0), stash_of(env.out1)
    assert {p.name for p in (s0 / STATE_DIR).iterdir()} == {"A.json", "B.json"}
    assert not [p for p in s1.iterdir() if ".tmp" in p.name]  # atomic_path cleaned up
    assert not (s1 / "C.wav").exists()

    w = Worker()
    counts = run_batch(out, env.clips4, w, params={"p": 1})
    assert w.calls == ["C", "D"]
    assert _counts(counts) == {"clips": 4, "computed": 2, "reused": 2, "failed": 0}
    _assert_final(env, "ABCD")


def test_kill_after_write_before_marker_recomputes(env):
    """A clip whose files are in the stash but whose marker is missing is redone."""
    out = [env.out0, env.out1]
    with pytest.raises(KeyboardInterrupt):
        run_batch(out, env.clips3, Worker(interrupt={"C"}), params={})
    (stash_of(env.out0) / STATE_DIR / "B.json").unlink()
    w = Worker(tag="v2")
    run_batch(out, env.clips3, w, params={})
    assert w.calls == ["B", "C"]
    assert (env.out0 / "B.mp4").read_text() == "B|video|v2"


def test_existing_output_dir_replaced(env):
    for d in (env.out0, env.out1):
        d.mkdir(parents=True)
        (d / "old.mp4").write_text("from a manual run")
        (d / "A.wav").write_text("stale")
        (d / "sub").mkdir()
        (d / "sub" / "x").write_text("x")
    counts = run_batch([env.out0, env.out1], env.clips3, Worker(), params={})
    assert counts["computed"] == 3
    _assert_final(env, "ABC")


def test_rerun_after_success_recomputes_into_fresh_dirs(env):
    out = [env.out0, env.out1]
    run_batch(out, env.clips3, Worker(), params={})
    w = Worker(tag="v2")
    counts = run_batch(out, env.clips3, w, params={})
    # the stash and markers were consumed by the first run: everything is redone
    assert w.calls == ["A", "B", "C"] and counts["computed"] == 3
    _assert_final(env, "ABC", tag="v2")


def test_stashes_command_lists_and_removes_unfinished_batches(tmp_path, capsys):
    """`emohead stashes`: a failed batch's stash is listed with its finished clips, then removed."""
    from emohead_core.batch import find_stashes
    from emohead_core.cli import main

    res = tmp_path / "results"
    out_dir = res / "mead" / "crop" / "M003"
    clips = [Clip(s, {}, {"out": (0, f"{s}.txt")}) for s in ("a", "b", "c")]

    def work(clip, targets):
        if clip.sample == "b":
            raise ValueError("no face")
        with atomic_path(targets["out"]) as tmp:
            tmp.write_text(clip.sample)

    with pytest.raises(BatchError):
        run_batch([out_dir], clips, work, params={})
    done = res / "mead" / "features" / "whisper" / "W001"  # a finished batch leaves no stash
    run_batch([done], clips[:1], work, params={})
    found = find_stashes(res)
    assert [f["path"] for f in found] == [str(stash_of(out_dir))]
    assert found[0]["finished_clips"] == 2 and found[0]["bytes"] >= 2  # 2 outputs + markers
    assert main(["stashes", str(res)]) == 0
    assert "M003.partial\t2 finished clips" in capsys.readouterr().out
    assert stash_of(out_dir).is_dir()  # listing keeps it
    assert main(["stashes", str(res), "--remove"]) == 0
    assert not stash_of(out_dir).exists() and find_stashes(res) == [] and done.is_dir()
