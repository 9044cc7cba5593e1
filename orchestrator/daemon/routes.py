"""The control API's route table: (method, path) -> the operation that answers it.

Runs on the control server's request threads. What reads or changes run state goes through `call`, which
runs it on the reconciler's thread and hands back its answer; reads of the store and of the sampler's
latest figures answer from here directly. Knows nothing of HTTP: the control server speaks it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

from ..core.alerting import AlertRuleSpec, NotifierSpec
from ..core.cronjob import CronJobSpec
from ..core.errors import Location, ManifestError, Problem
from ..core.gitsync import GitSyncSpec
from ..core.model import ProcessSpec, ReplicaId
from ..core.queue import QueueSpec
from ..engine.reconcile import Reconciler
from ..host.logs import log_path
from ..host.metrics import Sampler
from ..manifests import codec
from ..manifests.cache import SpecCache
from ..manifests.loader import KeptSpec
from ..planning.health import limit_health, worst
from .alerting import HISTORY_TYPES, Alerting
from .control import Conflict, NotFound
from .cronjobs import CronJobs
from .gitsyncs import GitSyncs
from .intake import load_sent
from .kept import result as kept_result
from .operations import Operations
from .queues import Queues
from .streams import TAIL_DEFAULT, TAIL_MAX, log_tail

T = TypeVar("T")
Query = dict[str, str]
Body = dict[str, Any]
Handler = Callable[[Query, Body], dict[str, Any]]
Call = Callable[[Callable[[Reconciler], Any]], Any]  # run on the reconciler's thread, return its answer


class Routes:
    def __init__(self, ops: Operations, call: Call, sampler: Sampler, health: Callable[[], dict[str, Any]],
                 shutdown: Callable[[], dict[str, Any]], cache: SpecCache, gitsyncs: GitSyncs, log_dir: Path,
                 alerting: Alerting, cronjobs: CronJobs, queues: Queues) -> None:
        self.ops = ops
        self.queues = queues
        self.alerting = alerting
        self.cronjobs = cronjobs
        self.log_dir = log_dir
        self.gitsyncs = gitsyncs
        self.call = call
        self.sampler = sampler
        self.cache = cache
        self.table: dict[tuple[str, str], Handler] = {
            ("GET", "/health"): lambda q, b: health(),
            ("GET", "/openapi.json"): lambda q, b: openapi_document(),
            ("GET", "/objects"): lambda q, b: self._objects(q),
            ("GET", "/desired"): lambda q, b: call(lambda r: ops.desired()),
            ("POST", "/apply"): self._apply,
            ("POST", "/documents"): lambda q, b: {"specs": [codec.spec_to_json(s) for s in load_sent(b, cache, kept=[])]},
            ("POST", "/delete"): lambda q, b: call(lambda r: ops.delete(b)),
            ("POST", "/restart"): lambda q, b: call(lambda r: ops.restart(b)),
            ("POST", "/stop"): lambda q, b: call(lambda r: ops.hold(b, stopped=True)),
            ("POST", "/start"): lambda q, b: call(lambda r: ops.hold(b, stopped=False)),
            ("POST", "/scale"): lambda q, b: call(lambda r: ops.scale(b)),
            ("POST", "/rollback"): lambda q, b: call(lambda r: ops.rollback(b)),
            ("POST", "/rollout"): lambda q, b: call(lambda r: ops.rollout(b)),
            ("GET", "/revisions"): lambda q, b: ops.revisions(q),
            ("GET", "/events"): lambda q, b: ops.event_history(q, self.key(q["key"]) if q.get("key") else None),
            ("POST", "/shutdown"): lambda q, b: shutdown(),
            ("GET", "/gitsyncs"): lambda q, b: {"syncs": gitsyncs.statuses()},
            ("POST", "/gitsyncs"): self._put_sync,
            ("GET", "/logs"): self._logs,
            ("GET", "/usage"): self._usage,
            ("GET", "/whoami"): lambda q, b: {"scope": "admin", "via": "unix", "read_only": False},
            ("GET", "/alerts"): lambda q, b: call(lambda r: alerting.listing()),
            ("GET", "/alerts/history"): lambda q, b: {"events": [ops.event_json(i, e) for i, e in ops.events_after(
                int(q.get("since", "0")), None, int(q.get("limit", "100")), HISTORY_TYPES)]},
            ("POST", "/alerts/silence"): lambda q, b: call(lambda r: alerting.silence(b)),
            ("POST", "/alerts/unsilence"): lambda q, b: call(lambda r: alerting.unsilence(b)),
            ("POST", "/notifiers/test"): lambda q, b: alerting.test(str(b.get("name") or "")),
            ("GET", "/queues"): lambda q, b: call(lambda r: queues.listing(q.get("name") or None)),
            ("GET", "/cronjobs"): lambda q, b: call(lambda r: cronjobs.listing()),
            ("POST", "/cronjobs/trigger"): lambda q, b: call(lambda r: cronjobs.trigger(str(b.get("name") or ""))),
            ("POST", "/unwatch"): lambda q, b: call(lambda r: ops.watches.remove([str(p) for p in b.get("paths", [])])),
        }

    def handle(self, method: str, route: str, query: Query, body: Body) -> dict[str, Any]:
        if method == "POST" and route != "/shutdown" and self.ops.reconciler.shutting_down:
            raise Conflict("the daemon is shutting down: nothing can be changed now")
        handler = self.table.get((method, route))
        if handler is not None:
            return handler(query, body)
        if method == "GET" and route.startswith("/objects/"):
            name = unquote(route[len("/objects/"):])
            document, spec = self.call(lambda r: self._described(name))
            return add_usage(document, self.sampler, spec)
        if route.startswith("/gitsyncs/"):
            return self._sync_route(method, unquote(route[len("/gitsyncs/"):]), body)
        raise NotFound(f"no such route: {method} {route}")

    def _objects(self, query: Query) -> dict[str, Any]:
        answer, specs = self.call(lambda r: (self.ops.objects(query), r.desired.specs))
        return _with_usage(answer, query, self.sampler, specs)

    def _described(self, name: str) -> tuple[dict[str, Any], ProcessSpec | None]:
        """On the loop's thread: describe's document, and the desired spec of what it names."""
        document = self.ops.describe(name)
        return document, self.ops.reconciler.desired.specs.get(document["key"])

    def _apply(self, query: Query, body: Body) -> dict[str, Any]:
        """Manifest texts (or an API client's specs) are read and checked here, on the request's thread; only
        the result goes to the loop. GitSyncs, AlertRules and Notifiers among them are kept after the specs
        are applied (the alerting ones checked before: a rule naming no notifier refuses the whole apply)."""
        used: dict[str, str | None] = {}
        kept: list[KeptSpec] = []
        loaded = load_sent(body, self.cache, used, kept) if "files" in body else self.ops.decode(body)
        body = {**body, "variables": used}  # what a watch keeps: the values used, not the whole environment
        answer: dict[str, Any] = self.call(lambda r: self.apply_kept(body, loaded, kept))
        return answer

    def apply_kept(self, body: Body, loaded: Sequence[ProcessSpec], kept: Sequence[KeptSpec]) -> dict[str, Any]:
        """On the loop's thread: the specs, then what the daemon keeps beside them (apply, and a watch)."""
        alerting = [spec for spec in kept if isinstance(spec, (AlertRuleSpec, NotifierSpec))]
        cronjobs = [spec for spec in kept if isinstance(spec, CronJobSpec)]
        queues = [spec for spec in kept if isinstance(spec, QueueSpec)]
        dry_run = bool(body.get("dry_run"))
        self.alerting.put(alerting, dry_run=True)  # refuses before anything is applied
        refused = [Problem(spec.location or Location(f"gitsync/{spec.name}"), "spec.target", why)
                   for spec in kept if isinstance(spec, GitSyncSpec) and (why := self.gitsyncs.refusal(spec))]
        if refused:
            raise ManifestError(refused)
        answer: dict[str, Any] = self.ops.apply(body, loaded)
        for spec in kept:
            if isinstance(spec, GitSyncSpec):
                result = self.gitsyncs.put(spec, dry_run=dry_run)["result"]
                answer["results"].append(kept_result(spec.name, "GitSync", result))  # shown as gitsync/NAME
        answer["results"] += self.alerting.put(alerting, dry_run=dry_run)
        answer["results"] += self.cronjobs.put(cronjobs, dry_run=dry_run)
        answer["results"] += self.queues.put(queues, dry_run=dry_run)
        if body.get("prune"):
            paths = [str(p) for p in body.get("paths", [])]
            applied = {f"{'alertrule' if isinstance(s, AlertRuleSpec) else 'notifier'}/{s.key}" for s in alerting}
            answer["results"] += self.alerting.prune(applied, paths, dry_run)
            answer["results"] += self.cronjobs.prune({s.key for s in cronjobs}, paths, dry_run)
            answer["results"] += self.queues.prune({s.name for s in queues}, paths, dry_run)
        return answer

    def _put_sync(self, query: Query, body: Body) -> dict[str, Any]:
        from ..manifests.gitsyncs import gitsync_from_document

        document = body.get("document")
        if not isinstance(document, dict):
            raise TypeError("document: expected a GitSync manifest document")
        spec = gitsync_from_document(document, where="<request>")
        answer = self.gitsyncs.put(spec, dry_run=bool(body.get("dry_run")))
        return {**answer, "sync": self.gitsyncs.status(spec.name) if spec.name in self.gitsyncs.specs else None}

    def _sync_route(self, method: str, rest: str, body: Body) -> dict[str, Any]:
        """GET /gitsyncs/NAME, POST /gitsyncs/NAME/{sync,diff,suspend,resume,remove}."""
        name, _, verb = rest.partition("/")
        syncs = self.gitsyncs
        if method == "GET" and not verb:
            return syncs.status(name)
        if method == "POST":
            if verb == "sync":
                revision = body.get("revision")
                return syncs.sync_now(name, bool(body.get("force")), str(revision) if revision else None)
            if verb == "diff":
                return syncs.diff(name)
            if verb in ("suspend", "resume"):
                return syncs.suspend(name, verb == "suspend", str(body.get("reason") or ""))
            if verb == "remove":
                return syncs.remove(name, bool(body.get("prune")))
        raise NotFound(f"no such route: {method} /gitsyncs/{rest}")

    def log_file(self, query: Query) -> Path:
        """The log file of `?name=N&replica=I` (replica 0 by default); NotFound for no such object. Its file
        need not exist yet (nothing printed): that reads as no lines."""
        name = query.get("name") or ""
        if not name:
            raise ValueError("name: which object's log (?name=NAME&replica=0)")
        key = self.key(name)
        replica = int(query.get("replica", "0"))
        if replica < 0:
            raise ValueError(f"replica: an index is never negative: {replica}")
        return log_path(self.log_dir, ReplicaId(key, replica))

    @staticmethod
    def tail(query: Query) -> int:
        tail = int(query.get("tail", str(TAIL_DEFAULT)))
        if tail < 0:
            raise ValueError(f"tail: a number of lines is never negative: {tail}")
        return min(tail, TAIL_MAX)

    def _logs(self, query: Query, body: Body) -> dict[str, Any]:
        """The last `tail` lines of a replica's log (or those from byte offset `since` on), and `next`: the
        offset to ask for (or follow from) next."""
        log = self.log_file(query)
        since = int(query["since"]) if query.get("since") else None
        if since is not None and since < 0:
            raise ValueError(f"since: an offset is never negative: {since}")
        lines, end = log_tail(log, self.tail(query), since)
        return {"key": self.key(query["name"]), "replica": int(query.get("replica", "0")), "lines": lines,
                "next": end}

    def _usage(self, query: Query, body: Body) -> dict[str, Any]:
        """The sampler's recent history of every running replica (or of `?name=N`'s): [time, cpu %, memory]."""
        key = self.key(query["name"]) if query.get("name") else None
        objects: dict[str, dict[str, list[list[float | int | None]]]] = {}
        for rid, samples in sorted(self.sampler.histories().items(), key=lambda item: (item[0].key, item[0].index)):
            if key is None or rid.key == key:
                objects.setdefault(rid.key, {})[str(rid.index)] = [
                    [sample.at, sample.cpu_percent, sample.memory_bytes] for sample in samples]
        return {"interval": self.sampler.interval, "objects": objects}

    def key(self, name: str) -> str:
        """`namespace/name` of an object named either way, resolved on the reconciler's thread (or
        `gitsync/NAME`, the subject of a GitSync's events)."""
        if name.startswith("gitsync/") and name.split("/", 1)[1] in self.gitsyncs.specs:
            return name
        return self.call(lambda r: self.ops.key(name))  # type: ignore[no-any-return]


def _with_usage(answer: dict[str, Any], query: dict[str, str], sampler: Sampler,
                specs: Mapping[str, ProcessSpec]) -> dict[str, Any]:
    """With `?usage=1`: cpu and memory of each running replica's tree (add_usage)."""
    if query.get("usage"):
        for document in answer["objects"]:
            add_usage(document, sampler, specs.get(document["key"]))
    return answer


def add_usage(document: dict[str, Any], sampler: Sampler, spec: ProcessSpec | None) -> dict[str, Any]:
    """Add cpu and memory of each running replica's tree to an object's status document: the sampler's latest
    pass (cpu over its interval), or, before its first two passes, one look now (cpu averaged over the
    process's life). With a memory or cpu limit, each replica's health band (planning/health.py) too, and the
    object's: its worst replica's."""
    from ..host.observe import usage

    bands = []
    for replica in document["replica_status"]:
        if not replica["pid"]:
            replica["cpu_percent"], replica["memory_bytes"] = None, None
            continue
        latest = sampler.latest(ReplicaId(document["key"], replica["index"]))
        if latest is not None and latest.cpu_percent is not None:
            replica["cpu_percent"], replica["memory_bytes"] = latest.cpu_percent, latest.memory_bytes
        else:
            look = usage(replica["pid"])
            replica["cpu_percent"], replica["memory_bytes"] = look if look else (None, None)
        if spec is not None and spec.limits.memory_or_cpu:
            health = limit_health(replica["cpu_percent"], replica["memory_bytes"], spec.limits.cpu,
                                  spec.limits.memory_bytes)
            if health is not None:
                replica["limit_health"] = {"band": health.band, "resource": health.resource,
                                           "fraction": round(health.fraction, 4)}
                bands.append(health.band)
    if bands:
        document["limit_health"] = worst(bands)
    return document


@functools.cache
def openapi_document() -> dict[str, Any]:
    """schemas/openapi.yaml, read once, with the manifest schemas it `$ref`s (process.v1.json ...) put in place:
    a client that fetched it over HTTP has no schemas/ directory beside it to resolve them in."""
    import yaml

    from ..manifests.schema import _inline_refs, _schema_dir

    folder = _schema_dir()

    def bundled(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.endswith(".json") and "/" not in ref and len(node) == 1:
                schema = _inline_refs(json.loads((folder / ref).read_text(encoding="utf-8")))
                return bundled({k: v for k, v in schema.items() if k not in ("$id", "$schema")})
            return {k: bundled(v) for k, v in node.items()}
        if isinstance(node, list):
            return [bundled(item) for item in node]
        return node

    document = yaml.safe_load((folder / "openapi.yaml").read_text(encoding="utf-8"))
    return bundled(document)  # type: ignore[no-any-return]
