"""Listening sockets the daemon owns and every replica of a process inherits, systemd style (sd_listen_fds(3)).

Owns: reading a socket's `listen` (tcp://HOST:PORT, tcp://[IPV6]:PORT, unix:/ABS/PATH; a host name is resolved
when bound); binding it, held at a descriptor >= 100 with close-on-exec; the command line that hands the bound
sockets to a replica as fds 3, 4, ... in declared order, with LISTEN_FDS, LISTEN_PID (the replica's own pid),
LISTEN_FDNAMES and ORCH_SOCKET_<NAME>_FD; taking a socket back from an adopted replica (pidfd_getfd(2)) after a
daemon restart; closing.

Never: accept(), shutdown() or listen() again on a bound socket (the replicas share its one accept queue); set
O_NONBLOCK unless the spec asks (it is a flag of the open file, so every holder sees it); unlink a unix path
this process did not create, or that is no longer the inode its bind made (systemd's and circus's rule).

Why a bash shim. subprocess renumbers only stdin, stdout and stderr, and a preexec_fn (which the project avoids:
unsafe with threads) is its only hook before exec. So Popen passes the sockets at their own numbers (pass_fds:
everything else stays closed) and a shell moves them to 3.. and sets LISTEN_PID=$$ (only known once the child
exists; the exec keeps the pid). Debian's /bin/sh, dash 0.5.12, reads a single digit as the descriptor of a
redirection: `exec 3<&101` is "Syntax error: Bad fd number", and a socket cannot be reopened through
/proc/self/fd/N either (ENXIO). bash (Essential on Debian and Ubuntu; /bin/sh itself on Fedora, RHEL and Arch)
takes any number, starts in about 4 ms (a Python shim: 16 ms, and a venv another user may not read), and with
-p reads no $BASH_ENV and imports no functions from the replica's environment. What the program then sees is
the given environment plus what any shell adds: PWD, and bash's SHLVL.

Servers take the sockets as systemd's: `uvicorn --fd 3`, `server.listen({fd: 3})`, HAProxy's `bind fd@3`;
gunicorn reads LISTEN_FDS by itself and needs no --bind (gunicorn 27 given `--bind fd://3` as well opens fd 3
twice, and fails with EBADF).

A unix socket's mode is DEFAULT_MODE (0600, owner only) unless the spec says otherwise: replicas inherit the
descriptor and never need the path; clients do, and a mode that lets them in is a choice to write down.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import ipaddress
import os
import re
import socket
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from ..core.errors import ListenError
from ..core.model import Socket

FIRST_FD = 3  # SD_LISTEN_FDS_START: the replica's first inherited socket
HIGH_FD = 100  # the daemon holds its copies from here, so that moving them to 3.. in a child never clobbers one
DEFAULT_MODE = 0o600  # a unix socket's mode when the spec gives none
_UNIX_PATH_BYTES = 107  # sun_path holds 108 bytes with its NUL
_SHELLS = ("/bin/bash", "/usr/bin/bash")
_HOST_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?")  # the manifest schema's
_PIDFD_GETFD = 438  # the same on every architecture of the unified syscall table (since 5.x) but these:
_OWN_SYSCALL_TABLE = ("alpha", "ia64", "mips")


@dataclass(frozen=True)
class Address:
    """A parsed `listen`: a host and port for tcp (an IP address without brackets, or a host name with the family
    AF_UNSPEC until resolve() makes addresses of it), or a path for unix."""

    family: socket.AddressFamily
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def sockaddr(self) -> tuple[str, int] | str:
        return self.path if self.family == socket.AF_UNIX else (self.host, self.port)


@dataclass(frozen=True)
class Listener:
    """A bound, listening socket the daemon holds while any replica of its process may need it."""

    spec: Socket
    fd: int  # >= HIGH_FD, close-on-exec
    made: tuple[int, int] | None = None  # unix: (st_dev, st_ino) of the path this bind created; None: none to unlink

    @property
    def created(self) -> bool:
        """Did this bind create the unix path (so that closing it may unlink it)?"""
        return self.made is not None


def parse_listen(text: str) -> Address:
    """`tcp://HOST:PORT` (HOST an IPv4 address or a host name), `tcp://[IPV6]:PORT` or `unix:/ABS/PATH` (the
    manifest schema's forms, and port 0 for "any"); ValueError saying what is wrong otherwise."""
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path.startswith("/"):
            raise ValueError(f"{text!r}: a unix socket needs an absolute path, such as unix:/run/app/http.sock")
        if "\0" in path or path.endswith("/"):
            raise ValueError(f"{text!r}: not a file path")
        if len(os.fsencode(path)) > _UNIX_PATH_BYTES:
            raise ValueError(f"{text!r}: the path is longer than the {_UNIX_PATH_BYTES} bytes a unix socket "
                             f"address holds")
        return Address(socket.AF_UNIX, path=path)
    if not text.startswith("tcp://"):
        raise ValueError(f"{text!r}: expected tcp://HOST:PORT, tcp://[IPV6]:PORT or unix:/ABS/PATH")
    host, colon, port = text[len("tcp://"):].rpartition(":")
    if not colon or not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535:
        raise ValueError(f"{text!r}: expected a port from 0 to 65535 after the last ':'")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise ValueError(f"{text!r}: {host} is not an IPv6 address") from None
        return Address(socket.AF_INET6, host=host[1:-1], port=int(port))
    if ":" in host:
        raise ValueError(f"{text!r}: an IPv6 address goes in brackets, as tcp://[::1]:8080")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        if not _HOST_NAME.fullmatch(host):
            raise ValueError(f"{text!r}: {host or 'the host'} is neither an IPv4 address nor a host name (write "
                             f"0.0.0.0 or [::] for every address)") from None
        return Address(socket.AF_UNSPEC, host=host, port=int(port))
    return Address(socket.AF_INET, host=host, port=int(port))


def resolve(address: Address) -> tuple[Address, ...]:
    """The IP addresses a tcp address stands for, the first one what bind() binds: a literal itself; a host name's
    (looked up now: /etc/hosts, else the resolver, whose own timeouts bound it), IPv4 ones first, as the schema
    pairs host names with IPv4. socket.gaierror when the name has none."""
    if address.family != socket.AF_UNSPEC:
        return (address,)
    found: dict[Address, None] = {}
    for family, _, _, _, sockaddr in socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM):
        if family in (socket.AF_INET, socket.AF_INET6):
            found[Address(family, str(sockaddr[0]), address.port)] = None
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, f"{address.host} has no IP address")
    return tuple(sorted(found, key=lambda each: each.family != socket.AF_INET))


