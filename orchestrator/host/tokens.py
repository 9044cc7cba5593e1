"""The API tokens of the daemon's TCP listener: the state dir's tokens.json, and the check a listener asks.

Owns: tokens.json (only the sha256 digest of each token, with its name, scope and creation time; never a
token's text), written atomically under an flock of tokens.lock beside it, and read only when it is a regular
file of this user's that no other user can read or write (as OpenSSH's StrictModes), without following a link.
TokenCheck answers "which scope does this presented token have?" in constant time over every stored digest,
and sees a create or revoke at its next call. Never: a token's text written, logged, kept or put in an error.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any, NamedTuple

from ..core.errors import UserError
from .statedir import OPEN_FLAGS, check_state_dir, prepare_state_dir

SCOPES = ("read", "admin")
TOKENS_NAME = "tokens.json"
LOCK_NAME = "tokens.lock"
PREFIX = "orch_"  # lets a secret scanner, or a reader of a leaked log, tell what the token is for
MAX_BYTES = 1 << 20  # tokens.json is read whole: about 6,000 tokens fit, far more than a host needs
_NAME = re.compile(r"[a-z0-9][-a-z0-9_.]{0,62}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
_VERSION = 1


class Token(NamedTuple):
    name: str
    scope: str  # "read" | "admin"
    digest: str  # sha256 hex of the token text
    created: float  # unix time


def tokens_path(state_dir: Path) -> Path:
    return state_dir / TOKENS_NAME


def digest_of(text: str) -> str:
    # errors="replace": a presented text that is not encodable still gets a digest (one that matches nothing,
    # as a token is ASCII without "?"), instead of an exception that would tell it apart.
    return hashlib.sha256(text.encode("utf-8", errors="replace")).hexdigest()


# -- reading ------------------------------------------------------------------------------------------------

_FileKey = tuple[int, int, int, int]  # (st_ino, st_size, st_mtime_ns, st_mode): what tells one version of the file from another


def load_tokens(state_dir: Path) -> list[Token]:
    """The tokens of `state_dir`, in the order they were created; [] when it has no tokens.json. UserError,
    naming the file and what to do, when it is a link, not a regular file, not this user's, readable or
    writable by other users, larger than MAX_BYTES or malformed."""
    return list(_read(tokens_path(state_dir))[1])


def _read(path: Path) -> tuple[_FileKey | None, tuple[Token, ...]]:
    try:
        # O_NONBLOCK: a FIFO planted in place of the file is refused below instead of hanging the open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | OPEN_FLAGS)
    except FileNotFoundError:
        return None, ()
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UserError(f"{path} is a symbolic link: refused (a file of the state dir is never a link); "
                            "remove it, and create the tokens again") from None
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        info = os.fstat(fd)
        _check_owned(path, info)
        data = b""
        while len(data) <= MAX_BYTES:
            chunk = os.read(fd, MAX_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise UserError(f"{path} is larger than {MAX_BYTES // 1024} KiB: refused, as it cannot be a file of "
                        "tokens this orchestrator wrote; remove it, and create the tokens again")
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode), _parse(path, data)


def _check_owned(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path} is not a regular file: refused; remove it, and create the tokens again")
    if info.st_uid != os.geteuid():
        raise UserError(f"{path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}): refused, as "
                        f"whoever owns it decides who may use the API; remove it, and create the tokens again")
    if info.st_mode & (stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH | stat.S_IWOTH):
        raise UserError(f"{path} is readable or writable by other users (mode {stat.S_IMODE(info.st_mode):04o}): "
                        f"refused, as whoever can write it can give themselves a token; `chmod 600 {path}`")


def _parse(path: Path, data: bytes) -> tuple[Token, ...]:
    def malformed(what: str) -> UserError:
        return UserError(f"{path} is malformed ({what}): refused; fix it, or remove it (which revokes every "
                         "token) and create the tokens again")

    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise malformed(f"not JSON: {error}"[:200]) from None
    if not isinstance(document, dict) or document.get("version") != _VERSION \
            or not isinstance(document.get("tokens"), list):
        raise malformed(f'expected {{"version": {_VERSION}, "tokens": [...]}}')
    tokens: list[Token] = []
    names: set[str] = set()
    for index, entry in enumerate(document["tokens"]):
        problem = _entry_problem(entry)
        if problem:
            raise malformed(f"tokens[{index}]: {problem}")
        if entry["name"] in names:
            raise malformed(f"tokens[{index}]: the name {entry['name']!r} is used twice")
        names.add(entry["name"])
        tokens.append(Token(entry["name"], entry["scope"], entry["digest"], float(entry["created"])))
    return tuple(tokens)


def _entry_problem(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "not an object"
    if set(entry) != set(Token._fields):
        return f"expected exactly the keys {', '.join(Token._fields)}"
    if not isinstance(entry["name"], str) or not _NAME.fullmatch(entry["name"]):
        return "name: not a token name"
    if entry["scope"] not in SCOPES:
        return f"scope: not one of {', '.join(SCOPES)}"
    if not isinstance(entry["digest"], str) or not _DIGEST.fullmatch(entry["digest"]):
        return "digest: not 64 lowercase hex digits"
    created = entry["created"]
    if isinstance(created, bool) or not isinstance(created, (int, float)) or not 0 <= created < float("inf"):
        return "created: not a unix time"
    return ""


# -- writing ------------------------------------------------------------------------------------------------


def create_token(state_dir: Path, name: str, scope: str, now: float) -> str:
    """Make a token named `name` with `scope`, created at `now` (unix time), and return its text: the only
    time it exists outside the caller, as tokens.json keeps only its digest. UserError for a name that is not
    1-63 characters of [a-z0-9][-a-z0-9_.]*, a scope not in SCOPES, or a name in use."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(f"token name {name!r} refused: 1-63 characters, lowercase letters, digits, '-', '_' and "
                        "'.', starting with a letter or a digit")
    if scope not in SCOPES:
        raise UserError(f"token scope {scope!r} refused: one of {', '.join(SCOPES)}")
    prepare_state_dir(state_dir)
    path = tokens_path(state_dir)
    with _Locked(state_dir):
        previous, tokens = _read(path)
        if any(token.name == name for token in tokens):
            raise UserError(f"a token named {name!r} exists already: revoke it first to make a new one of that name")
        text = PREFIX + secrets.token_urlsafe(32)
        _write(path, (*tokens, Token(name, scope, digest_of(text), now)), previous)
    return text


