"""`orchestrator sync add|list|get|now|diff|suspend|resume|remove`: the GitSyncs the daemon follows (a git
repository's path applied as it changes), as a client of the daemon's /gitsyncs routes (daemon/routes.py).

Owns: the GitSync document `sync add` builds from its options (validated here before it is sent, so that a
wrong one needs no daemon), and `sync diff`'s comparison of a commit's specs with the live desired ones
(compare, pure). The views are render/syncs.py's; exit codes are main.py's mapping of errors, plus `now`'s and
`diff`'s own 1. Never: a secret in an argument, a document or an output; only the paths of credential files.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.errors import UsageError
from .client import Client, start_daemon
from .exit_codes import EXIT_FAILED, EXIT_OK
from .render.common import to_json, to_yaml
from .render.syncs import (
    Pair,
    added_line,
    outcome_text,
    removed_text,
    suspended_line,
    sync_diff_json,
    sync_diff_text,
    sync_text,
    syncs_table,
)

# `now` and `diff` wait while the daemon runs git (ls-remote, fetch, archive, each within the sync's
# timeoutSeconds); it gives up waiting for a pass of `now` after 600 s, and says so: we wait a little longer.
GIT_WAIT_SECONDS = 660.0
EXIT_DIFFERENT = EXIT_FAILED  # `diff`'s 1: there are differences (2, errors, is main.py's exit_on_error)
SUCCEEDED = frozenset({"applied"})  # the outcomes of `now` that succeed whatever the sync's state after
FAILED = frozenset({"failed", "refused"})  # ...and those that fail whatever it is
SYNCED = "Synced"


def _route(name: str, verb: str = "") -> str:
    from urllib.parse import quote

    return f"/gitsyncs/{quote(name, safe='')}" + (f"/{verb}" if verb else "")


def _print_document(value: Any, output: str) -> None:
    print(to_yaml(value) if output == "yaml" else to_json(value), end="" if output == "yaml" else "\n")


# -- sync add -----------------------------------------------------------------------------------------------


def sync_document(args: argparse.Namespace, cwd: str) -> dict[str, Any]:
    """The GitSync manifest document of `sync add`'s options: only what was given (the schema's defaults stay
    unsaid), credential files made absolute against `cwd` (the daemon reads them from a directory of its own).
    UsageError for options that need another one."""
    if args.username is not None and args.token_file is None:
        raise UsageError("--username goes with --token-file (it is the user the token is sent as)")
    if (args.known_hosts is not None or args.insecure_skip_host_key_check) and args.ssh_key is None:
        raise UsageError("--known-hosts and --insecure-skip-host-key-check go with --ssh-key")
    if args.ssh_key is not None and args.known_hosts is None and not args.insecure_skip_host_key_check:
        raise UsageError("--ssh-key needs --known-hosts PATH, the server's host keys (or "
                         "--insecure-skip-host-key-check, which lets anyone on the way pose as the server)")
    ref = next((kind, value) for kind, value in (("branch", args.branch), ("tag", args.tag),
                                                  ("commit", args.commit)) if value is not None)
    spec: dict[str, Any] = {"repo": args.repo, "ref": dict([ref])}
    for field, value in (("path", args.path), ("intervalSeconds", args.interval),
                         ("timeoutSeconds", args.timeout), ("selfHealDelaySeconds", args.self_heal_delay)):
        if value is not None:
            spec[field] = _number(value) if isinstance(value, float) else value
    for field, flag in (("prune", args.prune), ("allowEmpty", args.allow_empty), ("selfHeal", args.self_heal),
                        ("suspend", args.suspend)):
        if flag:
            spec[field] = True
    auth: dict[str, Any] = {}
    for field, path in (("tokenFile", args.token_file), ("sshKeyFile", args.ssh_key),
                        ("knownHostsFile", args.known_hosts)):
        if path is not None:
            auth[field] = _absolute(path, cwd)
    if args.username is not None:
        auth["username"] = args.username
    if args.insecure_skip_host_key_check:
        auth["insecureSkipHostKeyCheck"] = True
    if auth:
        spec["auth"] = auth
    if getattr(args, "target", None) is not None:
        spec["target"] = args.target
    if args.webhook_secret_file is not None:
        spec["webhook"] = {"secretFile": _absolute(args.webhook_secret_file, cwd)}
    return {"apiVersion": "orchestrator/v1", "kind": "GitSync", "metadata": {"name": args.sync_name}, "spec": spec}


def _absolute(path: str, cwd: str) -> str:
    return os.path.normpath(os.path.join(cwd, os.path.expanduser(path)))


def _number(value: float) -> float | int:
    """60.0 as 60: the document reads as it would be written."""
    return int(value) if value.is_integer() else value


def add(args: argparse.Namespace) -> int:
    from ..manifests.gitsyncs import gitsync_from_document

    document = sync_document(args, os.getcwd())
    gitsync_from_document(document, where="sync add")  # ManifestError, every problem: main.py shows them (exit 1)
    if args.dry_run:
        _print_document(document, args.output or "yaml")
        return EXIT_OK
    answer = start_daemon(args.state_dir).request("POST", "/gitsyncs", {"document": document, "dry_run": False})
    if args.output:
        _print_document(answer, args.output)
    else:
        print(added_line(answer))
    return EXIT_OK


# -- sync list, sync get ------------------------------------------------------------------------------------


def list_syncs(args: argparse.Namespace) -> int:
    answer = Client(args.state_dir).request("GET", "/gitsyncs")
    if args.output == "json":
        print(to_json(answer))
        return EXIT_OK
    width = os.get_terminal_size().columns if sys.stdout.isatty() else None
    print(syncs_table(answer.get("syncs") or [], now=time.time(), width=width))
    return EXIT_OK


def get(args: argparse.Namespace) -> int:
    answer = Client(args.state_dir).request("GET", _route(args.sync_name))
    if args.output in ("json", "yaml"):
        _print_document(answer, args.output)
    else:
        print(sync_text(answer, now=time.time()))
    return EXIT_OK


# -- sync now -----------------------------------------------------------------------------------------------


def now_exit(answer: Mapping[str, Any]) -> int:
    """0 when the pass applied its commit, or ended with the sync Synced; 1 when it failed or was refused
    (suspended, a window), or left the sync out of sync (a prune it skipped, drift it did not heal)."""
    result = (answer.get("outcome") or {}).get("result")
    if result in SUCCEEDED:
        return EXIT_OK
    if result in FAILED:
        return EXIT_FAILED
    return EXIT_OK if (answer.get("sync") or {}).get("sync") == SYNCED else EXIT_FAILED


def now(args: argparse.Namespace) -> int:
    body = {"force": args.force, "revision": args.revision}
    answer = Client(args.state_dir, timeout=GIT_WAIT_SECONDS).request("POST", _route(args.sync_name, "sync"), body)
    code = now_exit(answer)
    print(outcome_text(answer), file=sys.stdout if code == EXIT_OK else sys.stderr)
    return code


# -- sync diff ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncDiff:
    """What applying a sync's commit would change: the pairs that differ (the commit's specs, created or
    configured; with prune, the owned objects it no longer holds, removed), and, without prune, those
    owned objects, which would stay (they are not differences)."""

    revision: str | None
    commit: str | None
    changes: tuple[Pair, ...]
    not_pruned: tuple[str, ...]

    @property
    def exit_code(self) -> int:
        return EXIT_DIFFERENT if self.changes else EXIT_OK


def compare(answer: Mapping[str, Any], desired: Sequence[Any]) -> SyncDiff:
    """`sync diff`'s comparison, as `orchestrator diff` compares: `answer` is POST /gitsyncs/NAME/diff's
    (the commit's specs, as codec.spec_to_json writes them, the keys the sync owns, its prune), `desired` the
    live desired specs of GET /desired. Pure; ValueError when a spec is garbled."""
    from ..manifests.codec import spec_from_json, spec_to_document
    from .render.diffs import spec_diff_json

    live = {spec.key: spec for spec in map(spec_from_json, desired)}
    rendered = sorted(map(spec_from_json, answer.get("specs") or ()), key=lambda s: s.key)
    changes: list[Pair] = []
    for spec in rendered:
        old = live.get(spec.key)
        pair: Pair = (spec.key, spec_to_document(old) if old else None, spec_to_document(spec))
        if spec_diff_json(*pair) is not None:
            changes.append(pair)
    held = {spec.key for spec in rendered}
    left = [key for key in sorted(map(str, answer.get("owned") or ())) if key not in held and key in live]
    prune = answer.get("prune") is True
    if prune:
        changes += [(key, spec_to_document(live[key]), None) for key in left]
    revision, commit = answer.get("revision"), answer.get("commit")
    return SyncDiff(revision=revision if isinstance(revision, str) else None,
                    commit=commit if isinstance(commit, str) else None,
                    changes=tuple(changes), not_pruned=() if prune else tuple(left))


def diff(args: argparse.Namespace) -> int:
    client = Client(args.state_dir, timeout=GIT_WAIT_SECONDS)
    answer = client.request("POST", _route(args.sync_name, "diff"), {})
    found = compare(answer, client.request("GET", "/desired")["specs"])
    if args.output == "json":
        print(to_json(sync_diff_json(found.revision, found.commit, found.changes, found.not_pruned)))
    else:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        text = sync_diff_text(found.changes, found.not_pruned, color)
        if text:
            print(text)
    return found.exit_code


# -- sync suspend, resume, remove ---------------------------------------------------------------------------


def suspend(args: argparse.Namespace) -> int:
    answer = Client(args.state_dir).request("POST", _route(args.sync_name, "suspend"), {"reason": args.reason or ""})
    print(suspended_line(answer, suspend=True))
    return EXIT_OK


def resume(args: argparse.Namespace) -> int:
    answer = Client(args.state_dir).request("POST", _route(args.sync_name, "resume"), {})
    print(suspended_line(answer, suspend=False))
    return EXIT_OK


def remove(args: argparse.Namespace) -> int:
    answer = Client(args.state_dir).request("POST", _route(args.sync_name, "remove"), {"prune": args.prune})
    print(removed_text(answer))
    return EXIT_OK
