"""Dataset adapters: a directory (or a mirrored asset prefix) -> the sample table.

The sample table is a pandas DataFrame, one row per clip, with the columns of
:data:`COLUMNS` (see CONTRIBUTING.md, ``results/{dataset}/samples.parquet``):

- ``sample_id``: CREMA-D ``1001_DFA_ANG_XX``; MEAD ``{actor}_{emotion}_level{k}_{nnn}``;
  folder: the file stem;
- ``dataset``: the config name of the dataset;
- ``actor`` (str), ``emotion`` (canonical lower-case name, ``unknown`` for unlabelled
  folders), ``intensity`` (pandas ``Int64``: 1..3, ``<NA>`` for CREMA-D ``XX``/unlabelled),
  ``sentence`` (CREMA-D sentence code, MEAD sentence number ``nnn``, '' for folders);
- ``split``: ``train`` / ``test`` (``unused`` when a person has more material than the paper's
  per-person budget, see :func:`assign_splits` and docs/decisions.md);
- ``video_path`` ('' for audio-only samples), ``audio_path`` (the file the audio is read from:
  the video itself when it carries the audio), ``duration_s``.

Supported layouts (``kind`` in config):

- ``mead``: ``{actor}/video/front/{emotion}/level_{k}/{nnn}.mp4`` and
  ``{actor}/audio/{emotion}/level_{k}/{nnn}.m4a``;
- ``crema_d``: ``{actor}_{sentence}_{EMO}_{LEVEL}.flv|mp4`` (video, searched recursively, so the
  distribution's ``VideoFlash/`` + ``AudioWAV/`` layout works) plus ``.wav|.mp3`` audio; a stem
  with video and audio files gives one row (audio from the audio file), an audio file without
  video gives an audio-only row;
- ``folder``: a plain folder of talking-head videos (one person each, no labels).

A root ``asset:<prefix>`` lists the manifest assets under ``<prefix>/`` (config/assets.yaml);
their files are sha256-checked in the mirror at parse time and the table points to their
resolved location ``{resources_dir}/assets/<name>`` (produced by rule ``fetch_asset``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pandas as pd

from .. import assets as ehassets
from ..errors import EmoheadInputError, EmoheadOutputError
from ..io import write_text_atomic

log = logging.getLogger(__name__)

COLUMNS = [
    "sample_id",
    "dataset",
    "actor",
    "emotion",
    "intensity",
    "sentence",
    "split",
    "video_path",
    "audio_path",
    "duration_s",
]

EMOTIONS = ["angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised"]
UNKNOWN_EMOTION = "unknown"

CREMA_EMOTIONS = {
    "ANG": "angry",
    "DIS": "disgusted",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
CREMA_LEVELS = {"LO": 1, "MD": 2, "HI": 3, "XX": None}

# MEAD directory names are already canonical; accept a few common spellings too.
EMOTION_ALIASES = {
    "anger": "angry",
    "disgust": "disgusted",
    "surprise": "surprised",
    "fearful": "fear",
    "happiness": "happy",
    "sadness": "sad",
}

VIDEO_EXTS = {".mp4", ".flv", ".avi", ".mov", ".mkv", ".webm", ".m4v"}
AUDIO_EXTS = {".wav", ".mp3", ".m4a", ".flac", ".aac", ".ogg"}

# Paper Appendix C: MEAD 10 min train / 2 min test per person; CREMA-D 2 min / 1 min.
DEFAULT_SPLITS = {
    "mead": {"train_s": 600.0, "test_s": 120.0},
    "crema_d": {"train_s": 120.0, "test_s": 60.0},
}

# Paper Appendix C: crops of 512 x 512 (MEAD) and 340 x 340 (CREMA-D).
DEFAULT_CROP_SIZE = {"mead": 512, "crema_d": 340, "folder": 512, "mead_clips": 256}


def crop_size(spec: dict) -> int:
    """The square crop size of a dataset: ``crop_size`` in its config, else the paper's."""
    return int(spec.get("crop_size") or DEFAULT_CROP_SIZE[spec["kind"]])