def revoke_token(state_dir: Path, name: str) -> bool:
    """Forget the token named `name`; False when there is none (nothing is made or changed then)."""
    path = tokens_path(state_dir)
    if not os.path.lexists(path):
        return False
    check_state_dir(state_dir)
    with _Locked(state_dir):
        previous, tokens = _read(path)
        kept = tuple(token for token in tokens if token.name != name)
        if len(kept) == len(tokens):
            return False
        _write(path, kept, previous)
    return True


class _Locked:
    """An exclusive flock of tokens.lock for a read-change-write of tokens.json: two creates at once both land."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / LOCK_NAME
        self._fd = -1

    def __enter__(self) -> None:
        try:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | OPEN_FLAGS, 0o600)
        except OSError as error:
            raise UserError(f"cannot open {self._path}: {error.strerror or error}") from None
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_: object) -> None:
        os.close(self._fd)  # closing releases the flock


def _write(path: Path, tokens: tuple[Token, ...], previous: _FileKey | None) -> None:
    """Replace tokens.json atomically: a reader sees the old file or the new one, whole, never a mix."""
    text = json.dumps({"version": _VERSION, "tokens": [token._asdict() for token in tokens]}, indent=2) + "\n"
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600, O_EXCL
    try:
        try:
            data = memoryview(text.encode())
            while data:
                data = data[os.write(fd, data):]
            os.fchmod(fd, 0o600)
            if previous is not None:
                # A TokenCheck tells versions apart by (inode, size, mtime): two writes within one tick of the
                # file system's clock could reuse an inode and a size; a later mtime makes every version differ.
                written = os.fstat(fd)
                if written.st_mtime_ns <= previous[2]:
                    os.utime(fd, ns=(written.st_atime_ns, previous[2] + 1))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory)  # the rename itself outlives a crash
    finally:
        os.close(directory)


# -- checking -----------------------------------------------------------------------------------------------


class TokenCheck:
    """What a listener asks for each request: the scope of a presented token, or None. Re-reads the file only
    when its (st_ino, st_size, st_mtime_ns, st_mode) changed, so a revoke takes effect at the next request without a
    restart. Compares in constant time: sha256 of the presented text, then hmac.compare_digest against EVERY
    stored digest (no early exit), so timing says nothing about which or whether one matched. Never logs or
    keeps the presented text.

    Safe to call from many threads. A tokens.json that became unusable (a link, other users' mode, malformed)
    raises UserError from scope_of and any(), naming the file, and no token is accepted until it is fixed."""

    def __init__(self, state_dir: Path) -> None:
        self._path = tokens_path(state_dir)
        self._lock = threading.Lock()
        self._key: _FileKey | None = None
        self._tokens: tuple[Token, ...] = ()

    def scope_of(self, presented: str) -> str | None:
        digest = digest_of(presented)
        scope = None
        for token in self._current():
            if hmac.compare_digest(digest, token.digest):
                scope = token.scope
        return scope

    def any(self) -> bool:
        """Whether at least one token exists (a listener on a non-loopback address refuses to start without)."""
        return bool(self._current())

    def _current(self) -> tuple[Token, ...]:
        with self._lock:
            try:
                info = os.stat(self._path, follow_symlinks=False)
                key: _FileKey | None = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_mode)
            except FileNotFoundError:
                key = None
            except OSError as error:
                self._key, self._tokens = None, ()
                raise UserError(f"cannot read {self._path}: {error.strerror or error}") from None
            if key is None:
                self._key, self._tokens = None, ()
            elif key != self._key:
                self._key, self._tokens = None, ()  # fail closed until a read succeeds
                # The key of what was read (fstat of the opened file), not of the stat above: a file replaced
                # between the two is read again next time instead of being mistaken for the one stat saw.
                self._key, self._tokens = _read(self._path)
            return self._tokens
