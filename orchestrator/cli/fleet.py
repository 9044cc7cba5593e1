"""Fleet mode at the CLI's edge: `apply|diff|get|describe|delete --fleet` and `nodes` read and write the fleet's
etcd in the layout of core/fleet.py, and `daemon_config` turns the daemon's --etcd options into a FleetConfig.

Only desired state is written here (specs/, and the format's version once); which node runs what is the agents'
(daemon/fleet.py) to decide and report (nodes/, members/, status/), read here as they wrote it. Writes are
optimistic: a spec is replaced only if it is still as read. Nothing here waits for the fleet to converge.
host/etcd.py (and so etcd3gw) is imported only when a command talks to etcd: this module stays light. Every
value read from etcd is bounded (MAX_VALUE_BYTES) and decoded defensively: another version or a hand may
have written it. A password is only ever a file's path.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..core.errors import Location, UsageError, UserError
from ..core.fleet import (
    MEMBERS,
    NODES,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    SPECS,
    STATUS,
    EtcdAccess,
    FleetConfig,
    spec_key,
)
from .exit_codes import EXIT_OK
from .paths import refuse_stdin_for
from .render.common import HIDDEN, to_json, to_yaml

if TYPE_CHECKING:
    from ..core.model import ProcessSpec
    from ..host.etcd import Etcd, KeyValue

ETCD_VARIABLE = "ORCHESTRATOR_ETCD"
NEEDS_ETCD = "fleet mode needs --etcd URLS (or $ORCHESTRATOR_ETCD)"
FLEET_KINDS = ("Process", "Job")
WRITE_TRIES = 4  # the first write, and 3 more after another writer changed the key between read and write
MAX_VALUE_BYTES = 2 * 1024 * 1024  # one value read from etcd (etcd's own request limit is 1.5 MiB by default)
REQUEST_TIMEOUT = 2.0  # seconds per endpoint tried
ELECTION_PATIENCE_SECONDS = 6.0  # a command waits this long at most for a cluster electing a new leader
DEFAULT_LEASE_TTL = 10
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_ETCD_FLAGS = {"etcd_ca": "--etcd-ca", "etcd_cert": "--etcd-cert", "etcd_key": "--etcd-key",
               "etcd_user": "--etcd-user", "etcd_password_file": "--etcd-password-file"}
_NODE_FLAGS = {"node_name": "--node-name", "node_labels": "--node-label", "lease_ttl": "--lease-ttl"}


# -- reaching etcd ------------------------------------------------------------------------------------------------


def etcd_access(args: argparse.Namespace, from_environment: bool = True) -> EtcdAccess:
    """The etcd of --etcd (else $ORCHESTRATOR_ETCD, with `from_environment`) and its credentials' paths, made
    absolute (a daemon may read them from another directory); UserError when there is no etcd."""
    text = getattr(args, "etcd", None) or (os.environ.get(ETCD_VARIABLE, "") if from_environment else "")
    endpoints = tuple(url.strip() for url in text.split(",") if url.strip())
    if not endpoints:
        raise UserError(NEEDS_ETCD)
    for first, second in (("etcd_user", "etcd_password_file"), ("etcd_cert", "etcd_key")):
        if bool(getattr(args, first, None)) != bool(getattr(args, second, None)):
            raise UserError(f"{_ETCD_FLAGS[first]} and {_ETCD_FLAGS[second]} go together")

    def path(name: str) -> str | None:
        value = getattr(args, name, None)
        return os.path.abspath(value) if value else None

    return EtcdAccess(endpoints, ca_file=path("etcd_ca"), cert_file=path("etcd_cert"), key_file=path("etcd_key"),
                      user=getattr(args, "etcd_user", None) or None, password_file=path("etcd_password_file"))


@contextmanager
def _connected(args: argparse.Namespace) -> Iterator[Etcd]:
    """A client of the fleet's etcd; its failures become UserErrors (their messages name the endpoints)."""
    access = etcd_access(args)
    from ..host.etcd import Etcd, EtcdError

    try:
        etcd = Etcd(list(access.endpoints), timeout=REQUEST_TIMEOUT, ca_file=access.ca_file,
                    cert_file=access.cert_file, key_file=access.key_file, user=access.user,
                    password_file=access.password_file, patience=ELECTION_PATIENCE_SECONDS)
    except EtcdError as error:
        raise UserError(str(error)) from None
    try:
        yield etcd
    except EtcdError as error:
        raise UserError(str(error)) from None
    finally:
        etcd.close()


