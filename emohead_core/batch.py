"""Actor batches: one job runs one step for all clips of an actor, resumably.

An actor batch writes one or more ``directory()`` outputs (e.g. ``crop/{actor}`` and
``audio/{actor}``). It works in a stash beside each output, ``.{actor}.partial``, that Snakemake
does not know about and therefore never deletes:

- every clip's files are written atomically into the stash, then a small fingerprint
  (``.batch/{sample}.json``: the clip's input files' size and mtime, the job's parameters and
  the package version) marks the clip done;
- a rerun (after a failed clip, a SIGKILL, a preempted SLURM job) reuses every clip whose
  fingerprint still matches and redoes the others;
- when every clip succeeded, files of clips no longer in the batch are dropped and each stash is
  renamed onto its output directory (an atomic rename: the output never holds a partial batch);
- when clips failed, the others are finished first, then the job fails with one message naming
  each failed clip, its file and the fix; the stash keeps the good clips for the rerun;
- when an output cannot be written (disk full, quota, read-only results directory), the batch
  stops at once with :class:`~emohead_core.errors.EmoheadOutputError` naming the directory and
  the fix; no clip is blamed (the finished ones stay in the stash for the rerun);
- one batch runs at a time: the job holds a lock (``.{actor}.lock`` beside the output, an
  ``flock``) for its whole run, and a second run's job for the same actor fails at once with a
  message instead of writing into (or renaming away) the stash the first one is filling.

A clip's work function is the same code the per-clip rules run (``datasets.<name>.batch: clip``),
so both modes write identical files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import EmoheadInputError, EmoheadOutputError
from .io import output_fault, writer_tag

log = logging.getLogger(__name__)

STATE_DIR = ".batch"
SNAKEMAKE_TIMESTAMP = ".snakemake_timestamp"


@dataclass
class Clip:
    """One clip of a batch: its id, the input files it reads (role -> path), and its output
    files (role -> (index into ``out_dirs``, file name)); an audio-only sample, e.g., writes a
    wav but no crop."""

    sample: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, tuple[int, str]]


class BatchError(EmoheadInputError):
    """Some clips of a batch failed; the others are kept in the stash for the rerun."""


class BatchBusyError(RuntimeError):
    """Another process runs the same actor batch now (two Snakemake runs on the same results)."""


def stash_of(out_dir: str | os.PathLike) -> Path:
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.partial"


def _stat(path: str) -> list:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return [str(path), None, None]
    if os.path.isdir(path):
        return [str(path), "dir", None]
    return [str(path), st.st_size, st.st_mtime_ns]


def fingerprint(clip: Clip, params: Mapping) -> str:
    """Identity of one clip's work: inputs (path, size, mtime), params, package version."""
    from . import __version__

    body = {
        "sample": clip.sample,
        "inputs": {k: _stat(v) for k, v in sorted(clip.inputs.items()) if v},
        "outputs": {k: list(v) for k, v in sorted(clip.outputs.items())},
        "params": params,
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def run_batch(
    out_dirs: Sequence[str | os.PathLike],
    clips: Sequence[Clip],
    work: Callable[[Clip, dict[str, Path]], object],
    *,
    params: Mapping,
    desc: str = "batch",
) -> dict:
    """Run ``work(clip, targets)`` for every clip, resumably; returns counts and timings.

    ``targets[role]`` is the path the clip must write for ``clip.outputs[role]`` (inside the
    stash of its output directory). ``work`` should write through :func:`emohead_core.io.atomic_path`
    (all production functions do), so a kill never leaves a partial file even in the stash.
    """
    ids = [c.sample for c in clips]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{desc}: duplicate sample ids in one batch")
    out_dirs = [Path(d) for d in out_dirs]
    try:
        with batch_lock(out_dirs[0], desc):
            return _run_batch(out_dirs, clips, work, params=params, desc=desc)
    except OSError as e:  # stash / marker / final rename: an output-side fault, or a bug
        fault = output_fault(e, stash_of(out_dirs[0]))
        if fault is not None:
            raise fault from e
        raise


@contextlib.contextmanager
def batch_lock(out_dir: Path, desc: str) -> Iterator[None]:
    """Hold ``.{name}.lock`` beside ``out_dir`` (flock, released by the kernel when the process
    dies) for the whole batch; raise :class:`BatchBusyError` if another process holds it. The
    file is removed when the batch ends (a killed job leaves it; the next run reuses it)."""
    lock = out_dir.parent / f".{out_dir.name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        f = open(lock, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise BatchBusyError(
                f"{out_dir}: {desc} is running in another process now ({holder}): two runs on the same "
                f"results directory. Fix: wait for that run to finish (or stop it) and rerun; its "
                f"finished clips are then reused."
            ) from None
        except OSError as e:  # a filesystem without locks (ENOLCK, some NFS setups): run unlocked
            log.warning("%s: cannot lock %s (%s); running without the concurrent-run guard", desc, lock, e)
            break
        try:
            same = os.stat(lock).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        f.close()  # the holder removed the file as we locked it: lock the new one
    try:
        f.seek(0)
        f.truncate()
        f.write(writer_tag() + "\n")
        f.flush()
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        f.close()  # releases the flock


