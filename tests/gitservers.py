"""Real git servers on loopback for the tests: an upstream repository to push to, `git daemon`, smart HTTP
(`git http-backend` as CGI behind Basic auth) and, where sshd is installed, an sshd of the test's own.

Import with `from gitservers import ...` (tests/ is on sys.path, as for harness.py). Each server is a context
manager that ends everything it started, by process group, even when the test fails; the pytest fixtures
below wrap them. Git here never reads the user's or the system's config.
"""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import pytest

if TYPE_CHECKING:
    from typing_extensions import Self

HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"
SSHD = "/usr/sbin/sshd"
START_SECONDS = 10.0  # how long a server may take to listen


def git_env() -> dict[str, str]:
    """The tests' environment for git: no global or system config, no prompts, fixed identity."""
    env = dict(os.environ)
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", GIT_TERMINAL_PROMPT="0", LC_ALL="C",
               GIT_AUTHOR_NAME="Test", GIT_AUTHOR_EMAIL="test@example.org", GIT_COMMITTER_NAME="Test",
               GIT_COMMITTER_EMAIL="test@example.org")
    return env


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=git_env(), capture_output=True, text=True, timeout=30,
                          check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, child: subprocess.Popen[bytes], banner: bytes = b"") -> bool:
    """Until 127.0.0.1:port accepts (and sends `banner`), or `child` ended, or START_SECONDS passed."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and child.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                if not banner or connection.recv(len(banner)) == banner:
                    return True
        except OSError:
            pass
        time.sleep(0.01)
    return False


def end_group(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, SIGKILL it if it lingers, and reap the child."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            pass
        try:
            child.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # what is left of the group after its leader ended
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Upstream:
    """A bare `origin.git` (or `bare`) and a working clone in `path` that commits and pushes to `branch`."""

    def __init__(self, path: Path, branch: str = "main", bare: Path | None = None) -> None:
        self.branch = branch
        self.bare = bare if bare is not None else path / "origin.git"
        self.work = path / "work"
        self.bare.parent.mkdir(parents=True, exist_ok=True)
        git("-c", f"init.defaultBranch={branch}", "init", "--quiet", "--bare", str(self.bare))
        git("-c", f"init.defaultBranch={branch}", "init", "--quiet", str(self.work))
        for key, value in (("user.name", "Test"), ("user.email", "test@example.org"), ("commit.gpgsign", "false")):
            git("config", key, value, cwd=self.work)
        git("remote", "add", "origin", str(self.bare), cwd=self.work)

    @property
    def url(self) -> str:
        return self.bare.resolve().as_uri()

    @property
    def head(self) -> str:
        return git("rev-parse", "HEAD", cwd=self.work).strip()

    def write(self, relpath: str, text: str) -> None:
        target = self.work / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def symlink(self, relpath: str, points_to: str) -> None:
        target = self.work / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(points_to)

    def remove(self, relpath: str) -> None:
        git("rm", "--quiet", "-r", "--", relpath, cwd=self.work)

    def move(self, relpath: str, to: str) -> None:
        (self.work / to).parent.mkdir(parents=True, exist_ok=True)
        git("mv", "--", relpath, to, cwd=self.work)

    def commit(self, message: str) -> str:
        """Commit everything in the clone and push it; the new commit."""
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "--quiet", "origin", f"HEAD:refs/heads/{self.branch}", cwd=self.work)
        return self.head

    def tag(self, name: str, annotated: bool = False, force: bool = False) -> None:
        git("tag", *(["-a", "-m", f"tag {name}"] if annotated else []), *(["-f"] if force else []), name,
            cwd=self.work)
        git("push", "--quiet", *(["--force"] if force else []), "origin", f"refs/tags/{name}", cwd=self.work)

    def force_push_reset(self, sha_or_ref: str) -> None:
        """Rewrite history: the branch is reset to `sha_or_ref` here and upstream."""
        git("reset", "--quiet", "--hard", sha_or_ref, cwd=self.work)
        git("push", "--quiet", "--force", "origin", f"HEAD:refs/heads/{self.branch}", cwd=self.work)


class GitDaemon:
    """`git daemon` on 127.0.0.1 serving every repository under `base`."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = 0
        self.child: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.base.mkdir(parents=True, exist_ok=True)
        log = self.base.parent / f"{self.base.name}.git-daemon.log"
        for _ in range(3):  # the free port may be taken meanwhile: try another
            self.port = free_port()
            with open(log, "ab") as out:
                self.child = subprocess.Popen(
                    ["git", "daemon", "--reuseaddr", f"--base-path={self.base}", "--export-all",
                     "--listen=127.0.0.1", f"--port={self.port}", "--informative-errors"],
                    env=git_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
            if wait_listening(self.port, self.child):
                return self
            end_group(self.child)
        raise RuntimeError(f"git daemon did not listen: {log.read_text(errors='replace')[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.child is not None:
            end_group(self.child)

    def url_for(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"


class SmartHttp:
    """Smart HTTP on 127.0.0.1: `git http-backend` run as CGI for each request on the repositories under
    `root`, behind Basic auth as `username`:`password`. Records each request's path (with its query) and
    Authorization header. `on_request(path)`, when set, runs on each request before it is answered: the client
    waits meanwhile (the tests read /proc of git's processes then). `protocol_v2=False` drops the client's Git-Protocol header, so the server speaks v0 (refusing wants by id)."""

    def __init__(self, root: Path, username: str = "x-access-token", password: str = "secret",
                 protocol_v2: bool = True) -> None:
        self.root = root
        self.username = username
        self.password = password
        self.protocol_v2 = protocol_v2
        self.requests: list[str] = []
        self.authorizations: list[str] = []
        self.on_request: Callable[[str], None] | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="smart-http", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def url_for(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def authorizations_decoded(self) -> list[str]:
        decoded = []
        for header in self.authorizations:
            scheme, _, value = header.partition(" ")
            decoded.append(base64.b64decode(value).decode(errors="replace") if scheme == "Basic" else header)
        return decoded

    def _authorized(self, header: str) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"


def _handler(served: SmartHttp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            header = self.headers.get("Authorization", "")
            served.requests.append(self.path)
            served.authorizations.append(header)
            if served.on_request is not None:
                served.on_request(self.path)
            body = self._body()
            if not served._authorized(header):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            parts = urlsplit(self.path)
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": str(served.root),
                   "GIT_HTTP_EXPORT_ALL": "1", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
                   "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1", "REQUEST_METHOD": self.command,
                   "PATH_INFO": unquote(parts.path), "QUERY_STRING": parts.query, "REMOTE_ADDR": "127.0.0.1",
                   "REMOTE_USER": served.username, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                   "CONTENT_LENGTH": str(len(body))}
            if os.environ.get("ORCH_TEST_SESSION"):
                env["ORCH_TEST_SESSION"] = os.environ["ORCH_TEST_SESSION"]
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            if served.protocol_v2 and self.headers.get("Git-Protocol"):
                env["HTTP_GIT_PROTOCOL"] = self.headers["Git-Protocol"]
            done = subprocess.run([HTTP_BACKEND], input=body, env=env, capture_output=True, timeout=60, check=False)
            head, _, content = done.stdout.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode(errors="replace").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    return Handler


class LoopbackSshd:
    """An sshd of the test's own on 127.0.0.1 (own host key, config, authorized key), letting the current user
    in with a generated ed25519 `client_key`; `known_hosts` holds its host key line."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = 0
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.client_key = folder / "client_ed25519"
        self.known_hosts = folder / "known_hosts"
        self.child: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str:
        """Why an sshd cannot run here, or ""."""
        if not os.access(SSHD, os.X_OK) or shutil.which("ssh-keygen") is None:
            return f"{SSHD} is not installed (apt-get install openssh-server)"
        if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
            try:
                os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
            except OSError as error:
                return f"sshd needs /run/sshd: {error}"
        return ""

    def __enter__(self) -> Self:
        self.folder.mkdir(parents=True, exist_ok=True)
        host_key = self.folder / "host_ed25519"
        for key in (host_key, self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "orchestrator-test", "-f",
                            str(key)], check=True, capture_output=True, timeout=30)
        (self.folder / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        log = self.folder / "sshd.log"
        for _ in range(3):
            self.port = free_port()
            config = self.folder / "sshd_config"
            config.write_text("\n".join([
                f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
                f"PidFile {self.folder / 'sshd.pid'}", f"AuthorizedKeysFile {self.folder / 'authorized_keys'}",
                "StrictModes no", "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "LogLevel VERBOSE", ""]))
            with open(log, "ab") as out:
                self.child = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL,
                                              stdout=out, stderr=out, start_new_session=True)
            if wait_listening(self.port, self.child, banner=b"SSH-"):
                host = host_key.with_suffix(".pub").read_text().split()
                self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host[0]} {host[1]}\n")
                return self
            end_group(self.child)
        raise RuntimeError(f"sshd did not listen: {log.read_text(errors='replace')[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.child is not None:
            end_group(self.child)

    def url_for(self, bare: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{bare.resolve()}"


class SilentServer:
    """A socket on 127.0.0.1 that accepts connections and never answers (for timeouts)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(5)
        for connection in self.accepted:
            connection.close()


# -- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    """A repository with one commit on main: deploy/app.yaml and README.md."""
    repo = Upstream(tmp_path / "upstream")
    repo.write("deploy/app.yaml", "kind: Process\n")
    repo.write("README.md", "hello\n")
    repo.commit("first")
    return repo


@pytest.fixture
def git_daemon(tmp_path: Path) -> Iterator[GitDaemon]:
    with GitDaemon(tmp_path / "daemon-root") as daemon:
        yield daemon


@pytest.fixture
def smart_http(tmp_path: Path) -> Iterator[SmartHttp]:
    """Smart HTTP with Basic auth as x-access-token:secret, serving tmp_path/http-root."""
    with SmartHttp(tmp_path / "http-root") as server:
        yield server


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[LoopbackSshd]:
    why = LoopbackSshd.available()
    if why:
        pytest.skip(why)
    with LoopbackSshd(tmp_path / "sshd") as server:
        yield server
