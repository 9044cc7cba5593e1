"""Git for GitSync: every git command a sync runs, in a per-URL bare shallow cache under the state dir.

Owns `<state>/git/`: `<sha256(url)[:16]>.git/` (bare, shallow, fetched one commit at a time), `checkouts/`
(exported trees, made atomically by rename), `home/` (git's empty HOME) and `askpass.sh`. Each git child gets
an environment built from scratch, a process group of its own (killed whole at its deadline, then reaped; it
is in subreaper.FORKS meanwhile, so the daemon's orphan sweep leaves it to this thread), no stdin, and
bounded output. Secrets stay in their files: the token reaches git only through GIT_ASKPASS, which `cat`s
the file it is named, so argv and environments hold paths. Every message from git is redacted (URL userinfo,
Authorization values, the bytes of the credential files, read at call time) before it leaves in a GitError.

Never puts a secret in argv, an environment or a message; never extracts a link that leaves its tree.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shlex
import shutil
import stat
import tarfile
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import OrchestratorError
from .bounded import BoundedChild
from .subreaper import STATE_MARKER

REASONS = ("AuthFailed", "NetworkError", "RefNotFound", "PathNotFound", "Timeout", "FetchFailed", "UnsafeTree",
           "TooLarge", "CredentialFile")
MESSAGE_LIMIT = 2000  # characters of a GitError's message
STDOUT_LIMIT = 1 << 20  # bytes of ls-remote and the other small answers
SECRET_LIMIT = 64 << 10  # bytes read of a token file, for redaction
KEEP = 5  # fetched commits kept per cache, exports kept per repository and path
ALLOWED_PROTOCOLS = "file:git:http:https:ssh"  # never ext:: (runs a command) or fd::
# Every git command line: no credential helper of anyone's; auto-gc in the foreground, inside the group.
CONFIG = ("-c", "credential.helper=", "-c", "gc.autoDetach=false")
ASKPASS = """#!/bin/sh
# git's GIT_ASKPASS (orchestrator/host/git.py): the user from the environment, the password from a file.
case "$1" in
    Username*) printf '%s\\n' "$ORCH_ASKPASS_USER" ;;
    Password*) exec cat -- "$ORCH_ASKPASS_FILE" ;;
    *) exit 1 ;;
esac
"""
_HEX40 = re.compile(r"[0-9a-f]{40}")
_USERINFO = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s'\"]+@")
_AUTHORIZATION = re.compile(r"(?i)\b(authorization\s*[:=]\s*)[^\r\n'\"]*")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+")
# What git's stderr says, lowercased, in the order it is asked: the first match decides the reason.
_SIGNS = (
    ("AuthFailed", ("authentication failed", "could not read username", "could not read password",
                    "permission denied (publickey", "permission denied, please try again",
                    "host key verification failed", "returned error: 401", "returned error: 403")),
    ("RefNotFound", ("couldn't find remote ref", "not our ref", "unadvertised object")),
    ("NetworkError", ("could not resolve host", "connection refused", "unable to connect", "failed to connect",
                      "does not appear to be a git repository", "not found", "no such repository",
                      "not exported", "connection timed out", "no route to host", "network is unreachable",
                      "connection reset", "could not read from remote repository", "unable to access")),
)
_REFUSED_WANT = ("not our ref", "unadvertised object", "couldn't find remote ref")

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class GitError(OrchestratorError):
    """A git step failed. `reason` is one of REASONS; str(error) is the message, already redacted and at most
    MESSAGE_LIMIT characters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message[:MESSAGE_LIMIT])
        self.reason = reason