def _run_batch(out_dirs: list[Path], clips: Sequence[Clip], work, *, params: Mapping, desc: str) -> dict:
    from tqdm import tqdm

    stashes = [stash_of(d) for d in out_dirs]
    for s in stashes:
        s.mkdir(parents=True, exist_ok=True)
    state = stashes[0] / STATE_DIR
    state.mkdir(exist_ok=True)

    counts = {"clips": len(clips), "computed": 0, "reused": 0, "failed": 0}
    failures: list[tuple[Clip, BaseException]] = []
    t0 = time.perf_counter()
    for clip in tqdm(clips, desc=desc, unit="clip", mininterval=2.0):
        fp = fingerprint(clip, params)
        marker = state / f"{clip.sample}.json"
        targets = {role: stashes[i] / name for role, (i, name) in clip.outputs.items()}
        if _done(marker, fp, targets):
            counts["reused"] += 1
            continue
        marker.unlink(missing_ok=True)
        t = time.perf_counter()
        try:
            work(clip, targets)
            missing = [str(p) for p in targets.values() if not p.exists()]
            if missing:
                raise RuntimeError(f"produced no {', '.join(missing)}")
            _write_marker(marker, {"fingerprint": fp, "seconds": round(time.perf_counter() - t, 3)})
        except Exception as e:  # one bad clip must not stop (or corrupt) the others
            fault = output_fault(e, stashes[0])
            if fault is not None:  # disk full / read-only: every further clip would fail too
                log.error("%s: cannot write clip %s:\n%s", desc, clip.sample, traceback.format_exc())
                raise _stopped(fault, clip, counts, stashes, desc) from e
            counts["failed"] += 1
            failures.append((clip, e))
            log.error("%s: clip %s failed:\n%s", desc, clip.sample, traceback.format_exc())
            continue
        counts["computed"] += 1
    counts["seconds"] = round(time.perf_counter() - t0, 3)

    if failures:
        lines = []
        for clip, e in failures:
            src = ", ".join(
                dict.fromkeys(str(v) for v in clip.inputs.values() if v)
            )  # a video is often its own audio
            lines.append(f"  {clip.sample} ({src}): {e}")
        raise BatchError(
            f"{len(failures)} of {len(clips)} clips failed in {desc}:\n" + "\n".join(lines) + "\n",
            path=out_dirs[0],
            fix=(
                "fix or exclude (datasets.<name>.exclude) the clips above and rerun; the "
                f"{counts['computed'] + counts['reused']} finished clips are kept in "
                f"{', '.join(str(s) for s in stashes)} and are not recomputed."
            ),
        )

    keep: list[set[str]] = [set() for _ in stashes]
    for c in clips:
        for i, name in c.outputs.values():
            keep[i].add(name)
    shutil.rmtree(state)
    for stash, out_dir, names in zip(stashes, out_dirs, keep):
        for entry in os.listdir(stash):
            if entry not in names:  # clips dropped from the batch, stray temps
                p = stash / entry
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        if out_dir.exists():  # Snakemake removes outputs before a job; a manual run may not
            shutil.rmtree(out_dir)
        os.replace(stash, out_dir)
    log.info("%s: %s", desc, counts)
    return counts


def _stopped(
    fault: EmoheadOutputError, clip: Clip, counts: dict, stashes: list[Path], desc: str
) -> EmoheadOutputError:
    """The batch's message for an output-side fault: what could not be written where, the fix,
    and that the finished clips are kept (no clip is blamed or to be excluded)."""
    from .io import OUTPUT_FAULTS, fault_fix

    kept = counts["computed"] + counts["reused"]
    msg = str(fault)
    if fault.fix and msg.endswith(f" Fix: {fault.fix}"):
        msg = msg[: -len(f" Fix: {fault.fix}")]
    return EmoheadOutputError(
        f"{desc} stopped at clip {clip.sample}: {msg}",
        path=stashes[0],
        fix=f"{fault_fix(fault.reason, stashes[0]) if fault.reason in OUTPUT_FAULTS else fault.fix}. "
        f"The {kept} clip(s) finished before are kept in {', '.join(str(s) for s in stashes)} "
        "and are not recomputed; the input clips are fine.",
        reason=fault.reason,
    )


def _done(marker: Path, fp: str, targets: dict[str, Path]) -> bool:
    try:
        rec = json.loads(marker.read_text())
    except (FileNotFoundError, ValueError):
        return False
    return rec.get("fingerprint") == fp and all(p.exists() for p in targets.values())


def _write_marker(marker: Path, rec: dict) -> None:
    from .io import write_json_atomic

    write_json_atomic(marker, rec)


def find_stashes(results_dir: str | os.PathLike) -> list[dict]:
    """The stashes of unfinished actor batches under ``results_dir``
    (``{dataset}/<step>/.{actor}.partial``): path, finished clips (markers), size in bytes."""
    out = []
    root = Path(results_dir)
    for stash in sorted(root.glob("**/.*.partial")):
        if not stash.is_dir():
            continue
        state = stash / STATE_DIR
        n = len(list(state.glob("*.json"))) if state.is_dir() else None
        size = sum(f.stat().st_size for f in stash.rglob("*") if f.is_file())
        out.append({"path": str(stash), "finished_clips": n, "bytes": size})
    return out
