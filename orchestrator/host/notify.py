"""The sd_notify sockets of replica starts (systemd's notify protocol): made, read and removed here.

A replica whose spec has a `notify` probe gets, for each start, a datagram socket of its own, named in its main
process's $NOTIFY_SOCKET (hooks and exec checks do not get it: systemd gives it to the main process only). The
replica sends READY=1 there once it serves; the prober (probes.py) waits for that on its selector.

Where: <state dir>/run/notify/<start>.sock (the state dir is the log dir's parent), in a directory of this user's
that no other user may enter (0700; refused when it is a link, another user's, or open to others), bound through
/proc/self/fd/N of that directory, so no part of the path can be swapped meanwhile. A child must reach the socket
by its name, which the kernel bounds to 108 bytes: when the path is longer, or the child runs as another user
(who cannot enter the state dir), the socket is abstract instead, a name the kernel picks ('@' and five hex
digits), reachable by any process on the host: trust then rests on the sender check alone.

Who counts: each datagram carries its sender's pid as the kernel saw it (SO_PASSCRED, SCM_CREDENTIALS), and counts
only when that is the replica's main process, a process of its session (a replica leads its own session, and no
process outside it can join it), or one whose living ancestors lead to it. A sender that has already exited when
its datagram is read can only be recognised as the main process (systemd has the same limit with systemd-notify).

Bounded: a datagram is read into 4096 bytes (a longer one is dropped), at most 16 per wake-up, descriptors sent
along are closed unread; of the message only the lines READY=1 and STATUS=... mean anything.

Lifetime: made before the spawn, closed and unlinked when the start ends (reaped or abandoned) and when the
executor lets go; socket files an earlier daemon left are removed when the directory is first used. Owned by the
executor (execute.py); the prober reads its own duplicate of each and never makes or removes one.
"""

from __future__ import annotations

import array
import os
import socket
import stat
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import SpawnError
from ..core.model import ProbeAction, ProcessSpec
from .observe import stat_fields

NOTIFY_SOCKET = "NOTIFY_SOCKET"
DATAGRAM_BYTES = 4096  # a notify message longer than this is dropped (systemd's own limit is about as small)
DATAGRAMS_PER_WAKE = 16  # a process that floods its socket delays nothing else by more than this
STATUS_CHARS = 200  # of a STATUS= line, what is kept
ANCESTORS = 64  # how far up a sender's parents are followed to the replica's main process
_MAX_PATH = 107  # sun_path holds 108 bytes, with its NUL
_CREDENTIALS = struct.calcsize("3i")  # struct ucred: pid, uid, gid


def uses_notify(spec: ProcessSpec) -> bool:
    """Does any probe of `spec` (startup, readiness or liveness) wait for READY=1?"""
    probes = (spec.probes.startup, spec.probes.readiness, spec.probes.liveness)
    return any(probe is not None and probe.action is ProbeAction.NOTIFY for probe in probes)


@dataclass(frozen=True)
class NotifySocket:
    sock: socket.socket
    address: str  # what $NOTIFY_SOCKET says: an absolute path, or '@' and an abstract name
    file: str  # its name in the directory; "" for an abstract one


@dataclass(frozen=True)
class Heard:
    """What the datagrams read at one wake-up said."""

    ready_from: int = 0  # pid of the replica's process that sent READY=1; 0 when none did
    status: str | None = None  # the last STATUS= text of the replica's processes
    foreign: int = 0  # pid of a process outside the replica whose READY=1 was ignored


class NotifySockets:
    """The notify socket of each running start, by the pid of its main process (sockets of adopted replicas are
    not known: their starts' sockets went with the daemon that made them)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(os.path.abspath(directory))  # $NOTIFY_SOCKET must not depend on a cwd
        self._lock = threading.Lock()
        self._folder: int | None = None  # the directory, opened (and checked) when first used
        self._by_pid: dict[int, NotifySocket] = {}

    def open(self, name: str, by_path: bool) -> NotifySocket:
        """A new socket for one start, not yet anyone's; `by_path` False: the child cannot enter the state dir
        (it runs as another user), so the socket is abstract. Raises SpawnError with the reason."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        try:
            # Before the name exists: no datagram arrives without its sender's credentials.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            file = f"{name}.sock"
            path = self.directory / file
            if by_path and len(os.fsencode(str(path))) <= _MAX_PATH:
                with self._lock:
                    folder = self._open_folder()
                old = os.umask(0o177)  # 0600: only this user (and root) can send to it
                try:
                    sock.bind(f"/proc/self/fd/{folder}/{file}")
                finally:
                    os.umask(old)
                return NotifySocket(sock, str(path), file)
            sock.bind("")  # the kernel picks an unused abstract name
            return NotifySocket(sock, "@" + sock.getsockname()[1:].decode("ascii"), "")
        except BaseException as error:
            sock.close()
            if isinstance(error, OSError):
                raise SpawnError(f"cannot make its notify socket in {self.directory}: {error.strerror or error}") \
                    from error
            raise

    def keep(self, pid: int, notify: NotifySocket) -> None:
        """`notify` is the socket of the start whose main process is `pid` now."""
        with self._lock:
            self._by_pid[pid] = notify

    def receiver(self, pid: int) -> socket.socket | None:
        """A duplicate of the socket of the running start whose main process is `pid`, for the caller to read
        and close; None when it has none. (A pid cannot be reused while its process is unreaped, and the socket
        is let go when it is reaped: the pid names one start.)"""
        with self._lock:
            notify = self._by_pid.get(pid)
            return notify.sock.dup() if notify is not None else None

    def end(self, pid: int) -> None:
        """The start whose main process was `pid` ended: close and unlink its socket."""
        with self._lock:
            notify = self._by_pid.pop(pid, None)
        if notify is not None:
            self.discard(notify)

    def discard(self, notify: NotifySocket) -> None:
        """Close and unlink a socket (one no start came of, or one whose start ended)."""
        notify.sock.close()
        if notify.file:
            with self._lock:
                folder = self._open_folder()
            try:
                os.unlink(notify.file, dir_fd=folder)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        """Let go of every socket (the executor lets go of its replicas)."""
        with self._lock:
            ending, self._by_pid = list(self._by_pid.values()), {}
        for notify in ending:
            self.discard(notify)
        with self._lock:
            if self._folder is not None:
                os.close(self._folder)
                self._folder = None

    def _open_folder(self) -> int:
        if self._folder is None:
            self._folder = owner_only_dir(self.directory)
            _remove_sockets(self._folder)  # an earlier daemon's, which ended without removing them
        return self._folder

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_pid)


