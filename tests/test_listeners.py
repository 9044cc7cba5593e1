"""Sockets the daemon binds and every replica inherits (host/listeners.py, Executor.set_listeners): real sockets on
loopback and under tmp_path, real replicas started by the Executor, a stdlib server that checks what systemd's
sd_listen_fds(3) promises, and gunicorn taking the socket by itself."""

from __future__ import annotations

import errno
import fcntl
import http.client
import os
import select
import socket
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import wait_for

from orchestrator.core.errors import ListenError, SpawnError
from orchestrator.core.model import Hook, ProcessSpec, ReplicaId, Shutdown, Socket
from orchestrator.host import listeners
from orchestrator.host.execute import Child, Executor
from orchestrator.host.listeners import Listener, bound_address, inherited, matches, parse_listen, recover
from orchestrator.host.logs import log_path

# Checks what a socket-activated program may rely on, says "ready", then answers each connection on each socket
# with "<socket name> <pid>". argv: the expected names, ':'-separated, then words that must read 3, 4, ...
SERVER = r'''
import os, socket, sys, threading

def fail(message):
    print("FAIL", message, flush=True)
    sys.exit(1)

names = sys.argv[1].split(":")
count = len(names)
if os.environ.get("LISTEN_PID") != str(os.getpid()):
    fail(f"LISTEN_PID is {os.environ.get('LISTEN_PID')!r}, not {os.getpid()}")
if os.environ.get("LISTEN_FDS") != str(count):
    fail(f"LISTEN_FDS is {os.environ.get('LISTEN_FDS')!r}")
if os.environ.get("LISTEN_FDNAMES") != sys.argv[1]:
    fail(f"LISTEN_FDNAMES is {os.environ.get('LISTEN_FDNAMES')!r}")
for index, name in enumerate(names):
    variable = "ORCH_SOCKET_" + name.upper().replace("-", "_") + "_FD"
    if os.environ.get(variable) != str(3 + index):
        fail(f"{variable} is {os.environ.get(variable)!r}")
if sys.argv[2:] != [str(3 + index) for index in range(len(sys.argv[2:]))]:
    fail(f"words {sys.argv[2:]} are not 3, 4, ...")
held = []
for index, name in enumerate(names):
    sock = socket.socket(fileno=3 + index)
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 1:
        fail(f"fd {3 + index} is not listening")
    if not os.get_blocking(3 + index):
        fail(f"fd {3 + index} is non-blocking")
    held.append((name, sock))

def is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True

others = [fd for fd in map(int, os.listdir("/proc/self/fd")) if fd >= 3 + count and is_open(fd)]
if others:
    fail(f"inherited more: {[os.readlink(f'/proc/self/fd/{fd}') for fd in others]}")

def serve(name, sock):
    while True:
        connection, _ = sock.accept()
        with connection:
            connection.sendall(f"{name} {os.getpid()}\n".encode())

for name, sock in held:
    threading.Thread(target=serve, args=(name, sock)).start()
print("ready", flush=True)
'''

APP = '''
import os

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()} {os.getppid()}".encode()]
'''


