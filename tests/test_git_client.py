"""host/git.py with real git against real servers: file://, git daemon, smart HTTP with Basic auth, and sshd
where it is installed (tests/gitservers.py). Secrets are canaries looked for in every message and in /proc of
every git process while it runs; timeouts are proven with a server that never answers."""

# ruff: noqa: F811 - the fixtures imported from gitservers are redefined as arguments

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import reap_orphans, wait_for
from gitservers import (  # noqa: F401 - sshd and upstream are fixtures
    GitDaemon,
    LoopbackSshd,
    SilentServer,
    SmartHttp,
    Upstream,
    free_port,
    git,
    sshd,
    upstream,
)

from orchestrator.host.git import GitAuth, GitCache, GitError, redact

TIMEOUT = 30.0


@pytest.fixture
def cache(tmp_path: Path) -> GitCache:
    return GitCache(tmp_path / "state" / "git")


def token_file(folder: Path, text: str, mode: int = 0o600) -> str:
    path = folder / "token"
    path.write_text(text + "\n")
    path.chmod(mode)
    return str(path)


def fails(reason: str, call: object, *args: object, **kwargs: object) -> GitError:
    assert callable(call)
    with pytest.raises(GitError) as caught:
        call(*args, **kwargs)
    assert caught.value.reason == reason, str(caught.value)
    assert len(str(caught.value)) <= 2000
    return caught.value


