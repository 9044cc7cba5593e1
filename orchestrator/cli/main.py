"""The `orchestrator` command: argument parsing, `validate`, and error-to-exit-code mapping (exit_codes.py).

The other commands live in commands.py, run.py and completion.py. Heavy modules are imported inside the
command that needs them, so that `--help` and light commands start fast.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import __version__
from ..core.errors import ManifestError, UsageError, UserError
from .exit_codes import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_OK, EXIT_USAGE
from .paths import default_state_dir


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

    convert = commands.add_parser(
        "convert", help="turn a Procfile, Compose file, supervisord.conf or PM2 ecosystem file into manifests",
        description="Translate a Procfile, docker-compose.yml / compose.yaml, supervisord.conf ([program:x] "
        "sections) or PM2 ecosystem file (.js read as data, never run; .json; .yaml) into Process and Job "
        "manifests, printed as multi-document YAML. Every setting that is not mapped is named on stderr with "
        "its file and line. The format comes from the file's name, or --from. Runs nothing from the input. "
        "Exit 0 converted, 1 when the input cannot be read as its format, 2 usage errors.")
    convert.add_argument("input", nargs="?", metavar="FILE", help="the file to convert (- for standard input)")
    convert.add_argument("-f", "--filename", metavar="PATH", help="the file to convert, as other commands name it")
    convert.add_argument("--from", dest="source_format", choices=["procfile", "compose", "supervisord", "pm2"],
                         help="what the file is (default: from its name)")
    convert.add_argument("--output-file", metavar="PATH", help="write the manifests there instead of stdout "
                         "(relative paths in them are then relative to its folder)")
    convert.add_argument("--force", action="store_true", help="replace --output-file when it exists")
    convert.add_argument("-n", "--namespace", help="metadata.namespace of every object (default: the input's, "
                         "such as a Compose project name, or none)")
    convert.set_defaults(handler=_convert)

    run = commands.add_parser(
        "run",
        help="run manifests in the foreground until Ctrl-C or SIGTERM",
        description="Validate the manifests, start every process in dependency order and keep them converged "
        "(restart policies, backoff) in this process, printing one line per event and, between them, every line "
        "the processes print (prefixed with their replica: api[0] | ...; --no-logs leaves those out). Ctrl-C or "
        "SIGTERM stops "
        "everything in reverse dependency order within each shutdown timeout, then exits 0; a second Ctrl-C "
        "kills every process group at once.",
    )
    _add_files(run)
    run.add_argument("-o", "--output", choices=["text", "json"], default="text",
                     help="event and output lines as text, or one JSON object per line (output lines: "
                     '{"type": "Log", "object", "replica", "time", "line"})')
    run.add_argument("--no-logs", action="store_true",
                     help="print only the events, not the processes' output (it is in their log files)")
    run.add_argument("--watch", action="store_true",
                     help="re-apply the manifests when they change; an invalid edit changes nothing")
    run.add_argument("--exit-code-from", metavar="NAME",
                     help="for CI: once the Job (or process) NAME has finished for good, stop everything and exit "
                     "with its exit code")
    _add_limits(run)
    run.set_defaults(handler=_foreground_run)

    apply = commands.add_parser(
        "apply", help="record manifests as the desired state and converge (starts the daemon if needed)",
        description="Validate the manifests (a bad one changes nothing), record them as a new revision and let "
        "the daemon converge. Prints created, configured, unchanged or pruned per object.")
    _add_files(apply)
    apply.add_argument("--prune", action="store_true",
                       help="stop and forget objects from these paths that are no longer in them")
    apply.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    apply.add_argument("--force", action="store_true",
                       help="change objects a GitSync manages too (refused without it); the sync reports the "
                       "drift, and sets it back if its selfHeal is on")
    apply.add_argument("--wait", action="store_true",
                       help="return once every rollout the apply started is complete and every object runs (Jobs: "
                       "succeeded); exit 1, saying why, when a rollout failed, rolled back or is paused, or an "
                       "object is held on a revision that failed before")
    apply.add_argument("--timeout", type=float, default=60.0, help="seconds --wait waits (default 60)")
    apply.add_argument("--watch", action="store_true",
                       help="the daemon re-applies these paths whenever their files change")
    apply.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    _add_fleet(apply)
    apply.set_defaults(handler=_command("apply"))

    diff = commands.add_parser(
        "diff", help="show what apply would change, field by field",
        description="Compare the manifests with the daemon's desired state. Exit 0 no change, 1 changes, "
        "2 error. Env values are never printed.")
    _add_files(diff)
    diff.add_argument("--prune", action="store_true", help="also show objects apply --prune would remove")
    diff.add_argument("-o", "--output", choices=["text", "json"], default="text",
                      help='json: {"changes": [{"key", "change", "fields": [{"path", "live", "manifest"}]}]}')
    _add_fleet(diff, "compare with the fleet's etcd instead of the local daemon")
    diff.set_defaults(handler=_command("diff"), exit_on_error=EXIT_ERROR)

    get = commands.add_parser("get", help="list objects with their state",
                              description="Status table: name, ready/desired replicas, state, restarts, age.")
    get.add_argument("name", nargs="?", help="one object, as NAME or NAMESPACE/NAME")
    get.add_argument("-o", "--output", choices=["text", "wide", "json", "yaml"], default="text",
                     help="wide adds up-to-date replicas (of the current rollout revision), that revision, "
                     "pid, cpu, memory and command")
    get.add_argument("-l", "--selector", help="only objects whose labels match: key=value, key!=value, key, !key "
                     "(comma-joined: all must hold)")
    scope = get.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="only objects of this namespace")
    scope.add_argument("-A", "--all-namespaces", action="store_true",
                       help="objects of every namespace (what get shows without -n)")
    _add_fleet(get, "list the fleet's objects from its etcd, one row per node running each, instead of the local "
               "daemon's")
    get.set_defaults(handler=_command("get"))

    describe = commands.add_parser("describe", help="show one object in detail",
                                   description="Spec, each replica's state and last exit, and recent events.")
    describe.add_argument("name", help="NAME or NAMESPACE/NAME")
    describe.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    _add_fleet(describe, "show the fleet's object from its etcd (spec, placement, each node's status) instead of "
               "the local daemon's")
    describe.set_defaults(handler=_command("describe"))

    logs = commands.add_parser("logs", help="print processes' captured stdout and stderr",
                               description="Print what the replicas of each NAME (and of every object -l picks) "
                               "printed. One replica's lines are shown as they are; several are interleaved by time, "
                               "each line after its replica's prefix (api[0] | ...). A replica's restart shows as a "
                               "marker line. Times are when the daemon first saw each line in its log file.")
    logs.add_argument("names", nargs="*", metavar="NAME", help="NAME or NAMESPACE/NAME")
    logs.add_argument("-l", "--selector", help="also every object whose labels match (as get -l)")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing new lines (of replicas started later too) until Ctrl-C or the daemon's end")
    logs.add_argument("--tail", type=_count, default=None, metavar="N", help="only the last N lines of each replica")
    logs.add_argument("--since", metavar="WHEN",
                      help="only lines written since: a duration before now (30s, 10m, 1h30m, 2d) or an RFC 3339 "
                      "time (2024-05-01T12:00:00Z; without an offset, local time)")
    logs.add_argument("-t", "--timestamps", action="store_true",
                      help="start each line with its time (RFC 3339, UTC, milliseconds)")
    logs.add_argument("--replica", type=_count, default=None, metavar="I", help="only replica I")
    logs.set_defaults(handler=_command("logs"))

    events = commands.add_parser("events", help="show the event stream",
                                 description="Recent events (started, exited, backoff, applied...); "
                                 "-w keeps printing new ones.")
    events.add_argument("name", nargs="?", help="only events of this object")
    events.add_argument("-w", "--watch", action="store_true", help="keep printing new events until Ctrl-C")
    events.add_argument("--limit", type=_count, default=50, help="how many past events to show (default 50)")
    events.add_argument("-o", "--output", choices=["text", "json"], default="text",
                        help="json: one object per line (JSON lines)")
    events.set_defaults(handler=_command("events"))

    delete = commands.add_parser("delete", help="stop and forget objects",
                                 description="Remove objects from the desired state; they are stopped, dependents "
                                 "first. Refused while something still depends on them.")
    delete.add_argument("names", nargs="*", metavar="NAME")
    delete.add_argument("-f", "--filename", dest="paths", action="append", default=[], metavar="PATH",
                        help="delete the objects these manifests define")
    _add_fleet(delete, "delete from the fleet's etcd instead of the local daemon (every node stops them)")
    delete.set_defaults(handler=_command("delete"))

    restart = commands.add_parser("restart", help="restart every replica of processes",
                                  description="Stop and start again every replica of each NAME (or of every object "
                                  "the selector picks); also gives a Failed process a new start.")
    restart.add_argument("names", nargs="*", metavar="NAME")
    restart.add_argument("-l", "--selector", help="also every object whose labels match (as get -l)")
    restart.set_defaults(handler=_command("restart"))

    for verb, text, description in (
            ("stop", "hold processes stopped (they stay, as PM2's stop)",
             ("Stop every replica of each NAME (or of every object the selector picks) and hold it stopped: the "
             "object stays (get shows it Stopped), an apply keeps it stopped, and `start` runs it again. Recorded "
             "as a revision. Dependents keep running; ones that start later wait for it.")),
            ("start", "let processes held by stop run again",
             ("Release the hold of `orchestrator stop`: the replicas of each NAME (or of every object the selector "
             "picks) start again, in dependency order."))):
        held = commands.add_parser(verb, help=text, description=description)
        held.add_argument("names", nargs="*", metavar="NAME")
        held.add_argument("-l", "--selector", help="also every object whose labels match (as get -l)")
        held.set_defaults(handler=_command(verb))

    wait = commands.add_parser("wait", help="wait until objects are ready, completed or deleted",
                               description="Return once every NAME is ready (every replica running and ready), "
                               "completed (a Job, or a Process that ended and is not restarted, succeeded) or "
                               "deleted. Exit 0 then, 1 at the timeout or as soon as one failed for good.")
    wait.add_argument("names", nargs="+", metavar="NAME")
    wait.add_argument("--for", dest="condition", choices=["ready", "completed", "deleted"], required=True)
    wait.add_argument("--timeout", type=float, default=60.0, metavar="S", help="seconds to wait (default 60)")
    wait.set_defaults(handler=_command("wait"))

    scale = commands.add_parser("scale", help="change the number of replicas",
                                description="Set the replicas of NAME, recorded as a new revision.")
    scale.add_argument("name")
    scale.add_argument("--replicas", type=_count, required=True, metavar="N")
    scale.set_defaults(handler=_command("scale"))

    history = commands.add_parser("history", help="list applied revisions",
                                  description="Every revision of the desired state, with who, when, and the git "
                                  "commit of the manifests.")
    history.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    history.set_defaults(handler=_command("history"))

    rollback = commands.add_parser("rollback", help="go back to an earlier revision",
                                   description="Make an earlier revision's desired state current again (as a new "
                                   "revision). Default: the one before the current.")
    rollback.add_argument("revision", nargs="?", type=int)
    rollback.add_argument("--force", action="store_true",
                          help="also when it changes objects that a GitSync, not suspended, manages")
    rollback.set_defaults(handler=_command("rollback"))

    _add_rollout(commands)
    _add_sync(commands)
    _add_token(commands)

    _add_alerts(commands)

    ui = commands.add_parser("ui", help="print (or --open) the URL of the running daemon's web dashboard",
                             description="The dashboard of the daemon's --http listener (/ui/): its URL on stdout, "
                             "how to log in and to tunnel it over SSH on stderr. The page asks for a token of "
                             "`orchestrator token create`. Exit 0; 1 when the daemon has no --http listener.")
    ui.add_argument("--open", action="store_true", help="also open it in this desktop's browser")
    ui.add_argument("-o", "--output", choices=["text", "json"], default="text", help='json: {"url", "listener"}')
    ui.set_defaults(handler=_handler("ui", "ui"))

    unwatch = commands.add_parser("unwatch", help="stop re-applying watched paths on change",
                                  description="Stop the watches that `apply --watch` started for these paths "
                                  "(all watches when no -f is given). What runs is not changed.")
    unwatch.add_argument("-f", "--filename", dest="paths", action="append", default=[], metavar="PATH")
    unwatch.set_defaults(handler=_command("unwatch"))

    daemon = commands.add_parser("daemon", help="run the daemon in the foreground",
                                 description="Serve the control socket and keep the host converged. SIGTERM or "
                                 "Ctrl-C stops every process it runs, in reverse dependency order.")
    daemon.add_argument("--metrics-addr", metavar="HOST:PORT",
                        help="serve Prometheus metrics there, such as 127.0.0.1:9100 (default: off)")
    daemon.add_argument("--http", metavar="HOST:PORT", dest="http_addr",
                        help="serve HTTP there, such as 127.0.0.1:8420: the API (/api/v1/..., each request with "
                        "Authorization: Bearer TOKEN of `orchestrator token create`) and the GitSync webhooks (POST "
                        "/hooks/git/NAME, verified by their HMAC-SHA256). A non-loopback address needs a token to "
                        "exist (default: off)")
    daemon.add_argument("--read-only", action="store_true",
                        help="with --http: refuse every method but GET there, whatever the token (webhooks too)")
    daemon.add_argument("--allowed-host", action="append", default=[], metavar="HOST", dest="allowed_hosts",
                        help="with --http: a name the Host header may give besides loopback ones and the bound "
                        "address (repeatable), such as the name a proxy forwards")
    daemon.add_argument("--tls-cert", metavar="FILE", help="with --http and --tls-key: speak HTTPS, with this "
                        "certificate (PEM, the chain after it)")
    daemon.add_argument("--tls-key", metavar="FILE", help="with --http and --tls-cert: the certificate's private "
                        "key (PEM; keep it 0600)")
    daemon.add_argument("--metrics-interval", type=float, default=20.0, metavar="S",
                        help="seconds between samples of every replica's cpu and memory (default 20; autoscaled "
                        "pools are judged at this pace too)")
    _add_limits(daemon)
    _add_fleet_node(daemon)
    daemon.set_defaults(handler=_command("daemon"))

    nodes = commands.add_parser(
        "nodes", help="list the fleet's nodes",
        description="One row per node of the fleet in etcd: NAME STATUS (Ready while its lease lives, NotReady once "
        "it is lost) LABELS PROCESSES (how many objects it reports running) VERSION AGE; wide adds its LEASE. Needs "
        "no local daemon. Exit 0; 1 when etcd cannot be reached.")
    nodes.add_argument("-o", "--output", choices=["text", "wide", "json"], default="text",
                       help='wide adds the lease id (hex); json: {"nodes": [{"name", "status", "labels", "processes", '
                       '"version", "startedAt", "firstSeen", "lease"}]}')
    _add_etcd(nodes)
    nodes.set_defaults(handler=_handler("fleet", "nodes"))

    top = commands.add_parser("top", help="live table of cpu and memory per process",
                              description="Redraw `get -o wide` (cpu over the last sampling interval, resident "
                              "memory of each process tree) until Ctrl-C. On a terminal (with the tui extra: "
                              "pip install 'orchestrator[tui]') it is interactive: arrows select, l or Enter "
                              "follows the log, r restarts, / filters, q quits.")
    top.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between redraws")
    top.add_argument("-n", "--iterations", type=int, default=None, metavar="N",
                     help="stop after N tables (the plain table)")
    top.add_argument("--plain", action="store_true", help="the plain redrawn table, even on a terminal")
    top.set_defaults(handler=_command("top"))

    shutdown = commands.add_parser("shutdown", help="stop the daemon and everything it runs",
                                   description="Stop every process in reverse dependency order, then the daemon.")
    shutdown.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for it (default 120)")
    shutdown.set_defaults(handler=_command("shutdown"))

    startup = commands.add_parser("startup", help="print or install a systemd unit for the daemon",
                                  description="Print a systemd unit that runs the daemon at boot with this state "
                                  "dir (and, with --etcd and the node options, in fleet mode as `daemon` would); "
                                  "--install writes it (system unit as root, user unit otherwise).")
    startup.add_argument("--install", action="store_true", help="write the unit where systemd looks for it")
    startup.add_argument("--systemd-version", type=int, metavar="N",
                         help="the systemd the unit is for (default: this host's, from systemctl --version); "
                         "254 and later get a delegated cgroup, so the kernel enforces limits")
    _add_fleet_node(startup)
    startup.set_defaults(handler=_command("startup"))

    completion = commands.add_parser("completion", help="print a shell completion script (bash, zsh or fish)",
                                     description="Print the tab-completion script of this orchestrator for SHELL "
                                     "(commands, options, choices, files, and the running daemon's object names); "
                                     "the README says where to put it.")
    completion.add_argument("shell", choices=["bash", "zsh", "fish"], metavar="SHELL", help="bash, zsh or fish")
    completion.add_argument("--names", action="store_true", help=argparse.SUPPRESS)  # what the script calls on TAB
    completion.set_defaults(handler=_completion)
    _accept_state_dir(parser)  # `orchestrator get --state-dir X` as well as before it
    return parser


def _accept_state_dir(parser: argparse.ArgumentParser) -> None:
    """--state-dir after a command (and after `rollout status`) too, where it only is when given."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                command.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                _accept_state_dir(command)


