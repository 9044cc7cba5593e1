"""GitSync end to end: a real daemon follows real git repositories (file://, and smart HTTP with Basic auth).

Each test pushes commits to a bare repo made here and drives passes with `sync now` (intervals are an hour,
so no poll happens behind the test's back), or with a webhook on the daemon's --http listener. What is checked
is what a user sees: which processes run with which pids, `sync get`, `history`, events.
"""

# ruff: noqa: F811 - pytest fixtures imported from test_daemon are redefined as arguments

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from gitservers import LoopbackSshd, SmartHttp, Upstream
from test_daemon import Orchestrator, alive, orch, process  # noqa: F401 - orch is a fixture

pytestmark = pytest.mark.timeout(120)


def gitsync(name: str, url: str, **spec: Any) -> dict[str, Any]:
    body = {"repo": url, "ref": spec.pop("ref", {"branch": "main"}), "path": spec.pop("path", "deploy"),
            "intervalSeconds": spec.pop("intervalSeconds", 3600), **spec}
    return {"apiVersion": "orchestrator/v1", "kind": "GitSync", "metadata": {"name": name}, "spec": body}


def add(orch: Orchestrator, document: dict[str, Any]) -> dict[str, Any]:
    from orchestrator.cli.client import start_daemon

    return start_daemon(orch.state).request("POST", "/gitsyncs", {"document": document})


def now(orch: Orchestrator, name: str = "prod", force: bool = False) -> dict[str, Any]:
    return orch.api("POST", f"/gitsyncs/{name}/sync", {"force": force})


def status(orch: Orchestrator, name: str = "prod") -> dict[str, Any]:
    return orch.api("GET", f"/gitsyncs/{name}")


def synced_to(orch: Orchestrator, commit: str, name: str = "prod") -> dict[str, Any] | None:
    document = status(orch, name)
    applied = document["last_applied_revision"] or ""
    return document if applied.endswith(commit) else None


def everything_kept(orch: Orchestrator) -> list[str]:
    """Where a secret must never be: the events, the daemon's log, a dump of the state database."""
    texts = [json.dumps(orch.api("GET", "/events")), (orch.state / "daemon.log").read_text(errors="replace")]
    database = sqlite3.connect(orch.state / "state.db")
    try:
        texts.append("\n".join(database.iterdump()))
    finally:
        database.close()
    return texts


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    repo = Upstream(tmp_path / "upstream")
    repo.write("deploy/web.yaml", process("web"))
    repo.write("deploy/worker.yaml", process("worker"))
    repo.write("deploy/cron.yaml", process("cron"))
    repo.write("README.md", "not a manifest\n")
    repo.commit("first")
    return repo


def test_sync_add_applies_the_head_and_history_names_the_commit(orch: Orchestrator, upstream: Upstream) -> None:
    out = orch.ok("sync", "add", "prod", "--repo", upstream.url, "--branch", "main", "--path", "deploy",
                  "--interval", "3600")
    assert "created" in out
    document = wait_for(lambda: synced_to(orch, upstream.head), timeout=15, what="the first sync")
    assert document["sync"] == "Synced"
    assert document["last_applied_revision"] == f"main@sha1:{upstream.head}"
    orch.wait_running("web", "worker", "cron")
    assert wait_for(lambda: status(orch)["health"] == "Healthy", timeout=10, what="healthy")
    assert document["objects"] == ["default/cron", "default/web", "default/worker"]
    revision = orch.revisions()[0]
    assert revision["git_commit"] == upstream.head and revision["user"] == "gitsync/prod"
    assert upstream.head[:7] in orch.ok("history")
    events = [e["type"] for e in orch.api("GET", "/events")["events"] if e["object"] == "gitsync/prod"]
    assert "SyncAdded" in events and "SyncApplied" in events
    listed = json.loads(orch.ok("sync", "list", "-o", "json"))
    assert [s["name"] for s in listed["syncs"]] == ["prod"]


