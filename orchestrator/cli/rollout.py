"""`orchestrator rollout status|history|undo|retry|pause|resume|restart NAME`, and the rollout part of
`apply --wait`: each a `POST /rollout` with an action (daemon/operations.py, daemon/rollouts.py).

Waiting is polling the status route every POLL_SECONDS: the daemon keeps no watch on a rollout for a client,
and a status costs it a few dict lookups. A line is printed only when it differs from the last one.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .client import Client
from .exit_codes import EXIT_FAILED, EXIT_OK
from .render.common import to_json, to_json_line, to_yaml
from .render.rollouts import DONE, ENDED, rollout_history_table, status_line, verb_line
from .render.tables import held_text

POLL_SECONDS = 0.25  # between looks at a rollout: a replica's minReadySeconds is rarely shorter


def _ask(client: Client, name: str, action: str, **fields: Any) -> dict[str, Any]:
    return client.request("POST", "/rollout", {"name": name, "action": action, **fields})


def status(args: argparse.Namespace) -> int:
    """Exit 0 once the rollout is complete; 1 while it is not (without -w), when it ended elsewhere (rolled
    back and held, paused, its rollback failed) or at the timeout. Errors are main.py's (exit 2)."""
    client = Client(args.state_dir)
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    shown = None
    while True:
        document = _ask(client, args.name, "status")
        text = to_json_line(document) if args.output == "json" else status_line(document)
        if text != shown:
            print(to_json(document) if args.output == "json" and not args.watch else text, flush=True)
            shown = text
        phase = document.get("phase")
        if phase == DONE:
            return EXIT_OK
        if not args.watch or phase in ENDED:
            return EXIT_FAILED
        if deadline is not None and time.monotonic() >= deadline:
            print(f"orchestrator rollout status: timed out after {args.timeout:g} s waiting for the rollout of "
                  f"{document.get('key')} to finish", file=sys.stderr)
            return EXIT_FAILED
        time.sleep(POLL_SECONDS if deadline is None else max(0.0, min(POLL_SECONDS, deadline - time.monotonic())))


def history(args: argparse.Namespace) -> int:
    fields = {} if args.revision is None else {"revision": args.revision}
    answer = _ask(Client(args.state_dir), args.name, "history", **fields)
    if args.output == "json":
        print(to_json(answer))
    elif args.output == "yaml" or args.revision is not None:
        shown = answer if args.output == "yaml" else answer["spec"]
        heading = "" if args.output == "yaml" else f"# {answer['key']}: rollout revision {answer['revision']}\n"
        print(heading + to_yaml(shown), end="")
    else:
        print(rollout_history_table(answer["revisions"], now=time.time()))
    return EXIT_OK


def verb(args: argparse.Namespace) -> int:
    """undo, retry, pause, resume, restart: one line saying what the daemon did."""
    fields = {"to_revision": args.to_revision} if args.action == "undo" and args.to_revision is not None else {}
    answer = _ask(Client(args.state_dir), args.name, args.action, **fields)
    print(verb_line(args.action, answer))
    return EXIT_OK


def await_rollouts(client: Client, results: Sequence[Mapping[str, Any]], deadline: float, progress: bool) -> int:
    """`apply --wait`'s rollouts: every applied Process that is to restart (result `configured`, restart) is
    waited for until its rollout is complete (0), or one ends otherwise: rolled back and held, paused, its
    rollback failed (1, with why), or the deadline (monotonic) passes (1). An object the apply left held on a
    revision that failed before (the same manifest applied again) fails at once."""
    held = [r for r in results if r.get("held")]
    for result in held:
        print(f"{result['key']}: {held_text(str(result['key']), result['held'])}", file=sys.stderr)
    if held:
        return EXIT_FAILED
    keys = [str(r["key"]) for r in results
            if r.get("kind") == "Process" and r.get("result") == "configured" and r.get("restart")]
    lines: dict[str, str] = {}
    while keys:
        for key in list(keys):
            document = _ask(client, key, "status")
            line = status_line(document)
            if progress and lines.get(key) != line:
                print(f"{key}: {line}", file=sys.stderr, flush=True)
            lines[key] = line
            if document.get("phase") == DONE:
                keys.remove(key)
                print(line)
            elif document.get("phase") in ENDED:
                print(f"{key}: {line}", file=sys.stderr)
                return EXIT_FAILED
        if not keys:
            break
        if time.monotonic() >= deadline:
            for key in keys:
                print(f"{key}: rollout not finished: {lines[key]}", file=sys.stderr)
            return EXIT_FAILED
        time.sleep(max(0.0, min(POLL_SECONDS, deadline - time.monotonic())))
    return EXIT_OK