_CREMA_RE = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emo>[A-Z]{3})_(?P<level>[A-Z]{2})$")
_LEVEL_RE = re.compile(r"^level_(?P<k>\d+)$")
_MEAD_CLIP_RE = re.compile(
    r"^(?P<actor>[A-Za-z0-9]+)_(?P<view>[a-z0-9_]+?)_(?P<emo>[A-Za-z]+)_level(?P<k>\d+)_(?P<idx>\d+)$"
)


@dataclass(frozen=True)
class Entry:
    """One file of a dataset root: its path relative to the root, the local file to read
    (probe), and the path written into the sample table."""

    rel: PurePosixPath
    local: Path
    table_path: str


# --------------------------------------------------------------------------- listing


def list_root(
    root: str,
    *,
    mirror: str | os.PathLike | None = None,
    resources_dir: str | os.PathLike = "resources",
    manifest: dict[str, ehassets.Asset] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> tuple[list[Entry], str]:
    """All media files under ``root`` (a directory or ``asset:<prefix>``).

    Returns the entries and a human-readable description of the root for error messages.
    ``include`` keeps only files whose name, root-relative path or stem is listed; ``exclude``
    drops those (e.g. known-broken clips of a public dataset).
    """
    include = set(include or [])
    exclude = set(exclude or [])

    def listed(rel: PurePosixPath, names: set) -> bool:
        return rel.name in names or str(rel) in names or rel.stem in names

    def keep(rel: PurePosixPath) -> bool:
        if rel.suffix.lower() not in VIDEO_EXTS | AUDIO_EXTS:
            return False
        if exclude and listed(rel, exclude):
            return False
        return not include or listed(rel, include)

    if root.startswith("asset:"):
        prefix = root[len("asset:") :].strip("/")
        manifest = manifest if manifest is not None else ehassets.load_manifest()
        names = sorted(n for n in manifest if n.startswith(prefix + "/"))
        entries = []
        for name in names:
            rel = PurePosixPath(name[len(prefix) + 1 :])
            if not keep(rel):
                continue
            local = ehassets.resolve_in_place(name, mirror=mirror, manifest=manifest)
            if local is None:  # not mirrored: fetch from upstream now (sha256-checked)
                local = ehassets.resolve(
                    name, Path(resources_dir) / "assets", mirror=mirror, manifest=manifest
                )
            entries.append(Entry(rel, Path(local), f"{resources_dir}/assets/{name}"))
        if not entries:
            raise EmoheadInputError(
                f"no media assets under prefix {prefix!r} in config/assets.yaml"
                + (f" matching include={sorted(include)}" if include else "")
                + ".",
                path=root,
                fix="list the files in config/assets.yaml or fix the dataset root / include.",
            )
        return entries, root
    path = Path(root).expanduser()
    if not path.is_dir():
        raise EmoheadInputError(
            "dataset root is not a directory.",
            path=path,
            fix="set datasets.<name>.root to the dataset directory.",
        )
    entries = []
    for p in sorted(path.rglob("*")):
        if not p.is_file() or p.name.startswith("."):
            continue
        rel = PurePosixPath(p.relative_to(path).as_posix())
        if keep(rel):
            entries.append(Entry(rel, p, os.path.abspath(p)))
    return entries, str(path)


# --------------------------------------------------------------------------- probing


class DurationCache:
    """Media durations and streams keyed by (path, size, mtime): probing thousands of clips with
    ffmpeg at every Snakemake start would be slow. Stored as JSON (optional). An entry is
    ``[size, mtime_ns, duration_s, has_video, has_audio]`` (entries of older versions lack the
    two stream flags: both are then taken as present, not re-probed)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path else None
        self.data: dict[str, Any] = {}
        self.dirty = False
        if self.path and self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.data = {}

    def duration(self, p: Path) -> float:
        return self.info(p)[0]

    def info(self, p: Path) -> tuple[float, bool, bool]:
        """(duration_s, has_video, has_audio) of a readable media file; EmoheadInputError naming
        the file otherwise."""
        from .. import media

        st = p.stat()
        key = str(p.resolve())
        hit = self.data.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            has_video, has_audio = (bool(hit[3]), bool(hit[4])) if len(hit) >= 5 else (True, True)
            return float(hit[2]), has_video, has_audio
        if st.st_size == 0:
            raise EmoheadInputError(
                "empty file (0 bytes).", path=p, fix="re-download it, or list it in datasets.<name>.exclude."
            )
        try:
            info = media.probe(p)
        except EmoheadInputError as e:
            raise EmoheadInputError(
                "not a readable audio/video file (ffmpeg cannot parse it).",
                path=p,
                fix="re-download or re-encode it, or list it in datasets.<name>.exclude.",
            ) from e
        if not info.has_video and not info.has_audio:
            raise EmoheadInputError(
                "no audio or video stream.",
                path=p,
                fix="re-download it, or list it in datasets.<name>.exclude.",
            )
        if not info.duration_s or info.duration_s <= 0:
            raise EmoheadInputError(
                "unreadable media: no duration.",
                path=p,
                fix="re-encode it, or list it in datasets.<name>.exclude.",
            )
        self.data[key] = [st.st_size, st.st_mtime_ns, info.duration_s, info.has_video, info.has_audio]
        self.dirty = True
        return info.duration_s, info.has_video, info.has_audio

    def save(self) -> None:
        """Write the cache (a cache only: a read-only or full resources directory is a warning)."""
        if self.path and self.dirty:
            try:
                write_text_atomic(self.path, json.dumps(self.data, sort_keys=True))
            except (OSError, EmoheadOutputError) as e:
                log.warning(
                    "could not save the media duration cache (%s); the next start probes the files again", e
                )
                return
            self.dirty = False


# --------------------------------------------------------------------------- parsers


def canonical_emotion(name: str, *, path: Any = None) -> str:
    e = name.strip().lower()
    e = EMOTION_ALIASES.get(e, e)
    if e not in EMOTIONS:
        raise EmoheadInputError(
            f"unknown emotion {name!r}; expected one of {EMOTIONS}.",
            path=path,
            fix="rename the directory/file or remove it from the dataset.",
        )
    return e


def _row(**kw) -> dict:
    row = dict(kw)
    row.setdefault("sentence", "")
    row.setdefault("intensity", None)
    return row


@dataclass(frozen=True)
class BadFile:
    """A file of a dataset root that cannot be used: its root-relative path (what
    ``datasets.<name>.exclude`` takes) and the error naming it, the reason and the fix."""

    rel: str
    error: EmoheadInputError

    @property
    def reason(self) -> str:
        """The error's message without its ``Fix:`` part."""
        msg = str(self.error)
        fix = f" Fix: {self.error.fix}" if self.error.fix else ""
        return msg[: -len(fix)] if fix and msg.endswith(fix) else msg


Reject = Callable[[Entry, EmoheadInputError], None]


def _raise(entry: Entry, err: EmoheadInputError) -> None:
    raise err


def parse_crema_d(entries: list[Entry], root_desc: str, reject: Reject = _raise) -> list[dict]:
    """CREMA-D: ``{actor}_{sentence}_{EMO}_{LEVEL}`` stems; video and audio files of a stem
    merge into one row. A file that cannot be used goes to ``reject`` (default: raise)."""
    videos: dict[str, Entry] = {}
    audios: dict[str, Entry] = {}
    for e in entries:
        stem = e.rel.name[: -len(e.rel.suffix)]
        ext = e.rel.suffix.lower()
        m = _CREMA_RE.match(stem)
        if not m:
            reject(
                e,
                EmoheadInputError(
                    "file name does not follow CREMA-D naming {actor}_{sentence}_{EMO}_{LEVEL}.{ext} "
                    "(e.g. 1001_DFA_ANG_XX.flv).",
                    path=e.local,
                    fix="rename the file, or list it in datasets.<name>.exclude.",
                ),
            )
            continue
        if m["emo"] not in CREMA_EMOTIONS:
            reject(
                e,
                EmoheadInputError(
                    f"unknown CREMA-D emotion code {m['emo']!r}; expected one of {sorted(CREMA_EMOTIONS)}.",
                    path=e.local,
                    fix="rename the file, or list it in datasets.<name>.exclude.",
                ),
            )
            continue
        if m["level"] not in CREMA_LEVELS:
            reject(
                e,
                EmoheadInputError(
                    f"unknown CREMA-D intensity code {m['level']!r}; expected one of {list(CREMA_LEVELS)}.",
                    path=e.local,
                    fix="rename the file, or list it in datasets.<name>.exclude.",
                ),
            )
            continue
        bucket = videos if ext in VIDEO_EXTS else audios
        if stem in bucket:
            reject(
                e,
                EmoheadInputError(
                    f"duplicate sample id {stem!r}: also {bucket[stem].local}.",
                    path=e.local,
                    fix="keep one file per sample id and media type (datasets.<name>.exclude drops one).",
                ),
            )
            continue
        bucket[stem] = e
    rows = []
    for stem in sorted(set(videos) | set(audios)):
        m = _CREMA_RE.match(stem)
        v, a = videos.get(stem), audios.get(stem)
        rows.append(
            _row(
                sample_id=stem,
                actor=m["actor"],
                emotion=CREMA_EMOTIONS[m["emo"]],
                intensity=CREMA_LEVELS[m["level"]],
                sentence=m["sentence"],
                video=v,
                audio=a or v,
            )
        )
    return rows


def parse_mead(entries: list[Entry], root_desc: str, reject: Reject = _raise) -> list[dict]:
    """MEAD: ``{actor}/video/front/{emotion}/level_{k}/{nnn}.mp4`` +
    ``{actor}/audio/{emotion}/level_{k}/{nnn}.m4a``.

    Other camera views (``video/left_30`` ...) are ignored; only the front view is used. A file
    that cannot be used goes to ``reject`` (default: raise).
    """
    videos: dict[str, tuple[Entry, tuple]] = {}
    audios: dict[str, tuple[Entry, tuple]] = {}
    for e in entries:
        parts = e.rel.parts
        ext = e.rel.suffix.lower()
        if len(parts) == 6 and parts[1] == "video" and ext in VIDEO_EXTS:
            if parts[2] != "front":
                continue
            actor, emo_dir, level_dir, fname = parts[0], parts[3], parts[4], parts[5]
            bucket = videos
        elif len(parts) == 5 and parts[1] == "audio" and ext in AUDIO_EXTS:
            actor, emo_dir, level_dir, fname = parts[0], parts[2], parts[3], parts[4]
            bucket = audios
        else:
            reject(
                e,
                EmoheadInputError(
                    "path does not follow the MEAD layout {actor}/video/front/{emotion}/level_{k}/{nnn}.mp4 "
                    "or {actor}/audio/{emotion}/level_{k}/{nnn}.m4a.",
                    path=e.local,
                    fix="move or remove the file, or list it in datasets.<name>.exclude.",
                ),
            )
            continue
        try:
            emotion = canonical_emotion(emo_dir, path=e.local)
        except EmoheadInputError as err:
            reject(e, err)
            continue
        ml = _LEVEL_RE.match(level_dir)
        if not ml:
            reject(
                e,
                EmoheadInputError(
                    f"intensity directory {level_dir!r} is not level_<k>.",
                    path=e.local,
                    fix="rename the directory.",
                ),
            )
            continue
        nnn = fname[: -len(PurePosixPath(fname).suffix)]
        k = int(ml["k"])
        sid = f"{actor}_{emotion}_level{k}_{nnn}"
        if sid in bucket:
            reject(
                e,
                EmoheadInputError(
                    f"duplicate sample id {sid!r}: also {bucket[sid][0].local}.",
                    path=e.local,
                    fix="keep one file per clip.",
                ),
            )
            continue
        bucket[sid] = (e, (actor, emotion, k, nnn))
    rows = []
    for sid in sorted(set(videos) | set(audios)):
        if sid in videos and sid not in audios:
            v = videos[sid][0]
            reject(
                v,
                EmoheadInputError(
                    "MEAD video has no audio file; expected "
                    f"{{actor}}/audio/{{emotion}}/level_{{k}}/{{nnn}}.m4a for sample {sid!r}.",
                    path=v.local,
                    fix="add the audio file or remove the video.",
                ),
            )
            continue
        actor, emotion, k, nnn = (videos.get(sid) or audios[sid])[1]
        rows.append(
            _row(
                sample_id=sid,
                actor=actor,
                emotion=emotion,
                intensity=k,
                sentence=nnn,
                video=videos[sid][0] if sid in videos else None,
                audio=audios[sid][0],
            )
        )
    return rows


def parse_folder(entries: list[Entry], root_desc: str, reject: Reject = _raise) -> list[dict]:
    """A plain folder of talking-head videos: one person per file, actor = file stem."""
    rows: dict[str, dict] = {}
    for e in entries:
        if e.rel.suffix.lower() not in VIDEO_EXTS:
            continue  # stray audio files are ignored: the renderer needs video
        stem = e.rel.name[: -len(e.rel.suffix)]
        if stem in rows:
            reject(
                e,
                EmoheadInputError(
                    f"duplicate sample id {stem!r}: also {rows[stem]['video'].local}.",
                    path=e.local,
                    fix="give each video a unique file name.",
                ),
            )
            continue
        rows[stem] = _row(sample_id=stem, actor=stem, emotion=UNKNOWN_EMOTION, video=e, audio=e)
    return [rows[k] for k in sorted(rows)]


def parse_mead_clips(entries: list[Entry], root_desc: str, reject: Reject = _raise) -> list[dict]:
    """Labelled MEAD clips named the MEAD way in one folder (searched recursively):
    ``{actor}_front_{emotion}_level{k}_{nnn}.mp4`` (e.g. face-cropped style clips). Video only is
    fine: a same-stem audio file (.wav, .m4a, ...) or the video's own audio track is the speech
    when there is one; otherwise the row has no audio and the stages that need audio (features,
    audio2exp, audio-driven renders) leave it out. Views other than ``front`` are ignored."""
    videos: dict[str, tuple[Entry, tuple]] = {}
    audios: dict[str, Entry] = {}
    for e in entries:
        ext = e.rel.suffix.lower()
        stem = e.rel.name[: -len(e.rel.suffix)]
        m = _MEAD_CLIP_RE.match(stem)
        if ext not in VIDEO_EXTS | AUDIO_EXTS:
            continue
        if not m:
            reject(
                e,
                EmoheadInputError(
                    "file name does not follow MEAD clip naming {actor}_front_{emotion}_level{k}_{nnn}.mp4 "
                    "(e.g. M030_front_angry_level3_001.mp4).",
                    path=e.local,
                    fix="rename the file, or list it in datasets.<name>.exclude.",
                ),
            )
            continue
        if m["view"] != "front":
            continue
        try:
            emotion = canonical_emotion(m["emo"], path=e.local)
        except EmoheadInputError as err:
            reject(e, err)
            continue
        sid = f"{m['actor']}_{emotion}_level{int(m['k'])}_{m['idx']}"
        bucket = videos if ext in VIDEO_EXTS else audios
        if sid in bucket:
            prev = bucket[sid][0] if ext in VIDEO_EXTS else bucket[sid]
            reject(
                e,
                EmoheadInputError(
                    f"duplicate sample id {sid!r}: also {prev.local}.",
                    path=e.local,
                    fix="keep one file per clip.",
                ),
            )
            continue
        if ext in VIDEO_EXTS:
            videos[sid] = (e, (m["actor"], emotion, int(m["k"]), m["idx"]))
        else:
            audios[sid] = e
    rows = []
    for sid in sorted(videos):
        v, (actor, emotion, k, idx) = videos[sid]
        a = audios.get(sid)
        rows.append(
            _row(
                sample_id=sid,
                actor=actor,
                emotion=emotion,
                intensity=k,
                sentence=idx,
                video=v,
                audio=a or v,
                audio_optional=a is None,
            )
        )
    return rows


PARSERS = {
    "crema_d": parse_crema_d,
    "mead": parse_mead,
    "folder": parse_folder,
    "mead_clips": parse_mead_clips,
}
# kinds whose clips carry emotion labels (hyperplanes, emotion control)
LABELLED_KINDS = ("mead", "crema_d", "mead_clips")
EXPECTED = {
    "crema_d": "{actor}_{sentence}_{EMO}_{LEVEL}.flv|mp4|wav|mp3 files",
    "mead": "{actor}/video/front/{emotion}/level_{k}/{nnn}.mp4 + {actor}/audio/{emotion}/level_{k}/{nnn}.m4a",
    "folder": "video files (.mp4, .flv, .avi, .mov, .mkv, .webm)",
    "mead_clips": "{actor}_front_{emotion}_level{k}_{nnn}.mp4 files (audio optional)",
}


# --------------------------------------------------------------------------- splits


def _hash_key(*parts: Any) -> str:
    return hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()


def assign_splits(df: pd.DataFrame, train_s: float, test_s: float) -> pd.Series:
    """Deterministic per-person train/test split by duration (docs/decisions.md).

    For each actor, clips are ordered emotion-stratified: round-robin over emotions, within an
    emotion by a hash of the *content* key (sentence, emotion, intensity), so the same
    utterance lands in the same split for every actor (keeps cross-speaker pairs of the same
    sentence and emotion inside one split). Test takes clips from the front of that order
    until its duration is nearest to its target, then train takes clips up to its target,
    the rest is ``unused``. Targets are the paper's budgets (``test_s``, ``train_s``) or, when
    a person has less material than ``train_s + test_s``, the same proportions of what there
    is. Every actor with at least two clips gets at least one test and one train clip.
    """
    split = pd.Series("train", index=df.index, dtype=object)
    budget = train_s + test_s
    for _, g in df.groupby("actor", sort=True):
        by_emotion: dict[str, list] = {}
        for idx, r in g.iterrows():
            key = _hash_key(r["sentence"], r["emotion"], r["intensity"])
            by_emotion.setdefault(r["emotion"], []).append((key, r["sample_id"], idx))
        for v in by_emotion.values():
            v.sort()
        order = []
        rnd = 0
        while any(len(v) > rnd for v in by_emotion.values()):
            emos = [e for e, v in by_emotion.items() if len(v) > rnd]
            emos.sort(key=lambda e: _hash_key("round", rnd, e))
            order += [by_emotion[e][rnd][2] for e in emos]
            rnd += 1
        total = float(g["duration_s"].sum())
        if budget <= 0:
            continue
        if total >= budget:
            t_test, t_train = test_s, train_s
        else:
            t_test = total * test_s / budget
            t_train = float("inf")  # less than the budget: everything else trains
        test_dur = train_dur = 0.0
        n = len(order)
        i = 0
        labels = {}
        # test: nearest-to-target prefix (at least one clip if n >= 2 and test_s > 0)
        while i < n:
            d = float(df.at[order[i], "duration_s"])
            first = i == 0 and n >= 2 and test_s > 0
            if (first or test_dur + d / 2 <= t_test) and i < n - 1:
                labels[order[i]] = "test"
                test_dur += d
                i += 1
            else:
                break
        while i < n:
            d = float(df.at[order[i], "duration_s"])
            if train_dur == 0.0 or train_dur + d / 2 <= t_train:
                labels[order[i]] = "train"
                train_dur += d
            else:
                labels[order[i]] = "unused"
            i += 1
        for idx, lab in labels.items():
            split.at[idx] = lab
    return split


# --------------------------------------------------------------------------- bad files


BAD_FILE_POLICIES = ("fail", "skip")
MAX_LISTED = 30  # bad files named in the error message; all of them go to the list file


def _probe_row(
    v: Entry | None, a: Entry | None, cache: DurationCache, reject: Reject, audio_optional: bool = False
) -> tuple[float, bool] | None:
    """(duration of a row's clip, whether it has its audio); None (after ``reject``) when its
    video or audio file is unreadable, has no video stream (a video) or no audio stream (the
    speech source; with ``audio_optional`` a video without sound is a video-only row)."""
    info = {}
    for entry in dict.fromkeys(x for x in (v, a) if x is not None):
        if "{" in str(entry.rel) or "}" in str(entry.rel):  # every path made from it would be a pattern
            reject(
                entry,
                EmoheadInputError(
                    "its name holds '{' or '}', which Snakemake reads as a wildcard in every output "
                    "path made from the sample id: rename it without braces.",
                    path=entry.local,
                    fix="rename the file (and its folder) without braces, e.g. with ( ) instead, or list "
                    "it in datasets.<name>.exclude.",
                ),
            )
            return None
        try:
            info[entry] = cache.info(entry.local)
        except EmoheadInputError as err:
            reject(entry, err)
            return None
    if v is not None and not info[v][1]:
        reject(
            v,
            EmoheadInputError(
                "has no video stream.",
                path=v.local,
                fix="give a video file, or list it in datasets.<name>.exclude.",
            ),
        )
        return None
    if a is not None and not info[a][2] and audio_optional:
        return info[v][0], False
    if a is not None and not info[a][2]:
        reject(
            a,
            EmoheadInputError(
                "has no audio stream; every clip needs its speech (audio features, lip sync).",
                path=a.local,
                fix="use the recording with its sound, or list it in datasets.<name>.exclude.",
            ),
        )
        return None
    return (info[v][0] if v is not None else info[a][0]), a is not None


def _write_bad_list(name: str, bad: list[BadFile], cache_path) -> Path | None:
    """``bad_files_{name}.yaml`` beside the duration cache: the unusable files as an
    ``exclude:`` list ready to paste into the config, each with its reason."""
    if not cache_path:
        return None
    path = Path(cache_path).parent / f"bad_files_{name}.yaml"
    lines = [
        f"# files of dataset {name!r} that cannot be used, with the reason;",
        f"# to leave them out, paste this under datasets.{name} in your config:",
        "exclude:",
    ]
    lines += [f"  - {json.dumps(b.rel)}  # {b.reason}" for b in bad]
    try:
        write_text_atomic(path, "\n".join(lines) + "\n")
    except (OSError, EmoheadOutputError) as e:
        log.warning("could not write the list of unusable files (%s)", e)
        return None
    return path


def _bad_summary(name: str, bad: list[BadFile], listing: Path | None, *, skipped: bool) -> str:
    head = (
        f"dataset {name!r}: left out {len(bad)} unusable file(s) (datasets.{name}.on_bad_file: skip):"
        if skipped
        else f"dataset {name!r}: {len(bad)} file(s) cannot be used:"
    )
    lines = [head] + [f"  {b.reason}" for b in bad[:MAX_LISTED]]
    if len(bad) > MAX_LISTED:
        lines.append(f"  ... and {len(bad) - MAX_LISTED} more")
    if listing is not None:
        lines.append(f"  (all of them, as an exclude list: {listing})")
    return "\n".join(lines)


class BadFilesError(EmoheadInputError):
    """Files of one or more datasets cannot be used: ALL of them, listed at once (not one per
    run), with a ready-to-paste ``exclude:`` list (the ``bad_files_{name}.yaml`` list file)."""

    def __init__(self, by_dataset: dict[str, tuple[list[BadFile], Path | None]]):
        self.by_dataset = by_dataset
        parts = [_bad_summary(n, bad, listing, skipped=False) for n, (bad, listing) in by_dataset.items()]
        names = list(by_dataset)
        example = names[0]
        first = by_dataset[example][0]
        snippet = ", ".join(json.dumps(b.rel) for b in first[:3]) + (", ..." if len(first) > 3 else "")
        listed = any(listing is not None for _, listing in by_dataset.values())
        fix = (
            "repair or re-download the files above and rerun; or leave them out: add them to "
            f"datasets.{example}.exclude (e.g. exclude: [{snippet}]"
            + ("; the list files above hold every one, ready to paste" if listed else "")
            + f"), or set datasets.{example}.on_bad_file: skip to leave out every unusable file "
            "with a warning (large datasets)."
        )
        total = sum(len(b) for b, _ in by_dataset.values())
        super().__init__(
            f"{total} unusable file(s) in dataset(s) {', '.join(names)}:\n" + "\n".join(parts) + "\n", fix=fix
        )

    @classmethod
    def merge(cls, errors: list[BadFilesError]) -> BadFilesError:
        merged: dict = {}
        for e in errors:
            merged.update(e.by_dataset)
        return cls(merged)


# --------------------------------------------------------------------------- table


def build_table(
    name: str,
    spec: dict,
    *,
    mirror: str | os.PathLike | None = None,
    resources_dir: str | os.PathLike = "resources",
    manifest: dict[str, ehassets.Asset] | None = None,
    cache_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """The sample table of dataset ``name`` configured by ``spec`` (``config["datasets"][name]``)."""
    kind = spec["kind"]
    if kind not in PARSERS:
        raise EmoheadInputError(
            f"unknown dataset kind {kind!r}; expected one of {sorted(PARSERS)}.",
            path=f"config datasets.{name}.kind",
        )
    entries, root_desc = list_root(
        str(spec["root"]),
        mirror=mirror,
        resources_dir=resources_dir,
        manifest=manifest,
        include=spec.get("include"),
        exclude=spec.get("exclude"),
    )
    if not entries:
        raise EmoheadInputError(
            f"no media files found for dataset {name!r} (kind {kind}); expected {EXPECTED[kind]}.",
            path=root_desc,
            fix="point datasets.<name>.root at the dataset directory.",
        )
    policy = spec.get("on_bad_file", "fail")
    bad: list[BadFile] = []

    def reject(entry: Entry, err: EmoheadInputError) -> None:
        bad.append(BadFile(str(entry.rel), err))

    rows = PARSERS[kind](entries, root_desc, reject)
    if not rows and not bad:
        raise EmoheadInputError(
            f"no samples found for dataset {name!r} (kind {kind}); expected {EXPECTED[kind]}.",
            path=root_desc,
            fix="point datasets.<name>.root at the dataset directory.",
        )
    actors = {str(a) for a in spec.get("actors") or []}
    emotions = {
        canonical_emotion(e, path=f"config datasets.{name}.emotions") for e in spec.get("emotions") or []
    }
    if actors:
        rows = [r for r in rows if r["actor"] in actors]
    if emotions:
        rows = [r for r in rows if r["emotion"] in emotions]
    if not rows and not bad:
        raise EmoheadInputError(
            f"the actors/emotions filters of dataset {name!r} leave no samples.",
            path=root_desc,
            fix="check datasets.<name>.actors / emotions.",
        )
    cache = DurationCache(cache_path)
    out = []
    for r in rows:
        v, a = r["video"], r["audio"]
        probed = _probe_row(v, a, cache, reject, audio_optional=bool(r.get("audio_optional")))
        if probed is None:
            continue
        probed, has_audio = probed
        if not has_audio:
            a = None
        out.append(
            {
                "sample_id": r["sample_id"],
                "dataset": name,
                "actor": str(r["actor"]),
                "emotion": r["emotion"],
                "intensity": r["intensity"],
                "sentence": str(r["sentence"]),
                "split": "train",
                "video_path": v.table_path if v is not None else "",
                "audio_path": a.table_path if a is not None else "",
                "duration_s": float(probed),
            }
        )
    cache.save()
    if bad:
        listing = _write_bad_list(name, bad, cache_path)
        if policy != "skip":
            raise BadFilesError({name: (bad, listing)})
        log.warning("%s", _bad_summary(name, bad, listing, skipped=True))
    if not out:
        raise EmoheadInputError(
            f"no usable samples left in dataset {name!r} after leaving out {len(bad)} unusable file(s).",
            path=root_desc,
            fix="check the dataset root and the files listed above.",
        )
    df = pd.DataFrame(out, columns=COLUMNS)
    df["intensity"] = df["intensity"].astype("Int64")
    if kind in DEFAULT_SPLITS:
        s = {**DEFAULT_SPLITS[kind], **(spec.get("split") or {})}
        df["split"] = assign_splits(df, float(s["train_s"]), float(s["test_s"])).astype(str)
    elif spec.get("split"):
        s = spec["split"]
        df["split"] = assign_splits(df, float(s.get("train_s", 0)), float(s.get("test_s", 0)))
    return df.sort_values("sample_id", kind="stable").reset_index(drop=True)


def build_tables(config: dict, *, cache_dir: str | os.PathLike | None = None) -> dict[str, pd.DataFrame]:
    """Sample tables of every dataset in a (validated) config. Unusable files of every dataset
    are collected and reported together (:class:`BadFilesError`)."""
    resources = config.get("resources_dir", "resources")
    mirror = (config.get("assets") or {}).get("mirror")
    cache_dir = Path(cache_dir) if cache_dir else Path(resources) / "cache"
    tables, errors = {}, []
    for name, spec in (config.get("datasets") or {}).items():
        try:
            tables[name] = build_table(
                name,
                spec,
                mirror=mirror,
                resources_dir=resources,
                cache_path=cache_dir / f"durations_{name}.json",
            )
        except BadFilesError as e:
            errors.append(e)
    if errors:
        raise BadFilesError.merge(errors)
    return tables


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the sample table as Parquet (atomic)."""
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    df = pd.read_parquet(path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise EmoheadInputError(
            f"sample table lacks columns {missing}.", path=path, fix="rerun rule sample_table."
        )
    df["intensity"] = df["intensity"].astype("Int64")
    return df