def test_a_pushed_change_restarts_only_what_changed(orch: Orchestrator, upstream: Upstream) -> None:
    add(orch, gitsync("prod", upstream.url))
    wait_for(lambda: synced_to(orch, upstream.head), timeout=15, what="the first sync")
    before = orch.wait_running("web", "worker", "cron")
    upstream.write("deploy/web.yaml", process("web", ["sleep", "61"]))
    upstream.write("README.md", "only the readme and web changed\n")
    commit = upstream.commit("web sleeps longer")
    outcome = now(orch)["outcome"]
    assert outcome["result"] == "applied", outcome
    after = orch.wait_running("web", "worker", "cron", replacing={"web": before["web"]})
    assert after["worker"] == before["worker"] and after["cron"] == before["cron"]
    assert synced_to(orch, commit)
    # Nothing new upstream: one ls-remote, no revision.
    revisions = len(orch.revisions())
    assert now(orch)["outcome"]["result"] == "unchanged"
    assert len(orch.revisions()) == revisions


def test_a_bad_commit_changes_nothing_and_is_not_tried_again(orch: Orchestrator, upstream: Upstream) -> None:
    add(orch, gitsync("prod", upstream.url))
    good = wait_for(lambda: synced_to(orch, upstream.head), timeout=15, what="the first sync")
    pids = orch.wait_running("web", "worker", "cron")
    upstream.write("deploy/web.yaml", process("web", restartPolicy="Sometimes"))
    bad = upstream.commit("a typo")
    outcome = now(orch)["outcome"]
    assert outcome["result"] == "failed"
    document = status(orch)
    assert document["sync"] == "Unknown"
    assert document["last_applied_revision"] == good["last_applied_revision"]
    assert document["last_attempted_revision"] == f"main@sha1:{bad}"
    condition = next(c for c in document["conditions"] if c["type"] == "ValidationFailed")
    problem = condition["problems"][0]
    assert problem["file"] == f"gitsync/prod@{bad[:7]}:deploy/web.yaml"
    assert problem["line"] > 0 and problem["column"] > 0 and "restartPolicy" in problem["path"]
    assert orch.running("web", "worker", "cron") == pids
    failures = len(orch.events("SyncFailed"))
    failures = len([e for e in orch.api("GET", "/events")["events"] if e["type"] == "SyncFailed"])
    again = now(orch)["outcome"]
    assert again["result"] == "failed" and "not tried again" in again["message"]
    assert len([e for e in orch.api("GET", "/events")["events"] if e["type"] == "SyncFailed"]) == failures
    forced = now(orch, force=True)["outcome"]
    assert forced["result"] == "failed" and "restartPolicy" in json.dumps(forced["problems"])
    assert len([e for e in orch.api("GET", "/events")["events"] if e["type"] == "SyncFailed"]) == failures + 1
    upstream.write("deploy/web.yaml", process("web", ["sleep", "62"]))
    fixed = upstream.commit("fixed")
    assert now(orch)["outcome"]["result"] == "applied"
    assert status(orch)["sync"] == "Synced" and synced_to(orch, fixed)
    assert not [c for c in status(orch)["conditions"] if c["type"] == "ValidationFailed"]
    orch.wait_running("web", "worker", "cron", replacing={"web": pids["web"]})


@pytest.mark.parametrize("case", ["missing path", "empty tree", "unreadable yaml"])
def test_a_commit_that_removes_everything_or_breaks_is_refused(orch: Orchestrator, upstream: Upstream,
                                                              case: str) -> None:
    add(orch, gitsync("prod", upstream.url, prune=True))
    wait_for(lambda: synced_to(orch, upstream.head), timeout=15, what="the first sync")
    pids = orch.wait_running("web", "worker", "cron")
    if case == "missing path":
        for name in ("web", "worker", "cron"):
            upstream.move(f"deploy/{name}.yaml", f"elsewhere/{name}.yaml")
    elif case == "empty tree":
        for name in ("web", "worker", "cron"):
            upstream.remove(f"deploy/{name}.yaml")
        upstream.write("deploy/notes.txt", "nothing here\n")
    else:
        upstream.write("deploy/web.yaml", "apiVersion: orchestrator/v1\nkind: Process\nmetadata: {name: web\n")
    commit = upstream.commit(case)
    outcome = now(orch)["outcome"]
    assert outcome["result"] == "failed", outcome
    assert outcome["problems"] and outcome["problems"][0]["file"].startswith(f"gitsync/prod@{commit[:7]}:")
    assert orch.running("web", "worker", "cron") == pids
    assert status(orch)["sync"] == "Unknown"


