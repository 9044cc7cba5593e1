"""GitSync documents: the rules its schema cannot say, the frozen spec built from one, and its document again.

The schema (schemas/gitsync.v1.json) says the shape; the rules here say what needs code, each problem located
at its field: credentials in the repo URL (any user of an http(s) URL, a password in any), schemes git is not
given, file:// URLs that are not absolute, a path leaving the repository, branch and tag names git refuses
(git check-ref-format) and abbreviated commits, credential files for another kind of URL or not absolute, a
token over plain http to another host, an ssh key without known hosts, cron schedules cronsim cannot read and
time zones zoneinfo does not know. Where the schema has a pattern, a rule refuses everything the pattern does,
in words (a pattern is not an explanation), and the loader keeps the rule's message only.

The loader (loader.py) validates and builds GitSyncs of manifest files with build_gitsync; documents that come
as plain dicts (the daemon's store, `sync add`) go through gitsync_from_document, and back with
gitsync_to_document. Never: reading the files auth names (the daemon does, at each use), running git.
"""

from __future__ import annotations

import difflib
import functools
import posixpath
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..core.addresses import is_loopback
from ..core.errors import Location, Problem
from ..core.gitsync import DEFAULT_USERNAME, GITSYNC_KIND, REF_KINDS, GitSyncSpec, SyncWindow
from .codec import API_VERSION
from .documents import Document, FieldPath, dotted
from .rules import _nul_paths
from .stored import checked_document, number

KEPT_BY_DAEMON = "a GitSync is kept by the daemon: apply it with `orchestrator apply` (or `orchestrator sync add`)"
CREDENTIALS_IN_URL = "credentials in the repo URL: put the token in a file and name it in auth.tokenFile"
SCHEMES = ("https", "http", "ssh", "git", "file")
_SCHEMES_WORDS = "https://, http://, ssh://, git://, file:///ABSOLUTE/PATH or USER@HOST:PATH"
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP = re.compile(r"(?P<user>[^\s@/:]+)@(?P<host>[^\s/:]+):(?P<path>\S+)")  # the schema's scp-like form
_COMMIT = re.compile(r"[0-9a-fA-F]{40}")
_REF_FORBIDDEN = "~^:?*[\\"
CRON_FIELDS = "minute hour day-of-month month day-of-week"
_SSH = ("ssh", "scp")  # ssh://, and USER@HOST:PATH


# --- the repo URL ---------------------------------------------------------------------------------------------


def repo_scheme(url: str) -> str | None:
    """How git reaches `url`: one of SCHEMES, "scp" for USER@HOST:PATH (ssh too), None for anything else."""
    match = _SCHEME.match(url)
    if match:
        return match.group(1) if match.group(1) in SCHEMES else None
    return "scp" if _SCP.fullmatch(url) else None