def _require_fleet(args: argparse.Namespace) -> None:
    if not getattr(args, "fleet", False):
        given = ["--etcd"] if getattr(args, "etcd", None) else []
        given += [flag for name, flag in _ETCD_FLAGS.items() if getattr(args, name, None)]
        raise UsageError(f"{', '.join(given)}: options of --fleet (without it, {args.command} is the local daemon's)")


def daemon_config(args: argparse.Namespace) -> FleetConfig | None:
    """The daemon's fleet mode from `orchestrator daemon --etcd URLS --node-name ... --node-label ... --lease-ttl`:
    None without --etcd (only the option counts here, not $ORCHESTRATOR_ETCD: a daemon that `apply` starts on
    its own must not join a fleet because the user's shell names one). UserError for node or etcd options given
    without --etcd, a host name that is no DNS label (without --node-name), or one label key given twice."""
    if not getattr(args, "etcd", None):
        given = [flag for name, flag in {**_ETCD_FLAGS, **_NODE_FLAGS}.items() if getattr(args, name, None)]
        if given:
            raise UserError(f"{', '.join(given)}: options of fleet mode, which needs --etcd URLS")
        return None
    access = etcd_access(args, from_environment=False)
    node = getattr(args, "node_name", None) or socket.gethostname()
    if not _DNS_LABEL.fullmatch(node):
        raise UserError(f"the host name {node!r} is not a DNS label (1-63 lowercase letters, digits and '-', not "
                        "starting or ending with '-'), so it cannot name this node: give --node-name NAME")
    labels: dict[str, str] = {}
    for key, value in getattr(args, "node_labels", None) or ():
        if key in labels and labels[key] != value:
            raise UserError(f"--node-label {key} is given twice: {key}={labels[key]} and {key}={value}")
        labels[key] = value
    ttl = getattr(args, "lease_ttl", None)
    return FleetConfig(access, node, tuple(sorted(labels.items())), DEFAULT_LEASE_TTL if ttl is None else ttl)


def daemon_words(config: FleetConfig) -> list[str]:
    """The `orchestrator daemon` options that make this FleetConfig again (for a unit's ExecStart; unquoted)."""
    etcd = config.etcd
    words = ["--etcd", ",".join(etcd.endpoints), "--node-name", config.node]
    for flag, value in (("--etcd-ca", etcd.ca_file), ("--etcd-cert", etcd.cert_file), ("--etcd-key", etcd.key_file),
                        ("--etcd-user", etcd.user), ("--etcd-password-file", etcd.password_file)):
        if value:
            words += [flag, value]
    for key, value in config.labels:
        words += ["--node-label", f"{key}={value}"]
    if config.lease_ttl != DEFAULT_LEASE_TTL:
        words += ["--lease-ttl", str(config.lease_ttl)]
    return words


# -- values -------------------------------------------------------------------------------------------------------


def _value(kv: KeyValue | None) -> dict[str, Any] | None:
    """The JSON object a key holds; None (said on stderr) when it is too big or not a JSON object."""
    if kv is None:
        return None
    if len(kv.value) > MAX_VALUE_BYTES:
        _warn(f"{kv.key}: {len(kv.value):,} bytes, more than the {MAX_VALUE_BYTES:,} read of one value: skipped")
        return None
    try:
        value = json.loads(kv.value)
    except (ValueError, UnicodeDecodeError):
        _warn(f"{kv.key}: not JSON: skipped")
        return None
    if not isinstance(value, dict):
        _warn(f"{kv.key}: not a JSON object: skipped")
        return None
    return value


