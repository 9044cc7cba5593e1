"""Unix-domain sockets of the control API: binding owner-only, connecting, and the peer's credentials.

A socket path longer than the kernel's limit (108 bytes, easily reached under deep state dirs) is
reached through /proc/self/fd/N/NAME, with N an O_PATH descriptor of its folder.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path

SOCKET_NAME = "orchestrator.sock"
_MAX_PATH = 100  # sun_path holds 108 bytes with its NUL; keep a margin


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


def _with_short_path(path: Path, use: Callable[[str], None]) -> None:
    if len(os.fsencode(str(path))) <= _MAX_PATH:
        use(str(path))
        return
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        use(f"/proc/self/fd/{folder}/{path.name}")
    finally:
        os.close(folder)


def bind_owner_only(sock: socket.socket, path: Path) -> None:
    """Bind `sock` at `path` so that only its owner can connect (mode 0600, in a 0700 folder)."""
    old = os.umask(0o177)
    try:
        _with_short_path(path, sock.bind)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)


def connect(path: Path, timeout: float | None = None) -> socket.socket:
    """A connected socket. A server whose listen queue is full answers EAGAIN at once (Unix sockets do not
    wait for room): that is retried, briefly and a bounded number of times, until `timeout` (or 10 s) runs out."""
    deadline = time.monotonic() + (timeout if timeout is not None else 10.0)
    pause = 0.001
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            _with_short_path(path, sock.connect)
        except BlockingIOError:
            sock.close()
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)  # the daemon is accepting a burst of clients: room comes within milliseconds
            pause = min(pause * 2, 0.05)
            continue
        except BaseException:
            sock.close()
            raise
        return sock


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end (SO_PEERCRED), as the kernel saw it at connect time."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


NOTIFY_SOCKET = "NOTIFY_SOCKET"


def notify_service_manager(state: str) -> bool:
    """Tell systemd (a Type=notify unit) how the service is, e.g. "READY=1" or "STOPPING=1"; False when no
    service manager listens (NOTIFY_SOCKET unset). An abstract socket is named with a leading '@'."""
    address = os.environ.get(NOTIFY_SOCKET, "")
    if not address or address[0] not in "/@":
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as notify:
            notify.connect(address)
            notify.sendall(f"{state}\nMAINPID={os.getpid()}".encode())
    except OSError:
        return False
    return True