@dataclass(frozen=True)
class GitAuth:
    """Where the credentials of a repository are: paths only, each file read when git runs."""

    token_file: str | None = None  # HTTPS password/token file (absolute path)
    username: str = "x-access-token"  # HTTPS username sent with the token
    ssh_key_file: str | None = None
    known_hosts_file: str | None = None
    insecure_skip_host_key_check: bool = False


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` without URL userinfo (scheme://***@), Authorization and Bearer values, or any of `secrets`."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _USERINFO.sub(r"\1***@", text)
    text = _AUTHORIZATION.sub(r"\1***", text)
    return _BEARER.sub(r"\1***", text)


def _shown(url: str) -> str:
    return _USERINFO.sub(r"\1", url)


def _lock_of(path: Path) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(path), threading.Lock())


def _git(argv: Sequence[str], env: dict[str, str], timeout: float) -> BoundedChild:
    try:
        return BoundedChild(argv, env, timeout, name="git")
    except OSError as error:
        raise GitError("FetchFailed", f"cannot run git: {error.strerror or error}") from None


def _check_file(what: str, path: str, secret: bool) -> None:
    """A credential file is used only when it is an absolute path to a regular file of this user's that
    no one else can read (a secret) or write (known hosts)."""
    if not os.path.isabs(path):
        raise GitError("CredentialFile", f"{what} {path} is not an absolute path")
    try:
        info = os.stat(path)
    except OSError as error:
        raise GitError("CredentialFile", f"{what} {path}: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise GitError("CredentialFile", f"{what} {path} is not a regular file")
    if info.st_uid != os.geteuid():
        raise GitError("CredentialFile", f"{what} {path} belongs to uid {info.st_uid}, not to uid {os.geteuid()}")
    if secret and info.st_mode & 0o077:
        raise GitError("CredentialFile", f"{what} {path} is readable by group or others: chmod 600 it")
    if not secret and info.st_mode & 0o022:
        raise GitError("CredentialFile", f"{what} {path} is writable by group or others: chmod 644 it")


def _is_ssh(url: str) -> bool:
    return url.startswith(("ssh://", "git+ssh://", "ssh+git://")) or (
        "://" not in url and re.match(r"[^/:]+@[^/:]+:", url) is not None)


def _remove_stale_locks(repo: Path) -> None:
    """The lock files a git killed at its timeout (or with a dead daemon) left in a cache: no other git runs
    there now (this thread holds the cache's lock, and the daemon the state dir's), and git refuses to start
    while one exists ("Unable to create .../shallow.lock: File exists")."""
    for lock in (repo / "shallow.lock", repo / "index.lock", repo / "packed-refs.lock", repo / "config.lock"):
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
    refs = repo / "refs"
    if refs.is_dir():
        for lock in refs.rglob("*.lock"):
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()


class GitCache:
    """Bare shallow caches of the repositories syncs follow, and the trees exported from them. One per state
    dir (the daemon's); its methods may run on several threads at once."""

    def __init__(self, root: Path, marker: str = "") -> None:
        """`marker`: the state dir's mark (subreaper.STATE_MARKER) put in every git child's environment, so
        that a daemon started after one that died mid-fetch ends what it left (Reconciler.stop_strays)."""
        self.root = root
        self.marker = marker
        self.home = root / "home"
        self.checkouts = root / "checkouts"
        for folder in (root, self.home, self.checkouts):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(folder, 0o700)
        self.askpass = root / "askpass.sh"
        fd, written = tempfile.mkstemp(dir=root, prefix=".askpass.")
        with os.fdopen(fd, "w") as handle:
            handle.write(ASKPASS)
        os.chmod(written, 0o700)
        os.replace(written, self.askpass)
        for entry in self.checkouts.iterdir():  # left by a daemon that died while exporting
            if entry.name.endswith(".tmp"):
                shutil.rmtree(entry, ignore_errors=True)

    # -- the three steps of a sync ------------------------------------------------------------------

    def resolve(self, url: str, ref_kind: str, ref: str, auth: GitAuth, timeout: float) -> str:
        """The 40-hex commit `ref` names now (annotated tags peeled); a commit ref is checked, not looked up."""
        if ref_kind == "commit":
            return _commit(ref)
        if ref_kind == "branch":
            names, options = [f"refs/heads/{ref}"], ["--refs"]
        elif ref_kind == "tag":
            names, options = [f"refs/tags/{ref}", f"refs/tags/{ref}^{{}}"], []
        else:
            raise ValueError(f"unknown ref kind {ref_kind!r}")
        out = self._git(["ls-remote", *options, "--", url, *names], auth, timeout, url)
        found = {}
        for line in out.splitlines():
            commit, _, name = line.partition("\t")
            if name in names and _HEX40.fullmatch(commit):
                found[name] = commit
        for name in reversed(names):  # the peeled ^{} line wins
            if name in found:
                return found[name]
        raise GitError("RefNotFound", f"git ls-remote {_shown(url)}: no {ref_kind} {ref!r}")

    def fetch(self, url: str, sha: str, auth: GitAuth, timeout: float, branch: str | None = None) -> bool:
        """Make commit `sha` present in the cache of `url`: False when it was already, True when fetched.
        A server refusing a want by id is asked for `branch`'s tip instead, which must be `sha`."""
        sha = _commit(sha)
        repo = self._repo(url)
        with _lock_of(repo):
            if not repo.is_dir():
                self._git(["init", "--quiet", "--bare", str(repo)], GitAuth(), timeout)
            _remove_stale_locks(repo)
            if self._has(repo, sha, timeout):
                self._keep(repo, sha, timeout)
                return False
            try:
                self._git(["-C", str(repo), "fetch", "--quiet", "--depth", "1", "--no-tags", "--", url,
                           f"+{sha}:refs/orchestrator/{sha}"], auth, timeout, url)
            except GitError as error:
                refused = any(sign in str(error).lower() for sign in _REFUSED_WANT)
                if branch is None or not refused or error.reason in ("Timeout", "AuthFailed"):
                    raise
                tracking = f"refs/remotes/origin/{branch}"
                self._git(["-C", str(repo), "fetch", "--quiet", "--depth", "1", "--no-tags", "--", url,
                           f"+refs/heads/{branch}:{tracking}"], auth, timeout, url)
                tip = self._git(["-C", str(repo), "rev-parse", "--verify", "--quiet", f"{tracking}^{{commit}}"],
                                GitAuth(), timeout).strip()
                if tip != sha:
                    raise GitError("FetchFailed",
                                   f"git fetch {_shown(url)}: branch {branch!r} is at {tip[:7]} now, not {sha[:7]}")
            if not self._has(repo, sha, timeout):
                raise GitError("RefNotFound", f"git fetch {_shown(url)}: {sha} is not a commit")
            self._keep(repo, sha, timeout)
            return True

    def export(self, url: str, sha: str, path: str, timeout: float, max_bytes: int = 64 << 20,
               max_files: int = 10000) -> Path:
        """The directory `path` ("." for all) of commit `sha` (fetched before), exported once and reused.
        At most `max_bytes` of file content and `max_files` members; links may not leave the tree. The five
        exports of this URL and path used last are kept: one sync's commits never push out another's tree."""
        sha = _commit(sha)
        parts = path.split("/")
        if path.startswith("/") or ".." in parts or (path != "." and "." in parts) or "" in parts:
            raise GitError("PathNotFound", f"path {path!r} is not a normalised path inside the repository")
        repo = self._repo(url)
        key = hashlib.sha256(f"{url}\0{path}".encode()).hexdigest()[:16]
        final = self.checkouts / f"{sha}-{key}"
        inside = final if path == "." else final / path
        with _lock_of(repo):
            if final.is_dir() and not final.is_symlink():
                os.utime(final)  # the most recent again
                return inside
            if not repo.is_dir() or not self._has(repo, sha, timeout):
                raise GitError("FetchFailed", f"commit {sha[:7]} is not in the cache of {_shown(url)}: fetch first")
            if path != ".":
                code, kind, _ = self._run(["-C", str(repo), "cat-file", "-t", f"{sha}:{path}"], GitAuth(), timeout)
                if code != 0:
                    raise GitError("PathNotFound", f"path '{path}/' does not exist in commit {sha[:7]}")
                if kind.strip() != "tree":
                    raise GitError("PathNotFound", f"path '{path}' is a file, not a directory, in commit {sha[:7]}")
            tmp = Path(tempfile.mkdtemp(prefix=f"{sha}.", suffix=".tmp", dir=self.checkouts))
            try:
                self._extract(repo, sha, path, tmp, timeout, max_bytes, max_files)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            os.utime(final)
            self._prune_exports(key)
        return inside

    def is_shallow(self, url: str) -> bool:
        repo = self._repo(url)
        if not repo.is_dir():
            return False
        out = self._git(["-C", str(repo), "rev-parse", "--is-shallow-repository"], GitAuth(), 10)
        return out.strip() == "true"

    # -- helpers ------------------------------------------------------------------------------------

    def _repo(self, url: str) -> Path:
        return self.root / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}.git"

    def _has(self, repo: Path, sha: str, timeout: float) -> bool:
        return self._run(["-C", str(repo), "cat-file", "-e", f"{sha}^{{commit}}"], GitAuth(), timeout)[0] == 0

    def _keep(self, repo: Path, sha: str, timeout: float) -> None:
        """Pin `sha` with a ref, so gc keeps it, and drop the refs of all but the last KEEP fetched."""
        order = repo / "orchestrator-fetched"
        try:
            with open(order, "rb") as handle:
                before = handle.read(41 * 100).decode(errors="replace").split()
        except FileNotFoundError:
            before = []
        kept = [s for s in before if _HEX40.fullmatch(s) and s != sha][-(KEEP - 1):] + [sha]
        local = GitAuth()
        self._git(["-C", str(repo), "update-ref", f"refs/orchestrator/{sha}", sha], local, timeout)
        refs = self._git(["-C", str(repo), "for-each-ref", "--format=%(refname)", "refs/orchestrator/"], local,
                         timeout)
        for ref in refs.split():
            if ref.rsplit("/", 1)[-1] not in kept:
                self._git(["-C", str(repo), "update-ref", "-d", ref], local, timeout)
        written = order.with_name(order.name + ".tmp")
        written.write_text("\n".join(kept) + "\n")
        os.replace(written, order)

    def _extract(self, repo: Path, sha: str, path: str, into: Path, timeout: float, max_bytes: int,
                 max_files: int) -> None:
        """`git archive` streamed into tarfile, with the "data" filter's rules, within the budgets."""
        argv = ["git", *CONFIG, "--literal-pathspecs", "-C", str(repo), "archive", "--format=tar", sha]
        child = _git(argv + ([] if path == "." else ["--", path]), self._environment(GitAuth()), timeout)
        where = f"{path}/ of commit {sha[:7]}" if path != "." else f"commit {sha[:7]}"
        files = size = 0
        broken: tarfile.TarError | None = None
        try:
            try:
                with tarfile.open(fileobj=child.stdout, mode="r|") as tar:
                    for member in tar:
                        files += 1
                        size += member.size if member.isreg() else 0
                        if files > max_files:
                            raise GitError("TooLarge", f"{where} has more than {max_files} files and directories")
                        if size > max_bytes:
                            raise GitError("TooLarge", f"{where} has more than {max_bytes} bytes of files")
                        try:
                            tar.extract(member, into, filter="data")
                        except tarfile.FilterError as error:
                            raise GitError("UnsafeTree", f"{where}: {member.name!r} refused: {error}") from None
                assert child.stdout is not None
                child.stdout.read(1 << 20)  # the padding after the end of the archive, so git can finish
            except tarfile.TarError as error:
                broken = error  # a stream cut short: git's exit and stderr say why
                child.abort()
        except BaseException:
            child.abort()
            raise
        finally:
            code, err = child.finish()
        if child.timed_out:
            raise GitError("Timeout", f"git archive timed out after {timeout:g} s")
        if code != 0 and (err.strip() or broken is None):
            raise _failure("archive", "", err, ())
        if broken is not None:
            raise GitError("FetchFailed", f"git archive of {where}: unreadable: {broken}")

    def _prune_exports(self, key: str) -> None:
        """All but the KEEP exports of this URL and path used last, and but the trees in use: those a link
        under root/work points into (a sync's applied tree, which its processes run from)."""
        exports = [e for e in self.checkouts.iterdir() if e.name.endswith(f"-{key}") and not e.is_symlink()]
        exports.sort(key=lambda e: e.stat().st_mtime, reverse=True)
        used = self._in_use()
        for old in exports[KEEP:]:
            if old.name not in used:
                shutil.rmtree(old, ignore_errors=True)

    def _in_use(self) -> set[str]:
        used: set[str] = set()
        try:
            links = list((self.root / "work").iterdir())
        except OSError:
            return used
        for link in links:
            try:
                target = Path(os.readlink(link))
            except OSError:
                continue
            if target.is_relative_to(self.checkouts) and target != self.checkouts:
                used.add(target.relative_to(self.checkouts).parts[0])
        return used

    def _environment(self, auth: GitAuth, url: str = "") -> dict[str, str]:
        """Git's whole environment (nothing inherited but PATH), after checking the credential files."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.home), "LC_ALL": "C",
               "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
               "GIT_LFS_SKIP_SMUDGE": "1", "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS}
        if self.marker:
            env[STATE_MARKER] = self.marker
        if auth.token_file is not None:
            _check_file("token file", auth.token_file, secret=True)
            env.update(GIT_ASKPASS=str(self.askpass), ORCH_ASKPASS_USER=auth.username,
                       ORCH_ASKPASS_FILE=auth.token_file)
        if auth.ssh_key_file is not None or (url and _is_ssh(url)):
            command = ["ssh"]
            if auth.ssh_key_file is not None:
                _check_file("ssh key file", auth.ssh_key_file, secret=True)
                command += ["-i", auth.ssh_key_file, "-o", "IdentitiesOnly=yes"]
            else:
                command += ["-o", "IdentityFile=none", "-o", "IdentitiesOnly=yes"]
            if auth.insecure_skip_host_key_check:
                command += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
            elif auth.known_hosts_file is None:
                raise GitError("CredentialFile", f"{_shown(url) or 'ssh'}: no known hosts file to check the "
                                                 "server's key against (knownHostsFile)")
            else:
                _check_file("known hosts file", auth.known_hosts_file, secret=False)
                command += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={auth.known_hosts_file}"]
            command += ["-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-F", "/dev/null"]
            env["GIT_SSH_COMMAND"] = shlex.join(command)
        return env

    def _run(self, args: Sequence[str], auth: GitAuth, timeout: float, url: str = "") -> tuple[int, str, str]:
        """git `args` (`url` the remote they talk to, if any): exit code, stdout (at most STDOUT_LIMIT, else a
        FetchFailed), stderr."""
        child = _git(["git", *CONFIG, *args], self._environment(auth, url), timeout)
        try:
            assert child.stdout is not None
            out = child.stdout.read(STDOUT_LIMIT + 1)
            if len(out) > STDOUT_LIMIT:
                child.abort()
        finally:
            code, err = child.finish()
        if child.timed_out:
            raise GitError("Timeout", f"git {_verb(args)} timed out after {timeout:g} s")
        if len(out) > STDOUT_LIMIT:
            raise GitError("FetchFailed", f"git {_verb(args)} {_shown(url)}: more than {STDOUT_LIMIT} bytes of output")
        return code, out.decode(errors="replace"), err

    def _git(self, args: Sequence[str], auth: GitAuth, timeout: float, url: str = "") -> str:
        """git `args` that must succeed: its stdout, or a GitError saying why, from its stderr."""
        code, out, err = self._run(args, auth, timeout, url)
        if code != 0:
            raise _failure(_verb(args), url, err, _secrets(auth))
        return out


def _verb(args: Sequence[str]) -> str:
    return args[2] if args[0] == "-C" else args[0]


def _commit(ref: str) -> str:
    sha = ref.strip().lower()
    if not _HEX40.fullmatch(sha):
        raise GitError("RefNotFound", f"{ref[:80]!r} is not a commit: expected 40 hexadecimal digits")
    return sha


def _secrets(auth: GitAuth) -> list[str]:
    """What the token and key files hold now (the token whole, by line and as a Basic header carries it; the
    key by line): to be redacted."""
    found: list[str] = []
    for path in (auth.token_file, auth.ssh_key_file):
        if path is None:
            continue
        try:
            with open(path, "rb") as handle:
                text = handle.read(SECRET_LIMIT).decode(errors="replace")
        except OSError:
            continue
        lines = [line.strip() for line in text.splitlines() if len(line.strip()) >= 4]
        if path == auth.token_file:
            lines += [text, text.strip()]
            lines += [base64.b64encode(f"{auth.username}:{s}".encode()).decode() for s in lines if s]
        found += lines
    return found


def _failure(verb: str, url: str, stderr: str, secrets: Sequence[str]) -> GitError:
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("hint:")]
    signs = [sign for _, some in _SIGNS for sign in some]
    telling = [line for line in lines if line.startswith(("fatal:", "error:")) or any(
        sign in line.lower() for sign in signs)] or lines
    said = "; ".join(line[:500] for line in telling[:3]) or "failed without a message"
    lowered = stderr.lower()
    reason = next((name for name, some in _SIGNS if any(sign in lowered for sign in some)), "FetchFailed")
    where = f" {_shown(url)}" if url else ""
    return GitError(reason, redact(f"git {verb}{where}: {said}", secrets))