def test_prune_is_off_by_default_and_honours_the_opt_out_label(orch: Orchestrator, upstream: Upstream) -> None:
    add(orch, gitsync("prod", upstream.url))
    wait_for(lambda: synced_to(orch, upstream.head), timeout=15, what="the first sync")
    pids = orch.wait_running("web", "worker", "cron")
    upstream.remove("deploy/cron.yaml")
    upstream.commit("cron goes")
    assert now(orch)["outcome"]["result"] in ("applied", "unchanged")
    document = status(orch)
    assert document["sync"] == "OutOfSync"
    assert any(c["type"] == "PruneSkipped" and "default/cron" in c["message"] for c in document["conditions"])
    assert orch.running("cron") == {"cron": pids["cron"]}
    # prune on: cron goes; worker, labelled, stays although it leaves git too
    upstream.write("deploy/worker.yaml", process("worker", labels={"orchestrator.io/prune": "false"}))
    upstream.commit("worker may never be pruned")
    add(orch, gitsync("prod", upstream.url, prune=True))
    wait_for(lambda: synced_to(orch, upstream.head), timeout=15, what="the sync with prune")
    wait_for(lambda: "cron" not in orch.objects(), timeout=10, what="cron pruned")
    upstream.remove("deploy/worker.yaml")
    upstream.commit("worker leaves git")
    now(orch)
    assert "worker" in orch.objects() and status(orch)["sync"] == "OutOfSync"
    assert orch.running("web")


def test_drift_is_reported_and_healed_after_the_delay(orch: Orchestrator, upstream: Upstream) -> None:
    add(orch, gitsync("prod", upstream.url, selfHeal=True, selfHealDelaySeconds=1))
    wait_for(lambda: synced_to(orch, upstream.head), timeout=15, what="the first sync")
    orch.wait_running("web", "worker", "cron")
    orch.ok("scale", "web", "--replicas", "3")
    document = wait_for(lambda: (s := status(orch))["sync"] == "OutOfSync" and s, timeout=5, what="drift")
    assert any(c["type"] == "Drift" and "replicas 1 -> 3" in c["message"] for c in document["conditions"])
    wait_for(lambda: orch.objects()["web"]["replicas"]["desired"] == 1, timeout=10, what="healed to 1 replica")
    assert wait_for(lambda: status(orch)["sync"] == "Synced", timeout=5, what="synced again")
    types = [e["type"] for e in orch.api("GET", "/events")["events"] if e["object"] == "gitsync/prod"]
    assert "DriftDetected" in types and "SelfHealed" in types
    orch.ok("delete", "cron")
    wait_for(lambda: "cron" in orch.objects() and orch.running("cron"), timeout=15, what="cron back")


def test_without_self_heal_drift_stays_and_apply_from_elsewhere_is_refused(orch: Orchestrator,
                                                                          upstream: Upstream) -> None:
    add(orch, gitsync("prod", upstream.url))
    wait_for(lambda: synced_to(orch, upstream.head), timeout=15, what="the first sync")
    orch.wait_running("web", "worker", "cron")
    orch.write("mine/web.yaml", process("web", ["sleep", "70"]))
    refused = orch("apply", "-f", str(orch.root / "mine"))
    assert refused.returncode == 1 and "gitsync/prod" in refused.stderr and "--force" in refused.stderr
    orch.ok("apply", "-f", str(orch.root / "mine"), "--force")
    document = wait_for(lambda: (s := status(orch))["sync"] == "OutOfSync" and s, timeout=5, what="drift")
    assert any(c["type"] == "Drift" and "default/web" in c["message"] for c in document["conditions"])
    assert now(orch)["outcome"]["result"] == "unchanged"  # no selfHeal: a pass leaves the drift
    assert status(orch)["sync"] == "OutOfSync"
    assert now(orch, force=True)["outcome"]["result"] == "applied"  # a forced pass sets it back
    assert status(orch)["sync"] == "Synced"


