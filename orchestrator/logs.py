"""Per-replica log files: where a replica's stdout and stderr go.

Each replica writes both streams, interleaved as they happen, to one file that it holds open itself
(`<state>/logs/<namespace>/<name>.<replica>.log`), so logging costs the orchestrator nothing per line.
Size rotation comes with the `logs` field of the spec.
"""

from __future__ import annotations

import os
from pathlib import Path

from .model import ReplicaId


def log_path(log_dir: Path, replica: ReplicaId) -> Path:
    namespace, name = replica.key.split("/", 1)
    return log_dir / namespace / f"{name}.{replica.index}.log"


def open_log(log_dir: Path, replica: ReplicaId) -> int:
    """An fd open for appending to the replica's log file, created 0600 with its folder 0700 if needed.

    Logs may hold secrets a process prints, so only the owner may read them.
    """
    path = log_path(log_dir, replica)
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