def _add_rollout(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`orchestrator rollout VERB NAME`: the rolling updates of one Process."""
    rollout = commands.add_parser(
        "rollout", help="follow, list, undo, pause or restart the rolling updates of a process",
        description="The rolling updates of one Process. Each change of a field that needs a restart makes a new "
        "rollout revision of that process, rolled out as its strategy says (RollingUpdate: a few replicas at a "
        "time, each available before the next; Recreate: all at once); a rollout that fails rolls back to the "
        "newest stable revision and holds there. Not `rollback`, which makes an earlier desired-state revision "
        "of every object current again.")
    verbs = rollout.add_subparsers(dest="action", metavar="VERB", required=True)

    status = verbs.add_parser(
        "status", help="where a rollout stands; -w waits for its end",
        description="Say where the rollout of NAME stands, in one line (Waiting for rollout to finish: 2 of 4 "
        "updated replicas are available...). With -w, look again every quarter of a second and print a line at "
        "each change until it ends. Exit 0 when it is complete; 1 when it is not (without -w), failed and "
        "rolled back (held), is paused, or -w timed out; 2 on errors (no daemon, no such object, a Job).")
    status.add_argument("name", help="NAME or NAMESPACE/NAME")
    status.add_argument("-w", "--watch", action="store_true",
                        help="wait until the rollout is complete, rolled back, paused or its rollback failed")
    status.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="with -w, give up after S seconds (exit 1); default: no limit (a rollout that makes no "
                        "progress fails by itself after its progressDeadlineSeconds)")
    status.add_argument("-o", "--output", choices=["text", "json"], default="text",
                        help='json: the status document {"key", "phase", "revision", "hash", "replicas", "paused", '
                        '"strategy", "progress", "rollout", "held"}; with -w one per change, as JSON lines')
    status.set_defaults(handler=_rollout("status"), exit_on_error=EXIT_ERROR)

    history = verbs.add_parser(
        "history", help="list the rollout revisions of a process",
        description="The rollout revisions NAME still has (its revisionHistoryLimit, default 10): the number, the "
        "hash of the fields that need a restart, the desired-state revision (of `orchestrator history`) and git "
        "commit that brought it, when, how its rollout ended, whether it is stable (every replica became "
        "available: a rollback goes back to the newest stable one) and why it failed. With --revision N, that "
        "revision's manifest as YAML (env values hidden).")
    history.add_argument("name", help="NAME or NAMESPACE/NAME")
    history.add_argument("--revision", type=_count, default=None, metavar="N", help="print rollout revision N's spec")
    history.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    history.set_defaults(handler=_rollout("history"))

    undo = verbs.add_parser(
        "undo", help="roll a process back to an earlier rollout revision and hold it there",
        description="Roll NAME, with its strategy, to rollout revision N (default: the newest stable one before "
        "the current) and hold it there: applying the same manifest again keeps the hold; a changed manifest, or "
        "`rollout retry`, rolls forward. Allowed while paused. Refused (exit 1) when nothing is rolling and NAME "
        "already runs that revision. Recorded as a desired-state revision.")
    undo.add_argument("name", help="NAME or NAMESPACE/NAME")
    undo.add_argument("--to-revision", type=_count, default=None, metavar="N",
                      help="the rollout revision to go back to (see `rollout history`)")
    undo.set_defaults(handler=_rollout("verb"))

    for verb, text, description in (
            ("retry", "roll toward the manifest again after a rollback, an undo or a failed rollout",
             ("Lift the hold a rollback or `rollout undo` left on NAME, or the pause of a rollout that failed "
             "(onFailure: Pause), and roll toward the manifest's revision again. Refused (exit 1) when there is "
             "neither.")),
            ("pause", "freeze the rollouts of a process",
             ("Pause the rollouts of NAME: a new revision is recorded but not rolled, a rollout under way stays where "
             "it is and its progress deadline stops counting. Kept by the daemon, not in the manifest: an "
             "apply does not lift it. `rollout resume` does.")),
            ("resume", "let the rollouts of a process go on after `rollout pause`",
             ("Let the rollouts of NAME go on after `rollout pause`; the progress deadline of a rollout under way "
             "counts anew from now.")),
            ("restart", "replace every replica of a process, as its strategy rolls",
             ("Roll out a new revision of NAME's current spec: every replica is replaced as the strategy says "
             "(RollingUpdate: a few at a time, each available before the next, so it keeps serving). `restart` "
             "instead stops and starts every replica at once (and gives a Failed process a new start). Refused "
             "while NAME is held stopped."))):
        command = verbs.add_parser(verb, help=text, description=description)
        command.add_argument("name", help="NAME or NAMESPACE/NAME")
        command.set_defaults(handler=_rollout("verb"))




def _add_sync(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`orchestrator sync VERB NAME`: the GitSyncs the daemon follows (sync.py)."""
    sync = commands.add_parser(
        "sync", help="follow a git repository: add, list, get, sync now, diff, suspend, resume or remove a GitSync",
        description="GitSyncs: git repositories the daemon follows. On each poll (and on a webhook, or `sync now`) "
        "it resolves the ref, and applies the Processes and Jobs of a new commit's path as one revision, as "
        "`orchestrator apply` would; a commit that fails validation is not applied and not tried again, and what "
        "runs keeps running. A GitSync is a manifest object too (kind: GitSync): `sync add` writes one.")
    verbs = sync.add_subparsers(dest="action", metavar="VERB", required=True)

    add = verbs.add_parser(
        "add", help="start following a repository (or change how a GitSync follows it)",
        description="Make the GitSync NAME from these options, check it, and give it to the daemon (started if "
        "none runs): created, configured or unchanged. Credentials are only ever files, named here and read by the "
        "daemon at each use (relative paths are made absolute); never put them in the URL. With --dry-run, print "
        "the GitSync manifest instead (YAML, or -o json) and change nothing. Exit 0 done, 1 when it is invalid "
        "(every problem listed), 2 usage errors.")
    add.add_argument("sync_name", metavar="NAME", help="the GitSync's name")
    add.add_argument("--repo", required=True, metavar="URL",
                     help="https://HOST/PATH, ssh://HOST/PATH, USER@HOST:PATH, git://HOST/PATH or file:///PATH")
    ref = add.add_mutually_exclusive_group(required=True)
    ref.add_argument("--branch", metavar="BRANCH", help="follow this branch's newest commit")
    ref.add_argument("--tag", metavar="TAG", help="follow this tag (moved by force too)")
    ref.add_argument("--commit", metavar="SHA", help="stay at this commit (40 hex digits)")
    add.add_argument("--path", metavar="DIR",
                     help="the directory of the repository whose manifests are applied (default: all of it)")
    add.add_argument("--interval", type=_seconds, metavar="SECONDS",
                     help="seconds between polls, at least 10 (default 60)")
    add.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                     help="seconds one git command may take (default 60)")
    add.add_argument("--prune", action="store_true",
                     help="stop and forget what it applied once the repository no longer holds it")
    add.add_argument("--allow-empty", action="store_true",
                     help="apply a commit whose path holds no Process or Job (refused otherwise)")
    add.add_argument("--self-heal", action="store_true", help="put back what is changed by hand in what it applied")
    add.add_argument("--self-heal-delay", type=_seconds, metavar="SECONDS",
                     help="with --self-heal, seconds between seeing a change and putting it back (default 5)")
    add.add_argument("--suspend", action="store_true", help="add it suspended: it polls and applies nothing")
    add.add_argument("--target", choices=("Local", "Fleet"), default=None,
                     help="Fleet: write the commit's objects to the fleet in etcd (a daemon with --etcd; one elected "
                          "node among those that keep the sync does it); default Local, this daemon")
    credentials = add.add_mutually_exclusive_group()
    credentials.add_argument("--token-file", metavar="PATH", help="https: a file holding the password or token")
    credentials.add_argument("--ssh-key", metavar="PATH", help="ssh: a file holding the private key")
    add.add_argument("--username", metavar="USER",
                     help="with --token-file, the user it is sent as (default x-access-token)")
    host_keys = add.add_mutually_exclusive_group()
    host_keys.add_argument("--known-hosts", metavar="PATH",
                           help="with --ssh-key, a known_hosts file of the server's host keys")
    host_keys.add_argument("--insecure-skip-host-key-check", action="store_true",
                           help="with --ssh-key, trust any host key (anyone on the way can pose as the server)")
    add.add_argument("--webhook-secret-file", metavar="PATH",
                     help="a file holding the HMAC secret of webhooks (POST /hooks/git/NAME on the daemon's --http)")
    add.add_argument("--dry-run", action="store_true", help="print the GitSync manifest; change nothing")
    add.add_argument("-o", "--output", choices=["yaml", "json"], default=None,
                     help="the manifest (--dry-run; default yaml), or the daemon's answer")
    add.set_defaults(handler=_sync("add"))

    listing = verbs.add_parser(
        "list", help="list the GitSyncs with where each stands",
        description="One row per GitSync: NAME REPO REF PATH SYNC (Synced, OutOfSync, Unknown) HEALTH (of what it "
        "applied: Healthy, Progressing, Degraded, Missing, Suspended, Unknown) REVISION (as last resolved, "
        "main@3f2a1c9) LAST-SYNC MESSAGE.")
    listing.add_argument("-o", "--output", choices=["text", "json"], default="text",
                         help='json: {"syncs": [the status of each, as `sync get -o json`]}')
    listing.set_defaults(handler=_sync("list_syncs"))

    get = verbs.add_parser(
        "get", help="show one GitSync in detail",
        description="What NAME follows, its sync and health, the revisions last applied and attempted, the last "
        "fetch and the next sync, its conditions (with every problem of a commit that failed, as "
        "file:line:column), windows, last 5 passes and the objects it applied.")
    get.add_argument("sync_name", metavar="NAME", help="the GitSync's name")
    get.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    get.set_defaults(handler=_sync("get"))

    now = verbs.add_parser(
        "now", help="poll and sync a GitSync at once, and wait for the end",
        description="Resolve NAME's ref now and apply its commit if it is new, waiting for that pass to end. A deny "
        "window lets it through if it says manualSync: true. Exit 0 when it applied, or ended Synced; 1 when "
        "it failed (every problem listed), was refused (suspended, a window) or left the sync OutOfSync; 2 on "
        "errors (no daemon, no such GitSync).")
    now.add_argument("sync_name", metavar="NAME", help="the GitSync's name")
    now.add_argument("--force", action="store_true",
                     help="try a commit again that failed validation (not tried again otherwise)")
    now.add_argument("--revision", type=_commit, metavar="SHA",
                     help="apply this commit (40 hex digits) instead of the ref's")
    now.set_defaults(handler=_sync("now"), exit_on_error=EXIT_ERROR)

    diff = verbs.add_parser(
        "diff", help="show what syncing a GitSync now would change, field by field",
        description="Fetch the commit NAME's ref names now, and compare its Processes and Jobs with the daemon's "
        "desired state, as `orchestrator diff` does; with prune on, what it applied that the commit no longer "
        "holds shows as removed (with prune off, it is listed, and is no difference). Applies nothing. Exit 0 no "
        "difference, 1 differences, 2 errors. Env values are never printed.")
    diff.add_argument("sync_name", metavar="NAME", help="the GitSync's name")
    diff.add_argument("-o", "--output", choices=["text", "json"], default="text",
                      help='json: {"revision", "commit", "changes": as `diff -o json`, "not_pruned": [keys]}')
    diff.set_defaults(handler=_sync("diff"), exit_on_error=EXIT_ERROR)

    suspend = verbs.add_parser(
        "suspend", help="stop a GitSync polling and applying",
        description="Poll nothing and apply nothing for NAME until `sync resume`; what runs keeps running. Kept "
        "by the daemon, not in the manifest.")
    suspend.add_argument("sync_name", metavar="NAME", help="the GitSync's name")
    suspend.add_argument("--reason", metavar="TEXT", help="why, shown by `sync get` and `sync list`")
    suspend.set_defaults(handler=_sync("suspend"))

    resume = verbs.add_parser(
        "resume", help="let a GitSync poll and apply again after `sync suspend`",
        description="Undo `sync suspend NAME` and poll at once (a GitSync whose manifest says suspend: true stays "
        "suspended).")
    resume.add_argument("sync_name", metavar="NAME", help="the GitSync's name")
    resume.set_defaults(handler=_sync("resume"))

    remove = verbs.add_parser(
        "remove", help="forget a GitSync",
        description="Forget NAME. What it applied keeps running, owned by nobody (so it can be applied from "
        "anywhere); with --prune it is stopped and forgotten too, but for objects labelled orchestrator.io/prune: "
        "\"false\".")
    remove.add_argument("sync_name", metavar="NAME", help="the GitSync's name")
    remove.add_argument("--prune", action="store_true", help="also stop and forget every object it applied")
    remove.set_defaults(handler=_sync("remove"))




