"""What each daemon-backed command does: load manifests, talk to the daemon, hand documents to render.

The CLI's edge, next to main.py (which parses arguments and maps errors to exit codes). Imports
stay light: manifests (yaml, jsonschema) are loaded only by the commands that read files.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..core.errors import Location, ManifestError, Problem, UsageError, UserError
from ..host.gitinfo import git_commit_of
from .client import ApiError, Client, DaemonUnavailable, start_daemon
from .exit_codes import EXIT_FAILED, EXIT_OK
from .paths import default_state_dir, refuse_stdin_for
from .render.common import to_json, to_json_line, to_yaml
from .render.describe import describe_text
from .render.diffs import print_diff
from .render.events import event_dict_line, events_table
from .render.systemd import installed_systemd_version, systemd_unit, unit_name
from .render.tables import apply_results, history_table, objects_table, restart_result


def _client(args: argparse.Namespace) -> Client:
    return Client(args.state_dir)


def _print_document(value: Any, output: str) -> None:
    print(to_yaml(value) if output == "yaml" else to_json(value))


def _load_for_apply(paths: Sequence[str]) -> list[Any]:
    """Validated specs with absolute locations (the daemon prunes by file), read here: when no daemon runs."""
    import dataclasses

    from ..manifests.loader import load_specs

    specs = load_specs(paths, kept=[])  # a GitSync (AlertRule, Notifier) among them is the daemon's: none runs here
    absolute = []
    for spec in specs:
        if spec.location is not None:
            location = Location(os.path.abspath(spec.location.file), spec.location.line, spec.location.column)
            spec = dataclasses.replace(spec, location=location)
        absolute.append(spec)
    return absolute


class _Manifests:
    """The manifest files of `-f PATH...`, found and read here within their budget, to be sent as text: the
    daemon parses and validates them (warm, compiled, with its cache of documents it has checked before).

    Files are sent by absolute path, so that locations, working directories and envFrom files mean the same
    to the daemon whatever its own directory; problems it finds are shown with the names the user gave."""

    def __init__(self, paths: Sequence[str]) -> None:
        from ..manifests.files import ReadLimits, find_manifest_files, read_text, shown_as

        self.paths = paths
        self.limits = ReadLimits.from_environment(os.environ)
        files, problems = find_manifest_files(paths, self.limits)
        self.problems = list(problems)
        self.names: dict[str, str] = {}
        self.files: list[dict[str, str]] = []
        size = 0
        for file in files:
            text, read_problems = read_text(file, self.limits)
            self.problems += read_problems
            if text is not None:
                # Standard input is read as a file in the current directory (where its relative paths lead).
                absolute = os.path.abspath(shown_as(file))
                self.names[absolute] = shown_as(file)
                self.files.append({"file": absolute, "text": text})
                size += len(text)
        if size > _MAX_SENT:
            raise UserError(f"the manifests of one apply hold {size:,} characters: more than the daemon reads in "
                            f"one request ({_MAX_SENT:,}); apply them in parts")

    def body(self) -> dict[str, Any]:
        """The request's part that carries them (a problem found here is reported by reading them all here)."""
        from ..manifests.files import LIMIT_VARIABLES

        if self.problems:
            _load_for_apply(self.paths)  # raises ManifestError with every problem, these and the rest...
            raise ManifestError(self.problems)  # ...unless the files changed meanwhile: never send a part
        limits = {name: getattr(self.limits, name) for name in LIMIT_VARIABLES}
        # What ${NAME} means in them: this command's environment, as compose reads its shell's (the daemon's
        # own environment never counts); only the names the texts or their env files use are kept.
        return {"files": self.files, "limits": limits, "variables": dict(os.environ)}

    def shown(self, error: ManifestError) -> ManifestError:
        """The daemon's problems, with files named as the user named them."""
        return ManifestError([Problem(Location(self.names.get(p.location.file, p.location.file), p.location.line,
                                               p.location.column), p.path, p.message) for p in error.problems])


_MAX_SENT = 48 * 1024 * 1024  # below the control API's body limit, with room for JSON escapes


