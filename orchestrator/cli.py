"""The `orchestrator` command: argument parsing and error-to-exit-code mapping; nothing else.

Exit codes: 0 success; 1 invalid input (manifests, arguments); 2 usage errors (argparse) and, for
`diff`, errors; 130 when interrupted before anything ran. Heavy modules are imported inside the
command that needs them, so that `--help` and light commands start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import ManifestError, UserError

EXIT_OK = 0
EXIT_INVALID = 1


def default_state_dir() -> Path:
    home = os.environ.get("ORCHESTRATOR_HOME")
    if home:
        return Path(home)
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "orchestrator"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrator",
        description="Declarative process orchestrator for one Linux host: describe processes in YAML "
        "manifests, and orchestrator starts them in dependency order and keeps them running.",
    )
    parser.add_argument("--version", action="version", version=f"orchestrator {__version__}")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where logs and state live (default: $ORCHESTRATOR_HOME or ~/.local/state/orchestrator)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    validate = commands.add_parser(
        "validate",
        help="check manifests (schema and dependency graph) without running anything",
        description="Check manifests against the schemas and the dependency graph. Runs nothing and needs no "
        "daemon. Lists every problem with file:line:column and field. Exit 0 when valid, 1 when not.",
    )
    _add_files(validate)
    validate.add_argument("-o", "--output", choices=["text", "json"], default="text", help="output format")
    validate.set_defaults(handler=_validate)

    run = commands.add_parser(
        "run",
        help="run manifests in the foreground until Ctrl-C or SIGTERM",
        description="Validate the manifests, start every process in dependency order and keep them converged "
        "(restart policies, backoff) in this process, printing one line per event. Ctrl-C or SIGTERM stops "
        "everything in reverse dependency order within each shutdown timeout, then exits 0; a second Ctrl-C "
        "kills every process group at once.",
    )
    _add_files(run)
    run.add_argument("-o", "--output", choices=["text", "json"], default="text",
                     help="event lines as text, or one JSON object per line")
    run.set_defaults(handler=_run)
    return parser


def _add_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--filename", dest="paths", action="append", required=True, metavar="PATH",
        help="a manifest file or a directory of them (read recursively); repeatable",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ManifestError as error:
        from .render import problems_text

        print(problems_text(error.problems), file=sys.stderr)
        return EXIT_INVALID
    except UserError as error:
        print(f"orchestrator: {error}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return 130


def _load(paths: Sequence[str]):  # type: ignore[no-untyped-def]
    """Specs and their DesiredState, or a ManifestError listing every problem."""
    from .graph import desired_state
    from .manifest import load_specs

    specs = load_specs(paths)
    return specs, desired_state(specs)


def _validate(args: argparse.Namespace) -> int:
    from .render import problems_json, problems_text, validated_text

    try:
        specs, _ = _load(args.paths)
    except ManifestError as error:
        if args.output == "json":
            print(problems_json(error.problems))
        else:
            print(problems_text(error.problems), file=sys.stderr)
        return EXIT_INVALID
    if args.output == "json":
        print(problems_json([], objects=len(specs)))
    else:
        files = len({spec.location.file for spec in specs if spec.location})
        print(validated_text([spec.key for spec in specs], files))
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    import signal

    from .clock import SystemClock
    from .events import EventBus
    from .execute import Executor
    from .reconcile import Reconciler
    from .render import event_json, event_line

    _, desired = _load(args.paths)
    state_dir = args.state_dir or default_state_dir()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    events = EventBus()
    formatter = event_json if args.output == "json" else event_line
    events.subscribe(lambda event: print(formatter(event), flush=True))
    reconciler = Reconciler(Executor(state_dir / "logs"), SystemClock(), events)
    reconciler.set_desired(desired)

    interrupts = 0

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal interrupts
        interrupts += 1
        force = interrupts > 1
        reconciler.post(lambda r: r.shut_down(force=force))

    previous_wakeup = signal.set_wakeup_fd(reconciler.wake_fd, warn_on_full_buffer=False)
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        reconciler.run()
    finally:
        if reconciler.alive:  # only when the loop itself failed: never leave children behind
            reconciler.shut_down(force=True)
            reconciler.run()
        # Everything has stopped: a Ctrl-C arriving now must not turn a clean exit into a failure.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        signal.set_wakeup_fd(previous_wakeup)
        reconciler.close()
    return EXIT_OK


def entry_point() -> None:
    sys.exit(main())
