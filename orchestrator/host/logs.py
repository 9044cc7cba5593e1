"""Per-replica log files: where a replica's stdout and stderr go.

Each replica writes both streams, interleaved as they happen, to one file that it holds open itself
(`<state>/logs/<namespace>/<name>.<replica>.log`), so logging costs the orchestrator nothing per line.
Files past the spec's `logs.maxBytes` are rotated at each resync (`rotate_if_needed`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..core.model import LogPolicy, ReplicaId


def log_path(log_dir: Path, replica: ReplicaId) -> Path:
    namespace, name = replica.key.split("/", 1)
    return log_dir / namespace / f"{name}.{replica.index}.log"


def open_log(log_dir: Path, replica: ReplicaId) -> int:
    """An fd open for appending to the replica's log file, created 0600 with its folder 0700 if needed.

    Logs may hold secrets a process prints, so only the owner may read them.
    """
    path = log_path(log_dir, replica)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW  # a planted link is refused
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(path, flags, 0o600)


def rotate_if_needed(path: Path, policy: LogPolicy) -> bool:
    """Rotate `path` when it has grown past policy.max_bytes; True when it did.

    Copy-and-truncate: the process keeps its descriptor (opened O_APPEND), so after the truncation it goes
    on writing at the start of the same, now empty, file. Lines written between the copy and the
    truncation are lost; that window is one copy of at most max_bytes.
    """
    try:
        if path.stat().st_size <= policy.max_bytes:
            return False
    except FileNotFoundError:
        return False
    if policy.keep > 0:
        for index in range(policy.keep - 1, 0, -1):
            older = path.with_name(f"{path.name}.{index}")
            if older.exists():
                os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
        # Copied into a file that is 0600 from its creation and renamed into place when complete, so
        # nobody ever sees a half-written or readable-by-others copy.
        partial = path.with_name(f"{path.name}.1.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(path, "rb") as source, os.fdopen(fd, "wb") as target:
            shutil.copyfileobj(source, target)
        os.replace(partial, path.with_name(f"{path.name}.1"))
    os.truncate(path, 0)
    return True
