"""Secrets the daemon reads from files at the moment it uses them (a webhook's HMAC key, a notifier's header
value): only from an owner-only regular file of the daemon's user, never through a symlink, bounded in size.
What it read is never put in a message.
"""

from __future__ import annotations

import os
import stat

from ..core.errors import UserError

MAX_SECRET_BYTES = 4096


def read_secret(path: str, what: str = "secret file") -> bytes:
    """The secret in `path`, without its trailing newline; UserError (naming `what` and the path, never the
    content) when the file is missing, not a regular file, not the daemon user's, readable by others, empty
    or too long."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as error:
        raise UserError(f"{what} {path}: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{what} {path} is not a regular file")
        if info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise UserError(f"{what} {path} must be the daemon user's and not readable by others (chmod 600)")
        data = os.read(fd, MAX_SECRET_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_BYTES or not data.strip():
        raise UserError(f"{what} {path}: expected one secret of at most {MAX_SECRET_BYTES} bytes")
    return data.rstrip(b"\r\n")