def _repo_problem(url: str) -> str | None:
    """What is wrong with a repo URL, in words; None when nothing is. Refuses all the schema's pattern refuses."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "the repo URL must not hold spaces or control characters"
    match = _SCHEME.match(url)
    if match is None:
        if _SCP.fullmatch(url):
            return None  # user@host:path, as ssh takes it: a user, never a password (the first ':' ends the host)
        if url.startswith(("/", ".", "~")):
            return f"a local path is not a repo URL: write file:///ABSOLUTE/PATH (got {url!r})"
        slash = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):/", url)
        if slash and slash.group(1) in SCHEMES:
            return (f"write {slash.group(1)}:// with two slashes (got {url!r})" if slash.group(1) != "file" else
                    "a file:// URL names an absolute path, after three slashes: file:///srv/git/repo.git")
        if re.fullmatch(r"[^\s@/:]+@[^\s/:]+:", url):
            return f"no path after the host in {url!r}: write USER@HOST:PATH"
        if re.fullmatch(r"[^\s@/:]+:\S+", url):
            return f"no user in {url!r}: write USER@HOST:PATH (such as git@host:path) or ssh://HOST/PATH"
        return f"not a repo URL: {url!r}; use {_SCHEMES_WORDS}"
    scheme = match.group(1)
    if scheme not in SCHEMES:
        if scheme.lower() in SCHEMES:
            return f"write the scheme in lowercase: {scheme.lower()}://"
        return f"unsupported scheme {scheme + '://'!r}: use {_SCHEMES_WORDS}"
    if scheme == "file":
        if not url.startswith("file:///") or len(url) == len("file:///"):
            return "a file:// URL names an absolute path, after three slashes: file:///srv/git/repo.git"
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError as error:
        return f"cannot read the repo URL: {error}"
    if "@" in parts.netloc and scheme in ("http", "https"):
        return CREDENTIALS_IN_URL
    if parts.password is not None:
        return "credentials in the repo URL: a password cannot be given there; name a key file in auth.sshKeyFile"
    if not parts.hostname:
        return f"no host in the repo URL: {scheme}://HOST/PATH"
    return None


def _loopback(host: str) -> bool:
    return host.endswith(".localhost") or is_loopback(host)  # RFC 6761 names too, for a URL's host


# --- ref names, paths, schedules, time zones ------------------------------------------------------------------


def _ref_problem(kind: str, name: str) -> str | None:
    """Why git would refuse `name` as a branch or tag (git check-ref-format), or take it for something else."""
    what = f"{name!r} is not a valid {kind} name"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in name):
        return f"{what}: it holds a space or a control character"
    forbidden = [c for c in _REF_FORBIDDEN if c in name]
    if forbidden:
        return f"{what}: it holds {forbidden[0]!r} (git refuses ~ ^ : ? * [ and \\ in names)"
    if name.startswith("-"):
        return f"{what}: it starts with '-'"
    full = {"branch": "refs/heads/", "tag": "refs/tags/"}[kind]
    if name.startswith(full) and len(name) > len(full):
        return f"give the {kind}'s name, {name[len(full):]!r}, not its full ref {name!r}"
    if kind == "branch" and name == "HEAD":
        return "HEAD is not a branch: name the branch it points to (such as main)"
    if ".." in name:
        return f"{what}: it holds '..'"
    if "@{" in name or name == "@":
        return f"{what}: it holds '@{{'" if "@{" in name else f"{what}: '@' alone means HEAD"
    parts = name.split("/")
    if "" in parts:
        return f"{what}: it has an empty part ('/' at its start or end, or '//')"
    if any(part.startswith(".") or part.endswith(".lock") for part in parts):
        return f"{what}: a part of it starts with '.' or ends with '.lock'"
    if name.endswith("."):
        return f"{what}: it ends with '.'"
    return None


def _path_problem(path: str) -> str | None:
    if path.startswith("/"):
        return f"must be relative to the repository's root (no leading '/'), got {path!r}"
    if ".." in path.split("/"):
        return f"must stay inside the repository (no '..'), got {path!r}"
    return None


def schedule_problem(schedule: str) -> str | None:
    """Why `schedule` is not a 5-field cron expression cronsim can read; None when it is."""
    from datetime import datetime, timezone

    from cronsim import CronSim, CronSimError

    fields = schedule.split()
    if len(fields) != 5:
        return (f"{schedule!r} is not a cron schedule: it has {len(fields)} field{'s' if len(fields) != 1 else ''}, "
                f"expected 5 ({CRON_FIELDS})")
    try:
        CronSim(schedule, datetime(2000, 1, 1, tzinfo=timezone.utc))
    except CronSimError as error:
        return f"{schedule!r} is not a cron schedule: {str(error).lower()} (the fields are {CRON_FIELDS})"
    return None


def time_zone_problem(name: str) -> str | None:
    """Why `name` is not an IANA time zone zoneinfo knows; None when it is."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        close = difflib.get_close_matches(name, _time_zones(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown time zone {name!r}: expected an IANA name such as Europe/Berlin or UTC{hint}"
    return None


