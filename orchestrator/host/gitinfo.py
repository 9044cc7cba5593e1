"""Which git commit manifests come from: the revision records it, so `history` says what was applied."""

from __future__ import annotations

import os
from collections.abc import Sequence


def git_commit_of(paths: Sequence[str]) -> tuple[str | None, bool | None]:
    """The commit of the git checkout holding the first path, and whether the paths have local changes;
    (None, None) outside a checkout or without git. Bounded: git gets 5 s for each question."""
    import subprocess

    folder = paths[0] if os.path.isdir(paths[0]) else os.path.dirname(os.path.abspath(paths[0]))
    try:
        commit = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=False)
        if commit.returncode != 0:
            return None, None
        dirty = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--", *map(os.path.abspath, paths)],
                               capture_output=True, text=True, timeout=5, check=False)
        return commit.stdout.strip(), bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None
