"""`orchestrator run`: the foreground run, with the reconciler in this process (containers, CI, development).

Applies the manifests and reconciles until Ctrl-C or SIGTERM, then stops everything in reverse dependency
order; `--exit-code-from` ends it once a Job has finished, with that Job's exit code; `--watch` reloads
changed manifests off the loop and posts a valid result to it. Every child is ended before it returns.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.clock import SystemClock
from ..core.errors import ManifestError, UserError, problems_summary
from ..core.events import EventBus, event_line
from ..core.model import DesiredState
from ..engine.reconcile import Reconciler
from ..host.cgroups import choose_host
from ..host.execute import Executor
from ..host.limits import LimitWatch
from ..host.metrics import Sampler
from ..host.probes import Prober
from ..host.statedir import prepare_state_dir, take_lock
from ..host.subreaper import wake_on_child_exit
from ..manifests.loader import load_desired
from .exit_codes import EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK
from .render.events import event_json


def run(args: argparse.Namespace) -> int:
    """`orchestrator run`: apply and reconcile in this process until interrupted, then stop everything."""
    _, desired = load_desired(args.paths)
    state_dir = args.state_dir
    prepare_state_dir(state_dir)
    lock = take_lock(state_dir, "run")  # one owner per state dir: no daemon, and no second run, beside this one
    try:
        return _run(args, desired, state_dir)
    finally:
        os.close(lock)


def _run(args: argparse.Namespace, desired: DesiredState, state_dir: Path) -> int:
    events = EventBus()
    formatter = event_json if args.output == "json" else event_line
    printing = [True]

    def show(event: Any) -> None:
        if not printing[0]:
            return
        try:
            print(formatter(event), flush=True)
        except BrokenPipeError:
            printing[0] = False  # the reader went away (`| head`): keep running, stop printing

    events.subscribe(show)
    prober = Prober(lambda t: reconciler.post(lambda r: r.probe_transition(t)), state_dir / "logs")
    limit_watch = LimitWatch(lambda b: reconciler.post(lambda r: r.limit_breach(b)))
    sampler = Sampler(10.0, lambda key, size, why: reconciler.post(lambda r: r.autoscale(key, size, why)),
                      pools_only=True)
    # Tagged with this pid too: a run adopts nothing, so what an earlier run left is not its own.
    cgroups, limits_how = choose_host(args.limits, f"{state_dir.resolve()} run {os.getpid()}")
    if any(spec.limits.memory_or_cpu for spec in desired.specs.values()):
        print(f"orchestrator: memory and cpu limits: {limits_how}", file=sys.stderr)
    executor = Executor(state_dir / "logs", marker=str(state_dir.resolve()), cgroups=cgroups, subreaper=True)
    reconciler = Reconciler(executor, SystemClock(), events, prober=prober,
                            limit_watch=limit_watch, sampler=sampler)
    reconciler.set_desired(desired)
    outcome = _ExitCodeFrom(args.exit_code_from, desired) if args.exit_code_from else None

    interrupts = 0

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal interrupts
        interrupts += 1
        force = interrupts > 1
        reconciler.post(lambda r: r.shut_down(force=force))

    watcher = _watch_for_run(args.paths, reconciler) if args.watch else None
    previous_wakeup = signal.set_wakeup_fd(reconciler.wake_fd, warn_on_full_buffer=False)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    wake_on_child_exit(True)  # descendants that left a replica's group are inherited, ended and reaped
    try:
        reconciler.run(until=outcome.check if outcome else None)
    finally:
        if watcher is not None:
            watcher.stop()
        prober.close()
        limit_watch.close()
        sampler.close()
        if reconciler.alive:  # only when the loop itself failed: never leave children behind
            reconciler.executor.kill_all()
        # Everything has stopped: a Ctrl-C arriving now must not turn a clean exit into a failure.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        wake_on_child_exit(False)
        signal.set_wakeup_fd(previous_wakeup)
        reconciler.close()
        if cgroups is not None:
            cgroups.close()
    if outcome is not None and outcome.code is None:
        print(f"orchestrator: stopped before {outcome.key} finished", file=sys.stderr)
        return EXIT_INTERRUPTED  # interrupted: a CI job must not read this as the Job's success
    return outcome.code if outcome is not None and outcome.code is not None else EXIT_OK


class _ExitCodeFrom:
    """`run --exit-code-from NAME`: once the Job NAME has finished for good, stop everything and exit with
    its exit code (128 + N when a signal N ended it, 1 when it could not start)."""

    def __init__(self, name: str, desired: Any) -> None:
        keys = [k for k in desired.specs if k == name or k.split("/", 1)[1] == name]
        if len(keys) != 1:
            found = "it is ambiguous: " + ", ".join(keys) if keys else "no such object in the manifests"
            raise UserError(f"--exit-code-from {name}: {found}")
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


def _watch_for_run(paths: Sequence[str], reconciler: Any) -> Any:
    """`run --watch`: on every change, load the manifests off the loop and hand a valid result to it."""
    from ..core.events import Event, EventType
    from ..daemon.watch import ManifestWatcher

    def changed() -> None:
        try:
            _, desired = load_desired(paths)
        except ManifestError as error:
            message = problems_summary(error.problems)
            reconciler.post(lambda r: r.events.emit(Event(r.clock.wall(), EventType.INVALID, "", message)))
            return
        except Exception as error:  # noqa: BLE001 - whatever a watched file does, the run goes on as it was
            failure = f"watched manifests not read: {error!r}"
            reconciler.post(lambda r: r.events.emit(Event(r.clock.wall(), EventType.INVALID, "", failure)))
            return

        def apply(r: Any) -> None:
            if desired.specs != r.desired.specs:
                r.set_desired(desired)
                r.events.emit(Event(r.clock.wall(), EventType.APPLIED, "", "manifests changed: applied"))

        reconciler.post(apply)

    watcher = ManifestWatcher(paths, changed)
    watcher.start()
    return watcher