@functools.cache
def _time_zones() -> list[str]:
    from zoneinfo import available_timezones

    return sorted(available_timezones())  # reads the zone database: only to suggest a name for a wrong one


# --- the rules -----------------------------------------------------------------------------------------------


def _text(value: object) -> str | None:
    """A string the rules judge: one the schema took for a string, without a NUL (said once, on its own)."""
    return value if isinstance(value, str) and "\0" not in value else None


def check_gitsync_rules(doc: Document, spec: dict[str, Any]) -> list[Problem]:
    """The rules of a GitSync's spec that JSON Schema cannot say (the module's docstring lists them), each
    problem located at its field."""
    found: list[tuple[FieldPath, str]] = [(path, "contains a NUL character") for path in _nul_paths(spec, ("spec",))]
    repo = _text(spec.get("repo"))
    scheme = None
    if repo is not None:
        problem = _repo_problem(repo)
        if problem is not None:
            found.append((("spec", "repo"), problem))
        else:
            scheme = repo_scheme(repo)
    ref = spec.get("ref")
    if isinstance(ref, dict):
        if not ref:
            found.append((("spec", "ref"), (
                f"missing required field: one of {', '.join(map(repr, REF_KINDS))} (what to follow)")))
        elif len(ref) > 1:
            named = [repr(key) for key in ref]
            found.append((("spec", "ref"), (f"give only one of {', '.join(map(repr, REF_KINDS))}, got "
                                            f"{', '.join(named[:-1])} and {named[-1]}")))
        commit = _text(ref.get("commit"))
        if commit is not None and not _COMMIT.fullmatch(commit):
            found.append((("spec", "ref", "commit"), (
                f"must be a full commit SHA, 40 hex digits (git cannot fetch an abbreviated one), got {commit!r} "
                f"({len(commit)} characters)")))
        for kind in ("branch", "tag"):
            name = _text(ref.get(kind))
            problem = _ref_problem(kind, name) if name else None
            if problem is not None:
                found.append((("spec", "ref", kind), problem))
    path = _text(spec.get("path"))
    if path is not None and (problem := _path_problem(path)) is not None:
        found.append((("spec", "path"), problem))
    found += _auth_problems(spec, repo, scheme)
    windows = spec.get("windows")
    for index, window in enumerate(windows if isinstance(windows, list) else ()):
        if not isinstance(window, dict):
            continue
        schedule, zone = _text(window.get("schedule")), _text(window.get("timeZone"))
        if schedule and (problem := schedule_problem(schedule)) is not None:
            found.append((("spec", "windows", index, "schedule"), problem))
        if zone and (problem := time_zone_problem(zone)) is not None:
            found.append((("spec", "windows", index, "timeZone"), problem))
    return [Problem(doc.at(where), dotted(where), message) for where, message in found]


