"""The state dir: made owner-only, and used only when it is ours alone.

A state dir another user can write to lets them plant links where the orchestrator (often root) then
truncates or appends (the lock, the daemon's log, a replica's log), or swap state.db; so it is refused, as
OpenSSH refuses a group-writable ~/.ssh. Files in it are opened without following links.
"""

from __future__ import annotations

import fcntl
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

LOCK_NAME = "daemon.lock"


class StateDirLocked(UserError):
    """Another daemon, or a foreground run, owns this state dir."""


def take_lock(state_dir: Path, role: str) -> int:
    """Own `state_dir` for the life of the returned descriptor (flock): one owner, a daemon or a foreground
    `run`, whose pid (and "run" for a run) the lock file holds for the others' messages."""
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | OPEN_FLAGS, 0o600)
    except OSError as error:
        raise UserError(f"cannot open {path}: {error.strerror or error}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").split()
        os.close(fd)
        raise StateDirLocked(owner_words(state_dir, holder)) from None
    os.ftruncate(fd, 0)
    os.write(fd, (f"{os.getpid()}\n" if role == "daemon" else f"{os.getpid()} {role}\n").encode())
    return fd


def lock_holder(state_dir: Path) -> list[str] | None:
    """[pid, role] of whoever owns `state_dir` now (role "daemon" or "run"), or None when nobody does."""
    try:
        fd = os.open(state_dir / LOCK_NAME, os.O_RDONLY | OPEN_FLAGS)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.read(fd, 64).decode(errors="replace").split() or ["?"]
        return None
    finally:
        os.close(fd)


def owner_words(state_dir: Path, holder: list[str]) -> str:
    pid = holder[0] if holder else "?"
    if len(holder) > 1 and holder[1] == "run":
        return (f"a foreground `orchestrator run` (pid {pid}) owns state dir {state_dir}: it serves no API and "
                "takes no apply; stop it (Ctrl-C), or use another --state-dir")
    return f"another daemon (pid {pid}) is running for state dir {state_dir}"


def run_owner(state_dir: Path) -> str | None:
    """Why nothing but that run may use `state_dir`, when a foreground `run` owns it; else None."""
    holder = lock_holder(state_dir)
    return owner_words(state_dir, holder) if holder is not None and holder[1:] == ["run"] else None
