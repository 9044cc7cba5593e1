"""GitSync documents: schemas/gitsync.v1.json, the rules of manifests/gitsyncs.py, the spec the loader builds, and
the document it goes back to (core/gitsync.py, manifests/gitsyncs.py, manifests/loader.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.core.errors import Location, ManifestError, Problem
from orchestrator.core.gitsync import GitSyncSpec, SyncWindow
from orchestrator.manifests.cache import SpecCache
from orchestrator.manifests.documents import Document
from orchestrator.manifests.files import ReadLimits, Source
from orchestrator.manifests.gitsyncs import (
    KEPT_BY_DAEMON,
    check_gitsync_rules,
    gitsync_from_document,
    gitsync_to_document,
)
from orchestrator.manifests.loader import load_sources
from orchestrator.manifests.schema import full_validator, is_valid, schemas

FILE = "deploy/sync.yaml"
REPO = "https://git.example.org/ops/host.git"
SHA = "3f2a1c9e8d7b6a5f4e3d2c1b0a9f8e7d6c5b4a39"


def gitsync(spec: str = "ref: {branch: main}", repo: str | None = REPO, name: str = "prod") -> str:
    body = (f"repo: {repo}\n" if repo is not None else "") + textwrap.dedent(spec).rstrip("\n") + "\n"
    return (f"apiVersion: orchestrator/v1\nkind: GitSync\nmetadata:\n  name: {name}\n"
            f"spec:\n{textwrap.indent(body, '  ')}")


PROCESS = "apiVersion: orchestrator/v1\nkind: Process\nmetadata:\n  name: {name}\nspec:\n  command: [sleep, '1']\n"


def load(text: str, syncs: list[GitSyncSpec] | None = None, cache: SpecCache | None = None,
         ) -> tuple[Any, list[GitSyncSpec]]:
    found: list[GitSyncSpec] = [] if syncs is None else syncs
    specs = load_sources([Source(FILE, text)], ReadLimits(), cache, kept=found)
    return specs, found


def problems_of(text: str, syncs: list[GitSyncSpec] | None = None) -> list[Problem]:
    with pytest.raises(ManifestError) as caught:
        load_sources([Source(FILE, text)], ReadLimits(), kept=syncs)
    return list(caught.value.problems)


def at(text: str, marker: str) -> Location:
    """Where `marker` is first written in `text`."""
    for number, line in enumerate(text.splitlines(), 1):
        if marker in line:
            return Location(FILE, number, line.index(marker) + 1)
    raise AssertionError(f"{marker!r} is not in the text")


# --- valid documents -----------------------------------------------------------------------------------------


FULL = gitsync("""\
ref: {branch: main}
path: deploy/
intervalSeconds: 120
timeoutSeconds: 30.5
retryIntervalSeconds: 15
prune: true
allowEmpty: true
selfHeal: true
selfHealDelaySeconds: 0
suspend: true
windows:
  - {kind: deny, schedule: "0 22 * * *", durationSeconds: 3600, timeZone: Europe/Berlin, manualSync: true}
  - {kind: allow, schedule: "*/30 6-20 * * MON-FRI", durationSeconds: 900.5}
auth:
  tokenFile: /etc/orchestrator/git/token
  username: deploy-bot