def test_suspend_holds_new_commits_until_resume(orch: Orchestrator, upstream: Upstream) -> None:
    add(orch, gitsync("prod", upstream.url))
    wait_for(lambda: synced_to(orch, upstream.head), timeout=15, what="the first sync")
    orch.ok("sync", "suspend", "prod", "--reason", "freeze")
    upstream.write("deploy/web.yaml", process("web", ["sleep", "63"]))
    commit = upstream.commit("during the freeze")
    assert now(orch)["outcome"]["result"] == "refused"
    document = status(orch)
    assert document["health"] == "Suspended" and not synced_to(orch, commit)
    orch.ok("sync", "resume", "prod")
    wait_for(lambda: synced_to(orch, commit), timeout=15, what="applied after resume")


def test_a_deny_window_blocks_automatic_and_manual_syncs_unless_manual_sync(orch: Orchestrator,
                                                                           upstream: Upstream) -> None:
    always = {"kind": "deny", "schedule": "* * * * *", "durationSeconds": 3600}
    add(orch, gitsync("prod", upstream.url, windows=[always]))
    document = wait_for(lambda: (s := status(orch))["sync"] == "OutOfSync" and s, timeout=15, what="denied")
    assert any(c["type"] == "WindowDenied" for c in document["conditions"]) and "web" not in orch.objects()
    assert now(orch)["outcome"]["result"] == "refused"
    add(orch, gitsync("prod", upstream.url, windows=[{**always, "manualSync": True}]))
    assert now(orch)["outcome"]["result"] == "applied"
    orch.wait_running("web", "worker", "cron")


def test_force_push_and_tags_are_followed_and_a_commit_pin_is_not(orch: Orchestrator, upstream: Upstream) -> None:
    first = upstream.head
    add(orch, gitsync("prod", upstream.url))
    wait_for(lambda: synced_to(orch, first), timeout=15, what="the first sync")
    upstream.write("deploy/web.yaml", process("web", ["sleep", "64"]))
    upstream.commit("to be rewritten")
    now(orch)
    upstream.force_push_reset(first)
    upstream.write("deploy/worker.yaml", process("worker", ["sleep", "65"]))
    rewritten = upstream.commit("history rewritten")
    assert now(orch)["outcome"]["result"] == "applied" and synced_to(orch, rewritten)
    # An annotated tag, moved by force: followed (its ^{} commit, not the tag object).
    upstream.write("tagged/api.yaml", process("api"))
    tagged = upstream.commit("api")
    upstream.tag("v1", annotated=True)
    add(orch, gitsync("tagged", upstream.url, ref={"tag": "v1"}, path="tagged"))
    wait_for(lambda: synced_to(orch, tagged, "tagged"), timeout=15, what="the tag's sync")
    upstream.write("tagged/api.yaml", process("api", ["sleep", "69"]))
    moved = upstream.commit("api sleeps longer")
    upstream.tag("v1", annotated=True, force=True)
    assert now(orch, "tagged")["outcome"]["result"] == "applied" and synced_to(orch, moved, "tagged")
    # A commit pin ignores what is pushed after it.
    orch.ok("sync", "remove", "tagged")  # what it applied stays, no one's now: the pin adopts it
    add(orch, gitsync("pinned", upstream.url, ref={"commit": tagged}, path="tagged"))
    wait_for(lambda: synced_to(orch, tagged, "pinned"), timeout=15, what="the pinned sync")
    upstream.write("tagged/api.yaml", process("api", ["sleep", "70"]))
    upstream.commit("not followed by the pin")
    assert now(orch, "pinned")["outcome"]["result"] == "unchanged" and synced_to(orch, tagged, "pinned")
    # Two syncs rendering the same objects: one object, one owner; the second is refused, and retries.
    add(orch, gitsync("twin", upstream.url))
    wait_for(lambda: "owned by gitsync/prod" in status(orch, "twin")["message"], timeout=15, what="the refusal")
    assert status(orch, "twin")["sync"] == "Unknown" and status(orch, "prod")["sync"] == "Synced"