def _warn(text: str) -> None:
    print(f"orchestrator: warning: etcd key {text}", file=sys.stderr)


def _document(kv: KeyValue | None) -> Any:
    value = _value(kv)
    return value.get("document") if value else None


def _plain(document: Any) -> Any:
    """`document` as it reads back from JSON (tuples as lists): what a stored document is compared with."""
    return json.loads(json.dumps(document))


def _check_format(etcd: Etcd, create: bool) -> None:
    """Refuse a fleet written in another format; with `create`, record ours where none is recorded yet."""
    kv = etcd.get(SCHEMA_VERSION_KEY)
    if kv is None and create:
        made, kv = etcd.create(SCHEMA_VERSION_KEY, json.dumps(SCHEMA_VERSION).encode())
        if made:
            return
    if kv is None:
        return
    try:
        found = str(json.loads(kv.value))
    except (ValueError, UnicodeDecodeError):
        found = kv.value[:40].decode("utf-8", "replace")
    if found != SCHEMA_VERSION:
        raise UserError(f"the fleet's etcd holds format {found!r} (at {SCHEMA_VERSION_KEY}), this orchestrator "
                        f"knows format {SCHEMA_VERSION!r}: use an orchestrator of the fleet's format")


def write_spec(etcd: Etcd, key: str, document: Any, record: bytes, current: KeyValue | None) -> str:
    """Put `record` (whose "document" is `document`) at `key`, unless the key holds that document already:
    "created", "configured" or "unchanged". Optimistic: written only while the key is as read (`current`, None:
    absent); when another writer changed it in between, it is read and compared again, WRITE_TRIES times in all,
    then UserError."""
    from ..host.etcd import write_record

    document = _plain(document)
    result = write_record(etcd, key, record, current, lambda kv: _document(kv) == document, WRITE_TRIES)
    if result is None:
        raise UserError(f"{key}: changed by another writer meanwhile: apply again")
    return result


# -- manifests ----------------------------------------------------------------------------------------------------


def _load(paths: Sequence[str], prune: bool = False) -> list[ProcessSpec]:
    """The Processes and Jobs of `paths`, validated as the local apply validates them (ManifestError with every
    problem), with absolute locations; other kinds are refused: the fleet keeps none of them yet."""
    import dataclasses

    from ..manifests.loader import KeptSpec, kept_key, load_specs

    refuse_stdin_for(list(paths), prune=prune)
    kept: list[KeptSpec] = []
    specs = load_specs(paths, kept=kept)
    if kept:
        syncs = any(kept_key(spec).startswith("gitsync/") for spec in kept)
        raise UserError(", ".join(kept_key(spec) for spec in kept) + ": not kept in the fleet yet (only "
                        f"{' and '.join(FLEET_KINDS)} are); apply them to a daemon without --fleet" + (
                            " (a GitSync with target: Fleet is applied to the fleet's daemons that may run it, "
                            "without --fleet: one of them is elected and writes to the fleet)" if syncs else ""))
    absolute = []
    for spec in specs:
        if spec.location is not None:
            location = Location(os.path.abspath(spec.location.file), spec.location.line, spec.location.column)
            spec = dataclasses.replace(spec, location=location)
        absolute.append(spec)
    return absolute


def _under(file: str, roots: Sequence[str]) -> bool:
    real = os.path.realpath(file)
    return any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots)


def _pruned(current: Mapping[str, KeyValue], applied: set[str], paths: Sequence[str]) -> list[KeyValue]:
    """The fleet's specs that came from a file under `paths` and are not among `applied` (etcd keys); never
    those a GitSync wrote (its `owner`): they are its to prune."""
    roots = [os.path.realpath(p) for p in paths]
    found = []
    for key, kv in sorted(current.items()):
        value = _value(kv) if key not in applied else None
        source = value.get("source") if value and not value.get("owner") else None
        if isinstance(source, str) and os.path.isabs(source) and _under(source, roots):
            found.append(kv)
    return found