def unix_mode(spec: Socket) -> int:
    """The permission bits a unix socket's path gets: the spec's octal `mode` ("0660"), else DEFAULT_MODE."""
    if spec.mode is None:
        return DEFAULT_MODE
    if not re.fullmatch(r"0?[0-7]{3}", spec.mode):
        raise ValueError(f"socket {spec.name}: mode {spec.mode!r} is not an octal mode such as \"0660\"")
    return int(spec.mode, 8)


def default_backlog() -> int:
    """net.core.somaxconn (the kernel caps any backlog at it anyway), as systemd's Backlog= default."""
    try:
        with open("/proc/sys/net/core/somaxconn", "rb") as limit:
            return int(limit.read(32))
    except (OSError, ValueError):
        return socket.SOMAXCONN


def bind(spec: Socket) -> Listener:
    """Bind and listen on the socket a spec declares. ValueError for a spec that cannot be meant (a bad
    `listen`, a mode on a tcp socket, reusePort on a unix one); ListenError naming the socket, its address and
    the errno for what the kernel or the file system refused.

    tcp: a host name binds the first address resolve() gives; SO_REUSEADDR, SO_REUSEPORT only when asked,
    IPV6_V6ONLY for an IPv6 address (so [::] leaves IPv4 to a socket of its own). unix: an existing path is replaced only when it is a socket of this user that nobody
    accepts on (connect is refused: a stale file of an earlier run); the path then gets its mode before listen(),
    so that no client connects through looser permissions."""
    address = parse_listen(spec.listen)
    unix = address.family == socket.AF_UNIX
    if spec.mode is not None and not unix:
        raise ValueError(f"socket {spec.name}: mode is for unix sockets, {spec.listen} is tcp")
    if spec.reuse_port and unix:
        raise ValueError(f"socket {spec.name}: reusePort is for tcp sockets, {spec.listen} is unix")
    mode = unix_mode(spec) if unix else 0
    if address.family == socket.AF_UNSPEC:
        try:
            address = resolve(address)[0]
        except socket.gaierror as error:
            raise ListenError(errno.EADDRNOTAVAIL, f"{_where(spec)}: {address.host} does not resolve: "
                                                   f"{error.strerror or error} (EADDRNOTAVAIL)") from error
    backlog = default_backlog() if spec.backlog is None else spec.backlog
    if backlog < 0:
        raise ValueError(f"socket {spec.name}: backlog {backlog} is negative")
    sock = socket.socket(address.family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    made: tuple[int, int] | None = None
    try:
        if unix:
            _clear_stale(spec, address.path)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if spec.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if address.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address.sockaddr)
        if unix:
            made = _claim(spec, address.path, mode)
        sock.listen(backlog)
        if spec.non_blocking:
            sock.setblocking(False)
        fd = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
    except BaseException as error:
        if made is not None:
            _unlink_if_ours(address.path, made)
        if isinstance(error, OSError) and not isinstance(error, ListenError):
            raise _listen_error(spec, error) from error
        raise
    finally:
        sock.close()  # the copy at HIGH_FD and up is the one kept
    return Listener(spec, fd, made)