def test_an_unreachable_repo_changes_nothing_and_recovers(orch: Orchestrator, upstream: Upstream) -> None:
    add(orch, gitsync("prod", upstream.url, retryIntervalSeconds=1))
    wait_for(lambda: synced_to(orch, upstream.head), timeout=15, what="the first sync")
    pids = orch.wait_running("web", "worker", "cron")
    moved = upstream.bare.with_name("moved.git")
    upstream.bare.rename(moved)
    try:
        outcome = now(orch)["outcome"]
        assert outcome["result"] == "failed" and "retry in" in outcome["message"]
        document = status(orch)
        assert document["sync"] == "Unknown"
        assert any(c["type"] == "FetchFailed" and c["reason"] == "NetworkError" for c in document["conditions"])
        assert orch.running("web", "worker", "cron") == pids
    finally:
        moved.rename(upstream.bare)
    wait_for(lambda: status(orch)["sync"] == "Synced", timeout=10, what="recovered by its retry")
    assert orch.running("web", "worker", "cron") == pids


def test_sync_remove_with_prune_stops_what_it_owned(orch: Orchestrator, upstream: Upstream) -> None:
    add(orch, gitsync("prod", upstream.url))
    wait_for(lambda: synced_to(orch, upstream.head), timeout=15, what="the first sync")
    orch.wait_running("web", "worker", "cron")
    assert json.loads(orch.ok("sync", "diff", "prod", "-o", "json")) is not None
    orch.ok("sync", "remove", "prod", "--prune")
    wait_for(lambda: not orch.objects(), timeout=10, what="everything pruned")
    assert orch.api("GET", "/gitsyncs")["syncs"] == []


def test_a_killed_daemon_comes_back_synced_without_duplicates(orch: Orchestrator, upstream: Upstream) -> None:
    add(orch, gitsync("prod", upstream.url))
    wait_for(lambda: synced_to(orch, upstream.head), timeout=15, what="the first sync")
    pids = orch.wait_running("web", "worker", "cron")
    revisions = len(orch.revisions())
    daemon = orch.daemon_pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    wait_for(lambda: not alive(daemon), timeout=5, what="the daemon gone")
    from orchestrator.cli.client import start_daemon

    start_daemon(orch.state)
    wait_for(lambda: status(orch)["sync"] == "Synced", timeout=15, what="synced after the restart")
    assert orch.running("web", "worker", "cron") == pids
    assert len(orch.revisions()) == revisions