def git_processes() -> list[psutil.Process]:
    """Live git (and ssh) processes below this one."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.name().startswith(("git", "ssh")):
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found


def is_git(cmdline: bytes) -> bool:
    return os.path.basename(cmdline.split(b"\0")[0]).startswith(b"git")


def no_git_left() -> bool:
    reap_orphans()  # killed helpers (git-remote-http) were re-parented here: this process is a subreaper
    return not git_processes()


# -- resolve ------------------------------------------------------------------------------------------


def test_resolve_branches_tags_peeled_and_commits(cache: GitCache, upstream: Upstream) -> None:
    auth = GitAuth()
    head = upstream.head
    assert cache.resolve(upstream.url, "branch", "main", auth, TIMEOUT) == head
    upstream.tag("light")
    upstream.tag("annotated", annotated=True)
    assert cache.resolve(upstream.url, "tag", "light", auth, TIMEOUT) == head
    tag_object = git("rev-parse", "annotated", cwd=upstream.work).strip()
    assert tag_object != head
    assert cache.resolve(upstream.url, "tag", "annotated", auth, TIMEOUT) == head  # peeled: ^{} wins
    # a commit is passed through, lowercased, without git: the URL need not even exist
    assert cache.resolve("file:///nowhere.git", "commit", head.upper(), auth, TIMEOUT) == head
    fails("RefNotFound", cache.resolve, "file:///nowhere.git", "commit", head[:7], auth, TIMEOUT)
    missing = fails("RefNotFound", cache.resolve, upstream.url, "branch", "nope", auth, TIMEOUT)
    assert str(missing) == f"git ls-remote {upstream.url}: no branch 'nope'"
    fails("RefNotFound", cache.resolve, upstream.url, "tag", "nope", auth, TIMEOUT)
    # a branch whose name ends like another's is not it
    git("push", "--quiet", "origin", "HEAD:refs/heads/x/main", cwd=upstream.work)
    upstream.write("more", "x")
    newer = upstream.commit("second")
    assert cache.resolve(upstream.url, "branch", "main", auth, TIMEOUT) == newer


# -- fetch --------------------------------------------------------------------------------------------


def test_fetch_over_file_is_shallow_cached_and_follows_force_pushes(cache: GitCache, upstream: Upstream) -> None:
    auth = GitAuth()
    first = upstream.head
    assert cache.fetch(upstream.url, first, auth, TIMEOUT, branch="main") is True
    assert cache.is_shallow(upstream.url)
    assert cache.fetch(upstream.url, first, auth, TIMEOUT, branch="main") is False
    upstream.write("deploy/app.yaml", "kind: Process # 2\n")
    doomed = upstream.commit("to be rewritten")
    assert cache.fetch(upstream.url, doomed, auth, TIMEOUT) is True
    upstream.force_push_reset(first)
    upstream.write("deploy/other.yaml", "kind: Process\n")
    rewritten = upstream.commit("history rewritten")
    assert cache.resolve(upstream.url, "branch", "main", auth, TIMEOUT) == rewritten
    assert cache.fetch(upstream.url, rewritten, auth, TIMEOUT, branch="main") is True
    tree = cache.export(upstream.url, rewritten, "deploy", TIMEOUT)
    assert sorted(p.name for p in tree.iterdir()) == ["app.yaml", "other.yaml"]
    assert cache.is_shallow(upstream.url)
    bare = next(cache.root.glob("*.git"))
    assert bare.name == f"{__import__('hashlib').sha256(upstream.url.encode()).hexdigest()[:16]}.git"
    assert git("-C", str(bare), "rev-parse", "--is-shallow-repository").strip() == "true"


def test_a_fetch_killed_before_leaves_no_lock_that_stops_the_next(cache: GitCache, upstream: Upstream) -> None:
    auth = GitAuth()
    assert cache.fetch(upstream.url, upstream.head, auth, TIMEOUT) is True
    bare = next(cache.root.glob("*.git"))
    (bare / "shallow.lock").write_text("")  # what a git SIGKILLed mid-fetch leaves
    (bare / "refs" / "orchestrator").mkdir(parents=True, exist_ok=True)
    (bare / "refs" / "orchestrator" / "x.lock").write_text("")
    upstream.write("deploy/app.yaml", "kind: Process # after the kill\n")
    later = upstream.commit("after the kill")
    assert cache.fetch(upstream.url, later, auth, TIMEOUT) is True
    assert not (bare / "shallow.lock").exists()


def test_fetch_keeps_refs_of_the_last_five_commits(cache: GitCache, upstream: Upstream) -> None:
    commits = []
    for n in range(7):
        upstream.write("n", str(n))
        commits.append(upstream.commit(f"commit {n}"))
        assert cache.fetch(upstream.url, commits[-1], GitAuth(), TIMEOUT)
    bare = next(cache.root.glob("*.git"))
    refs = git("-C", str(bare), "for-each-ref", "--format=%(refname)", "refs/orchestrator/").split()
    assert sorted(refs) == sorted(f"refs/orchestrator/{c}" for c in commits[-5:])
    # one fetched again is the newest again: the next fetch drops the oldest of the others
    assert cache.fetch(upstream.url, commits[2], GitAuth(), TIMEOUT) is False
    upstream.write("n", "last")
    last = upstream.commit("last")
    cache.fetch(upstream.url, last, GitAuth(), TIMEOUT)
    refs = git("-C", str(bare), "for-each-ref", "--format=%(refname)", "refs/orchestrator/").split()
    assert sorted(refs) == sorted(f"refs/orchestrator/{c}" for c in [*commits[4:], commits[2], last])


def test_fetch_over_git_daemon_and_again_without_it(cache: GitCache, tmp_path: Path) -> None:
    with GitDaemon(tmp_path / "served") as daemon:
        repo = Upstream(tmp_path / "work", bare=daemon.base / "app.git")
        repo.write("deploy/app.yaml", "kind: Process\n")
        commit = repo.commit("first")
        url = daemon.url_for("app.git")
        assert cache.resolve(url, "branch", "main", GitAuth(), TIMEOUT) == commit
        assert cache.fetch(url, commit, GitAuth(), TIMEOUT) is True
        assert cache.is_shallow(url)
        missing = fails("NetworkError", cache.resolve, daemon.url_for("nope.git"), "branch", "main", GitAuth(),
                        TIMEOUT)
        assert "nope.git" in str(missing)
    assert cache.fetch(url, commit, GitAuth(), TIMEOUT) is False  # no server now: no network was needed
    assert (cache.export(url, commit, "deploy", TIMEOUT) / "app.yaml").read_text() == "kind: Process\n"
    fails("NetworkError", cache.resolve, url, "branch", "main", GitAuth(), TIMEOUT)


def test_fetch_over_smart_http_with_a_token_file(cache: GitCache, tmp_path: Path) -> None:
    token = token_file(tmp_path, "s3cret-token")
    auth = GitAuth(token_file=token)
    with SmartHttp(tmp_path / "served", password="s3cret-token") as server:
        repo = Upstream(tmp_path / "work", bare=server.root / "app.git")
        repo.write("deploy/app.yaml", "kind: Process\n")
        commit = repo.commit("first")
        url = server.url_for("app.git")
        assert cache.resolve(url, "branch", "main", auth, TIMEOUT) == commit
        assert cache.fetch(url, commit, auth, TIMEOUT, branch="main") is True
        assert "x-access-token:s3cret-token" in server.authorizations_decoded()
        assert cache.is_shallow(url)
        repo.write("deploy/app.yaml", "kind: Process # later\n")
        later = repo.commit("later")
        assert cache.fetch(url, later, auth, TIMEOUT) is True
        requests = len(server.requests)
        missing = fails("NetworkError", cache.resolve, server.url_for("nope.git"), "branch", "main", auth, TIMEOUT)
        assert "not found" in str(missing)
        assert len(server.requests) > requests
        requests = len(server.requests)
        assert cache.fetch(url, later, auth, TIMEOUT) is False
        assert len(server.requests) == requests  # no request for a commit the cache has
        anonymous = fails("AuthFailed", cache.resolve, url, "branch", "main", GitAuth(), TIMEOUT)
        assert "could not read Username" in str(anonymous)  # no prompt, no one's credential helper
    assert cache.fetch(url, commit, auth, TIMEOUT) is False


def test_a_server_refusing_wants_by_id_is_asked_for_the_branch(cache: GitCache, tmp_path: Path) -> None:
    """Protocol v0 without allowReachableSHA1InWant serves advertised tips only: a commit behind the tip is
    refused, and the branch fallback finds the tip is another commit (a tip itself is served by id)."""
    auth = GitAuth(token_file=token_file(tmp_path, "secret"))
    with SmartHttp(tmp_path / "served", protocol_v2=False) as server:
        repo = Upstream(tmp_path / "work", bare=server.root / "app.git")
        repo.write("a", "1")
        first = repo.commit("first")
        url = server.url_for("app.git")
        assert cache.fetch(url, first, auth, TIMEOUT, branch="main") is True
        repo.write("a", "2")
        second = repo.commit("second")
        repo.write("a", "3")
        third = repo.commit("third: the branch moved on")
        refused = fails("RefNotFound", cache.fetch, url, second, auth, TIMEOUT)  # no branch to fall back to
        assert "unadvertised" in str(refused)
        moved = fails("FetchFailed", cache.fetch, url, second, auth, TIMEOUT, branch="main")
        assert str(moved) == f"git fetch {url}: branch 'main' is at {third[:7]} now, not {second[:7]}"
        assert cache.fetch(url, third, auth, TIMEOUT, branch="main") is False  # the fallback brought it
        assert (cache.export(url, third, ".", TIMEOUT) / "a").read_text() == "3"
        assert (cache.export(url, first, ".", TIMEOUT) / "a").read_text() == "1"


def test_syncs_of_one_url_fetch_and_export_one_at_a_time(cache: GitCache, upstream: Upstream) -> None:
    results: list[object] = []

    def sync() -> None:
        try:
            fetched = cache.fetch(upstream.url, upstream.head, GitAuth(), TIMEOUT)
            results.append((fetched, cache.export(upstream.url, upstream.head, "deploy", TIMEOUT)))
        except GitError as error:
            results.append(error)

    threads = [threading.Thread(target=sync) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert sorted(str(r[0]) for r in results if isinstance(r, tuple)) == ["False", "False", "False", "True"]
    assert len({r[1] for r in results if isinstance(r, tuple)}) == 1
    assert len(list(cache.checkouts.iterdir())) == 1


# -- export -------------------------------------------------------------------------------------------


def test_export_a_subtree_or_the_whole_repo_and_reuse_it(cache: GitCache, upstream: Upstream) -> None:
    upstream.write("deploy/nested/more.yaml", "kind: Process\n")
    upstream.symlink("deploy/alias.yaml", "app.yaml")  # a link inside the tree is fine
    commit = upstream.commit("nested")
    cache.fetch(upstream.url, commit, GitAuth(), TIMEOUT)
    tree = cache.export(upstream.url, commit, "deploy", TIMEOUT)
    assert tree.name == "deploy" and tree.parent.parent == cache.checkouts
    assert tree.parent.name.startswith(f"{commit}-")
    assert sorted(str(p.relative_to(tree)) for p in tree.rglob("*")) == [
        "alias.yaml", "app.yaml", "nested", "nested/more.yaml"]
    assert (tree / "alias.yaml").read_text() == "kind: Process\n"
    assert not (tree.parent / "README.md").exists()
    whole = cache.export(upstream.url, commit, ".", TIMEOUT)
    assert (whole / "README.md").read_text() == "hello\n" and (whole / "deploy" / "app.yaml").is_file()
    (tree / "marker").write_text("made here")
    assert cache.export(upstream.url, commit, "deploy", TIMEOUT) == tree
    assert (tree / "marker").exists()  # reused, not exported again
    assert cache.export(upstream.url, commit, "deploy/nested", TIMEOUT).name == "nested"
    assert not list(cache.checkouts.glob("*.tmp"))


def test_export_names_a_missing_path_and_refuses_files(cache: GitCache, upstream: Upstream) -> None:
    commit = upstream.head
    cache.fetch(upstream.url, commit, GitAuth(), TIMEOUT)
    error = fails("PathNotFound", cache.export, upstream.url, commit, "nope", TIMEOUT)
    assert str(error) == f"path 'nope/' does not exist in commit {commit[:7]}"
    fails("PathNotFound", cache.export, upstream.url, commit, "README.md", TIMEOUT)
    for bad in ("../x", "/etc", "deploy/../..", ""):
        fails("PathNotFound", cache.export, upstream.url, commit, bad, TIMEOUT)
    fails("FetchFailed", cache.export, upstream.url, "0" * 40, ".", TIMEOUT)
    assert list(cache.checkouts.iterdir()) == []


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../etc/passwd", "../.."])
def test_a_link_out_of_the_tree_is_refused_and_nothing_is_left(cache: GitCache, upstream: Upstream,
                                                                target: str) -> None:
    upstream.symlink("deploy/evil.yaml", target)
    commit = upstream.commit("evil")
    cache.fetch(upstream.url, commit, GitAuth(), TIMEOUT)
    for path in ("deploy", "."):
        error = fails("UnsafeTree", cache.export, upstream.url, commit, path, TIMEOUT)
        assert "evil.yaml" in str(error)
    assert list(cache.checkouts.iterdir()) == []


def test_budgets_of_files_and_bytes(cache: GitCache, upstream: Upstream) -> None:
    for n in range(5):
        upstream.write(f"many/{n}.yaml", "x" * 40)
    commit = upstream.commit("many")
    cache.fetch(upstream.url, commit, GitAuth(), TIMEOUT)
    many = fails("TooLarge", cache.export, upstream.url, commit, "many", TIMEOUT, max_files=4)
    assert "more than 4 files" in str(many)
    large = fails("TooLarge", cache.export, upstream.url, commit, "many", TIMEOUT, max_bytes=150)
    assert "more than 150 bytes" in str(large)
    assert list(cache.checkouts.iterdir()) == []
    assert len(list(cache.export(upstream.url, commit, "many", TIMEOUT, max_files=6, max_bytes=200).iterdir())) == 5


def test_only_the_five_most_recent_exports_stay(cache: GitCache, upstream: Upstream) -> None:
    exports = []
    for n in range(7):
        upstream.write("deploy/n", str(n))
        commit = upstream.commit(f"commit {n}")
        cache.fetch(upstream.url, commit, GitAuth(), TIMEOUT)
        exports.append(cache.export(upstream.url, commit, "deploy", TIMEOUT))
        if n == 4:  # the first one, used again, is recent again
            assert cache.export(upstream.url, exports[0].parent.name[:40], "deploy", TIMEOUT) == exports[0]
    assert [n for n, tree in enumerate(exports) if tree.is_dir()] == [0, 3, 4, 5, 6]
    assert len(list(cache.checkouts.iterdir())) == 5
    other = cache.export(upstream.url, upstream.head, ".", TIMEOUT)  # another path: kept apart
    assert other.is_dir() and all(exports[n].is_dir() for n in (0, 3, 4, 5, 6))


# -- credentials --------------------------------------------------------------------------------------


def test_a_canary_token_is_in_no_argv_environment_or_message(cache: GitCache, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "canary-" + os.urandom(12).hex()
    token = token_file(tmp_path, canary)
    monkeypatch.setenv("ORCH_INHERITED_CANARY", canary)  # git's environment is not inherited
    seen: dict[int, tuple[bytes, bytes]] = {}

    def sample(path: str) -> None:
        """Runs while git waits for this response: /proc of every process below this one."""
        for proc in psutil.Process().children(recursive=True):
            try:
                with open(f"/proc/{proc.pid}/cmdline", "rb") as cmdline, open(f"/proc/{proc.pid}/environ",
                                                                                "rb") as environ:
                    seen[proc.pid] = (cmdline.read(), environ.read())
            except OSError:
                pass

    for password, reason in ((canary, None), ("not-the-canary", "AuthFailed")):
        with SmartHttp(tmp_path / f"served-{password[:3]}", password=password) as server:
            repo = Upstream(tmp_path / f"work-{password[:3]}", bare=server.root / "app.git")
            repo.write("a", "1")
            commit = repo.commit("first")
            url = server.url_for("app.git")
            server.on_request = sample
            if reason is None:
                assert cache.resolve(url, "branch", "main", GitAuth(token_file=token), TIMEOUT) == commit
                assert cache.fetch(url, commit, GitAuth(token_file=token), TIMEOUT) is True
                assert f"x-access-token:{canary}" in server.authorizations_decoded()
            else:
                for call, args in ((cache.resolve, ("branch", "main")), (cache.fetch, ("f" * 40,))):
                    error = fails(reason, call, url, *args, GitAuth(token_file=token), TIMEOUT)
                    assert canary not in str(error) and "Authentication failed" in str(error)
    gits = [(cmdline, environ) for cmdline, environ in seen.values() if is_git(cmdline)]
    assert any(b"remote-http" in c for c, _ in gits), gits  # git's helpers were sampled as they ran
    assert any(b"ls-remote" in c for c, _ in gits) and any(b"fetch" in c for c, _ in gits)
    for cmdline, environ in seen.values():
        assert canary.encode() not in cmdline and canary.encode() not in environ
    for cmdline, environ in gits:
        if b"http-backend" not in cmdline:  # the server's CGI
            assert f"ORCH_ASKPASS_FILE={token}".encode() in environ.split(b"\0")
            assert b"GIT_TERMINAL_PROMPT=0" in environ.split(b"\0")
            assert not any(v.startswith((b"ORCH_INHERITED", b"SSH_ASKPASS")) for v in environ.split(b"\0"))


def test_credential_files_are_checked_before_git_runs(cache: GitCache, tmp_path: Path) -> None:
    with SmartHttp(tmp_path / "served") as server:
        Upstream(tmp_path / "work", bare=server.root / "app.git")
        url = server.url_for("app.git")
        loose = token_file(tmp_path, "loose-secret", mode=0o644)
        error = fails("CredentialFile", cache.resolve, url, "branch", "main", GitAuth(token_file=loose), TIMEOUT)
        assert str(error) == f"token file {loose} is readable by group or others: chmod 600 it"
        assert "loose-secret" not in str(error)
        fails("CredentialFile", cache.fetch, url, "a" * 40, GitAuth(token_file=loose), TIMEOUT)
        for bad in (str(tmp_path / "missing"), str(tmp_path), "relative/token"):
            error = fails("CredentialFile", cache.resolve, url, "branch", "main", GitAuth(token_file=bad), TIMEOUT)
            assert bad in str(error)
        if os.geteuid() == 0:
            theirs = token_file(tmp_path / "work", "their-secret")
            os.chown(theirs, 65534, 65534)
            error = fails("CredentialFile", cache.resolve, url, "branch", "main", GitAuth(token_file=theirs),
                          TIMEOUT)
            assert "belongs to uid 65534" in str(error)
        key = token_file(tmp_path / "work", "not a key")
        fails("CredentialFile", cache.resolve, "ssh://git@127.0.0.1:1/x.git", "branch", "main",
              GitAuth(ssh_key_file=key), TIMEOUT)  # no known hosts and not insecure
        assert server.requests == []  # git never ran


def test_unreachable_and_missing_repositories_are_network_errors(cache: GitCache, tmp_path: Path) -> None:
    port = free_port()
    for url in (f"http://127.0.0.1:{port}/x.git", f"git://127.0.0.1:{port}/x.git", f"file://{tmp_path}/none.git",
                "https://no-such-host.invalid/x.git"):
        error = fails("NetworkError", cache.resolve, url, "branch", "main", GitAuth(), TIMEOUT)
        assert str(error).startswith(f"git ls-remote {url}: "), str(error)
        fails("NetworkError", cache.fetch, url, "a" * 40, GitAuth(), TIMEOUT)


def test_a_server_that_never_answers_times_out_and_leaves_no_process(cache: GitCache) -> None:
    with SilentServer() as silent:
        for url in (f"http://127.0.0.1:{silent.port}/x.git", f"git://127.0.0.1:{silent.port}/x.git"):
            started = time.monotonic()
            error = fails("Timeout", cache.resolve, url, "branch", "main", GitAuth(), 1)
            assert time.monotonic() - started < 3
            assert str(error) == "git ls-remote timed out after 1 s"
            started = time.monotonic()
            error = fails("Timeout", cache.fetch, url, "a" * 40, GitAuth(), 1)
            assert time.monotonic() - started < 3 and str(error) == "git fetch timed out after 1 s"
            wait_for(no_git_left, timeout=3, what="no git process left")


# -- ssh ----------------------------------------------------------------------------------------------


def test_fetch_over_ssh_with_a_key_and_known_hosts(cache: GitCache, sshd: LoopbackSshd,
                                                   upstream: Upstream, tmp_path: Path) -> None:
    spaced = tmp_path / "key dir"
    spaced.mkdir()
    key = spaced / "id ed25519"
    key.write_bytes(sshd.client_key.read_bytes())
    key.chmod(0o600)
    url = sshd.url_for(upstream.bare)
    auth = GitAuth(ssh_key_file=str(key), known_hosts_file=str(sshd.known_hosts))
    assert cache.resolve(url, "branch", "main", auth, TIMEOUT) == upstream.head
    assert cache.fetch(url, upstream.head, auth, TIMEOUT) is True
    assert (cache.export(url, upstream.head, "deploy", TIMEOUT) / "app.yaml").is_file()

    upstream.write("a", "2")
    later = upstream.commit("later")
    insecure = GitAuth(ssh_key_file=str(key), insecure_skip_host_key_check=True)
    assert cache.resolve(url, "branch", "main", insecure, TIMEOUT) == later

    secret_lines = [line for line in key.read_text().splitlines() if "PRIVATE KEY" not in line]
    wrong_hosts = tmp_path / "wrong_known_hosts"
    other = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=30)
    wrong_hosts.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n")
    wrong = GitAuth(ssh_key_file=str(key), known_hosts_file=str(wrong_hosts))
    error = fails("AuthFailed", cache.resolve, url, "branch", "main", wrong, TIMEOUT)
    assert "Host key verification failed" in str(error)
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True, timeout=30)
    refused = fails("AuthFailed", cache.fetch, url, later, GitAuth(ssh_key_file=str(stranger),
                    known_hosts_file=str(sshd.known_hosts)), TIMEOUT)
    assert "Permission denied" in str(refused)
    for message in (str(error), str(refused)):
        assert not any(line in message for line in secret_lines)
        assert f" {url.replace(sshd.user + '@', '')}: " in message  # the URL without its userinfo


# -- redaction ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "secrets", "expected"), [
    ("fatal: unable to access 'https://user:pa55@host/x.git/'", [], "fatal: unable to access 'https://***@host/x.git/'"),
    ("https://ghp_abc@github.com/o/r and ssh://git@host:22/r", [], "https://***@github.com/o/r and ssh://***@host:22/r"),
    ("https://u:p@ss@host/x", [], "https://***@host/x"),
    ("> Authorization: Basic eC1hY2Nlc3M=\n< HTTP/1.1 401", [], "> Authorization: ***\n< HTTP/1.1 401"),
    ("proxy-authorization: Bearer abc.def", [], "proxy-authorization: ***"),
    ("token was Bearer eyJhbGciOi.x-y_z", [], "token was Bearer ***"),
    ("said tok3n-123 twice: tok3n-123", ["tok3n-123", ""], "said *** twice: ***"),
    ("long secret-and-more, short secret", ["secret", "secret-and-more"], "long ***, short ***"),
    ("nothing to hide at https://host/x.git", ["absent"], "nothing to hide at https://host/x.git"),
])
def test_redact(text: str, secrets: list[str], expected: str) -> None:
    assert redact(text, secrets) == expected


def test_messages_are_bounded() -> None:
    error = GitError("FetchFailed", "x" * 5000)
    assert len(str(error)) == 2000 and error.reason == "FetchFailed"