class Replicas:
    """An Executor with the listeners and replicas of one test, every one of them ended and reaped at close."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server = root / "server.py"
        self.server.write_text(SERVER)
        self.executor = Executor(root / "logs")
        self.running: list[Child] = []
        self.bound: list[Listener] = []

    def bind(self, spec: Socket) -> Listener:
        listener = listeners.bind(spec)
        self.bound.append(listener)
        return listener

    def close_listener(self, listener: Listener) -> None:
        self.bound.remove(listener)
        listeners.close(listener)

    def serving(self, *names: str, words: tuple[str, ...] = ()) -> tuple[str, ...]:
        return (sys.executable, "-I", str(self.server), ":".join(names), *words)

    def start(self, spec: ProcessSpec, index: int = 0) -> Child:
        child = self.executor.spawn(ReplicaId(spec.key, index), spec)
        self.running.append(child)
        return child

    def log(self, child: Child) -> str:
        return log_path(self.root / "logs", child.replica).read_text()

    def ready(self, child: Child, word: str = "ready") -> None:
        wait_for(lambda: word in self.log(child) or "FAIL" in self.log(child) or ended(child), timeout=20,
                 what=f"{child.replica} to say {word!r}")
        assert word in self.log(child), self.log(child)

    def stop(self, child: Child) -> None:
        self.running.remove(child)
        self.executor.kill_group(child.process)
        wait_for(lambda: self.executor.reap(child.process.pid), what=f"{child.replica} to be reaped")

    def close(self) -> None:
        for child in list(self.running):
            self.stop(child)
        for listener in list(self.bound):
            self.close_listener(listener)
        self.executor.release()


def ended(child: Child) -> bool:
    return bool(select.select([child.pidfd], [], [], 0)[0])


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    running = Replicas(tmp_path)
    try:
        yield running
    finally:
        running.close()


def web(*sockets: Socket, command: tuple[str, ...], **fields: object) -> ProcessSpec:
    return ProcessSpec(name="web", command=command, sockets=sockets, shutdown=Shutdown("SIGKILL", 1),
                       **fields)  # type: ignore[arg-type]


def ask(listen: str, timeout: float = 10.0) -> str:
    address = parse_listen(listen)
    with socket.socket(address.family, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(address.sockaddr)
        return client.makefile().read()


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


# --- what a replica inherits --------------------------------------------------------------------------------


def test_a_replica_gets_its_sockets_at_3_and_4_with_the_systemd_variables_and_nothing_else(
        replicas: Replicas, tmp_path: Path) -> None:
    http_socket = replicas.bind(Socket("http", "tcp://127.0.0.1:0"))
    admin = replicas.bind(Socket("admin-api", f"unix:{tmp_path}/admin.sock"))
    replicas.bind(Socket("unrelated", "tcp://127.0.0.1:0"))  # the daemon holds it: no replica of web may see it
    # $(NAME) is expanded in the program's own argv, after the socket variables are set.
    spec = web(http_socket.spec, admin.spec, command=replicas.serving(
        "http", "admin-api", words=("$(ORCH_SOCKET_HTTP_FD)", "$(ORCH_SOCKET_ADMIN_API_FD)")))
    replicas.executor.set_listeners(spec.key, (http_socket.fd, admin.fd))
    child = replicas.start(spec)
    replicas.ready(child)
    assert ask(bound_address(http_socket.fd)) == f"http {child.process.pid}\n"
    assert ask(admin.spec.listen) == f"admin-api {child.process.pid}\n"


def test_two_replicas_share_one_socket_and_both_accept(replicas: Replicas) -> None:
    shared = replicas.bind(Socket("http", "tcp://127.0.0.1:0"))
    spec = web(shared.spec, command=replicas.serving("http"), replicas=2)
    replicas.executor.set_listeners(spec.key, (shared.fd,))
    first, second = replicas.start(spec, 0), replicas.start(spec, 1)
    replicas.ready(first)
    replicas.ready(second)
    answered: set[str] = set()
    wait_for(lambda: answered.add(ask(bound_address(shared.fd)).split()[1]) or len(answered) == 2,
             what="answers from both replicas")
    assert answered == {str(first.process.pid), str(second.process.pid)}


def test_a_shell_command_inherits_them_too(replicas: Replicas) -> None:
    shared = replicas.bind(Socket("http", "tcp://127.0.0.1:0"))
    # The shell expands its own $NAME; `exec` keeps the pid that LISTEN_PID names.
    spec = web(shared.spec, shell=True, command=(f"exec {sys.executable} -I {replicas.server} http $ORCH_SOCKET_HTTP_FD",))
    replicas.executor.set_listeners(spec.key, (shared.fd,))
    child = replicas.start(spec)
    replicas.ready(child)
    assert ask(bound_address(shared.fd)) == f"http {child.process.pid}\n"


def test_gunicorn_takes_the_inherited_socket_by_itself(replicas: Replicas, tmp_path: Path) -> None:
    """gunicorn reads LISTEN_FDS itself (gunicorn/systemd.py) when LISTEN_PID is its pid: no --bind. (With
    `--bind fd://3` as well, gunicorn 27 opens fd 3 twice, and its second open fails with EBADF.)"""
    pytest.importorskip("gunicorn")
    (tmp_path / "app.py").write_text(APP)
    shared = replicas.bind(Socket("http", "tcp://127.0.0.1:0"))
    spec = web(shared.spec, command=(sys.executable, "-m", "gunicorn", "--workers", "2", "--no-control-socket",
                                     "--chdir", str(tmp_path), "app:app"))
    replicas.executor.set_listeners(spec.key, (shared.fd,))
    child = replicas.start(spec)
    replicas.ready(child, "Booting worker")
    listen = bound_address(shared.fd)
    assert f"Listening at: http://{listen.removeprefix('tcp://')} ({child.process.pid})" in replicas.log(child)
    host, port = listen.removeprefix("tcp://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=20)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        worker, arbiter = response.read().decode().split()
    finally:
        connection.close()
    assert response.status == 200
    assert int(arbiter) == child.process.pid and int(worker) != child.process.pid


def test_a_replica_whose_sockets_are_not_bound_does_not_start(replicas: Replicas) -> None:
    spec = web(Socket("http", "tcp://127.0.0.1:0"), Socket("admin", "tcp://127.0.0.1:0"), command=("sleep", "60"))
    with pytest.raises(SpawnError, match="its sockets are not bound: http, admin"):
        replicas.start(spec)
    shared = replicas.bind(Socket("http", "tcp://127.0.0.1:0"))
    replicas.executor.set_listeners(spec.key, (shared.fd,))
    with pytest.raises(SpawnError, match="not bound as declared: 1 bound for http, admin"):
        replicas.start(spec)
    replicas.executor.set_listeners(spec.key, None)
    with pytest.raises(SpawnError, match="its sockets are not bound"):
        replicas.start(spec)
    read, write = os.pipe()  # a descriptor that is no listening socket (a listener closed, its number reused)
    try:
        replicas.executor.set_listeners(spec.key, (shared.fd, read))
        with pytest.raises(SpawnError, match=rf"not bound: admin \(fd {read}\) no longer listening"):
            replicas.start(spec)
    finally:
        os.close(read)
        os.close(write)


def test_a_missing_program_behind_the_shim_is_a_failed_start(replicas: Replicas) -> None:
    shared = replicas.bind(Socket("http", "tcp://127.0.0.1:0"))
    spec = web(shared.spec, command=("no-such-program-here", "--serve"))
    replicas.executor.set_listeners(spec.key, (shared.fd,))
    with pytest.raises(SpawnError, match="command not found: no-such-program-here"):
        replicas.start(spec)


def test_hooks_inherit_no_socket(replicas: Replicas) -> None:
    shared = replicas.bind(Socket("http", "tcp://127.0.0.1:0"))
    spec = web(shared.spec, command=("sleep", "60"))
    replicas.executor.set_listeners(spec.key, (shared.fd,))
    look = ("import os\nfds = []\nfor fd in range(3, 1024):\n    try:\n        os.fstat(fd)\n"
            "    except OSError:\n        continue\n    fds.append(fd)\nprint('open:', fds, os.environ.get('LISTEN_FDS'))")
    hook = replicas.executor.spawn_hook(ReplicaId(spec.key, 0), spec, Hook((sys.executable, "-I", "-c", look)))
    replicas.running.append(hook)
    wait_for(lambda: ended(hook), what="the hook to end")
    replicas.stop(hook)
    assert "open: [] None" in replicas.log(hook), replicas.log(hook)


# --- bind ---------------------------------------------------------------------------------------------------


def test_a_bound_socket_is_held_high_close_on_exec_and_blocking_unless_asked() -> None:
    plain = listeners.bind(Socket("a", "tcp://127.0.0.1:0"))
    other = listeners.bind(Socket("b", "tcp://127.0.0.1:0", reuse_port=True, non_blocking=True, backlog=5))
    try:
        for listener in (plain, other):
            assert listener.fd >= listeners.HIGH_FD and not listener.created
            assert fcntl.fcntl(listener.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            assert matches(listener.fd, listener.spec)
        with socket.socket(fileno=os.dup(plain.fd)) as sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
        with socket.socket(fileno=os.dup(other.fd)) as sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert os.get_blocking(plain.fd) and not os.get_blocking(other.fd)
    finally:
        listeners.close(plain)
        listeners.close(other)
    assert listeners.default_backlog() == int(Path("/proc/sys/net/core/somaxconn").read_text())


def test_an_ipv6_socket_is_v6_only() -> None:
    try:
        listener = listeners.bind(Socket("v6", "tcp://[::1]:0"))
    except ListenError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    try:
        with socket.socket(fileno=os.dup(listener.fd)) as sock:
            assert sock.family == socket.AF_INET6
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        assert bound_address(listener.fd).startswith("tcp://[::1]:")
    finally:
        listeners.close(listener)


def test_a_host_name_binds_its_ipv4_address_first() -> None:
    listener = listeners.bind(Socket("web", "tcp://localhost:0"))  # /etc/hosts: no resolver asked
    try:
        listen = bound_address(listener.fd)
        assert listen.startswith("tcp://127.0.0.1:")
        assert matches(listener.fd, Socket("web", listen.replace("127.0.0.1", "localhost")))
    finally:
        listeners.close(listener)


def test_an_address_in_use_names_the_socket_the_address_and_the_errno() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        before = open_fds()
        with pytest.raises(ListenError) as caught:
            listeners.bind(Socket("http", f"tcp://127.0.0.1:{port}"))
        assert open_fds() == before
    assert str(caught.value) == f"socket http (tcp://127.0.0.1:{port}): address already in use (EADDRINUSE)"
    assert caught.value.errno == errno.EADDRINUSE and isinstance(caught.value, OSError)


def test_an_address_not_of_this_host_is_eaddrnotavail() -> None:
    with pytest.raises(ListenError, match=r"^socket x \(tcp://192\.0\.2\.1:0\): cannot assign requested address "
                                          r"\(EADDRNOTAVAIL\)$"):
        listeners.bind(Socket("x", "tcp://192.0.2.1:0"))  # TEST-NET-1: never a local address


@pytest.mark.parametrize("spec, message", [
    (Socket("x", "tcp://127.0.0.1:0", mode="0660"), "mode is for unix sockets"),
    (Socket("x", "unix:/tmp/x.sock", reuse_port=True), "reusePort is for tcp sockets"),
    (Socket("x", "unix:/tmp/x.sock", mode="rw-"), "not an octal mode"),
    (Socket("x", "tcp://127.0.0.1:0", backlog=-1), "backlog -1 is negative"),
], ids=["mode-on-tcp", "reuse-port-on-unix", "bad-mode", "negative-backlog"])
def test_a_spec_that_cannot_be_meant_is_a_value_error(spec: Socket, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        listeners.bind(spec)


@pytest.mark.parametrize("text, family, host, port, path", [
    ("tcp://127.0.0.1:8080", socket.AF_INET, "127.0.0.1", 8080, ""),
    ("tcp://0.0.0.0:0", socket.AF_INET, "0.0.0.0", 0, ""),
    ("tcp://[::]:443", socket.AF_INET6, "::", 443, ""),
    ("tcp://[::1]:65535", socket.AF_INET6, "::1", 65535, ""),
    ("tcp://localhost:80", socket.AF_UNSPEC, "localhost", 80, ""),  # resolved when bound
    ("unix:/run/app/http.sock", socket.AF_UNIX, "", 0, "/run/app/http.sock"),
    ("unix:///run/app/http.sock", socket.AF_UNIX, "", 0, "///run/app/http.sock"),  # the same file
])
def test_listen_strings_that_parse(text: str, family: int, host: str, port: int, path: str) -> None:
    assert parse_listen(text) == listeners.Address(socket.AddressFamily(family), host, port, path)


@pytest.mark.parametrize("text, message", [
    ("127.0.0.1:80", "expected tcp://HOST:PORT"),
    ("udp://127.0.0.1:53", "expected tcp://HOST:PORT"),
    ("tcp://-web:80", "neither an IPv4 address nor a host name"),
    ("tcp://:80", "the host is neither"),
    ("tcp://::1:80", "goes in brackets"),
    ("tcp://[::g]:80", "is not an IPv6 address"),
    ("tcp://[::1]", "expected a port"),
    ("tcp://127.0.0.1:65536", "expected a port"),
    ("tcp://127.0.0.1:http", "expected a port"),
    ("unix:run/app.sock", "needs an absolute path"),
    ("unix:/run/", "not a file path"),
    ("unix:/" + "a" * 107, "longer than the 107 bytes"),
], ids=lambda value: value if len(value) < 30 else "long")
def test_listen_strings_that_do_not(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_listen(text)


# --- unix sockets -------------------------------------------------------------------------------------------


def test_a_unix_socket_is_owner_only_unless_its_mode_says_otherwise(tmp_path: Path) -> None:
    private = listeners.bind(Socket("a", f"unix:{tmp_path}/a.sock"))
    shared = listeners.bind(Socket("b", f"unix:{tmp_path}/b.sock", mode="0666"))
    try:
        assert stat.S_ISSOCK((tmp_path / "a.sock").lstat().st_mode)
        assert stat.S_IMODE((tmp_path / "a.sock").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "b.sock").stat().st_mode) == 0o666  # not narrowed by the umask
        assert private.created and shared.created
    finally:
        listeners.close(private)
        listeners.close(shared)
    assert not (tmp_path / "a.sock").exists() and not (tmp_path / "b.sock").exists()


def stale_socket(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as gone:
        gone.bind(str(path))  # closed without unlinking: a file nobody accepts on


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "http.sock"
    stale_socket(path)
    os.link(path, tmp_path / "kept")  # so that its inode number cannot be handed to the new socket
    before = path.lstat().st_ino
    listener = listeners.bind(Socket("http", f"unix:{path}"))
    try:
        assert listener.created and path.lstat().st_ino != before
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))  # into its queue
    finally:
        listeners.close(listener)
    assert not path.exists()


def test_a_socket_something_accepts_on_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "http.sock"
    with socket.socket(socket.AF_UNIX) as live:
        live.bind(str(path))
        live.listen()
        with pytest.raises(ListenError, match=r"address already in use \(EADDRINUSE\)") as caught:
            listeners.bind(Socket("http", f"unix:{path}"))
        assert caught.value.errno == errno.EADDRINUSE
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(path))  # still the live one's


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a socket file to another user")
def test_a_stale_socket_of_another_user_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "http.sock"
    stale_socket(path)
    os.chown(path, 65534, 65534)
    with pytest.raises(ListenError, match=r"is a socket of uid 65534, not this user's, so it is not replaced"):
        listeners.bind(Socket("http", f"unix:{path}"))
    assert path.lstat().st_uid == 65534


@pytest.mark.parametrize("make", ["file", "directory", "link"])
def test_what_is_not_a_socket_is_never_replaced(tmp_path: Path, make: str) -> None:
    path = tmp_path / "http.sock"
    if make == "file":
        path.write_text("precious")
    elif make == "directory":
        path.mkdir()
    else:
        stale_socket(tmp_path / "target.sock")
        path.symlink_to(tmp_path / "target.sock")
    with pytest.raises(ListenError, match=r"exists and is not a socket, so it is not replaced \(EEXIST\)"):
        listeners.bind(Socket("http", f"unix:{path}"))
    assert path.is_symlink() if make == "link" else path.is_dir() if make == "directory" else \
        path.read_text() == "precious"


def test_close_unlinks_only_the_path_it_made_while_it_is_still_that_inode(tmp_path: Path) -> None:
    path = tmp_path / "http.sock"
    listener = listeners.bind(Socket("http", f"unix:{path}"))
    path.unlink()
    path.write_text("someone else's")  # the path now names another file
    listeners.close(listener)
    assert path.read_text() == "someone else's"
    path.unlink()

    again = listeners.bind(Socket("http", f"unix:{path}"))
    # What the daemon did not bind itself (a socket taken back from a replica) knows no path of its own.
    copy = Listener(again.spec, fcntl.fcntl(again.fd, fcntl.F_DUPFD_CLOEXEC, listeners.HIGH_FD))
    listeners.close(copy)
    assert stat.S_ISSOCK(path.lstat().st_mode)
    listeners.close(again)
    assert not path.exists()


# --- taking a socket back from a replica ---------------------------------------------------------------------


def test_recover_takes_the_socket_back_from_a_running_replica(replicas: Replicas) -> None:
    listener = replicas.bind(Socket("http", "tcp://127.0.0.1:0"))
    spec = web(listener.spec, command=replicas.serving("http"))
    replicas.executor.set_listeners(spec.key, (listener.fd,))
    child = replicas.start(spec)
    replicas.ready(child)
    listen = bound_address(listener.fd)
    replicas.close_listener(listener)  # as after a daemon restart: only the replica holds it
    try:
        fd = recover(child.pidfd, 3, Socket("http", listen))
    except ListenError as error:
        if error.errno in (errno.EPERM, errno.ENOSYS):
            pytest.skip(f"pidfd_getfd is refused here: {error}")
        raise
    assert fd is not None
    with socket.socket(fileno=fd) as held:
        assert fd >= listeners.HIGH_FD and fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert matches(fd, Socket("http", listen)) and matches(fd, listener.spec)  # port 0: any port
        replicas.stop(child)
        # Nobody else holds it now: a connection gets in only because this copy still listens.
        address = parse_listen(listen)
        with socket.create_connection(address.sockaddr, timeout=10) as client:  # type: ignore[arg-type]
            held.settimeout(10)
            connection, _ = held.accept()
            with connection:
                connection.sendall(b"back\n")
            assert client.makefile().read() == "back\n"


def running_sleep(pid: int) -> Callable[[], bool]:
    return lambda: Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x0060\x00"


def test_recover_gives_none_when_fd_3_is_something_else(tmp_path: Path) -> None:
    wanted = listeners.bind(Socket("http", "tcp://127.0.0.1:0"))
    other = listeners.bind(Socket("other", "tcp://127.0.0.1:0"))
    read, write = os.pipe()
    pipe = fcntl.fcntl(read, fcntl.F_DUPFD_CLOEXEC, listeners.HIGH_FD)
    spec = Socket("http", bound_address(wanted.fd))
    started: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        for source in (pipe, other.fd, None):
            argv, fds = inherited(["sleep", "60"], [source] if source is not None else [])
            child = subprocess.Popen(argv, pass_fds=fds)
            started.append((child, os.pidfd_open(child.pid)))
            wait_for(running_sleep(child.pid), what="the child to run sleep")
            assert os.path.exists(f"/proc/{child.pid}/fd/3") == (source is not None)
            try:
                assert recover(started[-1][1], 3, spec) is None
            except ListenError as error:
                if error.errno in (errno.EPERM, errno.ENOSYS):
                    pytest.skip(f"pidfd_getfd is refused here: {error}")
                raise
    finally:
        for child, pidfd in started:
            child.kill()
            child.wait()
            os.close(pidfd)
        for fd in (read, write, pipe):
            os.close(fd)
        listeners.close(wanted)
        listeners.close(other)


def test_matches_wants_a_listening_stream_socket_of_the_address(tmp_path: Path) -> None:
    listener = listeners.bind(Socket("http", "tcp://127.0.0.1:0"))
    port = int(bound_address(listener.fd).rsplit(":", 1)[1])
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    unbound = socket.socket()
    read, write = os.pipe()
    try:
        udp.bind(("127.0.0.1", port))
        assert matches(listener.fd, Socket("http", f"tcp://127.0.0.1:{port}"))
        assert matches(listener.fd, Socket("http", "tcp://127.0.0.1:0"))
        assert not matches(listener.fd, Socket("http", f"tcp://127.0.0.1:{port + 1 if port < 65535 else 1}"))
        assert not matches(listener.fd, Socket("http", f"tcp://0.0.0.0:{port}"))
        assert not matches(listener.fd, Socket("http", f"unix:{tmp_path}/x.sock"))
        assert not matches(udp.fileno(), Socket("http", f"tcp://127.0.0.1:{port}"))
        assert not matches(unbound.fileno(), Socket("http", "tcp://0.0.0.0:0"))
        assert not matches(read, Socket("http", "tcp://127.0.0.1:0"))
        assert not matches(9999, Socket("http", "tcp://127.0.0.1:0"))
    finally:
        udp.close()
        unbound.close()
        os.close(read)
        os.close(write)
        listeners.close(listener)


# --- the shim and its environment ------------------------------------------------------------------------------


def test_the_shim_moves_each_source_in_order_then_execs_the_program() -> None:
    argv, fds = inherited(["gunicorn", "$x", "a b"], [101, 102])
    script = 'exec 3<&101 4<&102 101<&- 102<&- || exit 126; LISTEN_PID=$$; export LISTEN_PID; exec -- "$0" "$@"'
    assert argv[1:] == ["-p", "-c", script, "gunicorn", "$x", "a b"]
    assert argv[0] == listeners.shim_shell() and fds == (101, 102)
    assert inherited(["sleep", "1"], []) == (["sleep", "1"], ())
    with pytest.raises(ValueError, match="distinct and above them"):
        inherited(["sleep"], [101, 4])
    with pytest.raises(ValueError, match="distinct and above them"):
        inherited(["sleep"], [101, 101])


def test_socket_environment_names_each_socket() -> None:
    assert listeners.socket_environment([Socket("http", "tcp://127.0.0.1:0"), Socket("admin-api", "unix:/x")]) == {
        "LISTEN_FDS": "2", "LISTEN_FDNAMES": "http:admin-api", "ORCH_SOCKET_HTTP_FD": "3",
        "ORCH_SOCKET_ADMIN_API_FD": "4"}
    with pytest.raises(ValueError, match="has no ':'"):
        listeners.socket_environment([Socket("a:b", "unix:/x")])
    with pytest.raises(ValueError, match="is another socket's too"):
        listeners.socket_environment([Socket("a-b", "unix:/x"), Socket("a_b", "unix:/y")])