# -- webhooks, and secrets over smart HTTP ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def http_daemon(orch: Orchestrator) -> Iterator[str]:
    """A daemon serving --http on loopback (shut down by the orch fixture); its address."""
    address = f"127.0.0.1:{_free_port()}"
    orch.state.mkdir(parents=True, exist_ok=True)
    with open(orch.root / "daemon.out", "w") as out:
        child = subprocess.Popen(orch.argv("daemon", "--http", address), stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    wait_for(orch.answers, timeout=15, what="the daemon answering")
    try:
        yield address
    finally:
        orch.close()
        child.wait(timeout=15)


def _post(address: str, path: str, body: bytes, headers: dict[str, str]) -> int:
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request("POST", path, body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def _announce_large_body(address: str, path: str, length: int) -> int:
    """The status answered to a request that says its body is `length` bytes and sends none of it."""
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(f"POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {length}\r\n"
                           "X-Signature: sha256=00\r\n\r\n".encode())
        reply = connection.makefile("rb").readline()
    return int(reply.split()[1])


def test_a_signed_webhook_syncs_at_once_and_a_bad_one_fetches_nothing(orch: Orchestrator, upstream: Upstream,
                                                                      http_daemon: str) -> None:
    secret = orch.root / "hook.secret"
    secret.write_text("s3cret-hook\n")
    secret.chmod(0o600)
    add(orch, gitsync("prod", upstream.url, webhook={"secretFile": str(secret)}))
    wait_for(lambda: synced_to(orch, upstream.head), timeout=15, what="the first sync")
    upstream.write("deploy/web.yaml", process("web", ["sleep", "66"]))
    commit = upstream.commit("pushed")
    body = json.dumps({"ref": "refs/heads/main", "after": "0" * 40}).encode()  # never trusted for content
    signature = "sha256=" + hmac.new(b"s3cret-hook", body, hashlib.sha256).hexdigest()
    assert _post(http_daemon, "/hooks/git/prod", body, {"X-Hub-Signature-256": "sha256=" + "0" * 64}) == 401
    assert _post(http_daemon, "/hooks/git/prod", body, {}) == 401
    assert _post(http_daemon, "/hooks/git/nope", body, {"X-Hub-Signature-256": signature}) == 404
    assert _announce_large_body(http_daemon, "/hooks/git/prod", 2 << 20) == 413  # refused unread
    assert not synced_to(orch, commit)
    started = time.monotonic()
    assert _post(http_daemon, "/hooks/git/prod", body, {"X-Hub-Signature-256": signature}) == 202
    wait_for(lambda: synced_to(orch, commit), timeout=5, what="the hooked sync")
    assert time.monotonic() - started < 1.5
    generic = "sha256=" + hmac.new(b"s3cret-hook", b"{}", hashlib.sha256).hexdigest()
    assert _post(http_daemon, "/hooks/git/prod", b"{}", {"X-Signature": generic}) == 202


def test_a_burst_of_webhooks_is_one_pass(orch: Orchestrator, tmp_path: Path, http_daemon: str) -> None:
    token = tmp_path / "token"
    token.write_text("burst-token\n")
    token.chmod(0o600)
    with SmartHttp(tmp_path / "served", username="x-access-token", password="burst-token") as server:
        repo = Upstream(tmp_path / "served-upstream", bare=server.root / "app.git")
        repo.write("deploy/web.yaml", process("web"))
        repo.commit("first")
        secret = tmp_path / "hook.secret"
        secret.write_text("burst")
        secret.chmod(0o600)
        add(orch, gitsync("prod", server.url_for("app.git"), auth={"tokenFile": str(token)},
                          webhook={"secretFile": str(secret)}))
        wait_for(lambda: synced_to(orch, repo.head), timeout=15, what="the first sync")
        repo.write("deploy/web.yaml", process("web", ["sleep", "67"]))
        commit = repo.commit("pushed")
        before = len(server.requests)
        body = b'{"zen": "burst"}'
        signature = "sha256=" + hmac.new(b"burst", body, hashlib.sha256).hexdigest()
        for _ in range(50):
            assert _post(http_daemon, "/hooks/git/prod", body, {"X-Hub-Signature-256": signature}) == 202
        wait_for(lambda: synced_to(orch, commit), timeout=10, what="the hooked sync")
        # Over HTTP each git command asks twice (401, then with the token). The burst is one pass that lists
        # and fetches, and one more, WEBHOOK_GAP_SECONDS later, that only lists: three commands.
        listings = lambda: [p for p in server.requests[before:] if "info/refs" in p]
        wait_for(lambda: len(listings()) >= 6, timeout=10, what="the coalesced pass")
        assert len(listings()) == 6, listings()
        fetched = [e for e in orch.api("GET", "/events")["events"]
                   if e["type"] == "SyncFetched" and commit in e["message"]]
        assert len(fetched) == 1, fetched


def test_a_canary_token_never_shows(orch: Orchestrator, tmp_path: Path) -> None:
    canary = "canary-" + os.urandom(8).hex()
    token = tmp_path / "token"
    token.write_text(canary + "\n")
    token.chmod(0o600)
    with SmartHttp(tmp_path / "served", username="x-access-token", password=canary) as server:
        repo = Upstream(tmp_path / "served-upstream", bare=server.root / "app.git")
        repo.write("deploy/web.yaml", process("web"))
        repo.commit("first")
        add(orch, gitsync("prod", server.url_for("app.git"), auth={"tokenFile": str(token)}))
        wait_for(lambda: synced_to(orch, repo.head), timeout=15, what="the sync over http")
        assert any(canary in h for h in server.authorizations_decoded())
        token.write_text("wrong-" + canary[::-1] + "\n")
        repo.write("deploy/web.yaml", process("web", ["sleep", "68"]))
        repo.commit("pushed")
        outcome = now(orch)["outcome"]
        assert outcome["result"] == "failed"
        assert any(c["type"] == "FetchFailed" and c["reason"] == "AuthFailed" for c in status(orch)["conditions"])
    for text in [orch.ok("sync", "get", "prod", "-o", "json"), orch.ok("events"), *everything_kept(orch)]:
        assert canary not in text and canary[::-1] not in text


def test_the_applied_tree_outlives_any_number_of_bad_commits(orch: Orchestrator, upstream: Upstream) -> None:
    upstream.write("deploy/web.yaml", process("web", workingDir="."))
    good = upstream.commit("web runs in its folder")
    add(orch, gitsync("prod", upstream.url))
    wait_for(lambda: synced_to(orch, good), timeout=15, what="the first sync")
    web = orch.wait_running("web")["web"][0]
    tree = Path(os.readlink(orch.state / "git" / "work" / "prod"))
    assert Path(f"/proc/{web}/cwd").resolve() == tree.resolve()
    for n in range(7):  # more than the exports kept per repo and path
        upstream.write("deploy/notes.yaml", f"broken: [{n}\n")
        upstream.commit(f"bad {n}")
        assert now(orch)["outcome"]["result"] == "failed"
    assert tree.is_dir() and (tree / "web.yaml").is_file()
    assert orch.running("web") == {"web": [web]}


def test_a_sync_over_ssh_with_a_key_and_known_hosts_never_shows_the_key(orch: Orchestrator, upstream: Upstream,
                                                                        tmp_path: Path) -> None:
    why = LoopbackSshd.available()
    if why:
        pytest.skip(why)
    with LoopbackSshd(tmp_path / "sshd") as sshd:
        sshd.client_key.chmod(0o600)
        add(orch, gitsync("prod", sshd.url_for(upstream.bare), auth={
            "sshKeyFile": str(sshd.client_key), "knownHostsFile": str(sshd.known_hosts)}))
        wait_for(lambda: synced_to(orch, upstream.head), timeout=20, what="the sync over ssh")
        orch.wait_running("web", "worker", "cron")
        sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB" + "A" * 43 + "\n")
        upstream.write("deploy/web.yaml", process("web", ["sleep", "71"]))
        upstream.commit("pushed")
        assert now(orch)["outcome"]["result"] == "failed"  # a host key that does not match: refused
        assert status(orch)["sync"] == "Unknown"
    key_lines = [line for line in sshd.client_key.read_text().splitlines() if "PRIVATE KEY" not in line]
    for text in [json.dumps(status(orch)), *everything_kept(orch)]:
        assert not any(line in text for line in key_lines)


def test_a_daemon_killed_mid_fetch_leaves_no_git_behind_and_the_next_one_syncs(orch: Orchestrator,
                                                                               tmp_path: Path) -> None:
    import threading

    import psutil

    token = tmp_path / "token"
    token.write_text("t0ken\n")
    token.chmod(0o600)
    with SmartHttp(tmp_path / "served", password="t0ken") as server:
        repo = Upstream(tmp_path / "served-upstream", bare=server.root / "app.git")
        repo.write("deploy/web.yaml", process("web"))
        repo.commit("first")
        add(orch, gitsync("prod", server.url_for("app.git"), auth={"tokenFile": str(token)}))
        wait_for(lambda: synced_to(orch, repo.head), timeout=15, what="the first sync")
        pids = orch.wait_running("web")
        repo.write("deploy/web.yaml", process("web", ["sleep", "72"]))
        commit = repo.commit("pushed")
        held, release = threading.Event(), threading.Event()

        def hold_the_fetch(path: str) -> None:
            if "git-upload-pack" in path and not release.is_set():
                held.set()
                release.wait(20)

        server.on_request = hold_the_fetch
        daemon = orch.daemon_pid()
        assert daemon is not None
        threading.Thread(target=lambda: _quietly(lambda: now(orch)), daemon=True).start()
        assert held.wait(10), "the pass never reached the server"
        gits = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] and "git" in p.info["cmdline"][0]
                and any("app.git" in a for a in p.info["cmdline"])]
        assert gits, "no git child seen mid-fetch"
        os.kill(daemon, signal.SIGKILL)
        wait_for(lambda: not alive(daemon), timeout=5, what="the daemon gone")
        from orchestrator.cli.client import start_daemon

        start_daemon(orch.state)  # its stray sweep ends the git the dead one left
        wait_for(lambda: not any(alive(p.pid) for p in gits), timeout=10, what="the orphaned git ended")
        release.set()
        wait_for(lambda: synced_to(orch, commit), timeout=20, what="synced by the new daemon")
        orch.wait_running("web", replacing=pids)
        assert len(orch.running("web")["web"]) == 1  # type: ignore[index]


