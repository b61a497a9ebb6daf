"""What a job will need, estimated before it starts, and refused when the machine cannot give it.

A config value can imply resources far beyond any machine (``render.resolution: 100000`` makes
the prepared store of a subject about 30 GB per frame). The schema bounds every value
(config/schema.yaml), but a value inside its range can still be too much for this machine; the
job then stops before writing anything, with the estimate, what the machine has, and the keys
that drive the estimate.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import EmoheadInputError, EmoheadOutputError
from .io import fault_fix


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} PB"


def available_memory() -> int | None:
    """Bytes of memory this process can still get: MemAvailable, capped by a cgroup (v2 / v1)
    memory limit; None where unknown."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            raw = Path(limit_file).read_text().strip()
            if raw == "max":
                continue
            room = int(raw) - int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if room > 0 and int(raw) < 1 << 60:
            avail = room if avail is None else min(avail, room)
    return avail


def free_disk(path: str | os.PathLike) -> int | None:
    """Bytes free for this user on the filesystem that holds ``path`` (or its nearest existing
    ancestor); None where unknown."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    if st.f_blocks == 0:
        return None
    return st.f_bavail * st.f_frsize


def check_fits(
    what: str,
    *,
    memory: float | None = None,
    disk: float | None = None,
    disk_path: str | os.PathLike | None = None,
    keys: str,
    fix: str,
) -> None:
    """Refuse ``what`` when its estimated ``memory`` / ``disk`` (bytes, at ``disk_path``) exceed
    what the machine has now: memory as an input (config) error naming ``keys``; disk as an output
    fault (free space or another results_dir) that names the keys too."""
    if memory is not None:
        have = available_memory()
        if have is not None and memory > have:
            raise EmoheadInputError(
                f"{what} needs about {fmt_bytes(memory)} of memory, this machine has {fmt_bytes(have)} "
                f"available (estimate from {keys}); nothing was started.",
                path=f"config {keys.split(',')[0].strip()}",
                fix=fix,
            )
    if disk is not None and disk_path is not None:
        have = free_disk(disk_path)
        if have is not None and disk > have:
            raise EmoheadOutputError(
                f"cannot write this output: {what} needs about {fmt_bytes(disk)} of disk, the disk has "
                f"{fmt_bytes(have)} free (estimate from {keys}); nothing was written.",
                path=disk_path,
                fix=f"{fix}; or {fault_fix('no_space', disk_path)}",
                reason="no_space",
            )
