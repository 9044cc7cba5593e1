"""The state dir: made owner-only, and used only when it is ours alone.

A state dir another user can write to lets them plant links where the orchestrator (often root) then
truncates or appends (the lock, the daemon's log, a replica's log), or swap state.db; so it is refused, as
OpenSSH refuses a group-writable ~/.ssh. Files in it are opened without following links.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..core.errors import UserError


def prepare_state_dir(path: Path) -> None:
    """Make `path` (0700) if missing; raise UserError, saying what to do, unless it is a directory of this
    user's that no other user can write to, and writable by this one."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise UserError(f"state dir {path} is not a directory: choose another --state-dir") from None
    except OSError as error:
        raise UserError(f"cannot make state dir {path}: {error.strerror or error}") from None
    check_state_dir(path)


def check_state_dir(path: Path) -> None:
    try:
        info = os.stat(path)  # a link to the state dir is fine: what it points to is checked
    except OSError as error:
        raise UserError(f"cannot use state dir {path}: {error.strerror or error}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise UserError(f"state dir {path} is not a directory: choose another --state-dir")
    if info.st_uid != os.geteuid():
        raise UserError(f"state dir {path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}): refused; "
                        "use a state dir of your own")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UserError(f"state dir {path} is writable by other users (mode {stat.S_IMODE(info.st_mode):04o}): "
                        f"refused, as anyone who can write there could make the orchestrator write anywhere; "
                        f"`chmod go-w {path}`")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"state dir {path} is not writable: choose another --state-dir")


def no_link(path: Path) -> None:
    """Refuse a file of the state dir that is a link (SQLite opens by name, following links)."""
    if path.is_symlink():
        raise UserError(f"{path} is a symbolic link: refused (a file of the state dir is never a link); remove it")


OPEN_FLAGS = os.O_CLOEXEC | os.O_NOFOLLOW  # for every file the orchestrator opens in its state dir