webhook: {secretFile: /etc/orchestrator/git/hook.secret}
""").replace("metadata:\n  name: prod\n", "metadata:\n  name: prod\n  labels: {team: ops, tier: host}\n")


def test_a_full_document_builds_every_field() -> None:
    specs, syncs = load(FULL)
    assert specs == ()
    assert syncs == [GitSyncSpec(
        name="prod", repo=REPO, ref_kind="branch", ref="main", path="deploy", interval_seconds=120.0,
        timeout_seconds=30.5, retry_interval_seconds=15.0, prune=True, allow_empty=True, self_heal=True,
        self_heal_delay_seconds=0.0, suspend=True,
        windows=(SyncWindow("deny", "0 22 * * *", 3600.0, "Europe/Berlin", True),
                 SyncWindow("allow", "*/30 6-20 * * MON-FRI", 900.5)),
        token_file="/etc/orchestrator/git/token", username="deploy-bot",
        webhook_secret_file="/etc/orchestrator/git/hook.secret", labels=(("team", "ops"), ("tier", "host")))]
    assert syncs[0].location == Location(FILE, 1, 1)
    assert syncs[0].ref_text == "main"


def test_defaults_when_fields_are_absent() -> None:
    _, (spec,) = load(gitsync())
    assert spec == GitSyncSpec(name="prod", repo=REPO, ref_kind="branch", ref="main")
    assert (spec.path, spec.interval_seconds, spec.username, spec.windows, spec.token_file) == (
        ".", 60.0, "x-access-token", (), None)


def _default(schema: dict[str, Any], node: dict[str, Any]) -> Any:
    if "$ref" in node and "default" not in node:
        node = schema["$defs"][node["$ref"].split("/")[-1]]
    return node.get("default")


def test_the_schema_defaults_are_the_specs() -> None:
    schema = schemas()[("orchestrator/v1", "GitSync")]
    spec = schema["properties"]["spec"]["properties"]
    defaults = GitSyncSpec(name="", repo="", ref_kind="branch", ref="")
    assert {name: _default(schema, spec[name]) for name in (
        "path", "intervalSeconds", "timeoutSeconds", "retryIntervalSeconds", "prune", "allowEmpty", "selfHeal",
        "selfHealDelaySeconds", "suspend", "windows")} == {
        "path": defaults.path, "intervalSeconds": defaults.interval_seconds, "timeoutSeconds": defaults.timeout_seconds,
        "retryIntervalSeconds": defaults.retry_interval_seconds, "prune": defaults.prune,
        "allowEmpty": defaults.allow_empty, "selfHeal": defaults.self_heal,
        "selfHealDelaySeconds": defaults.self_heal_delay_seconds, "suspend": defaults.suspend,
        "windows": list(defaults.windows)}
    auth = spec["auth"]["properties"]
    assert (auth["username"]["default"], auth["insecureSkipHostKeyCheck"]["default"]) == (
        defaults.username, defaults.insecure_skip_host_key_check)
    window = spec["windows"]["items"]["properties"]
    assert (window["timeZone"]["default"], window["manualSync"]["default"]) == (
        SyncWindow.time_zone, SyncWindow.manual_sync)


# (spec snippet, repo, attribute of GitSyncSpec, expected)
VALID: list[tuple[str, str | None, str, object]] = [
    ("ref: {tag: v1.2.0}", REPO, "ref_kind", "tag"),
    ("ref: {tag: release/2025-06}", REPO, "ref", "release/2025-06"),
    (f"ref: {{commit: {SHA.upper()}}}", REPO, "ref", SHA),  # lowercased
    ("ref: {branch: feature/x.y_z}", REPO, "ref", "feature/x.y_z"),
    ("ref: {branch: main}\npath: ./deploy//hosts/", REPO, "path", "deploy/hosts"),
    ("ref: {branch: main}\npath: .", REPO, "path", "."),
    ("ref: {branch: main}\npath: a..b/c...", REPO, "path", "a..b/c..."),  # '..' inside a name is a name
    ("ref: {branch: main}", "http://127.0.0.1:8080/ops.git", "repo", "http://127.0.0.1:8080/ops.git"),
    ("ref: {branch: main}\nauth: {tokenFile: /t}", "http://localhost:3000/ops.git", "token_file", "/t"),
    ("ref: {branch: main}\nauth: {tokenFile: /t}", "http://[::1]/ops.git", "token_file", "/t"),
    ("ref: {branch: main}", "git://git.example.org/ops.git", "repo", "git://git.example.org/ops.git"),
    ("ref: {branch: main}", "file:///srv/git/ops.git", "repo", "file:///srv/git/ops.git"),
    ("ref: {branch: main}\nauth: {sshKeyFile: /k, knownHostsFile: /kh}", "ssh://git@git.example.org:2222/ops.git",
     "known_hosts_file", "/kh"),
    ("ref: {branch: main}\nauth: {sshKeyFile: /k, knownHostsFile: /kh}", "git@git.example.org:ops/host.git",
     "ssh_key_file", "/k"),
    ("ref: {branch: main}\nauth: {sshKeyFile: /k, insecureSkipHostKeyCheck: true}", "ssh://git.example.org/ops.git",
     "insecure_skip_host_key_check", True),
    ("ref: {branch: main}\nwindows: [{kind: allow, schedule: '0 0 L * *', durationSeconds: 0.5}]", REPO, "windows",
     (SyncWindow("allow", "0 0 L * *", 0.5),)),
    ("ref: {branch: main}\nwindows: [{kind: deny, schedule: '0 9 * * sun', durationSeconds: 60, timeZone: "
     + "America/New_York}]", REPO, "windows", (SyncWindow("deny", "0 9 * * sun", 60.0, "America/New_York"),)),
]


@pytest.mark.parametrize(("spec", "repo", "attribute", "expected"), VALID, ids=[f"{v[2]}={v[3]!r}" for v in VALID])
def test_valid_fields(spec: str, repo: str | None, attribute: str, expected: object) -> None:
    _, (built,) = load(gitsync(spec, repo))
    assert getattr(built, attribute) == expected


# --- problems, each at its place --------------------------------------------------------------------------------


class Bad:
    def __init__(self, name: str, spec: str, marker: str, path: str, message: str, repo: str | None = REPO) -> None:
        self.name, self.text, self.marker, self.path, self.message = name, gitsync(spec, repo), marker, path, message


BAD = [
    Bad("password-in-url", "ref: {branch: main}", "https://deploy:", "spec.repo",
        "credentials in the repo URL: put the token in a file and name it in auth.tokenFile",
        repo="https://deploy:s3cret@git.example.org/ops.git"),
    Bad("token-as-user", "ref: {branch: main}", "https://ghp_", "spec.repo",
        "credentials in the repo URL: put the token in a file and name it in auth.tokenFile",
        repo="https://ghp_abcdef123456@github.com/ops/host.git"),
    Bad("ssh-password", "ref: {branch: main}", "ssh://", "spec.repo", "credentials in the repo URL",
        repo="ssh://git:pw@git.example.org/ops.git"),
    Bad("unsupported-scheme", "ref: {branch: main}", "ftp://", "spec.repo", "unsupported scheme 'ftp://'",
        repo="ftp://git.example.org/ops.git"),
    Bad("uppercase-scheme", "ref: {branch: main}", "HTTPS", "spec.repo", "write the scheme in lowercase: https://",
        repo="HTTPS://git.example.org/ops.git"),
    Bad("file-not-absolute", "ref: {branch: main}", "file:", "spec.repo", "after three slashes",
        repo="file://srv/git/ops.git"),
    Bad("local-path", "ref: {branch: main}", "/srv", "spec.repo", "write file:///ABSOLUTE/PATH",
        repo="/srv/git/ops.git"),
    Bad("scp-without-user", "ref: {branch: main}", "git.example.org", "spec.repo", "no user in",
        repo="git.example.org:ops/host.git"),
    Bad("no-host", "ref: {branch: main}", "https:", "spec.repo", "no host in the repo URL", repo="https:///ops.git"),
    Bad("both-branch-and-tag", "ref: {branch: main, tag: v1}", "{branch", "spec.ref",
        "give only one of 'branch', 'tag', 'commit', got 'branch' and 'tag'"),
    Bad("empty-ref", "ref: {}", "{}", "spec.ref", "missing required field: one of 'branch', 'tag', 'commit'"),
    Bad("no-ref", "path: deploy", "repo:", "spec", "missing required field 'ref'"),
    Bad("abbreviated-commit", "ref: {commit: 3f2a1c9}", "3f2a1c9", "spec.ref.commit",
        "must be a full commit SHA, 40 hex digits (git cannot fetch an abbreviated one), got '3f2a1c9' (7 characters)"),
    Bad("commit-not-hex", f"ref: {{commit: {'g' * 40}}}", "ggg", "spec.ref.commit", "40 hex digits"),
    Bad("branch-with-dots", "ref: {branch: 'a..b'}", "'a..b'", "spec.ref.branch",
        "'a..b' is not a valid branch name: it holds '..'"),
    Bad("branch-as-option", "ref: {branch: --upload-pack=x}", "--upload", "spec.ref.branch", "it starts with '-'"),
    Bad("full-ref", "ref: {branch: refs/heads/main}", "refs/", "spec.ref.branch",
        "give the branch's name, 'main', not its full ref 'refs/heads/main'"),
    Bad("tag-with-space", "ref: {tag: 'v 1'}", "'v 1'", "spec.ref.tag", "it holds a space"),
    Bad("lock-tag", "ref: {tag: v1.lock}", "v1.lock", "spec.ref.tag", "ends with '.lock'"),
    Bad("dotdot-path", "ref: {branch: main}\npath: deploy/../..", "deploy/", "spec.path",
        "must stay inside the repository (no '..'), got 'deploy/../..'"),
    Bad("absolute-path", "ref: {branch: main}\npath: /deploy", "/deploy", "spec.path",
        "must be relative to the repository's root (no leading '/'), got '/deploy'"),
    Bad("unknown-field", "ref: {branch: main}\nintervalSecond: 60", "intervalSecond", "spec",
        "unknown field 'intervalSecond' (did you mean 'intervalSeconds'?)"),
    Bad("process-field", "ref: {branch: main}\ncommand: [x]", "command", "spec",
        "unknown field 'command' (only a Job or Process has it)"),
    Bad("interval-too-short", "ref: {branch: main}\nintervalSeconds: 5", "5", "spec.intervalSeconds",
        "must be at least 10, got 5"),
    Bad("bad-cron", "ref: {branch: main}\nwindows: [{kind: deny, schedule: '61 22 * * *', durationSeconds: 60}]",
        "'61", "spec.windows[0].schedule",
        "'61 22 * * *' is not a cron schedule: bad minute (the fields are minute hour day-of-month month "
        "day-of-week)"),
    Bad("cron-of-4-fields", "ref: {branch: main}\nwindows: [{kind: deny, schedule: '0 22 * *', durationSeconds: 60}]",
        "'0 22", "spec.windows[0].schedule", "it has 4 fields, expected 5"),
    Bad("cron-never", "ref: {branch: main}\nwindows: [{kind: deny, schedule: '0 0 30 2 *', durationSeconds: 60}]",
        "'0 0", "spec.windows[0].schedule", "bad day-of-month"),
    Bad("bad-time-zone", "ref: {branch: main}\nwindows:\n  - kind: deny\n    schedule: '0 22 * * *'\n"
        "    durationSeconds: 60\n    timeZone: Europe/Berln", "Europe/Berln", "spec.windows[0].timeZone",
        "unknown time zone 'Europe/Berln': expected an IANA name such as Europe/Berlin or UTC (did you mean "
        "'Europe/Berlin'?)"),
    Bad("window-kind", "ref: {branch: main}\nwindows: [{kind: dney, schedule: '0 22 * * *', durationSeconds: 60}]",
        "dney", "spec.windows[0].kind", "'dney' is not one of allow, deny (did you mean 'deny'?)"),
    Bad("ssh-key-without-known-hosts", "ref: {branch: main}\nauth: {sshKeyFile: /etc/orchestrator/git/id}",
        "/etc/orchestrator/git/id", "spec.auth.sshKeyFile", "sshKeyFile needs knownHostsFile",
        repo="ssh://git@git.example.org/ops.git"),
    Bad("ssh-key-for-https", "ref: {branch: main}\nauth: {sshKeyFile: /k}", "/k",
        "spec.auth.sshKeyFile", "sshKeyFile is for ssh repositories"),
    Bad("token-over-http", "ref: {branch: main}\nauth: {tokenFile: /etc/orchestrator/git/token}", "/etc/",
        "spec.auth.tokenFile", "a token over plain http to 'git.example.org'", repo="http://git.example.org/ops.git"),
    Bad("token-for-ssh", "ref: {branch: main}\nauth: {tokenFile: /t}", "/t", "spec.auth.tokenFile",
        "tokenFile is for https:// repositories, not an ssh one", repo="git@git.example.org:ops.git"),
    Bad("relative-token-file", "ref: {branch: main}\nauth: {tokenFile: token}", "token}", "spec.auth.tokenFile",
        "must be an absolute path"),
    Bad("relative-secret-file", "ref: {branch: main}\nwebhook: {secretFile: hook.secret}", "hook.secret",
        "spec.webhook.secretFile", "must be an absolute path"),
    Bad("known-hosts-ignored", "ref: {branch: main}\nauth: {knownHostsFile: /kh, insecureSkipHostKeyCheck: true}",
        "true", "spec.auth.insecureSkipHostKeyCheck", "ignores knownHostsFile", repo="ssh://git.example.org/o.git"),
    Bad("namespace", "ref: {branch: main}", "namespace", "metadata", "unknown field 'namespace'"),
]
BAD[-1].text = BAD[-1].text.replace("  name: prod\n", "  name: prod\n  namespace: ops\n")


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.name)
def test_each_problem_once_at_its_field(case: Bad) -> None:
    (problem,) = problems_of(case.text, syncs=[])  # one message per mistake
    assert (problem.location, problem.path) == (at(case.text, case.marker), case.path), problem
    assert case.message in problem.message, problem


def test_every_problem_of_a_document_is_found() -> None:
    text = gitsync("ref: {commit: abc}\npath: ../x\nauth: {tokenFile: t}", repo="https://u:p@host/x.git")
    assert [problem.path for problem in problems_of(text, syncs=[])] == [
        "spec.repo", "spec.ref.commit", "spec.path", "spec.auth.tokenFile"]


def test_a_gitsync_where_none_can_be_kept_is_a_problem() -> None:
    text = gitsync() + "---\n" + PROCESS.format(name="api")
    assert problems_of(text) == [Problem(at(text, "GitSync"), "kind", KEPT_BY_DAEMON)]
    assert KEPT_BY_DAEMON == ("a GitSync is kept by the daemon: apply it with `orchestrator apply` (or "
                              "`orchestrator sync add`)")
    # An invalid one says both.
    broken = gitsync(repo="ftp://x/y")
    assert [problem.path for problem in problems_of(broken)] == ["kind", "spec.repo"]


def test_gitsyncs_beside_processes_and_their_own_names() -> None:
    text = "---\n".join([PROCESS.format(name="prod"), gitsync(), gitsync(name="staging")])
    specs, syncs = load(text)
    assert [spec.key for spec in specs] == ["default/prod"]  # a process named prod is another object
    assert [sync.name for sync in syncs] == ["prod", "staging"]
    twice = gitsync() + "---\n" + gitsync()
    (problem,) = problems_of(twice, syncs=[])
    assert problem.path == "metadata.name"
    assert problem.location.line == 12  # the second name:
    assert problem.message == f"duplicate GitSync gitsync/prod, first defined at {FILE}:4:9"


def test_a_namespace_called_gitsync_is_no_gitsync() -> None:
    text = PROCESS.format(name="prod").replace("  name: prod\n", "  name: prod\n  namespace: gitsync\n")
    specs, syncs = load(text + "---\n" + gitsync())
    assert ([spec.key for spec in specs], len(syncs)) == (["gitsync/prod"], 1)


def test_chunks_with_a_gitsync_are_not_cached_and_still_found() -> None:
    cache = SpecCache()
    text = PROCESS.format(name="api") + "---\n" + gitsync() + "---\n" + PROCESS.format(name="db")
    for _ in range(2):
        specs, syncs = load(text, cache=cache)
        assert [spec.name for spec in specs] == ["api", "db"]
        assert [sync.name for sync in syncs] == ["prod"]
    assert len(cache) == 2  # the Processes' chunks; the GitSync's is read every time


# --- the schema and the rules ---------------------------------------------------------------------------------


def _document(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "orchestrator/v1", "kind": "GitSync", "metadata": {"name": "prod"}, "spec": spec}


REPOS = [REPO, "https://user@host/x", "https://u:p@host/x", "http://h/x", "ssh://git@h:22/x", "git://h/x",
         "file:///x", "file:///", "file://h/x", "file:/x", "git@h:x", "git@h:", "h:x", "/x", "./x", "~/x", "HTTPS://h/x",
         "ftp://h/x", "https:///x", "https://h /x", "https://h/x\n", "https://\th/x", "https://h:port/x",
         "https://[::1/x", "x", "", "git+ssh://h/x", "user@h", "a@b@c:x", "ssh://:22/x", "https://@h/x"]
REF_NAMES = ["main", "v1.2.0", "feature/x", "-x", ".x", "/x", "x/", "a//b", "a..b", "a b", "a~1", "a^", "a:b", "a?",
             "a*", "a[", "a\\b", "x.lock", "a/.b", "x.", "@", "a@{1}", "HEAD", "refs/heads/main", "é", "a\x7f"]
PATHS = [".", "deploy", "deploy/", "/deploy", "..", "../x", "x/..", "x/../y", "a..b", "...", "./x", "x//y", ""]


def _refused(document: dict[str, Any]) -> tuple[bool, list[str]]:
    """The schema's verdict (its compiled check agreeing), and the rules' messages."""
    full = not list(full_validator("orchestrator/v1", "GitSync").iter_errors(document))
    fast = is_valid("orchestrator/v1", "GitSync", document)
    # Stricter only where the dialects differ: jsonschema's `$` matches before a trailing newline.
    assert fast == full or (not fast and "\\n" in json.dumps(document)), document
    rules = check_gitsync_rules(Document(FILE, value=document), document["spec"])
    return not fast, [problem.message for problem in rules]


@pytest.mark.parametrize("document", [
    *(_document({"repo": repo, "ref": {"branch": "main"}}) for repo in REPOS),
    *(_document({"repo": REPO, "ref": {kind: name}}) for name in REF_NAMES for kind in ("branch", "tag")),
    *(_document({"repo": REPO, "ref": {"branch": "main"}, "path": path}) for path in PATHS),
    *(_document({"repo": REPO, "ref": {"commit": commit}}) for commit in (SHA, SHA.upper(), SHA[:7], SHA + "0", "")),
], ids=lambda d: json.dumps(d["spec"]))
def test_the_rules_refuse_in_words_all_that_a_pattern_refuses(document: dict[str, Any]) -> None:
    """A document the schema refuses by a pattern gets the rule's message instead (the loader keeps that one):
    so a rule refuses all that the pattern does. Empty strings are the schema's to word (must not be empty)."""
    by_schema, by_rules = _refused(document)
    values = [v for v in (document["spec"]["repo"], *document["spec"]["ref"].values(), document["spec"].get("path"))
              if isinstance(v, str)]
    if by_schema and all(values):
        assert by_rules, "refused by the schema's pattern, with no words for it"


