"""Actor batches and per-clip jobs write identical files (``datasets.<name>.batch``).

Real Snakemake runs on a CREMA-D subset (two actor-1001 videos, one actor-1002 audio-only clip),
preprocess + expression + features, in two temporary copies of the workflow: once with
``batch: actor`` (rules preprocess_actor, expression_actor, features_actor: one job per actor
and step writes the actor's directory) and once with ``batch: clip`` (crop_video, extract_audio,
expression_extract, features_prefill/audio/text/transcript: one job per clip and step). Both
must produce the same per-clip files under ``results/cremad/<step>/{actor}/`` with the same
contents. Each copy has its own feature store (``results/.cache``), so the runs are independent.

The second test SIGKILLs an actor run while rule preprocess_actor is between two clips, reruns
it with ``--rerun-incomplete`` and checks that the finished clip was reused from the batch's
stash (emohead_core/batch.py) and that the outputs equal the uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import copy_workflow

from emohead_core import layout as L

BIN = Path(sys.executable).parent
DS = "cremad"
# sample -> (actor, has video); `datasets.cremad.include` matches the stems
CLIPS = {
    "1001_DFA_HAP_XX": ("1001", True),
    "1001_DFA_SAD_XX": ("1001", True),
    "1002_DFA_HAP_XX": ("1002", False),
}
ACTORS = sorted({a for a, _ in CLIPS.values()})
STAGES = ("crop", "audio", "expression", "features", "transcripts")
COUNTS = re.compile(r"\{'clips': (\d+), 'computed': (\d+), 'reused': (\d+), 'failed': (\d+)")


def _env(mirror):
    return {**os.environ, "EMOHEAD_MIRROR": str(mirror), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _copy_workflow(repo_root, dst, batch):
    copy_workflow(dst)
    # merged recursively over config/demo.yaml (command-line configfiles, in order)
    include = ", ".join(CLIPS)
    (dst / "subset.yaml").write_text(f"datasets:\n  {DS}:\n    include: [{include}]\n    batch: {batch}\n")


def _steps(repo_root):
    """features/{encoder} of the demo's features profile, and transcripts (text encoders)."""
    from emohead_core.config import load_config
    from emohead_core.features.pipeline import encoder_specs

    specs = encoder_specs(load_config(repo_root / "config" / "demo.yaml", validate=False))
    steps = [("features", e) for e in specs]
    if any(s.role == "gamma" for s in specs.values()):
        steps.append(("transcript", None))
    return steps


def _clip_files(steps) -> list[str]:
    """Every per-clip file of the subset (paths relative to the workflow copy)."""
    out = []
    for s, (a, video) in CLIPS.items():
        kinds = [("crop", None), ("boxes", None), ("expression", None)] if video else []
        for kind, enc in kinds + [("audio", None)] + steps:
            out.append(L.clip_file("results", DS, kind, a, s, enc))
    return sorted(out)


def _actor_dirs(steps) -> list[str]:
    out = []
    for a in ACTORS:
        video = any(v for aa, v in CLIPS.values() if aa == a)
        kinds = [("crop", None), ("audio", None)] + ([("expression", None)] if video else []) + steps
        out += [L.actor_dir("results", DS, kind, a, enc) for kind, enc in kinds]
    return out


def _cmd(targets, *extra):
    return [
        str(BIN / "snakemake"),
        *targets,
        "--cores",
        "2",
        "--configfile",
        "config/demo.yaml",
        "subset.yaml",
        *extra,
    ]


