"""`orchestrator run`: the foreground run, with the reconciler in this process (containers, CI, development).

It is the daemon, in the foreground: it owns the state dir (its lock: no daemon and no second run beside
it) and serves the same control API, so `get`, `describe`, `logs`, `events`, `apply` and `shutdown` work
against it. It applies exactly its manifests and reconciles until Ctrl-C, SIGTERM or `shutdown`, printing
every event, then stops everything in reverse dependency order; `--exit-code-from` ends it once a Job has
finished, with that Job's exit code; `--watch` applies changed manifests as they are saved. Run state is
kept in the state dir as the daemon keeps it: a run killed with SIGKILL leaves its processes to the next
run or daemon, which adopts them instead of starting second copies.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from ..core.errors import Location, UsageError, UserError
from ..core.events import EventType, event_line
from ..core.model import ProcessSpec, ReplicaId
from ..manifests.loader import load_desired
from .exit_codes import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK
from .paths import refuse_stdin_for
from .render.events import event_json
from .runlogs import Out, RunLogs


def run(args: argparse.Namespace) -> int:
    """`orchestrator run`: apply and reconcile in this process until interrupted, then stop everything."""
    from ..daemon.lifecycle import Daemon

    refuse_stdin_for(args.paths, watch=args.watch)
    variables: dict[str, str | None] = {}  # the ${NAME}s they use: a --watch re-reads them with these values
    _, desired = load_desired(args.paths, variables)  # nothing is touched for manifests that do not hold
    outcome = _ExitCodeFrom(args.exit_code_from, desired) if args.exit_code_from else None
    # Kept in the state dir: by absolute path, as `apply` records them, so that a daemon (or a later run)
    # with another working directory prunes, watches and reads them the same.
    specs = [_absolute(spec) for spec in desired.specs.values()]
    paths = [os.path.abspath(path) for path in args.paths]
    daemon = Daemon(args.state_dir, limits=args.limits, role="run", pass_env=args.pass_env)
    formatter = event_json if args.output == "json" else event_line
    out = Out(sys.stdout)  # the reader may go away (`| head`): the run goes on, and stops printing
    output = None  # the processes' own lines, between the events (runlogs.py)
    if not args.no_logs:
        colour = args.output != "json" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        output = RunLogs(daemon.log_index.log_dir, out, args.output == "json", colour,
                         [(spec.key, index) for spec in specs for index in range(spec.replicas)])
        daemon.log_index.subscribe(output.updates)

    def show(event: Any) -> None:
        if output is None or event.replica is None:
            out.write([formatter(event)])
            return
        replica = ReplicaId(event.key, event.replica)
        if event.type is EventType.EXITED:
            output.catch_up(replica)  # its last words before the line of its end
        out.write([formatter(event)])
        if event.type in (EventType.STARTED, EventType.ADOPTED):
            output.announced(replica)  # the lines of this run after the line of its start

    daemon.events.subscribe(show)
    try:
        daemon.serve(before_serving=lambda: daemon.take_over(paths, specs, args.watch, variables),
                     until=outcome.check if outcome else None)
    except UserError:
        daemon.close()
        raise
    finally:
        if output is not None:
            output.close()
    if outcome is not None and outcome.code is None:
        print(f"orchestrator: stopped before {outcome.key} finished", file=sys.stderr)
        return EXIT_INTERRUPTED  # interrupted: a CI job must not read this as the Job's success
    return outcome.code if outcome is not None and outcome.code is not None else EXIT_OK


def _absolute(spec: ProcessSpec) -> ProcessSpec:
    if spec.location is None:
        return spec
    location = Location(os.path.abspath(spec.location.file), spec.location.line, spec.location.column)
    return dataclasses.replace(spec, location=location)


class _ExitCodeFrom:
    """`run --exit-code-from NAME`: once the Job NAME has finished for good, stop everything and exit with
    its exit code (128 + N when a signal N ended it, 1 when it could not start)."""

    def __init__(self, name: str, desired: Any) -> None:
        keys = [k for k in desired.specs if k == name or k.split("/", 1)[1] == name]
        if len(keys) != 1:
            found = "it is ambiguous: " + ", ".join(keys) if keys else "no such object in the manifests"
            raise UsageError(f"--exit-code-from {name}: {found}")
        self.key = keys[0]
        self.code: int | None = None

    def check(self, reconciler: Any) -> bool:
        from ..core.model import Phase, ReplicaId
        from ..planning.policy import Step, next_step

        if self.code is not None:
            return False
        spec = reconciler.desired.specs.get(self.key)
        rid = ReplicaId(self.key, 0)
        record = reconciler.records.get(rid)
        waiting = reconciler.waiting.get(rid)
        if waiting is not None and waiting.phase is Phase.WAITING and "will not be restarted" in waiting.reason:
            # A dependency failed for good: it can never run, and waiting would hang the CI job.
            print(f"orchestrator: {self.key} cannot run: {waiting.reason}", file=sys.stderr)
            self.code = EXIT_INVALID
            reconciler.shut_down()
            return False
        if spec is None or record is None or record.process is not None or record.last_exit is None:
            return False
        if next_step(spec, record).step not in (Step.SUCCEEDED, Step.FAILED):
            return False
        exit = record.last_exit
        self.code = exit.code if exit.code is not None else 128 + exit.signal if exit.signal else 1
        reconciler.shut_down()
        return False  # go on until everything has stopped
