"""Where the CLI looks by default: the state dir."""

from __future__ import annotations

import os
from pathlib import Path


def default_state_dir() -> Path:
    home = os.environ.get("ORCHESTRATOR_HOME")
    if home:
        return Path(home)
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "orchestrator"