def _kind(document: Any) -> str:
    return str(document.get("kind") or "object") if isinstance(document, dict) else "object"


def _object_key(etcd_key: str) -> str:
    return etcd_key[len(SPECS):]


# -- commands -----------------------------------------------------------------------------------------------------


def apply(args: argparse.Namespace) -> int:
    """`apply --fleet`: each Process and Job as a spec key, compared with what the fleet holds; prune by source."""
    from ..manifests.codec import spec_to_document
    from .render.tables import apply_results

    _require_fleet(args)
    for option in ("watch", "wait"):
        if getattr(args, option, False):
            raise UsageError(f"--{option} is not an option of --fleet yet")
    specs = _load(args.paths, args.prune)
    applied_by = f"{getpass.getuser()}@{socket.gethostname()}"
    now = time.time()
    results: list[dict[str, Any]] = []
    with _connected(args) as etcd:
        _check_format(etcd, create=False)
        revision, kvs = etcd.range(SPECS)
        current = {kv.key: kv for kv in kvs}
        format_recorded = False
        for spec in specs:
            key = spec_key(spec.namespace, spec.name)
            document = _plain(spec_to_document(spec))
            kv = current.get(key)
            if kv is not None and _document(kv) == document:
                result = "unchanged"
            elif args.dry_run:
                result = "created" if kv is None else "configured"
            else:
                if not format_recorded:
                    _check_format(etcd, create=True)
                    format_recorded = True
                record = {"document": document, "source": spec.location.file if spec.location else None,
                          "appliedBy": applied_by, "appliedAt": now}
                result = write_spec(etcd, key, document, json.dumps(record, sort_keys=True).encode(), kv)
            results.append({"key": spec.key, "kind": spec.kind.value, "result": result})
        if args.prune:
            for kv in _pruned(current, {spec_key(s.namespace, s.name) for s in specs}, args.paths):
                if not args.dry_run and not etcd.delete(kv.key, kv.mod_revision):
                    if etcd.get(kv.key) is None:
                        continue  # deleted meanwhile: nothing left to prune
                    raise UserError(f"{_object_key(kv.key)}: changed by another writer meanwhile: apply again")
                results.append({"key": _object_key(kv.key), "kind": _kind(_document(kv)), "result": "pruned"})
        if any(r["result"] != "unchanged" for r in results) and not args.dry_run:
            revision = etcd.range(SCHEMA_VERSION_KEY)[0]  # the header's: the store's revision after these writes
    answer = {"results": results, "revision": revision}
    if args.output in ("json", "yaml"):
        print(to_yaml(answer) if args.output == "yaml" else to_json(answer))
    else:
        print(apply_results(results, dry_run=args.dry_run) if results else "no objects")
    return EXIT_OK


def diff(args: argparse.Namespace) -> int:
    """`diff --fleet`: the manifests against the fleet's documents, as the local diff shows them (exit 0/1)."""
    from ..manifests.codec import spec_to_document

    _require_fleet(args)
    specs = _load(args.paths, args.prune)
    with _connected(args) as etcd:
        _check_format(etcd, create=False)
        _, kvs = etcd.range(SPECS)
    current = {kv.key: kv for kv in kvs}
    pairs: list[tuple[str, Any, Any]] = []
    for spec in sorted(specs, key=lambda s: s.key):
        kv = current.get(spec_key(spec.namespace, spec.name))
        pairs.append((spec.key, _document(kv) if kv is not None else None, _plain(spec_to_document(spec))))
    if args.prune:
        applied = {spec_key(s.namespace, s.name) for s in specs}
        pairs += [(_object_key(kv.key), _document(kv), None) for kv in _pruned(current, applied, args.paths)]
    from .render.diffs import print_diff

    return print_diff(pairs, args.output)


