"""`orchestrator sync ...` without a daemon: the views of sample status documents (render/syncs.py), the GitSync
document `sync add --dry-run` prints, usage errors and validation, `--help` of every verb, and the exit codes
of `sync now` and `sync diff` from fake daemon answers (sync.compare is pure; the handlers are run through
main() with a fake client in place of the socket's). A live daemon's side is tested in test_gitsync_daemon.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from conftest import REPO

from orchestrator.cli import sync as sync_cli
from orchestrator.cli.client import ApiError
from orchestrator.cli.main import main
from orchestrator.cli.render.syncs import (
    outcome_text,
    problem_line,
    removed_text,
    short_revision,
    suspended_line,
    sync_diff_json,
    sync_diff_text,
    sync_text,
    syncs_table,
)
from orchestrator.cli.sync import compare, now_exit
from orchestrator.core.model import ProcessSpec
from orchestrator.manifests import codec

CLI = [sys.executable, "-m", "orchestrator"]
NOW = 1_700_000_000.0
SHA = "3f2a1c9d4e5f60718293a4b5c6d7e8f901234567"
OLD_SHA = "0123456789abcdef0123456789abcdef01234567"
VERBS = ["add", "list", "get", "now", "diff", "suspend", "resume", "remove"]
PROBLEM = {"file": f"gitsync/prod@{SHA[:7]}:deploy/api.yaml", "line": 14, "column": 5, "path": "spec.restartPolicy",
           "message": "'Sometimes' is not one of Always, OnFailure, Never"}


def status(**fields: Any) -> dict[str, Any]:
    """A status document of one sync (GET /gitsyncs/NAME), Synced and Healthy unless `fields` say otherwise."""
    document: dict[str, Any] = {
        "name": "prod", "repo": "https://git.example.org/ops/host.git", "ref": {"branch": "main"}, "path": "deploy",
        "interval_seconds": 60.0, "prune": False, "self_heal": False, "suspended": False, "suspend_reason": "",
        "sync": "Synced", "health": "Healthy", "revision": f"main@sha1:{SHA}",
        "last_applied_revision": f"main@sha1:{SHA}", "last_attempted_revision": f"main@sha1:{SHA}",
        "last_fetch_at": NOW - 3, "last_sync_at": NOW - 12, "next_sync_at": NOW + 48, "message": "applied rev 17",
        "conditions": [], "objects": ["default/api", "default/worker"], "windows": [],
        "history": [{"revision": f"main@sha1:{SHA}", "commit": SHA, "at": NOW - 12, "result": "applied",
                     "message": "applied rev 17", "orchestrator_revision": 17}],
    }
    document.update(fields)
    return document


def cli(*args: str, cwd: Path = REPO, state: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ORCHESTRATOR_HOME=str(state)) if state else None
    return subprocess.run([*CLI, *args], check=False, capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


# -- the views ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("revision, shown", [
    pytest.param(f"main@sha1:{SHA}", "main@3f2a1c9", id="branch"),
    pytest.param(f"release/v1@sha1:{SHA}", "release/v1@3f2a1c9", id="branch-with-a-slash"),
    pytest.param(f"{SHA}@sha1:{SHA}", "3f2a1c9", id="a-commit-ref-is-its-sha-once"),
    pytest.param(SHA, "3f2a1c9", id="a-bare-sha"),
    pytest.param(None, "-", id="none-yet"),
    pytest.param("", "-", id="empty"),
])
def test_short_revision(revision: str | None, shown: str) -> None:
    assert short_revision(revision) == shown


def test_the_list_has_its_columns_short_shas_and_ages() -> None:
    failing = status(name="edge", ref={"tag": "v1.2.0"}, path=".", sync="Unknown", health="Degraded",
                     revision=f"v1.2.0@sha1:{OLD_SHA}", last_sync_at=None, message="fetch failed: NetworkError")
    pinned = status(name="pinned", ref={"commit": OLD_SHA}, revision=f"{OLD_SHA}@sha1:{OLD_SHA}",
                    last_sync_at=NOW - 200)
    lines = syncs_table([status(), failing, pinned], now=NOW).splitlines()
    assert lines[0].split() == ["NAME", "REPO", "REF", "PATH", "SYNC", "HEALTH", "REVISION", "LAST-SYNC", "MESSAGE"]
    assert lines[1].split() == ["prod", "https://git.example.org/ops/host.git", "main", "deploy", "Synced", "Healthy",
                                "main@3f2a1c9", "12s", "applied", "rev", "17"]
    assert lines[2].split()[:8] == ["edge", "https://git.example.org/ops/host.git", "v1.2.0", ".", "Unknown",
                                    "Degraded", "v1.2.0@0123456", "-"]
    assert lines[3].split()[2] == "0123456" and lines[3].split()[6:8] == ["0123456", "3m20s"]
    assert syncs_table([], now=NOW) == "No gitsyncs."


def test_the_list_truncates_the_message_to_the_terminal() -> None:
    long = status(message="x" * 200)
    [_, row] = syncs_table([long], now=NOW, width=120).splitlines()
    assert len(row) == 120 and row.endswith("…")


def test_a_control_character_in_a_message_never_reaches_the_terminal() -> None:
    table = syncs_table([status(message="evil\x1b]0;title\x07")], now=NOW)
    assert "\x1b" not in table and "\x07" not in table


def test_get_shows_spec_state_conditions_with_their_problems_windows_history_and_objects() -> None:
    failed = {"type": "ValidationFailed", "reason": "ValidationFailed", "message": "2 problems in 3f2a1c9",
              "since": NOW - 60, "problems": [PROBLEM, {**PROBLEM, "line": 0, "column": 0, "path": ""}]}
    history = [{"revision": f"main@sha1:{n:040x}", "commit": f"{n:040x}", "at": NOW - 100 * n, "result": "applied",
                "message": f"pass {n}", "orchestrator_revision": n} for n in range(1, 8)]
    window = {"kind": "deny", "schedule": "0 22 * * *", "duration_seconds": 3600.0, "time_zone": "Europe/Berlin",
              "manual_sync": True}
    text = sync_text(status(sync="OutOfSync", conditions=[failed], history=history, windows=[window],
                            last_attempted_revision=f"main@sha1:{OLD_SHA}", suspended=True,
                            suspend_reason="freeze"), now=NOW)
    lines = text.splitlines()
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines if not line.startswith(" ")}
    assert fields["Name"] == "prod" and fields["Ref"] == "branch main" and fields["Path"] == "deploy"
    assert fields["Interval"] == "60s" and fields["Prune"] == "no" and fields["Suspended"] == "yes: freeze"
    assert fields["Sync"] == "OutOfSync" and fields["Health"] == "Healthy"
    assert fields["Last applied"] == f"main@sha1:{SHA}"  # in full: what `sync now --revision` takes
    assert fields["Last attempted"] == f"main@sha1:{OLD_SHA}"
    assert fields["Last fetch"] == "3s ago" and fields["Last sync"] == "12s ago" and fields["Next sync"] == "in 48s"
    assert fields["Windows"] == "deny 0 22 * * * for 1h (Europe/Berlin), manual sync allowed"
    condition = next(i for i, line in enumerate(lines) if "ValidationFailed" in line)
    assert lines[condition].split()[:3] == ["ValidationFailed", "ValidationFailed", "60s"]
    assert lines[condition + 1] == ("    gitsync/prod@3f2a1c9:deploy/api.yaml:14:5: spec.restartPolicy: 'Sometimes' is "
                                    "not one of Always, OnFailure, Never")
    assert lines[condition + 2] == "    gitsync/prod@3f2a1c9:deploy/api.yaml: 'Sometimes' is not one of Always, " \
                                   "OnFailure, Never"
    start = lines.index("History (last 5):")
    assert lines[start + 1].split() == ["REVISION", "RESULT", "DESIRED-REV", "AGE", "MESSAGE"]
    assert [line.split()[-1] for line in lines[start + 2:start + 7]] == ["3", "4", "5", "6", "7"]  # the last five
    assert lines[start + 2].split()[:4] == ["main@0000000", "applied", "3", "5m"]
    assert lines[-3:] == ["Objects:", "  default/api", "  default/worker"]


def test_get_of_a_new_sync_says_none_where_there_is_nothing_yet() -> None:
    text = sync_text(status(revision=None, last_applied_revision=None, last_attempted_revision=None,
                            last_fetch_at=None, last_sync_at=None, next_sync_at=None, message="", history=[],
                            objects=[], sync="Unknown", health="Unknown"), now=NOW)
    assert "Conditions:  <none>" in text and "History:  <none>" in text and "Objects:  <none>" in text
    assert re.search(r"^Windows: +<none>$", text, re.MULTILINE) and re.search(r"^Last applied: +-$", text, re.MULTILINE)


def test_a_problem_line_is_the_cli_s_form() -> None:
    assert problem_line(PROBLEM) == ("gitsync/prod@3f2a1c9:deploy/api.yaml:14:5: spec.restartPolicy: 'Sometimes' is "
                                     "not one of Always, OnFailure, Never")


def test_the_verbs_lines() -> None:
    assert suspended_line({"sync": status(suspended=True, suspend_reason="release freeze")}, suspend=True) == \
        "gitsync/prod suspended: release freeze"
    assert suspended_line({"sync": status()}, suspend=False) == "gitsync/prod resumed"
    assert "still suspended" in suspended_line({"sync": status(suspended=True)}, suspend=False)
    assert removed_text({"name": "prod", "removed": True, "pruned": ["default/api"]}).splitlines() == [
        "default/api pruned", "gitsync/prod removed"]
    assert removed_text({"name": "prod", "removed": True, "pruned": []}) == "gitsync/prod removed"


# -- sync now -------------------------------------------------------------------------------------------------


def outcome(result: str, message: str = "", problems: list[dict[str, Any]] | None = None,
            **sync: Any) -> dict[str, Any]:
    return {"sync": status(**sync), "outcome": {"result": result, "message": message, "problems": problems or []}}


@pytest.mark.parametrize("answer, code", [
    pytest.param(outcome("applied", "applied rev 18"), 0, id="applied"),
    pytest.param(outcome("applied", sync="OutOfSync"), 0, id="applied-though-a-prune-was-skipped"),
    pytest.param(outcome("unchanged", "no changes"), 0, id="unchanged-and-synced"),
    pytest.param(outcome("unchanged", sync="OutOfSync"), 1, id="unchanged-but-out-of-sync"),
    pytest.param(outcome("failed", "2 problems", [PROBLEM], sync="Unknown"), 1, id="failed"),
    pytest.param(outcome("failed", "fetch failed", sync="Synced"), 1, id="failed-while-synced-before"),
    pytest.param(outcome("refused", "suspended", sync="OutOfSync"), 1, id="refused"),
    pytest.param(outcome("skipped", "the sync was stopped", sync="OutOfSync"), 1, id="skipped"),
])
def test_now_exit(answer: dict[str, Any], code: int) -> None:
    assert now_exit(answer) == code


def test_now_says_what_happened_with_every_problem() -> None:
    text = outcome_text(outcome("failed", "2 problems, nothing applied", [PROBLEM], sync="Unknown", health="Healthy",
                                last_attempted_revision=f"main@sha1:{OLD_SHA}"))
    assert text.splitlines() == [
        "gitsync/prod failed (Unknown, Healthy, main@0123456): 2 problems, nothing applied",
        ("  gitsync/prod@3f2a1c9:deploy/api.yaml:14:5: spec.restartPolicy: 'Sometimes' is not one of Always, "
         "OnFailure, Never")]
    assert outcome_text(outcome("applied", "applied rev 17")) == \
        "gitsync/prod applied (Synced, Healthy, main@3f2a1c9): applied rev 17"


# -- sync diff: the comparison --------------------------------------------------------------------------------


def spec(name: str, *command: str, **fields: Any) -> dict[str, Any]:
    """A spec as GET /desired and POST /gitsyncs/NAME/diff send one (codec.spec_to_json)."""
    return codec.spec_to_json(ProcessSpec(name=name, command=command or ("sleep", "60"), **fields))


def diff_answer(specs: list[dict[str, Any]], owned: list[str], prune: bool = False) -> dict[str, Any]:
    return {"revision": f"main@sha1:{SHA}", "commit": SHA, "specs": specs, "owned": owned, "prune": prune}


LIVE = [spec("api"), spec("worker"), spec("other")]  # `other` is no sync's


@pytest.mark.parametrize("answer, changed, not_pruned, code", [
    pytest.param(diff_answer([spec("api"), spec("worker")], ["default/api", "default/worker"]), [], [], 0,
                 id="same-specs-no-difference"),
    pytest.param(diff_answer([spec("api", "sleep", "61"), spec("worker")], ["default/api", "default/worker"]),
                 [("default/api", "configured")], [], 1, id="a-changed-field"),
    pytest.param(diff_answer([spec("api"), spec("worker"), spec("new")], ["default/api", "default/worker"]),
                 [("default/new", "created")], [], 1, id="a-new-object"),
    pytest.param(diff_answer([spec("api")], ["default/api", "default/worker"], prune=True),
                 [("default/worker", "pruned")], [], 1, id="gone-from-the-commit-with-prune-is-removed"),
    pytest.param(diff_answer([spec("api")], ["default/api", "default/worker"], prune=False),
                 [], ["default/worker"], 0, id="gone-from-the-commit-without-prune-is-no-difference"),
    pytest.param(diff_answer([spec("api")], ["default/api", "default/gone"], prune=True), [], [], 0,
                 id="owned-but-not-desired-any-more-is-nothing-to-remove"),
    pytest.param(diff_answer([], [], prune=True), [], [], 0, id="an-empty-commit-owning-nothing"),
])
def test_compare(answer: dict[str, Any], changed: list[tuple[str, str]], not_pruned: list[str], code: int) -> None:
    found = compare(answer, LIVE)
    document = sync_diff_json(found.revision, found.commit, found.changes, found.not_pruned)
    assert [(c["key"], c["change"]) for c in document["changes"]] == changed
    assert list(found.not_pruned) == document["not_pruned"] == not_pruned
    assert found.exit_code == code
    assert (document["revision"], document["commit"]) == (f"main@sha1:{SHA}", SHA)


def test_diff_text_is_diff_s_with_the_objects_prune_would_remove() -> None:
    found = compare(diff_answer([spec("api", "sleep", "61")], ["default/api", "default/worker"]), LIVE)
    assert sync_diff_text(found.changes, found.not_pruned).splitlines() == [
        "--- live/default/api", "+++ manifest/default/api",
        '-spec.command: ["sleep", "60"]', '+spec.command: ["sleep", "61"]',
        "default/worker: not in the commit, would not be pruned (prune is off)"]
    assert sync_diff_text((), ()) == ""


def test_diff_never_shows_env_values() -> None:
    found = compare(diff_answer([spec("api", env=(("TOKEN", "s3cret-new"),))], ["default/api"]),
                    [spec("api", env=(("TOKEN", "s3cret-old"),))])
    assert found.exit_code == 1
    text = sync_diff_text(found.changes, found.not_pruned)
    document = str(sync_diff_json(found.revision, found.commit, found.changes, found.not_pruned))
    assert "TOKEN" in text and "s3cret" not in text + document


# -- the handlers, with a fake daemon -------------------------------------------------------------------------


class FakeClient:
    """In place of sync.Client: answers by (method, route), or raises what is given for it; records bodies."""

    answers: ClassVar[dict[tuple[str, str], Any]] = {}
    sent: ClassVar[list[tuple[str, str, Any]]] = []

    def __init__(self, state_dir: Path, timeout: float | None = 60.0) -> None:
        self.timeout = timeout

    def request(self, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.sent.append((method, route, body))
        answer = self.answers[(method, route)]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., int]:
    """Runs `orchestrator sync ...` in this process against FakeClient's answers, given as keyword `answers`."""
    monkeypatch.setattr(sync_cli, "Client", FakeClient)
    FakeClient.sent = []

    def run(*args: str, answers: dict[tuple[str, str], Any]) -> int:
        FakeClient.answers = answers
        return main(["--state-dir", str(tmp_path / "state"), "sync", *args])

    return run