def close(listener: Listener) -> None:
    """Close the daemon's copy of a socket; a unix path is unlinked first (while the socket still holds the
    address, so nobody takes it for stale meanwhile), and only if this bind made it and it is still that inode."""
    try:
        if listener.made is not None:
            _unlink_if_ours(parse_listen(listener.spec.listen).path, listener.made)
    finally:
        os.close(listener.fd)


def socket_environment(sockets: Sequence[Socket]) -> dict[str, str]:
    """What a replica inheriting `sockets` finds in its environment besides LISTEN_PID (set by the shim):
    LISTEN_FDS, LISTEN_FDNAMES (the names, ':'-separated) and ORCH_SOCKET_<NAME>_FD (NAME upper-cased, other
    characters than letters and digits as '_'), for flags such as `--fd $(ORCH_SOCKET_HTTP_FD)`."""
    env = {"LISTEN_FDS": str(len(sockets)), "LISTEN_FDNAMES": ":".join(s.name for s in sockets)}
    for index, sock in enumerate(sockets):
        if not sock.name or ":" in sock.name:
            raise ValueError(f"socket {sock.name!r}: a socket name is not empty and has no ':' (LISTEN_FDNAMES)")
        variable = f"ORCH_SOCKET_{re.sub(r'[^A-Z0-9]', '_', sock.name.upper())}_FD"
        if variable in env:
            raise ValueError(f"socket {sock.name}: its variable {variable} is another socket's too")
        env[variable] = str(FIRST_FD + index)
    return env


def inherited(argv: Sequence[str], fds: Sequence[int]) -> tuple[list[str], tuple[int, ...]]:
    """The command line that runs `argv` (already expanded) with `fds` at 3, 4, ... in order, and the
    descriptors Popen must pass (its close_fds closes every other). The shim moves each to its number, closes the
    sources, exports LISTEN_PID=$$ and execs the program, found through $PATH as execvp would (module docstring).
    The environment to start it with is socket_environment()'s."""
    if not fds:
        return list(argv), ()
    if not argv:
        raise ValueError("no command to run")
    targets = range(FIRST_FD, FIRST_FD + len(fds))
    if len(set(fds)) != len(fds) or any(fd < FIRST_FD or fd in targets for fd in fds):
        raise ValueError(f"descriptors {list(fds)} cannot be moved to {FIRST_FD}..{targets[-1]}: each must be "
                         f"distinct and above them")
    moves = " ".join(f"{target}<&{fd}" for target, fd in zip(targets, fds))
    closes = " ".join(f"{fd}<&-" for fd in fds)
    script = f'exec {moves} {closes} || exit 126; LISTEN_PID=$$; export LISTEN_PID; exec -- "$0" "$@"'
    return [shim_shell(), "-p", "-c", script, *argv], tuple(fds)


def shim_shell() -> str:
    """The bash that renumbers descriptors for inherited(); ListenError (ENOENT) when there is none."""
    for path in _SHELLS:
        if os.access(path, os.X_OK):
            return path
    raise ListenError(errno.ENOENT, f"passing sockets to a replica needs bash ({' or '.join(_SHELLS)}), which is "
                                    f"not installed: /bin/sh cannot move descriptors above 9 (ENOENT)")


def listening(fd: int) -> bool:
    """Is `fd` an open, listening stream socket? (A cheap check before handing it to a replica: a descriptor
    number closed and reused since would give the replica whatever now has it.)"""
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return False
        sock = socket.socket(fileno=fd)
    except OSError:
        return False
    try:
        return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
                and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1)
    except OSError:
        return False
    finally:
        sock.detach()


def matches(fd: int, spec: Socket) -> bool:
    """Is `fd` a listening stream socket bound to the spec's address (of a host name: to one it resolves to)? A
    port of 0 in the spec (any port, chosen at bind time) matches every port of its host."""
    try:
        address = parse_listen(spec.listen)
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return False
        candidates = resolve(address)
        sock = socket.socket(fileno=fd)
    except (OSError, ValueError):  # socket.gaierror is an OSError
        return False
    try:
        if (sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) != socket.SOCK_STREAM
                or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
            return False
        family, name = sock.family, sock.getsockname()
    except OSError:
        return False
    finally:
        sock.detach()  # the descriptor is the caller's
    if family == socket.AF_UNIX:
        return address.family == socket.AF_UNIX and bool(name == address.path)
    return address.port in (0, name[1]) and any(
        each.family == family and _ip(each.host) == _ip(name[0]) for each in candidates)