def _objects(specs: Sequence[KeyValue], statuses: Sequence[KeyValue]) -> list[dict[str, Any]]:
    """One document per fleet spec, with what each node reports of it (status/<node>/<ns>/<name>)."""
    reported: dict[str, list[dict[str, Any]]] = {}
    for kv in statuses:
        node, _, key = kv.key[len(STATUS):].partition("/")
        value = _value(kv)
        if value is not None and key:
            reported.setdefault(key, []).append({**value, "node": node})
    objects: list[dict[str, Any]] = []
    for kv in specs:
        key = _object_key(kv.key)
        namespace, _, name = key.partition("/")
        value = _value(kv) or {}
        document = _mapping(value.get("document"))
        metadata = _mapping(document.get("metadata"))
        placement = _mapping(_mapping(document.get("spec")).get("placement")) or None
        objects.append({
            "key": key, "name": name, "namespace": namespace, "kind": _kind(document),
            "mode": str(placement.get("mode", "Each")) if placement else "Each", "placement": placement,
            "labels": metadata.get("labels") if isinstance(metadata.get("labels"), dict) else {},
            "source": value.get("source"), "appliedBy": value.get("appliedBy"), "appliedAt": value.get("appliedAt"),
            "nodes": sorted(reported.get(key, []), key=lambda s: str(s["node"])),
        })
    return objects


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _named(objects: Sequence[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["key"] == name or ("/" not in name and o["name"] == name)]


def _one(objects: Sequence[dict[str, Any]], name: str) -> dict[str, Any]:
    found = _named(objects, name)
    if len(found) > 1:
        raise UserError(f"{name} is ambiguous in the fleet: " + ", ".join(o["key"] for o in found))
    if not found:
        raise UserError(f"no object named {name} in the fleet")
    return found[0]


def _selects(labels: Mapping[str, Any], selector: str) -> bool:
    """`get -l`'s equality terms (key=value, key!=value, key, !key; comma-joined: all must hold)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, _, value = term.partition("!=")
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, _, value = term.replace("==", "=", 1).partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def get(args: argparse.Namespace) -> int:
    """`get --fleet`: every fleet object with each node that reports it."""
    from .render.fleet import fleet_objects_table

    _require_fleet(args)
    with _connected(args) as etcd:
        _, specs = etcd.range(SPECS)
        _, statuses = etcd.range(STATUS)
    objects = _objects(specs, statuses)
    if args.name:
        objects = _named(objects, args.name)
    if getattr(args, "namespace", None) is not None:
        objects = [o for o in objects if o["namespace"] == args.namespace]
    if getattr(args, "selector", None):
        objects = [o for o in objects if _selects(o["labels"], args.selector)]
    if args.name and not objects:
        raise UserError(f"no object named {args.name} in the fleet")
    if args.output in ("json", "yaml"):
        answer = {"objects": objects}
        print(to_yaml(answer) if args.output == "yaml" else to_json(answer))
        return EXIT_OK
    print(fleet_objects_table(objects, wide=args.output == "wide", now=time.time()))
    return EXIT_OK


def describe(args: argparse.Namespace) -> int:
    """`describe --fleet NAME`: its spec (env values hidden), placement and each node's status."""
    from .render.describe import describe_text
    from .render.fleet import node_status_lines, placement_lines

    _require_fleet(args)
    with _connected(args) as etcd:
        _, specs = etcd.range(SPECS)
        _, statuses = etcd.range(STATUS)
    obj = _one(_objects(specs, statuses), args.name)
    document = next((_document(kv) for kv in specs if _object_key(kv.key) == obj["key"]), None)
    document = document if isinstance(document, dict) else {}
    if isinstance(document.get("spec"), dict) and isinstance(document["spec"].get("env"), dict):
        document["spec"]["env"] = {name: HIDDEN for name in document["spec"]["env"]}
    obj["document"] = document
    if args.output in ("json", "yaml"):
        print(to_yaml(obj) if args.output == "yaml" else to_json(obj))
        return EXIT_OK
    states = sorted({str(s.get("state")) for s in obj["nodes"] if s.get("state")})
    replicas = {n: sum(int(r.get(n) or 0) for r in (s.get("replicas") for s in obj["nodes"]) if isinstance(r, dict))
                for n in ("desired", "running", "ready")}
    local = {"key": obj["key"], "name": obj["name"], "namespace": obj["namespace"], "kind": obj["kind"],
             "labels": obj["labels"], "spec": document, "state": ",".join(states) or "Pending",
             "replicas": replicas if obj["nodes"] else {}}
    lines = describe_text(local, [], now=time.time()).splitlines()
    if lines and lines[-1].startswith("Events:"):
        lines.pop()  # events are each node's own, in its daemon: `orchestrator events` there
    lines += placement_lines(obj["placement"]) + node_status_lines(obj["nodes"])
    print("\n".join(lines))
    return EXIT_OK


def delete(args: argparse.Namespace) -> int:
    """`delete --fleet NAME... | -f PATH`: their spec keys; every node stops them. Nothing is deleted when a name
    is unknown or something else in the fleet still depends on one of them."""
    from .render.tables import apply_results

    _require_fleet(args)
    names = list(args.names) + [spec.key for spec in (_load(args.paths) if args.paths else ())]
    if not names:
        raise UsageError("name what to delete: NAME... or -f PATH")
    with _connected(args) as etcd:
        _, specs = etcd.range(SPECS)
        objects = _objects(specs, [])
        unknown = [name for name in names if not _named(objects, name)]
        if unknown:
            raise UserError("no object named " + ", ".join(unknown) + " in the fleet")
        doomed = list(dict.fromkeys(_one(objects, name)["key"] for name in names))
        documents = {_object_key(kv.key): _document(kv) for kv in specs}
        for key, document in documents.items():
            if key in doomed:
                continue
            for dependency in _dependencies(document):
                target = f"{key.partition('/')[0]}/{dependency}"
                if target in doomed:
                    raise UserError(f"{target} is still depended on by {key}: delete both, or that dependency first")
        results = []
        for key in doomed:
            namespace, _, name = key.partition("/")
            etcd.delete(spec_key(namespace, name))
            results.append({"key": key, "kind": _kind(documents.get(key)), "result": "deleted"})
    print(apply_results(results))
    return EXIT_OK


def _dependencies(document: Any) -> list[str]:
    body = document.get("spec") if isinstance(document, dict) else None
    items = body.get("dependsOn") if isinstance(body, dict) else None
    return [str(i["name"]) for i in items or () if isinstance(i, dict) and "name" in i] if isinstance(items, list) \
        else []


def nodes(args: argparse.Namespace) -> int:
    """`nodes`: every node the fleet knows (members/), Ready while its leased nodes/ key lives."""
    from .render.fleet import nodes_table

    with _connected(args) as etcd:
        _, members = etcd.range(MEMBERS)
        _, alive = etcd.range(NODES)
        _, statuses = etcd.range(STATUS)
    known = {kv.key[len(MEMBERS):]: _value(kv) or {} for kv in members}
    ready = {kv.key[len(NODES):]: kv for kv in alive}
    processes: dict[str, int] = {}
    for kv in statuses:
        reporter = kv.key[len(STATUS):].partition("/")[0]
        processes[reporter] = processes.get(reporter, 0) + 1
    found = []
    for name in sorted(set(known) | set(ready)):
        member = known.get(name, {})
        lease = ready.get(name)
        node = _value(lease) or {}
        labels = node.get("labels") if isinstance(node.get("labels"), dict) else member.get("labels")
        found.append({
            "name": name, "status": "Ready" if lease is not None else "NotReady",
            "labels": labels if isinstance(labels, dict) else {}, "processes": processes.get(name, 0),
            "version": node.get("version"), "startedAt": node.get("startedAt"), "firstSeen": member.get("firstSeen"),
            "lease": format(lease.lease, "x") if lease is not None and lease.lease else None,
        })
    if args.output == "json":
        print(to_json({"nodes": found}))
    else:
        print(nodes_table(found, wide=args.output == "wide", now=time.time()))
    return EXIT_OK