def _quietly(work: Any) -> None:
    try:
        work()
    except Exception:  # noqa: BLE001, S110 - the daemon is killed under this request on purpose
        pass


def test_a_commit_may_not_read_host_files_through_env_from(orch: Orchestrator, upstream: Upstream,
                                                           tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("HOSTSECRET_" + "x" * 8 + "\n")  # not a dotenv line: its text would be quoted back
    upstream.write("deploy/web.yaml", process("web", envFrom=[{"file": str(secret)}]))
    upstream.write("deploy/worker.yaml", process("worker", envFrom=[{"file": "../../" * 12 + str(secret)}]))
    commit = upstream.commit("reads the host")
    add(orch, gitsync("prod", upstream.url))
    def refused() -> dict[str, Any] | None:
        document = status(orch)
        return document if any(c["type"] == "ValidationFailed" for c in document["conditions"]) else None

    document = wait_for(refused, timeout=15, what="the refusal")
    problems = next(c for c in document["conditions"] if c["type"] == "ValidationFailed")["problems"]
    assert {p["file"] for p in problems} == {f"gitsync/prod@{commit[:7]}:deploy/web.yaml",
                                             f"gitsync/prod@{commit[:7]}:deploy/worker.yaml"}
    assert all("outside the synced tree" in p["message"] for p in problems)
    assert "HOSTSECRET" not in json.dumps(document) + json.dumps(orch.api("GET", "/events"))


def test_allow_empty_applies_a_path_without_manifests(orch: Orchestrator, upstream: Upstream) -> None:
    add(orch, gitsync("prod", upstream.url, prune=True, allowEmpty=True))
    wait_for(lambda: synced_to(orch, upstream.head), timeout=15, what="the first sync")
    for name in ("web", "worker", "cron"):
        upstream.remove(f"deploy/{name}.yaml")
    upstream.write("deploy/notes.txt", "all gone on purpose\n")
    emptied = upstream.commit("empty on purpose")
    assert now(orch)["outcome"]["result"] == "applied"
    wait_for(lambda: not orch.objects(), timeout=10, what="everything pruned")
    assert synced_to(orch, emptied)


def test_drift_is_healed_from_the_running_commit_while_the_head_is_bad(orch: Orchestrator,
                                                                       upstream: Upstream) -> None:
    add(orch, gitsync("prod", upstream.url, selfHeal=True, selfHealDelaySeconds=1))
    good = wait_for(lambda: synced_to(orch, upstream.head), timeout=15, what="the first sync")
    upstream.write("deploy/web.yaml", process("web", restartPolicy="Sometimes"))
    upstream.commit("bad")
    assert now(orch)["outcome"]["result"] == "failed"
    orch.ok("scale", "worker", "--replicas", "2")
    wait_for(lambda: orch.objects()["worker"]["replicas"]["desired"] == 1, timeout=10, what="healed")
    document = status(orch)
    assert document["last_applied_revision"] == good["last_applied_revision"]
    assert document["sync"] == "Unknown"  # the head is still the bad commit, and says so
    assert any(c["type"] == "ValidationFailed" for c in document["conditions"])