def _run_all(jobs, mirror, timeout=900):
    """Run (cmd, cwd) pairs concurrently; [(returncode, stdout + stderr)] in order."""
    procs = [
        subprocess.Popen(
            cmd, cwd=cwd, env=_env(mirror), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for cmd, cwd in jobs
    ]
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    return [(p.returncode, out) for p, out in zip(procs, outs)]


def _job_counts(out: str) -> dict[str, int]:
    """Job stats table of a Snakemake run (first one printed)."""
    stats = out.split("Job stats:", 1)[1].split("\n\n", 1)[0] if "Job stats:" in out else ""
    return {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)\s*$", stats, flags=re.M) if k != "total"}


def _outputs(root: Path) -> dict[str, Path]:
    """Per-clip result files of the stage directories (Snakemake's directory markers aside)."""
    base = root / "results" / DS
    return {
        str(p.relative_to(root)): p
        for st in STAGES
        if (base / st).is_dir()
        for p in (base / st).rglob("*")
        if p.is_file() and p.name != ".snakemake_timestamp"
    }


def _stashes(root: Path) -> list[Path]:
    return [p for p in (root / "results").rglob("*.partial")]


def _batch_counts(log: Path) -> dict[str, int]:
    """The counts an actor batch logs (emohead_core.batch.run_batch; the script prints them)."""
    hits = COUNTS.findall(log.read_text()) if log.is_file() else []
    assert hits, f"no batch counts in {log}"
    return dict(zip(("clips", "computed", "reused", "failed"), map(int, hits[-1])))


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _assert_same_file(rel: str, a: Path, b: Path) -> None:
    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    if rel.endswith(".parquet"):
        da, db = pd.read_parquet(a), pd.read_parquet(b)
        pd.testing.assert_frame_equal(da, db, check_exact=True, obj=rel)
        # the stage metadata too (encoder identity, fps, ...): nothing from the stash or the job
        ma = {k: v for k, v in (pq.read_schema(a).metadata or {}).items() if k != b"pandas"}
        mb = {k: v for k, v in (pq.read_schema(b).metadata or {}).items() if k != b"pandas"}
        assert ma == mb, f"{rel}: Parquet metadata differ"
    elif rel.endswith(".mp4"):
        if _sha(a) != _sha(b):  # same encoder, same input: bytes match; else the frames must
            from emohead_core import media

            fa, fb = list(media.iter_frames(a)), list(media.iter_frames(b))
            assert len(fa) == len(fb), f"{rel}: {len(fa)} vs {len(fb)} frames"
            assert all(np.array_equal(x, y) for x, y in zip(fa, fb)), f"{rel}: decoded frames differ"
    else:  # wav: PCM16 bytes
        assert _sha(a) == _sha(b), f"{rel}: contents differ"


def _assert_same_outputs(a_root: Path, b_root: Path, only=None) -> int:
    a, b = _outputs(a_root), _outputs(b_root)
    if only is not None:
        a = {k: v for k, v in a.items() if only(k)}
        b = {k: v for k, v in b.items() if only(k)}
    assert a and sorted(a) == sorted(b), f"different files: {sorted(set(a) ^ set(b))}"
    for rel in sorted(a):
        _assert_same_file(rel, a[rel], b[rel])
    return len(a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, repo_root, mirror):
    """The subset run once per batch mode (concurrently: two copies, two stores)."""
    root = tmp_path_factory.mktemp("batch")
    steps = _steps(repo_root)
    actor, clip = root / "actor", root / "clip"
    _copy_workflow(repo_root, actor, "actor")
    _copy_workflow(repo_root, clip, "clip")
    cmds = {"actor": _cmd(_actor_dirs(steps)), "clip": _cmd(_clip_files(steps))}
    t0 = time.perf_counter()
    (rc_a, out_a), (rc_c, out_c) = _run_all([(cmds["actor"], actor), (cmds["clip"], clip)], mirror)
    assert rc_a == 0, "actor run:\n" + out_a[-4000:]
    assert rc_c == 0, "clip run:\n" + out_c[-4000:]
    print(f"actor + clip runs: {time.perf_counter() - t0:.1f} s")
    return {
        "actor": actor,
        "clip": clip,
        "steps": steps,
        "cmds": cmds,
        "out": {"actor": out_a, "clip": out_c},
    }


def test_actor_batches_and_clip_jobs_write_identical_files(runs, mirror):
    actor, clip, steps = runs["actor"], runs["clip"], runs["steps"]
    n_steps = len(steps)

    # each mode ran its own rules: one job per actor and step vs one per clip and step
    ja, jc = _job_counts(runs["out"]["actor"]), _job_counts(runs["out"]["clip"])
    n_video = sum(v for _, v in CLIPS.values())
    assert {r: ja.get(r, 0) for r in ("preprocess_actor", "expression_actor", "features_actor")} == {
        "preprocess_actor": len(ACTORS),  # 1002's batch writes wavs only (and an empty crop/1002)
        "expression_actor": 1,  # actors with video
        "features_actor": len(ACTORS) * n_steps,
    }, ja
    assert not {
        "crop_video",
        "extract_audio",
        "expression_extract",
        "features_audio",
        "features_text",
        "features_transcript",
        "features_prefill",
    } & set(ja), ja
    assert {r: jc.get(r, 0) for r in ("crop_video", "extract_audio", "expression_extract")} == {
        "crop_video": n_video,
        "extract_audio": len(CLIPS),
        "expression_extract": n_video,
    }, jc
    assert not {"preprocess_actor", "expression_actor", "features_actor"} & set(jc), jc

    # the same per-clip files (exactly those of the subset), with the same contents
    expect = _clip_files(steps)
    assert sorted(_outputs(actor)) == expect
    assert sorted(_outputs(clip)) == expect
    assert _assert_same_outputs(actor, clip) == len(expect)

    # the actor batches finished: stashes renamed onto the outputs, counts in each log
    assert _stashes(actor) == [] and _stashes(clip) == []
    clips_of = {a: sum(aa == a for aa, _ in CLIPS.values()) for a in ACTORS}
    video_of = {a: sum(v for aa, v in CLIPS.values() if aa == a) for a in ACTORS}
    logs = {}
    for a in ACTORS:
        logs[f"logs/preprocess/preprocess_actor/{DS}/{a}.log"] = clips_of[a]
        if video_of[a]:
            logs[f"logs/expression/expression_actor/{DS}/{a}.log"] = video_of[a]
        for kind, enc in steps:
            step = f"features/{enc}" if kind == "features" else "transcripts"
            logs[f"logs/features/features_actor/{DS}/{step}/{a}.log"] = clips_of[a]
    for log, n in logs.items():
        assert _batch_counts(actor / log) == {"clips": n, "computed": n, "reused": 0, "failed": 0}, log

    # nothing left to do in either copy
    for (rc, out), mode in zip(
        _run_all([(runs["cmds"][m] + ["-n"], runs[m]) for m in ("actor", "clip")], mirror), ("actor", "clip")
    ):
        assert rc == 0 and "Nothing to be done" in out, f"{mode}:\n{out[-2000:]}"


@pytest.mark.slow
def test_sigkill_in_actor_batch_then_rerun_reuses_finished_clips(runs, tmp_path, repo_root, mirror):
    a = "1001"
    run = tmp_path / "killed"
    _copy_workflow(repo_root, run, "actor")
    targets = [L.actor_dir("results", DS, "crop", a), L.actor_dir("results", DS, "audio", a)]
    env = _env(mirror)
    stash = run / L.actor_dir("results", DS, "crop", a)
    stash = stash.parent / f".{stash.name}.partial"
    markers = stash / ".batch"

    # start the batch, SIGKILL the whole process group once a clip is marked done
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(
            _cmd(targets), cwd=run, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.time() + 600
        done = []
        while time.time() < deadline and proc.poll() is None:
            done = sorted(markers.glob("*.json")) if markers.is_dir() else []
            if done:
                break
            time.sleep(0.01)
        alive = proc.poll() is None
        if alive:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    out = (tmp_path / "killed.log").read_text()
    assert alive and done, "preprocess_actor ended before a clip was marked done:\n" + out[-3000:]
    time.sleep(0.5)  # let the killed children go

    # killed mid-batch: no output directory, the finished clip(s) in the stash
    assert not (run / targets[0]).exists() and not (run / targets[1]).exists()
    finished = {p.stem for p in markers.glob("*.json")}
    assert finished and finished <= {s for s, (aa, _) in CLIPS.items() if aa == a}, finished
    audio_stash = run / f"results/{DS}/audio/.{a}.partial"
    for s in finished:
        assert (stash / f"{s}.mp4").is_file() and (stash / f"{s}.boxes.parquet").is_file()
        assert (audio_stash / f"{s}.wav").is_file()

    # a SIGKILLed Snakemake leaves its lock: --unlock, then rerun the incomplete job
    r = subprocess.run(_cmd(targets, "--unlock"), cwd=run, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run(_cmd(targets, "--rerun-incomplete"), cwd=run, env=env, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    counts = _batch_counts(run / f"logs/preprocess/preprocess_actor/{DS}/{a}.log")
    n = sum(aa == a for aa, _ in CLIPS.values())
    assert counts == {"clips": n, "computed": n - len(finished), "reused": len(finished), "failed": 0}, counts
    print(f"rerun after SIGKILL: {counts}")
    assert _stashes(run) == []

    # the same files as the uninterrupted actor run
    mine = (f"results/{DS}/crop/{a}/", f"results/{DS}/audio/{a}/")
    assert _assert_same_outputs(runs["actor"], run, only=lambda rel: rel.startswith(mine)) == 3 * n
    r = subprocess.run(_cmd(targets, "-n"), cwd=run, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr, (r.stdout + r.stderr)[-2000:]


def test_bad_clip_in_actor_batch_fails_alone_and_exclude_reuses_the_rest(tmp_path, mirror):
    """A clip without a face fails rule preprocess_actor alone: the job fails naming the clip's
    file and the fix (exclude it), the good clips stay in the stash and no output directory
    appears; once the clip is in ``datasets.<name>.exclude``, the rerun reuses the good clips
    (nothing recomputed) and finalizes the actor's directories."""
    from emohead_core import media
    from emohead_core.io import is_atomic_temp

    ds, a = "bad", "1001"
    good = ["1001_DFA_HAP_XX", "1001_DFA_SAD_XX"]
    bad = "1001_DFA_NEU_HI"  # sorts between the good ones: the batch must go on after it
    data = tmp_path / "data"
    data.mkdir()
    for s in good:  # a plain directory root; the adapter follows symlinks
        (data / f"{s}.flv").symlink_to(mirror / "data" / "crema-d" / f"{s}.flv")
    # valid media (probes fine at parse time), but a flat grey picture: no face in any frame
    media.run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "color=c=gray:s=480x360:r=25:d=2",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=16000:duration=2",
            "-c:v",
            "flv",
            "-c:a",
            "aac",
            "-shortest",
            "-f",
            "flv",
            str(data / f"{bad}.flv"),
        ]
    )
    info = media.probe(data / f"{bad}.flv")
    assert info.has_video and info.has_audio and info.duration_s > 1.5, info

    run = copy_workflow(tmp_path / "wf")
    spec = f"datasets:\n  {ds}:\n    kind: crema_d\n    root: {data}\n    crop_size: 340\n    batch: actor\n"
    (run / "subset.yaml").write_text(spec)
    targets = [L.actor_dir("results", ds, "crop", a), L.actor_dir("results", ds, "audio", a)]
    crop, audio = run / targets[0], run / targets[1]
    crop_stash, audio_stash = crop.parent / f".{a}.partial", audio.parent / f".{a}.partial"
    log = run / f"logs/preprocess/preprocess_actor/{ds}/{a}.log"
    env = _env(mirror)
    t0 = time.perf_counter()

    # 1) the batch fails because of the bad clip only
    r = subprocess.run(_cmd(targets), cwd=run, env=env, capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-4000:]
    jobs = _job_counts(out)
    assert jobs.get("preprocess_actor") == 1 and not {"sample_table", "crop_video", "extract_audio"} & set(
        jobs
    ), jobs
    assert not (run / "results" / "cremad").exists() and not (run / "results" / "obama").exists()
    text = log.read_text()
    msg = text[text.index("BatchError") :] if "BatchError" in text else text
    assert "1 of 3 clips failed" in msg and f"{bad} ({data / bad}.flv" in msg, text[-4000:]
    assert "exclude" in msg, text[-4000:]
    assert "min_face_fraction" in msg, text[-4000:]  # crop_clip's reason for the clip
    assert str(crop_stash) in msg or f".{a}.partial" in msg, text[-4000:]
    for s in good:
        assert f"{s} (" not in msg, f"good clip {s} reported as failed:\n{msg}"
    assert "Error in rule preprocess_actor" in out and str(log.relative_to(run)) in out, out[-4000:]

    assert not crop.exists() and not audio.exists()
    markers = crop_stash / ".batch"
    assert sorted(p.name for p in markers.iterdir()) == [f"{s}.json" for s in good]
    assert sorted(p.name for p in crop_stash.iterdir() if p.is_file()) == sorted(
        n for s in good for n in (f"{s}.mp4", f"{s}.boxes.parquet")
    )
    assert sorted(p.name for p in audio_stash.iterdir()) == [f"{s}.wav" for s in good]
    for s in good:
        assert (crop_stash / f"{s}.mp4").stat().st_size > 0 and (audio_stash / f"{s}.wav").stat().st_size > 0
    leftovers = [p for st in (crop_stash, audio_stash) for p in st.rglob("*") if is_atomic_temp(p.name)]
    assert leftovers == [], leftovers
    before = {
        p: p.stat().st_mtime_ns
        for st in (crop_stash, audio_stash)
        for p in st.iterdir()
        if not p.name.startswith(".")
    }

    # 2) exclude the clip: the rerun reuses both good clips and finalizes the directories
    (run / "subset.yaml").write_text(spec + f"    exclude: ['{bad}']\n")
    r = subprocess.run(_cmd(targets), cwd=run, env=env, capture_output=True, text=True)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert _batch_counts(log) == {"clips": 2, "computed": 0, "reused": 2, "failed": 0}
    assert sorted(p.name for p in crop.iterdir() if p.name != ".snakemake_timestamp") == sorted(
        n for s in good for n in (f"{s}.mp4", f"{s}.boxes.parquet")
    )
    assert sorted(p.name for p in audio.iterdir() if p.name != ".snakemake_timestamp") == [
        f"{s}.wav" for s in good
    ]
    # the very files of the failed run (renamed, not rewritten)
    after = {
        p.name: p.stat().st_mtime_ns for d in (crop, audio) for p in d.iterdir() if not p.name.startswith(".")
    }
    assert after == {p.name: m for p, m in before.items()}
    assert not crop_stash.exists() and not audio_stash.exists() and _stashes(run) == []
    r = subprocess.run(_cmd(targets, "-n"), cwd=run, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr, (r.stdout + r.stderr)[-2000:]
    print(f"fail + exclude rerun: {time.perf_counter() - t0:.1f} s")