def apply(args: argparse.Namespace) -> int:
    if _fleet(args):
        from . import fleet

        return fleet.apply(args)
    refuse_stdin_for(args.paths, prune=args.prune, watch=args.watch)
    manifests = _Manifests(args.paths)
    commit, dirty = git_commit_of(args.paths) if "-" not in args.paths else (None, None)
    body = {
        **manifests.body(),
        "paths": [os.path.abspath(p) for p in args.paths],
        "prune": args.prune,
        "dry_run": args.dry_run,
        "force": args.force,
        "watch": args.watch,
        "user": getpass.getuser(),
        "git_commit": commit,
        "git_dirty": dirty,
    }
    try:
        if args.dry_run:
            try:
                answer = _client(args).request("POST", "/apply", body)
            except DaemonUnavailable:
                specs = _load_for_apply(args.paths)
                answer = {"results": [{"key": s.key, "kind": s.kind.value, "result": "created", "restart": False}
                                      for s in specs]}
        else:
            answer = start_daemon(args.state_dir).request("POST", "/apply", body)
    except ManifestError as error:
        raise manifests.shown(error) from None
    if args.output in ("json", "yaml"):
        _print_document(answer, args.output)
    else:
        print(apply_results(answer["results"], dry_run=args.dry_run))
    if args.wait and not args.dry_run:
        from .rollout import await_rollouts

        client = _client(args)
        deadline = time.monotonic() + args.timeout
        if await_rollouts(client, answer["results"], deadline, progress=sys.stderr.isatty()) != EXIT_OK:
            return EXIT_FAILED
        # What converges: processes and Jobs (a GitSync, an AlertRule, a Notifier, a CronJob is kept as given).
        keys = [r["key"] for r in answer["results"] if r["result"] != "pruned" and r.get("kind") in ("Process", "Job")]
        return _wait(client, keys, max(0.0, deadline - time.monotonic()), shown=args.timeout)
    return EXIT_OK


def _fleet(args: argparse.Namespace) -> bool:
    """--fleet, or one of its etcd options (cli/fleet.py refuses those without --fleet, rather than ignore them)."""
    return any(getattr(args, option, None) for option in ("fleet", *_ETCD_OPTIONS))


_ETCD_OPTIONS = ("etcd", "etcd_ca", "etcd_cert", "etcd_key", "etcd_user", "etcd_password_file")


def _object_named(client: Client, name: str, missing_ok: bool = False) -> dict[str, Any] | None:
    """The one object NAME (or NAMESPACE/NAME) names; None when there is none and `missing_ok`."""
    found = client.request("GET", "/objects?name=" + _quote(name))["objects"]
    if len(found) > 1:
        raise UserError(f"{name} is ambiguous: " + ", ".join(o["key"] for o in found))
    if not found and not missing_ok:
        raise UserError(f"no object named {name}")
    return found[0] if found else None


def _required(found: dict[str, Any] | None) -> dict[str, Any]:
    assert found is not None  # _object_named without missing_ok raises instead
    return found


def _wait(client: Client, keys: list[str], timeout: float, shown: float) -> int:
    """`apply --wait`, once its rollouts are complete: until every object is converged (running, or succeeded
    for Jobs) within `timeout`, or why not (`shown`: the whole wait's timeout, for the message)."""
    pending, failed = _await(client, keys, "converged", timeout, progress=sys.stderr.isatty())
    if not pending:
        print(f"{len(keys)} object{'s' if len(keys) != 1 else ''} ready")
        return EXIT_OK
    return _not_reached(pending, failed, f"not ready after {shown:g} s")


def wait(args: argparse.Namespace) -> int:
    """`orchestrator wait NAME... --for ready|completed|deleted`, as `kubectl wait`: 0 once every object is so,
    1 at the timeout or as soon as one can no longer get there (failed for good), with why."""
    client = _client(args)
    keys = []
    for name in args.names:
        found = _object_named(client, name, missing_ok=args.condition == "deleted")
        keys.append(found["key"] if found else name)
    pending, failed = _await(client, keys, args.condition, args.timeout)
    if not pending:
        print(f"{', '.join(keys)}: {args.condition}")
        return EXIT_OK
    return _not_reached(pending, failed, f"not {args.condition} after {args.timeout:g} s")