def _auth_problems(spec: dict[str, Any], repo: str | None, scheme: str | None) -> list[tuple[FieldPath, str]]:
    """Credential files that are not absolute, or for another kind of URL; a token over plain http to another
    host; an ssh key without the server's host keys. Judged against the URL only when it is valid (`scheme`)."""
    found: list[tuple[FieldPath, str]] = []
    given_auth, given_webhook = spec.get("auth"), spec.get("webhook")
    auth: dict[str, Any] = given_auth if isinstance(given_auth, dict) else {}
    webhook: dict[str, Any] = given_webhook if isinstance(given_webhook, dict) else {}
    files: list[tuple[FieldPath, object]] = [(("spec", "auth", name), auth.get(name))
                                            for name in ("tokenFile", "sshKeyFile", "knownHostsFile")]
    files.append((("spec", "webhook", "secretFile"), webhook.get("secretFile")))
    for where, value in files:
        text = _text(value)
        if text is not None and not text.startswith("/"):
            found.append((where, (
                f"must be an absolute path (the daemon reads it, in a working directory of its own), got {text!r}")))
    if scheme is None or repo is None:
        return found
    ssh = scheme in _SSH
    token, key, known = auth.get("tokenFile"), auth.get("sshKeyFile"), auth.get("knownHostsFile")
    insecure = auth.get("insecureSkipHostKeyCheck") is True
    if token is not None:
        if scheme not in ("http", "https"):
            also = " (an ssh repository takes auth.sshKeyFile)" if ssh else ""
            found.append((("spec", "auth", "tokenFile"), (
                f"tokenFile is for https:// repositories, not {_words(scheme)}{also}")))
        elif scheme == "http" and not _loopback(urlsplit(repo).hostname or ""):
            found.append((("spec", "auth", "tokenFile"), (
                f"a token over plain http to {urlsplit(repo).hostname!r} would cross the network unencrypted: use "
                "https:// (plain http takes a token only to a loopback host)")))
    if key is not None and not ssh:
        found.append((("spec", "auth", "sshKeyFile"), (
            f"sshKeyFile is for ssh repositories (ssh://HOST/PATH or USER@HOST:PATH), not {_words(scheme)}")))
    elif key is not None and known is None and not insecure:
        found.append((("spec", "auth", "sshKeyFile"), (
            "sshKeyFile needs knownHostsFile, the server's host keys (or insecureSkipHostKeyCheck: true, which lets "
            "anyone on the way pose as the server)")))
    for name, given in (("knownHostsFile", known is not None), ("insecureSkipHostKeyCheck", insecure)):
        if given and not ssh:
            found.append((("spec", "auth", name), f"{name} is for ssh repositories, not {_words(scheme)}"))
    if ssh and insecure and known is not None:
        found.append((("spec", "auth", "insecureSkipHostKeyCheck"), (
            "insecureSkipHostKeyCheck: true ignores knownHostsFile: keep one of them")))
    return found


def _words(scheme: str) -> str:
    return "an ssh one" if scheme in _SSH else f"a {scheme}:// one"


# --- building, and back --------------------------------------------------------------------------------------


def build_gitsync(doc: Document, value: dict[str, Any]) -> GitSyncSpec:
    """The spec of a GitSync document the loader validated (schema and rules), located where it starts."""
    return _build(value, doc.keys.get(("apiVersion",)) or doc.at(()))


def _build(value: Mapping[str, Any], location: Location | None) -> GitSyncSpec:
    metadata: Mapping[str, Any] = value["metadata"]
    spec: Mapping[str, Any] = value["spec"]
    ((ref_kind, ref),) = spec["ref"].items()
    auth: Mapping[str, Any] = spec.get("auth", {})
    webhook: Mapping[str, Any] = spec.get("webhook", {})
    defaults = GitSyncSpec(name="", repo="", ref_kind="branch", ref="")  # they mirror the schema's (tested)
    return GitSyncSpec(
        name=metadata["name"],
        repo=spec["repo"],
        ref_kind=ref_kind,
        ref=ref.lower() if ref_kind == "commit" else ref,
        path=posixpath.normpath(spec.get("path", defaults.path)),
        interval_seconds=float(spec.get("intervalSeconds", defaults.interval_seconds)),
        timeout_seconds=float(spec.get("timeoutSeconds", defaults.timeout_seconds)),
        retry_interval_seconds=float(spec.get("retryIntervalSeconds", defaults.retry_interval_seconds)),
        prune=bool(spec.get("prune", defaults.prune)),
        allow_empty=bool(spec.get("allowEmpty", defaults.allow_empty)),
        self_heal=bool(spec.get("selfHeal", defaults.self_heal)),
        self_heal_delay_seconds=float(spec.get("selfHealDelaySeconds", defaults.self_heal_delay_seconds)),
        suspend=bool(spec.get("suspend", defaults.suspend)),
        windows=tuple(
            SyncWindow(
                kind=window["kind"],
                schedule=window["schedule"],
                duration_seconds=float(window["durationSeconds"]),
                time_zone=window.get("timeZone", SyncWindow.time_zone),
                manual_sync=bool(window.get("manualSync", SyncWindow.manual_sync)),
            )
            for window in spec.get("windows", ())
        ),
        token_file=auth.get("tokenFile"),
        username=auth.get("username", DEFAULT_USERNAME),
        ssh_key_file=auth.get("sshKeyFile"),
        known_hosts_file=auth.get("knownHostsFile"),
        insecure_skip_host_key_check=bool(auth.get("insecureSkipHostKeyCheck", False)),
        webhook_secret_file=webhook.get("secretFile"),
        labels=tuple(sorted(metadata.get("labels", {}).items())),
        target=spec.get("target", defaults.target),
        location=location,
    )