def _add_token(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`orchestrator token VERB`: the API tokens of the daemon's TCP listener (tokens.py)."""
    token = commands.add_parser(
        "token", help="create, list or revoke the API tokens of the daemon's TCP listener",
        description="API tokens for the daemon's HTTP listener, sent as `Authorization: Bearer <token>`. Scope read "
        "allows GET only; admin allows everything. They live in the state dir's tokens.json "
        "(mode 0600), which keeps only each token's sha256 digest; no daemon is needed, and the daemon sees a "
        "change at its next request.")
    verbs = token.add_subparsers(dest="action", metavar="VERB", required=True)

    create = verbs.add_parser(
        "create", help="make a token and print it (the only time it is shown)",
        description="Make a new token named NAME with --scope and print it alone on stdout (so that "
        "TOKEN=$(orchestrator token create ci --scope read) works), and on stderr what it is. Only its digest is "
        "kept: it cannot be shown again. Exit 0 made; 1 when NAME is not 1-63 characters of [a-z0-9][-a-z0-9_.]* "
        "or a token of that name exists (revoke it first).")
    create.add_argument("token_name", metavar="NAME", help="what the token is for, such as ci or dashboard")
    create.add_argument("--scope", choices=["read", "admin"], required=True,
                        help="read: GET only; admin: every request")
    create.add_argument("-o", "--output", choices=["text", "json"], default="text",
                        help='json: {"name", "scope", "created" (unix time), "token"}')
    create.set_defaults(handler=_token("create"))

    listing = verbs.add_parser(
        "list", help="list the tokens: name, scope and when each was made",
        description="One row per token: NAME SCOPE CREATED. Never a token or its digest (neither can be shown "
        "again).")
    listing.add_argument("-o", "--output", choices=["text", "json"], default="text",
                         help='json: {"tokens": [{"name", "scope", "created" (unix time)}]}')
    listing.set_defaults(handler=_token("list_tokens"))

    revoke = verbs.add_parser(
        "revoke", help="forget a token: it is refused from the listener's next request",
        description="Forget the token NAME; a running daemon refuses it from its next request. Exit 0 revoked, 1 "
        "when there is no token of that name.")
    revoke.add_argument("token_name", metavar="NAME", help="the token's name, as `token list` shows it")
    revoke.set_defaults(handler=_token("revoke"))




def _add_alerts(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`orchestrator alerts [VERB]` and `orchestrator notify test NAME` (alerts.py)."""
    alerts = commands.add_parser(
        "alerts", help="the alerts of the AlertRules the daemon keeps: pending and firing, history, silences",
        description="Without a verb: one row per pending or firing alert, NAME (the rule) PROCESS STATE SINCE VALUE "
        "SEVERITY, `(muted)` when inhibited or silenced; then the silences in force. Rules and Notifiers are "
        "manifests (kind: AlertRule, kind: Notifier) kept by `orchestrator apply`.")
    alerts.add_argument("-o", "--output", choices=["text", "json"], default="text",
                        help='json: {"alerts", "rules", "notifiers", "silences"}')
    alerts.set_defaults(handler=_handler("alerts", "alerts"))
    verbs = alerts.add_subparsers(dest="action", metavar="VERB")
    history = verbs.add_parser("history", help="the latest alert and notification events",
                               description="AlertPending, AlertFiring, AlertResolved, AlertSilenced, NotificationSent "
                               "and NotificationFailed events, oldest first.")
    history.add_argument("--limit", type=int, default=100, help="at most this many, the latest (default 100)")
    history.add_argument("-o", "--output", choices=["text", "json"], default="text")
    history.set_defaults(handler=_handler("alerts", "history"))
    silence = verbs.add_parser(
        "silence", help="mute matching alerts for a while",
        description="Mute the alerts of a rule, or of a process, until --for has passed: they are neither sent "
        "nor resolved meanwhile (their state goes on). Exit 0 made; 1 when nothing would match.")
    silence.add_argument("--rule", metavar="RULE", help="an AlertRule, name or namespace/name")
    silence.add_argument("--process", metavar="NAME", help="a process, name or namespace/name")
    silence.add_argument("--for", dest="for_seconds", type=_seconds, required=True, metavar="S",
                         help="how long, in seconds (such as 3600)")
    silence.add_argument("--reason", default="", help="why (shown by `alerts` and in the event)")
    silence.add_argument("-o", "--output", choices=["text", "json"], default="text")
    silence.set_defaults(handler=_handler("alerts", "silence"))
    unsilence = verbs.add_parser("unsilence", help="end a silence now", description="End the silence ID (as "
                                 "`alerts` lists it) now.")
    unsilence.add_argument("id", metavar="ID")
    unsilence.set_defaults(handler=_handler("alerts", "unsilence"))

    cronjob = commands.add_parser(
        "cronjob", help="the CronJobs the daemon keeps: list them, or run one now",
        description="CronJobs are manifests (kind: CronJob) kept by `orchestrator apply`; each run is a Job named "
        "CRONJOB-UNIXTIME that `get`, `describe` and `logs` show.")
    cron_verbs = cronjob.add_subparsers(dest="action", metavar="VERB", required=True)
    cron_list = cron_verbs.add_parser("list", help="NAME SCHEDULE ZONE SUSPEND ACTIVE LAST-SCHEDULE NEXT LAST-SUCCESS",
                                      description="One row per CronJob.")
    cron_list.add_argument("-o", "--output", choices=["text", "json"], default="text", help='json: {"cronjobs"}')
    cron_list.set_defaults(handler=_handler("cronjobs", "list_cronjobs"))
    cron_trigger = cron_verbs.add_parser(
        "trigger", help="run it now, whatever its schedule",
        description="Start a run of the CronJob NAME now (as kubectl create job --from=cronjob/NAME): its "
        "concurrencyPolicy does not apply to it, and its schedule goes on as before. Exit 0 started; 1 no such "
        "CronJob.")
    cron_trigger.add_argument("name", metavar="NAME", help="the CronJob, name or namespace/name")
    cron_trigger.set_defaults(handler=_handler("cronjobs", "trigger"))

    queue = commands.add_parser(
        "queue", help="the Queues the daemon keeps, each with its Jobs in admission order and why each waits",
        description="For each Queue (kind: Queue; NAME alone with NAME): its budget, then its Jobs: those running, "
        "then the suspended and waiting ones in the order they will be admitted, each with its priority (aging "
        "included) and why it waits. Exit 0; 1 when there is no Queue NAME.")
    queue.add_argument("name", metavar="NAME", nargs="?", help="one Queue")
    queue.add_argument("-o", "--output", choices=["text", "json"], default="text", help='json: {"queues"}')
    queue.set_defaults(handler=_handler("queues", "queue"))

    notify = commands.add_parser("notify", help="try a Notifier", description="Try the Notifiers the daemon keeps.")
    notify_verbs = notify.add_subparsers(dest="action", metavar="VERB", required=True)
    test = notify_verbs.add_parser(
        "test", help="send a test notification through NAME now and say whether it arrived",
        description="Deliver one test alert (alertname orchestrator/test, severity info) through the Notifier NAME "
        "now, outside the outbox: nothing is retried. Exit 0 delivered; 1 not (the reason is printed).")
    test.add_argument("name", metavar="NAME", help="the Notifier, name or namespace/name")
    test.add_argument("-o", "--output", choices=["text", "json"], default="text", help='json: {"delivered", "error", '
                      '"seconds"}')
    test.set_defaults(handler=_handler("alerts", "notify_test"))


def _seconds(text: str) -> float:
    """An argument that is a number of seconds, 0 or more (else a usage error, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, got {text}")
    return value


def _commit(text: str) -> str:
    """A full commit SHA, lowercased (git cannot fetch an abbreviated one)."""
    if len(text) != 40 or any(c not in "0123456789abcdef" for c in text.lower()):
        raise argparse.ArgumentTypeError(f"expected a full commit SHA of 40 hex digits, got {text!r}")
    return text.lower()


def _count(text: str) -> int:
    """An argument that counts something: a whole number, 0 or more (else a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value




def _handler(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """The handler `name` of cli/MODULE.py, imported only when that command runs (--help stays fast)."""

    def handler(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(f"{__package__}.{module}"), name)(args))

    return handler


_command = functools.partial(_handler, "commands")
_rollout = functools.partial(_handler, "rollout")
_sync = functools.partial(_handler, "sync")
_token = functools.partial(_handler, "tokens")


def _foreground_run(args: argparse.Namespace) -> int:
    from .run import run

    return run(args)


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert

    return convert(args)


def _completion(args: argparse.Namespace) -> int:
    from .completion import completion

    return completion(args, build_parser())


def _add_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pass-env", action="append", default=[], metavar="NAME",
                        help="also give replicas this variable of the environment this command runs in (a name "
                        "or a pattern such as 'LC_*'; repeatable; $ORCHESTRATOR_PASS_ENV adds a comma-separated "
                        "list). Otherwise replicas start from a fixed PATH, HOME, USER, LOGNAME, SHELL and LANG, "
                        "then their manifest's env")
    parser.add_argument("--limits", choices=["auto", "watchdog"], default="auto",
                        help="how memory and cpu limits are enforced: auto (by the kernel, in a cgroup per replica, "
                        "where this process can manage a cgroup tree; else by sampling) or watchdog (always by "
                        "sampling: a tree over its memory limit is killed, one over its cpu limit reniced)")


def _add_fleet(parser: argparse.ArgumentParser,
               text: str = "record them in the fleet's etcd instead of the local daemon") -> None:
    parser.add_argument("--fleet", action="store_true", help=f"{text} (needs --etcd or $ORCHESTRATOR_ETCD)")
    _add_etcd(parser)


def _add_fleet_node(parser: argparse.ArgumentParser) -> None:
    """The options of a daemon's fleet mode (`daemon`, and `startup`, whose unit passes them on)."""
    _add_etcd(parser, "fleet mode: join the fleet whose etcd is at URLS, and run this node's share of its objects "
              "besides the local ones. URLS", default=" (default: off; $ORCHESTRATOR_ETCD does not "
              "count here, so that a daemon `apply` starts never joins a fleet)")
    parser.add_argument("--node-name", type=_node_name, metavar="NAME",
                        help="with --etcd, this node's name in the fleet: a DNS label (1-63 lowercase letters, "
                        "digits and '-', not starting or ending with '-'); default: the host name")
    parser.add_argument("--node-label", type=_node_label, action="append", default=[], metavar="KEY=VALUE",
                        dest="node_labels",
                        help="with --etcd, a label of this node that placement.nodeSelector matches (repeatable; "
                        "keys as manifest label keys, values at most 63 letters, digits, '-', '_', '.')")
    parser.add_argument("--lease-ttl", type=_lease_ttl, default=None, metavar="SECONDS",
                        help="with --etcd, the TTL of this node's lease: how long after losing etcd (or dying) the "
                        "node is lost to the fleet, 4 to 300 (default 10)")


def _add_etcd(parser: argparse.ArgumentParser, text: str = "the fleet's etcd",
              default: str = " (default: $ORCHESTRATOR_ETCD)") -> None:
    """How to reach the fleet's etcd (cli/fleet.py reads them). Credentials are file paths only: a password
    on the command line would show in ps and in shell history."""
    parser.add_argument("--etcd", metavar="URLS",
                        help=f"{text}: client URLs of one etcd cluster, comma-separated, such as "
                        f"http://10.0.0.1:2379,http://10.0.0.2:2379{default}")
    parser.add_argument("--etcd-ca", metavar="FILE", help="with --etcd https URLs: the CA certificates (PEM) that "
                        "etcd's server certificate is checked against (default: the system's)")
    parser.add_argument("--etcd-cert", metavar="FILE",
                        help="with --etcd-key: a client certificate (PEM) for etcd's client TLS authentication")
    parser.add_argument("--etcd-key", metavar="FILE", help="with --etcd-cert: the client certificate's private key "
                        "(PEM; keep it 0600)")
    parser.add_argument("--etcd-user", metavar="NAME",
                        help="with --etcd-password-file: the etcd user to authenticate as (etcd's auth)")
    parser.add_argument("--etcd-password-file", metavar="FILE",
                        help="with --etcd-user: a file holding that user's password (owner-only, 0600; never give "
                        "a password on the command line)")


# The syntax of manifest label keys (schemas/process.v1.json metadata.labels) and of values a nodeSelector can match.
_LABEL_KEY = (r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
              r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?"
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"


def _node_name(text: str) -> str:
    """A node's name in the fleet: a DNS label, as etcd keys and `nodes` show it."""
    import re

    if not re.fullmatch(_DNS_LABEL, text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a DNS label: 1-63 lowercase letters, digits and '-', "
                                         "not starting or ending with '-'")
    return text


def _node_label(text: str) -> tuple[str, str]:
    import re

    key, equals, value = text.partition("=")
    if not equals:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if len(key) > 317 or not re.fullmatch(_LABEL_KEY, key):
        raise argparse.ArgumentTypeError(f"label key {key!r}: an optional DNS-subdomain prefix and '/', then at most "
                                         "63 letters, digits, '-', '_', '.', starting and ending with a letter or "
                                         "digit")
    if not re.fullmatch(_LABEL_VALUE, value):
        raise argparse.ArgumentTypeError(f"label value {value!r} (of {key}): at most 63 letters, digits, '-', '_', "
                                         "'.', starting and ending with a letter or digit (or empty)")
    return key, value


def _lease_ttl(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds, got {text!r}") from None
    if not 4 <= value <= 300:
        raise argparse.ArgumentTypeError(f"must be 4 to 300 seconds, got {value}")
    return value


def _add_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f", "--filename", dest="paths", action="append", required=True, metavar="PATH",
        help="a manifest file or a directory of them (read recursively), or - for standard input; repeatable",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    if not words:
        parser.print_help()  # plain `orchestrator`: what it can do, not an error
        return EXIT_OK
    _suggest_for_a_mistyped_command(parser, words)
    args = parser.parse_args(words)
    if args.state_dir is None:
        args.state_dir = default_state_dir()
    failed = getattr(args, "exit_on_error", EXIT_INVALID)
    try:
        return int(args.handler(args))
    except ManifestError as error:
        from .render.problems import problems_text

        print(problems_text(error.problems), file=sys.stderr)
        return failed
    except UsageError as error:
        print(f"orchestrator {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except UserError as error:
        print(f"orchestrator: {error}", file=sys.stderr)
        return failed
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _suggest_for_a_mistyped_command(parser: argparse.ArgumentParser, words: list[str]) -> None:
    """`orchestrator aply -f x`: say `did you mean apply?` and exit 2, as git does."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    skip_next = False
    for word in words:
        if skip_next:
            skip_next = False
            continue
        if word == "--state-dir":
            skip_next = True
            continue
        if word.startswith("-"):
            continue
        if word not in commands:
            import difflib

            close = difflib.get_close_matches(word, list(commands), n=3, cutoff=0.6)
            if close:
                parser.exit(EXIT_USAGE, f"orchestrator: '{word}' is not a command. Did you mean "
                                        f"{' or '.join(close)}?\nSee 'orchestrator --help'.\n")
        return


def _validate(args: argparse.Namespace) -> int:
    from ..manifests.loader import KeptSpec, kept_key, load_desired
    from .render.problems import problems_json, problems_text, validated_text

    kept: list[KeptSpec] = []  # GitSyncs, AlertRules, Notifiers are checked as well, though only the daemon keeps them
    try:
        specs, _ = load_desired(args.paths, kept=kept)
    except ManifestError as error:
        if args.output == "json":
            print(problems_json(error.problems))
        else:
            print(problems_text(error.problems), file=sys.stderr)
        return EXIT_INVALID
    from ..manifests.programs import missing_programs
    from ..manifests.rules import rollout_warnings

    # Valid all the same: the host that runs them may have these programs; a start-first rollout may be meant.
    warnings = missing_programs(specs) + rollout_warnings(specs)
    if args.output == "json":
        print(problems_json([], objects=len(specs) + len(kept), warnings=warnings))
    else:
        for warning in warnings:
            print(f"{warning.location}: warning: {warning.path}: {warning.message}", file=sys.stderr)
        files = len({spec.location.file for spec in specs if spec.location}
                    | {other.location.file for other in kept if other.location})
        print(validated_text([spec.key for spec in specs] + [kept_key(other) for other in kept], files))
    return EXIT_OK


def entry_point() -> None:
    sys.exit(main())