def owner_only_dir(path: Path) -> int:
    """An open descriptor of `path` (made 0700, with its parent, if missing): raises SpawnError unless it is a
    directory of this user's, no link, that no other user can enter; its parent must be this user's and
    writable by no other (the state dir above is checked by the daemon)."""
    folder = os.open(path.parent.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name, private in ((path.parent.name, False), (path.name, True)):
            try:
                os.mkdir(name, mode=0o700, dir_fd=folder)
            except FileExistsError:
                pass
            try:
                inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            except OSError as error:
                raise SpawnError(f"cannot use {path}: {error.strerror or error} (a link, or not a directory?)") \
                    from error
            os.close(folder)
            folder = inner
            info = os.fstat(folder)
            where = path if private else path.parent
            if info.st_uid != os.geteuid():
                raise SpawnError(f"{where} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()}): "
                                 "refused as a place for notify sockets")
            if info.st_mode & (0o077 if private else 0o022):
                raise SpawnError(f"{where} has mode {stat.S_IMODE(info.st_mode):04o}: refused as a place for "
                                 f"notify sockets, which only this user may reach; `chmod {'700' if private else 'go-w'} "
                                 f"{where}`")
    except BaseException:
        os.close(folder)
        raise
    return folder


def _remove_sockets(folder: int) -> None:
    for name in os.listdir(folder):
        try:
            if name.endswith(".sock") and stat.S_ISSOCK(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
                os.unlink(name, dir_fd=folder)
        except OSError:
            pass


def receive(sock: socket.socket, main: int, limit: int = DATAGRAMS_PER_WAKE) -> Heard:
    """Read what is waiting on a start's socket (at most `limit` datagrams) and what it says; `main` is the
    pid of the start's main process."""
    ready_from = foreign = 0
    status = None
    for _ in range(limit):
        try:
            data, ancillary, flags, _address = sock.recvmsg(DATAGRAM_BYTES, socket.CMSG_SPACE(_CREDENTIALS))
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break
        sender = _sender(ancillary)
        if flags & socket.MSG_TRUNC or sender is None:
            continue  # too long to be read whole, or of nobody known
        ready, said = parse(data)
        if not ready and said is None:
            continue
        if not from_replica(sender, main):
            if ready:
                foreign = sender
            continue
        if said is not None:
            status = said
        if ready and not ready_from:
            ready_from = sender
    return Heard(ready_from, status, foreign)


def _sender(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    sender = None
    for level, kind, data in ancillary:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_CREDENTIALS and len(data) >= _CREDENTIALS:
            sender = struct.unpack("3i", data[:_CREDENTIALS])[0]
        elif kind == socket.SCM_RIGHTS:  # descriptors sent along (FDSTORE=1): not kept
            fds = array.array("i")
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            for fd in fds:
                os.close(fd)
    return sender


def parse(data: bytes) -> tuple[bool, str | None]:
    """(has a READY=1 line, the text of its last STATUS= line or None) of one notify message."""
    ready = False
    status = None
    for line in data.split(b"\n"):
        if line == b"READY=1":
            ready = True
        elif line.startswith(b"STATUS="):
            text = line[7:].decode(errors="replace")[:STATUS_CHARS]
            status = "".join(c if c.isprintable() else " " for c in text)
    return ready, status


def from_replica(sender: int, main: int) -> bool:
    """Is `sender` the main process `main` of a replica, in its session, or below it? (A process gone by now is
    none of these, unless it is `main` itself.)"""
    if sender == main:
        return True
    pid = sender
    for _ in range(ANCESTORS):
        try:
            fields = stat_fields(pid)
        except (OSError, IndexError):
            return False
        try:
            parent, session = int(fields[1]), int(fields[3])
        except (IndexError, ValueError):
            return False
        if session == main or parent == main:
            return True
        if parent <= 1:
            return False
        pid = parent
    return False