def gitsync_from_document(document: Mapping[str, Any], where: str = "<request>") -> GitSyncSpec:
    """The spec of a GitSync document given as a plain dict (the daemon's store, a client's request), checked
    against the same schema and rules as a manifest file's; raises ManifestError with every problem, each at
    `where` and its field path."""
    _, value, location = checked_document(document, where, {GITSYNC_KIND: check_gitsync_rules}, "a GitSync")
    return _build(value, location)



def gitsync_to_document(spec: GitSyncSpec) -> dict[str, Any]:
    """The manifest document of `spec`, defaults left out; gitsync_from_document reads it back to an equal spec."""
    defaults = GitSyncSpec(name="", repo="", ref_kind="branch", ref="")
    metadata: dict[str, Any] = {"name": spec.name}
    if spec.labels:
        metadata["labels"] = dict(spec.labels)
    body: dict[str, Any] = {"repo": spec.repo, "ref": {spec.ref_kind: spec.ref}}
    fields: tuple[tuple[str, object, object], ...] = (
        ("path", spec.path, defaults.path),
        ("intervalSeconds", spec.interval_seconds, defaults.interval_seconds),
        ("timeoutSeconds", spec.timeout_seconds, defaults.timeout_seconds),
        ("retryIntervalSeconds", spec.retry_interval_seconds, defaults.retry_interval_seconds),
        ("prune", spec.prune, defaults.prune),
        ("allowEmpty", spec.allow_empty, defaults.allow_empty),
        ("selfHeal", spec.self_heal, defaults.self_heal),
        ("selfHealDelaySeconds", spec.self_heal_delay_seconds, defaults.self_heal_delay_seconds),
        ("suspend", spec.suspend, defaults.suspend),
        ("target", spec.target, defaults.target),
    )
    for name, value, default in fields:
        if value != default:
            body[name] = number(value) if isinstance(value, float) else value
    if spec.windows:
        body["windows"] = [_window_document(window) for window in spec.windows]
    auth: dict[str, Any] = {}
    for name, value, default in (
        ("tokenFile", spec.token_file, None),
        ("username", spec.username, DEFAULT_USERNAME),
        ("sshKeyFile", spec.ssh_key_file, None),
        ("knownHostsFile", spec.known_hosts_file, None),
        ("insecureSkipHostKeyCheck", spec.insecure_skip_host_key_check, False),
    ):
        if value != default:
            auth[name] = value
    if auth:
        body["auth"] = auth
    if spec.webhook_secret_file is not None:
        body["webhook"] = {"secretFile": spec.webhook_secret_file}
    return {"apiVersion": API_VERSION, "kind": GITSYNC_KIND, "metadata": metadata, "spec": body}


def _window_document(window: SyncWindow) -> dict[str, Any]:
    document: dict[str, Any] = {"kind": window.kind, "schedule": window.schedule,
                                "durationSeconds": number(window.duration_seconds)}
    if window.time_zone != SyncWindow.time_zone:
        document["timeZone"] = window.time_zone
    if window.manual_sync:
        document["manualSync"] = True
    return document
