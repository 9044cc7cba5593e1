"""Where the CLI looks by default (the state dir), and what it refuses of the paths it is given."""

from __future__ import annotations

import os
from pathlib import Path


def default_state_dir() -> Path:
    home = os.environ.get("ORCHESTRATOR_HOME")
    if home:
        return Path(home)
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "orchestrator"


def refuse_stdin_for(paths: list[str], **options: bool) -> None:
    """`-f -` is read once: no watching it (`watch`), and no pruning by files it is not (`prune`)."""
    from ..core.errors import UsageError

    for option, given in options.items():
        if given and "-" in paths:
            raise UsageError(f"--{option} needs manifest files or directories, not - (standard input)")