def bound_address(fd: int) -> str:
    """A bound socket's address as a `listen` string: the port a spec's port 0 got, say."""
    sock = socket.socket(fileno=fd)
    try:
        name, family = sock.getsockname(), sock.family
    finally:
        sock.detach()
    if family == socket.AF_UNIX:
        return f"unix:{name}"
    return f"tcp://[{name[0]}]:{name[1]}" if family == socket.AF_INET6 else f"tcp://{name[0]}:{name[1]}"


def recover(pidfd: int, target_fd: int, spec: Socket) -> int | None:
    """Take a copy of descriptor `target_fd` of the process behind `pidfd` (pidfd_getfd(2): Linux >= 5.6, and
    ptrace access to it) when it is still the spec's socket; returns it at HIGH_FD and up, close-on-exec.

    None when the process has no such descriptor, has ended, or holds something else there (the program may
    have closed or reused its fd 3). ListenError when the kernel refuses (EPERM from the ptrace policy, ENOSYS
    before 5.6): the caller falls back as it would for None, with that reason to show."""
    try:
        got = _pidfd_getfd(pidfd, target_fd)
    except OSError as error:
        if error.errno in (errno.EBADF, errno.ESRCH):
            return None
        raise _listen_error(spec, error) from error
    try:
        if not matches(got, spec):
            return None
        return fcntl.fcntl(got, fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
    finally:
        os.close(got)


def _pidfd_getfd(pidfd: int, target_fd: int) -> int:
    native = getattr(os, "pidfd_getfd", None)  # not in Python 3.11's os
    if native is not None:
        return int(native(pidfd, target_fd))
    if os.uname().machine.startswith(_OWN_SYSCALL_TABLE):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    result = _libc().syscall(ctypes.c_long(_PIDFD_GETFD), ctypes.c_int(pidfd), ctypes.c_int(target_fd),
                             ctypes.c_uint(0))
    if result < 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))
    return int(result)


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _clear_stale(spec: Socket, path: str) -> None:
    """Make way for binding `path`: nothing there, or a stale socket file of this user (removed); refuse anything
    else (a file, a directory, a link, a socket of another user or one a process accepts on)."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as error:
        raise _listen_error(spec, error) from error
    if not stat.S_ISSOCK(found.st_mode):
        raise ListenError(errno.EEXIST, f"{_where(spec)}: {path} exists and is not a socket, so it is not "
                                        f"replaced (EEXIST)")
    if found.st_uid != os.geteuid():
        raise ListenError(errno.EPERM, f"{_where(spec)}: {path} is a socket of uid {found.st_uid}, not this "
                                       f"user's, so it is not replaced (EPERM)")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        pass  # nobody accepts on it: left by a process that ended
    except FileNotFoundError:
        return
    except OSError as error:
        # EAGAIN: it accepts, with a full queue; EPROTOTYPE: a live datagram socket. Else: cannot tell.
        if error.errno in (errno.EAGAIN, errno.EPROTOTYPE):
            raise _in_use(spec) from error
        raise _listen_error(spec, error) from error
    else:
        raise _in_use(spec)
    finally:
        probe.close()
    _unlink_if_ours(path, (found.st_dev, found.st_ino))


def _claim(spec: Socket, path: str, mode: int) -> tuple[int, int]:
    """The identity of the socket file bind just made, given its mode (through an O_PATH descriptor: a link
    swapped in meanwhile is not followed)."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        made = os.fstat(fd)
        if not stat.S_ISSOCK(made.st_mode):
            raise ListenError(errno.EEXIST, f"{_where(spec)}: {path} was replaced right after the bind (EEXIST)")
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)
    return made.st_dev, made.st_ino


def _unlink_if_ours(path: str, made: tuple[int, int]) -> None:
    try:
        now = os.lstat(path)
        if stat.S_ISSOCK(now.st_mode) and (now.st_dev, now.st_ino) == made:
            os.unlink(path)
    except FileNotFoundError:
        pass


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text.split("%", 1)[0])  # a scope (%eth0 or %2) names the same address


def _where(spec: Socket) -> str:
    return f"socket {spec.name} ({spec.listen})"


def _in_use(spec: Socket) -> ListenError:
    return ListenError(errno.EADDRINUSE, f"{_where(spec)}: address already in use (EADDRINUSE): a process "
                                         f"accepts connections on it")


def _listen_error(spec: Socket, error: OSError) -> ListenError:
    number = error.errno or errno.EIO
    reason = os.strerror(number)
    return ListenError(number, f"{_where(spec)}: {reason[:1].lower()}{reason[1:]} "
                               f"({errno.errorcode.get(number, number)})")