def test_the_manifest_schema_says_what_the_gitsync_schema_says() -> None:
    from test_schema import _manifest_validator

    manifest = _manifest_validator()
    for text in [FULL, *(case.text for case in BAD)]:
        doc = yaml.safe_load(text)
        by_kind = sorted((list(e.absolute_path), e.message)
                         for e in full_validator("orchestrator/v1", "GitSync").iter_errors(doc))
        assert sorted((list(e.absolute_path), e.message) for e in manifest.iter_errors(doc)) == by_kind, text


# --- to a document and back --------------------------------------------------------------------------------------


def test_round_trip_through_the_document() -> None:
    _, (full,) = load(FULL)
    for spec in [full, GitSyncSpec(name="a", repo="file:///srv/x.git", ref_kind="commit", ref=SHA),
                 GitSyncSpec(name="b", repo="git@h:x.git", ref_kind="tag", ref="v1", ssh_key_file="/k",
                             insecure_skip_host_key_check=True, windows=(SyncWindow("allow", "0 6 * * *", 7.25),))]:
        document = gitsync_to_document(spec)
        assert yaml.safe_load(yaml.safe_dump(document)) == document == json.loads(json.dumps(document))
        assert gitsync_from_document(document) == spec
        assert not list(full_validator("orchestrator/v1", "GitSync").iter_errors(document))