def _await(client: Client, keys: list[str], condition: str, timeout: float, progress: bool = False
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Poll until every key has reached `condition` (converged, ready, completed, deleted), one failed for
    good, or the timeout: (the objects still pending, those of them that failed)."""
    deadline = time.monotonic() + timeout
    while True:
        objects = {o["key"]: o for o in client.request("GET", "/objects")["objects"]}
        if condition == "deleted":
            pending, failed = {k: objects[k] for k in keys if k in objects}, {}
        else:
            gone = [k for k in keys if k not in objects]
            if gone:
                raise UserError(f"{gone[0]} was deleted while waiting for it to be {condition}")
            pending = {k: objects[k] for k in keys if not _reached(objects[k], condition)}
            failed = {k: o for k, o in pending.items() if o["state"] == "Failed"}
        if progress:
            print(f"\rwaiting: {len(keys) - len(pending)}/{len(keys)} ready", end="", file=sys.stderr, flush=True)
        if not pending or failed or time.monotonic() >= deadline:
            if progress:
                print(file=sys.stderr)
            return pending, failed
        time.sleep(0.1)


def _not_reached(pending: dict[str, Any], failed: dict[str, Any], late: str) -> int:
    for key, obj in sorted((failed or pending).items()):
        print(f"{key}: {'failed' if failed else late}: {_reason(obj)}", file=sys.stderr)
    return EXIT_FAILED


def _reached(obj: dict[str, Any], condition: str) -> bool:
    """converged: running and ready, or succeeded for a Job (what `apply --wait` waits for)."""
    if condition == "completed" or (condition == "converged" and obj["kind"] == "Job"):
        return bool(obj["state"] == "Succeeded")
    replicas = obj["replicas"]
    return bool(replicas["ready"] >= replicas["desired"] and obj["state"] in ("Running", "Succeeded"))


def _reason(obj: dict[str, Any]) -> str:
    for replica in obj["replica_status"]:
        if replica["phase"] not in ("Running", "Succeeded"):
            detail = replica.get("reason") or ""
            last = replica.get("last_exit")
            if not detail and last:
                detail = f"last exit {last.get('reason')} (code {last.get('code')})"
            return f"replica {replica['index']} {replica['phase']}" + (f": {detail}" if detail else "")
    return obj["state"]


def diff(args: argparse.Namespace) -> int:
    if _fleet(args):
        from . import fleet

        return fleet.diff(args)
    from ..manifests.codec import spec_from_json, spec_to_document

    refuse_stdin_for(args.paths, prune=args.prune)
    manifests = _Manifests(args.paths)
    client = _client(args)
    try:
        live = {s.key: s for s in map(spec_from_json, client.request("GET", "/desired")["specs"])}
        sent = client.request("POST", "/documents", manifests.body())["specs"]
        specs = [spec_from_json(item) for item in sent]
    except DaemonUnavailable:
        live = {}
        specs = _load_for_apply(args.paths)
    except ManifestError as error:
        raise manifests.shown(error) from None
    pairs: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]] = []  # key, live, manifest
    applied = set()
    for spec in sorted(specs, key=lambda s: s.key):
        applied.add(spec.key)
        old = live.get(spec.key)
        pairs.append((spec.key, spec_to_document(old) if old else None, spec_to_document(spec)))
    if args.prune:
        roots = [os.path.realpath(p) for p in args.paths]
        for key, spec in sorted(live.items()):
            if key in applied or spec.location is None:
                continue
            real = os.path.realpath(spec.location.file)
            if any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots):
                pairs.append((key, spec_to_document(spec), None))
    return print_diff(pairs, args.output)



def get(args: argparse.Namespace) -> int:
    if _fleet(args):
        from . import fleet

        return fleet.get(args)
    query = []
    if args.selector:
        query.append(f"selector={_quote(args.selector)}")
    if args.name:
        query.append(f"name={_quote(args.name)}")
    if args.output == "wide":
        query.append("usage=1")
    answer = _client(args).request("GET", "/objects" + ("?" + "&".join(query) if query else ""))
    if args.namespace is not None:
        answer["objects"] = [o for o in answer["objects"] if o["namespace"] == args.namespace]
    if args.name and not answer["objects"]:
        raise UserError(f"no object named {args.name}" + (f" in namespace {args.namespace}" if args.namespace else ""))
    if args.output in ("json", "yaml"):
        _print_document(answer, args.output)
        return EXIT_OK
    width = os.get_terminal_size().columns if sys.stdout.isatty() else None
    print(objects_table(answer["objects"], wide=args.output == "wide", width=width, now=time.time()))
    return EXIT_OK


def describe(args: argparse.Namespace) -> int:
    if _fleet(args):
        from . import fleet

        return fleet.describe(args)
    document = _client(args).request("GET", "/objects/" + _quote(args.name))
    if args.output in ("json", "yaml"):
        _print_document(document, args.output)
    else:
        print(describe_text(document, document.get("events", []), now=time.time()))
    return EXIT_OK


def logs(args: argparse.Namespace) -> int:
    """Lines of one or many replicas, interleaved by time (logview.py)."""
    from .logview import logs as view

    return view(args, _client(args), lambda client, name: _required(_object_named(client, name)))


def events(args: argparse.Namespace) -> int:
    client = _client(args)
    key = f"&key={_quote(args.name)}" if args.name else ""
    backlog = client.request("GET", f"/events?limit={args.limit}{key}")["events"]
    if args.output == "json":
        for event in backlog:
            print(to_json_line(event), flush=True)
    else:
        print(events_table(backlog, now=time.time()), flush=True)
    if not args.watch:
        return EXIT_OK
    since = backlog[-1]["id"] if backlog else _last_event_id(client)
    try:
        for event in client.stream(f"/events?follow=1&since={since}{key}"):
            print(to_json_line(event) if args.output == "json" else event_dict_line(event), flush=True)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _last_event_id(client: Client) -> int:
    events = client.request("GET", "/events?limit=1")["events"]
    return int(events[-1]["id"]) if events else 0


def delete(args: argparse.Namespace) -> int:
    if _fleet(args):
        from . import fleet

        return fleet.delete(args)
    names = list(args.names)
    if args.paths:
        names += [spec.key for spec in _load_for_apply(args.paths)]
    if not names:
        raise UsageError("name what to delete: NAME... or -f PATH")
    answer = _client(args).request("POST", "/delete", {"names": names, "user": getpass.getuser()})
    print(apply_results(answer["results"]))
    return EXIT_OK


def restart(args: argparse.Namespace) -> int:
    client = _client(args)
    for key in _keys_named(client, args, "restart"):
        answer = client.request("POST", "/restart", {"name": key})
        print(restart_result(answer))
    return EXIT_OK


def _keys_named(client: Client, args: argparse.Namespace, verb: str, processes_only: bool = False) -> list[str]:
    """The objects of NAME... and -l SELECTOR, each once, in the order given; a usage error if none. With
    `processes_only`, the selector picks no Job (a Job named by name is still the daemon's to refuse)."""
    keys = [_required(_object_named(client, name))["key"] for name in args.names]
    if args.selector:
        keys += [o["key"] for o in client.request("GET", "/objects?selector=" + _quote(args.selector))["objects"]
                 if not (processes_only and o.get("kind") == "Job")]
    if not keys:
        raise UsageError(f"name what to {verb}: NAME... or -l SELECTOR" + (" (it selects nothing)" if args.selector
                                                                           else ""))
    return list(dict.fromkeys(keys))


def stop(args: argparse.Namespace) -> int:
    """Hold objects stopped (PM2's stop): their replicas stop, the objects stay until `start`."""
    return _hold(args, stopped=True)


def start(args: argparse.Namespace) -> int:
    return _hold(args, stopped=False)


def _hold(args: argparse.Namespace, stopped: bool) -> int:
    client = _client(args)
    verb = "stop" if stopped else "start"
    for key in _keys_named(client, args, verb, processes_only=True):
        answer = client.request("POST", f"/{verb}", {"name": key, "user": getpass.getuser()})
        word = ("stopped" if stopped else "started") if answer["changed"] else (
            "already stopped" if stopped else "not stopped: nothing to start")
        print(f"{answer['key']} {word}")
    return EXIT_OK


def scale(args: argparse.Namespace) -> int:
    answer = _client(args).request("POST", "/scale", {"name": args.name, "replicas": args.replicas,
                                                      "user": getpass.getuser()})
    print(f"{answer['key']} scaled to {answer['replicas']}")
    return EXIT_OK


def history(args: argparse.Namespace) -> int:
    answer = _client(args).request("GET", "/revisions")
    if args.output in ("json", "yaml"):
        _print_document(answer, args.output)
    else:
        print(history_table(answer["revisions"], now=time.time()))
    return EXIT_OK


def rollback(args: argparse.Namespace) -> int:
    answer = _client(args).request("POST", "/rollback", {"revision": args.revision, "user": getpass.getuser(),
                                                         "force": args.force})
    print(apply_results(answer["results"]))
    print(f"now at revision {answer['revision']}")
    return EXIT_OK


def shutdown(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        answer = client.request("POST", "/shutdown")
    except DaemonUnavailable:
        from .client import left_running

        if not left_running(args.state_dir):
            raise
        # Its daemon was killed and its processes run on: a daemon adopts them, and stops them all.
        print(f"no daemon was running; starting one to stop the processes it left (state dir {args.state_dir})")
        answer = start_daemon(args.state_dir).request("POST", "/shutdown")
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not _alive(answer["pid"]):
            print("daemon stopped")
            return EXIT_OK
        time.sleep(0.05)
    raise UserError(f"the daemon (pid {answer['pid']}) is still stopping after {args.timeout:g} s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    from ..host.observe import stat_fields

    try:  # a zombie (a daemon started by this shell and not yet reaped) has stopped
        return stat_fields(pid)[0] != b"Z"
    except OSError:
        return False


def unwatch(args: argparse.Namespace) -> int:
    paths = [os.path.abspath(p) for p in args.paths]
    answer = _client(args).request("POST", "/unwatch", {"paths": paths})
    for watch in answer["removed"]:
        print("stopped watching " + ", ".join(watch["paths"]))
    if not answer["removed"]:
        print("no watch matched" if paths else "nothing was watched")
    return EXIT_OK


def daemon(args: argparse.Namespace) -> int:
    from ..daemon.lifecycle import main

    if bool(args.tls_cert) != bool(args.tls_key):
        raise UserError("--tls-cert and --tls-key go together: the certificate and its private key")
    if (args.tls_cert or args.read_only or args.allowed_hosts) and not args.http_addr:
        raise UserError("--tls-cert, --tls-key, --read-only and --allowed-host are options of the --http listener: "
                        "add --http HOST:PORT")
    from .fleet import daemon_config

    return main(args.state_dir, args.metrics_interval, args.metrics_addr, args.limits, args.pass_env,
                http_addr=args.http_addr, read_only=args.read_only, allowed_hosts=args.allowed_hosts,
                tls=(args.tls_cert, args.tls_key) if args.tls_cert else None, fleet=daemon_config(args))


def top(args: argparse.Namespace) -> int:
    """On a terminal, the interactive view (tui.py) until `q`. Otherwise (--plain, -n, output or input not a
    terminal, textual not installed) a table of every object with cpu and memory, redrawn every --interval
    seconds until Ctrl-C."""
    hint = ""
    if not args.plain and args.iterations is None and sys.stdin is not None and sys.stdin.isatty() \
            and sys.stdout.isatty():
        try:
            from .tui import run_top  # textual, the optional `tui` extra: imported only here
        except ImportError as error:
            if (error.name or "").split(".")[0] not in ("textual", "rich"):  # any other is a bug: shown
                raise
            hint = "orchestrator top: textual is not installed, so this is the plain table; for the interactive " \
                "view: pip install 'orchestrator[tui]'"
        else:
            return run_top(args.state_dir, args.interval)
    client = _client(args)
    tty = sys.stdout.isatty()
    shown = 0
    try:
        while args.iterations is None or shown < args.iterations:
            answer = client.request("GET", "/objects?usage=1")
            width = os.get_terminal_size().columns if tty else None
            table = objects_table(answer["objects"], wide=True, width=width, now=time.time())
            if tty:
                print("\x1b[H\x1b[2J", end="")  # home and clear: redraw in place
            print(f"orchestrator top: revision {answer['revision']}, every {args.interval:g} s (Ctrl-C to quit)")
            if hint:
                print(hint)
            print(table, flush=True)
            shown += 1
            if args.iterations is None or shown < args.iterations:
                time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def startup(args: argparse.Namespace) -> int:
    from .fleet import daemon_config, daemon_words

    root = os.geteuid() == 0
    state_dir = str(args.state_dir.resolve())
    try:
        version = args.systemd_version if args.systemd_version is not None else installed_systemd_version()
        fleet = daemon_config(args)  # fleet mode's options, checked as `daemon` checks them
        unit = systemd_unit(sys.executable, state_dir, user_unit=not root, systemd_version=version,
                            daemon_options=daemon_words(fleet) if fleet is not None else ())
    except ValueError as error:
        raise UserError(str(error)) from None
    if not args.install:
        print(unit, end="")
        return EXIT_OK
    folder = Path("/etc/systemd/system") if root else Path.home() / ".config" / "systemd" / "user"
    folder.mkdir(parents=True, exist_ok=True)
    name = unit_name(state_dir, str(default_state_dir().resolve()))
    target = folder / name
    target.write_text(unit)
    scope = "" if root else " --user"
    print(f"wrote {target}\nnext: systemctl{scope} daemon-reload && systemctl{scope} enable --now {name}")
    if not root:
        print("and, to start it at boot without a login: loginctl enable-linger " + getpass.getuser())
    return EXIT_OK


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


__all__ = ["ApiError"]