NOT_FOUND = ApiError(404, "no gitsync named nope (see `orchestrator sync list`)")


def test_diff_exits_0_1_or_2(daemon: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    same = {("POST", "/gitsyncs/prod/diff"): diff_answer([spec("api")], ["default/api"]),
            ("GET", "/desired"): {"specs": LIVE}}
    assert daemon("diff", "prod", answers=same) == 0
    assert capsys.readouterr().out == ""
    changed = {**same, ("POST", "/gitsyncs/prod/diff"): diff_answer([spec("api", "true")], ["default/api"])}
    assert daemon("diff", "prod", "-o", "json", answers=changed) == 1
    assert '"change": "configured"' in capsys.readouterr().out
    assert daemon("diff", "nope", answers={("POST", "/gitsyncs/nope/diff"): NOT_FOUND}) == 2
    assert "no gitsync named nope" in capsys.readouterr().err


def test_now_sends_force_and_revision_waits_long_and_exits_by_the_outcome(
        daemon: Callable[..., int], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    timeouts: list[float | None] = []
    monkeypatch.setattr(FakeClient, "__init__", lambda self, state, timeout=60.0: timeouts.append(timeout))
    route = ("POST", "/gitsyncs/prod/sync")
    assert daemon("now", "prod", answers={route: outcome("applied", "applied rev 18")}) == 0
    assert capsys.readouterr().out.startswith("gitsync/prod applied")
    assert FakeClient.sent[-1][2] == {"force": False, "revision": None}
    assert timeouts[-1] is not None and timeouts[-1] > 600  # the daemon waits up to 600 s for a pass
    failed = outcome("failed", "2 problems", [PROBLEM], sync="Unknown")
    assert daemon("now", "prod", "--force", "--revision", SHA.upper(), answers={route: failed}) == 1
    assert FakeClient.sent[-1][2] == {"force": True, "revision": SHA}
    assert "spec.restartPolicy" in capsys.readouterr().err
    assert daemon("now", "nope", answers={("POST", "/gitsyncs/nope/sync"): NOT_FOUND}) == 2


def test_the_other_verbs_print_their_line(daemon: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    assert daemon("list", answers={("GET", "/gitsyncs"): {"syncs": [status()]}}) == 0
    assert capsys.readouterr().out.split()[:9] == ["NAME", "REPO", "REF", "PATH", "SYNC", "HEALTH", "REVISION",
                                                    "LAST-SYNC", "MESSAGE"]
    assert daemon("get", "prod", "-o", "yaml", answers={("GET", "/gitsyncs/prod"): status()}) == 0
    assert yaml.safe_load(capsys.readouterr().out)["name"] == "prod"
    assert daemon("suspend", "prod", "--reason", "freeze",
                  answers={("POST", "/gitsyncs/prod/suspend"): {"sync": status(suspended=True,
                                                                               suspend_reason="freeze")}}) == 0
    assert FakeClient.sent[-1][2] == {"reason": "freeze"}
    assert daemon("remove", "prod", "--prune",
                  answers={("POST", "/gitsyncs/prod/remove"): {"name": "prod", "removed": True, "pruned": []}}) == 0
    assert FakeClient.sent[-1][2] == {"prune": True}
    assert capsys.readouterr().out.splitlines() == ["gitsync/prod suspended: freeze", "gitsync/prod removed"]
    assert daemon("get", "nope", answers={("GET", "/gitsyncs/nope"): NOT_FOUND}) == 1  # the usual refusal


# -- sync add -------------------------------------------------------------------------------------------------


def test_add_dry_run_prints_the_gitsync_omitting_defaults_without_a_daemon(tmp_path: Path) -> None:
    from orchestrator.manifests.gitsyncs import gitsync_from_document, gitsync_to_document

    (tmp_path / "token").write_text("s3cret-token\n")
    result = cli("sync", "add", "prod", "--repo", "https://git.example.org/ops/host.git", "--branch", "main",
                 "--path", "deploy", "--interval", "120", "--prune", "--token-file", "token",
                 "--webhook-secret-file", "hook.secret", "--dry-run", "-o", "yaml", cwd=tmp_path,
                 state=tmp_path / "no-daemon")
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    assert document == {
        "apiVersion": "orchestrator/v1", "kind": "GitSync", "metadata": {"name": "prod"},
        "spec": {"repo": "https://git.example.org/ops/host.git", "ref": {"branch": "main"}, "path": "deploy",
                 "intervalSeconds": 120, "prune": True, "auth": {"tokenFile": str(tmp_path / "token")},
                 "webhook": {"secretFile": str(tmp_path / "hook.secret")}}}
    assert gitsync_to_document(gitsync_from_document(document)) == document  # nothing in it is a default
    assert "s3cret" not in result.stdout + result.stderr
    assert not (tmp_path / "no-daemon").exists()  # no daemon was asked, nor started


def test_add_dry_run_defaults_to_yaml_and_takes_json(tmp_path: Path) -> None:
    import json

    args = ("sync", "add", "edge", "--repo", "git@git.example.org:ops/host.git", "--commit", SHA,
            "--ssh-key", "/keys/id", "--known-hosts", "/keys/known_hosts", "--self-heal", "--dry-run")
    as_yaml = cli(*args, state=tmp_path)
    as_json = cli(*args, "-o", "json", state=tmp_path)
    assert as_yaml.returncode == as_json.returncode == 0, as_yaml.stderr + as_json.stderr
    assert yaml.safe_load(as_yaml.stdout) == json.loads(as_json.stdout)
    assert json.loads(as_json.stdout)["spec"] == {
        "repo": "git@git.example.org:ops/host.git", "ref": {"commit": SHA}, "selfHeal": True,
        "auth": {"sshKeyFile": "/keys/id", "knownHostsFile": "/keys/known_hosts"}}


@pytest.mark.parametrize("args, reason", [
    pytest.param(("--branch", "main", "--tag", "v1"), "not allowed with argument --branch", id="two-refs"),
    pytest.param((), "one of the arguments --branch --tag --commit is required", id="no-ref"),
    pytest.param(("--branch", "main", "--username", "bot"), "--username goes with --token-file",
                 id="username-without-token"),
    pytest.param(("--branch", "main", "--ssh-key", "/k"), "--ssh-key needs --known-hosts",
                 id="ssh-key-without-host-keys"),
    pytest.param(("--branch", "main", "--token-file", "/t", "--ssh-key", "/k"), "not allowed with argument",
                 id="token-and-key"),
    pytest.param(("--branch", "main", "--interval", "soon"), "expected a number of seconds", id="interval-no-number"),
    pytest.param(("--branch", "main", "--interval", "nan"), "must be a number of seconds", id="interval-nan"),
])
def test_add_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...], reason: str) -> None:
    result = cli("sync", "add", "prod", "--repo", "https://h/x.git", *args, "--dry-run", state=tmp_path)
    assert result.returncode == 2 and reason in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("args, message", [
    pytest.param(("--repo", "https://u:p@host/x.git", "--branch", "main"),
                 "sync add: spec.repo: credentials in the repo URL", id="credentials-in-the-url"),
    pytest.param(("--repo", "https://host/x.git", "--commit", "abc123"),
                 "sync add: spec.ref.commit: must be a full commit SHA", id="short-commit"),
    pytest.param(("--repo", "https://host/x.git", "--branch", "main", "--interval", "1"),
                 "sync add: spec.intervalSeconds", id="interval-below-its-minimum"),
])
def test_add_refuses_an_invalid_gitsync_with_exit_1(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = cli("sync", "add", "prod", *args, "--dry-run", state=tmp_path)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stdout == "" and "u:p@" not in result.stderr  # refused without repeating the credentials


def test_add_sends_the_document_and_says_what_the_daemon_did(
        daemon: Callable[..., int], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_cli, "start_daemon", lambda state_dir: FakeClient(state_dir))
    answer = {"name": "prod", "result": "created", "sync": status()}
    assert daemon("add", "prod", "--repo", "https://h/x.git", "--tag", "v1",
                  answers={("POST", "/gitsyncs"): answer}) == 0
    assert capsys.readouterr().out == "gitsync/prod created\n"
    [(_, _, body)] = FakeClient.sent
    assert body == {"document": {"apiVersion": "orchestrator/v1", "kind": "GitSync", "metadata": {"name": "prod"},
                                 "spec": {"repo": "https://h/x.git", "ref": {"tag": "v1"}}}, "dry_run": False}


# -- help -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", [None, *VERBS])
def test_every_verb_has_help(verb: str | None) -> None:
    result = cli("sync", *([verb] if verb else []), "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: orchestrator sync"), result.stderr
    assert "NAME" in result.stdout or verb in (None, "list")