def test_the_document_leaves_defaults_out() -> None:
    spec = GitSyncSpec(name="prod", repo=REPO, ref_kind="branch", ref="main")
    assert gitsync_to_document(spec) == {"apiVersion": "orchestrator/v1", "kind": "GitSync",
                                         "metadata": {"name": "prod"},
                                         "spec": {"repo": REPO, "ref": {"branch": "main"}}}
    _, (full,) = load(FULL)
    body = gitsync_to_document(full)["spec"]
    assert body["intervalSeconds"] == 120 and isinstance(body["intervalSeconds"], int)  # as it would be written
    assert body["timeoutSeconds"] == 30.5
    assert body["windows"][1] == {"kind": "allow", "schedule": "*/30 6-20 * * MON-FRI", "durationSeconds": 900.5}
    assert body["auth"] == {"tokenFile": "/etc/orchestrator/git/token", "username": "deploy-bot"}


def test_a_document_from_a_dict_is_checked_as_a_file_is() -> None:
    document = gitsync_to_document(GitSyncSpec(name="prod", repo=REPO, ref_kind="commit", ref=SHA))
    document["spec"]["repo"] = "https://u:p@host/x.git"
    document["spec"]["ref"] = {"commit": "abc"}
    document["spec"]["intervalSecond"] = 1
    with pytest.raises(ManifestError) as caught:
        gitsync_from_document(document, where="gitsync/prod (state.db)")
    assert [str(problem) for problem in caught.value.problems] == [
        "gitsync/prod (state.db): spec: unknown field 'intervalSecond' (did you mean 'intervalSeconds'?)",
        f"gitsync/prod (state.db): spec.ref.commit: {problem_message('abc')}",
        ("gitsync/prod (state.db): spec.repo: credentials in the repo URL: put the token in a file and name it in "
         "auth.tokenFile"),
    ]
    assert document["spec"]["ref"] == {"commit": "abc"}  # the caller's dict is left as it was
    for wrong, path in (({"kind": "Process"}, "kind"), ({"apiVersion": "v1"}, "apiVersion")):
        with pytest.raises(ManifestError) as caught:
            gitsync_from_document({**document, **wrong})
        assert [(p.location, p.path) for p in caught.value.problems] == [(Location("<request>"), path)]
    with pytest.raises(ManifestError):
        gitsync_from_document([])  # type: ignore[arg-type]


def problem_message(commit: str) -> str:
    return (f"must be a full commit SHA, 40 hex digits (git cannot fetch an abbreviated one), got {commit!r} "
            f"({len(commit)} characters)")


# --- `orchestrator validate` --------------------------------------------------------------------------------------


def validate(*words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "validate", *words], capture_output=True, text=True,
                          timeout=60, check=False)


def test_validate_takes_a_gitsync(tmp_path: Path) -> None:
    file = tmp_path / "host.yaml"
    file.write_text(FULL + "---\n" + PROCESS.format(name="api"))
    result = validate("-f", str(file))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "valid: 2 objects in 1 file\n"
    result = validate("-f", str(file), "-o", "json")
    assert (result.returncode, json.loads(result.stdout)["objects"]) == (0, 2)
    file.write_text(gitsync("ref: {commit: 3f2a1c9}"))
    result = validate("-f", str(file))
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == f"{file}:7:17: spec.ref.commit: {problem_message('3f2a1c9')}"
