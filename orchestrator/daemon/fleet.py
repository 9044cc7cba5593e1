"""Fleet mode (design/fleet.md): the agent that keeps this node's share of the fleet's desired state running.

The desired state of the fleet lives in etcd (core/fleet.py's layout); each node's agent decides its own
share (planning/placement.py) and applies it to the local engine as the owner "fleet" (the same path a
GitSync takes: Operations.sync_apply), so the engine, its store and its adoption are those of a single host.
One thread, `fleet`, does everything with etcd:
- the node's lease (TTL --lease-ttl, kept alive every TTL/5), resumed after a daemon restart from the store
  (no failover, no duplicate); a lease found expired is replaced, the node registered again, its claims
  taken anew;
- each pass: one range of the whole prefix (one revision: specs, nodes and claims agree), the share, the
  claims it takes (a txn create bound to the lease) and gives back, the apply when the share changed, and
  the status of what runs here (under the lease, written when it changed);
- a watch of [claims/, status/) wakes it early on any change of specs, nodes or claims (another node's status
  does not); the periodic pass covers a watch that died.
etcd unreachable changes nothing that runs (fleet's #1181, #1186, #1289): the last share stays applied and
converged. Only mode One fences: a separate clock stops it when etcd has not answered a keepalive for TTL less
the margin (min(3 s, TTL/3)), measured from when the last successful keepalive was sent, so it is stopped
(its stop capped at half the margin, SIGKILL after) before its lease can expire in etcd and another node can
be elected. A spec in etcd that does not validate is refused with an event and the last good one is kept.
"""

from __future__ import annotations

import getpass
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import __version__
from ..core.errors import OrchestratorError
from ..core.events import Event, EventType
from ..core.fleet import (
    CLAIMS,
    MEMBERS,
    NODES,
    PREFIX,
    SPECS,
    STATUS,
    FleetConfig,
    member_key,
    node_key,
    status_key,
)
from ..core.model import ProcessSpec
from ..manifests import codec
from ..manifests.rules import check_spec
from ..planning import placement

OWNER = "fleet"
MAX_SPEC_BYTES = 1 << 20  # a fleet spec larger than this is refused (etcd's own limit is 1.5 MiB)

Call = Callable[[Callable[[Any], Any]], Any]


def fence_margin(ttl: int) -> float:
    """How long before its lease can expire a node stops its mode One processes: 3 s, less for a short TTL."""
    return min(3.0, ttl / 3)


class FleetAgent:
    def __init__(self, config: FleetConfig, ops: Any, call: Call, emit: Callable[[Event], None],
                 wall: Callable[[], float]) -> None:
        self.config = config
        self.node = config.node
        self.ops = ops
        self.call = call
        self.emit = emit
        self.wall = wall
        self.ttl = config.lease_ttl
        self.tick = max(0.5, self.ttl / 5)
        self.margin = fence_margin(self.ttl)
        self.lease = 0
        self.registered = False
        self.reachable: bool | None = None
        self.fenced = False
        self.last_ok: float | None = None  # monotonic: when the last keepalive that succeeded was sent
        self.applied: dict[str, ProcessSpec] = {}  # the local share as applied (by key)
        self.good: dict[str, tuple[int, ProcessSpec]] = {}  # fleet specs: mod revision, spec (the last good one)
        self.refused: dict[str, int] = {}  # key -> mod revision refused (said once)
        self.published: dict[str, bytes] = {}  # status key -> value written
        self.lost: dict[str, tuple[placement.Node, float]] = {}  # node -> (node, monotonic when it went)
        self.seen: dict[str, placement.Node] = {}
        self.status_dirty = True
        self._share_lock = threading.Lock()  # the agent's apply and the fence's, one at a time
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._fence = threading.Condition()
        self._fence_at: float | None = None
        self._thread: threading.Thread | None = None
        self._fence_thread: threading.Thread | None = None
        self._etcd: Any = None
        self._watch: Any = None

    # -- life cycle --------------------------------------------------------------------------------

    def start(self) -> None:
        from ..host.etcd import Etcd  # etcd3gw: imported in fleet mode only

        access = self.config.etcd
        self._etcd = Etcd(access.endpoints, timeout=min(2.0, max(0.3, self.ttl / 10)), ca_file=access.ca_file,
                          cert_file=access.cert_file, key_file=access.key_file, user=access.user,
                          password_file=access.password_file)
        # On the loop's thread, before the loop runs (Daemon.serve): the store and the desired state are read here.
        saved = self.ops.store.get_meta("fleet")
        state = json.loads(saved) if saved else {}
        if state.get("node") == self.node:
            self.lease = int(state.get("lease") or 0)
        self.applied = {k: s for k, s in self.ops.reconciler.desired.specs.items() if self.ops.owners.get(k) == OWNER}
        # Until etcd confirms the lease, a restarted daemon cannot know it still holds its elections: its mode
        # One processes (adopted from the store) are fenced unless a keepalive succeeds within the margin.
        self._arm_fence(time.monotonic() - self.ttl + 2 * self.margin)
        self._fence_thread = threading.Thread(target=self._fence_clock, name="fleet-fence", daemon=True)
        self._fence_thread.start()
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self._thread.start()

    def stop(self, leaving: bool) -> None:
        """End the agent. `leaving` (a shutdown that stopped what runs here): the lease is revoked, so that its
        claims and status go at once and other nodes take over now rather than at its expiry."""
        self._stopping.set()
        self._wake.set()
        with self._fence:
            self._fence.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._fence_thread is not None:
            self._fence_thread.join(timeout=2)
        if self._watch is not None:
            self._watch.stop()
        if self._etcd is not None:
            if leaving and self.lease:
                try:
                    self._etcd.revoke(self.lease)
                except OrchestratorError:
                    pass  # it expires by itself
            self._etcd.close()

    def on_event(self, event: Event) -> None:
        """Any change of what runs here: its status is written again at the next pass."""
        if event.key and event.type in (EventType.STARTED, EventType.EXITED, EventType.PROBE_PASSED,
                                        EventType.PROBE_FAILED, EventType.SUCCEEDED, EventType.FAILED,
                                        EventType.BACKOFF, EventType.START_FAILED):
            self.status_dirty = True
            self._wake.set()

    def health(self) -> dict[str, Any]:
        return {"node": self.node, "lease": f"{self.lease:x}" if self.lease else None, "reachable": self.reachable,
                "fenced": self.fenced, "share": sorted(self.applied)}

    # -- the loop ----------------------------------------------------------------------------------

    def _run(self) -> None:
        from ..host.etcd import EtcdError

        while not self._stopping.is_set():
            self._wake.clear()
            again = False
            try:
                again = self._pass()
            except EtcdError as error:
                self._unreachable(str(error))
            except OrchestratorError as error:  # the local apply refused (a port taken, a dependency): said, retried
                self._say(EventType.FLEET_REFUSED, "", f"fleet share not applied: {error}")
            except Exception as error:  # noqa: BLE001 - a bug must not end fleet mode: said, then retried
                self._say(EventType.FLEET_REFUSED, "", f"fleet agent error: {error!r}")
            if not again:
                self._wake.wait(self.tick)

    def _pass(self) -> bool:
        """One look at etcd and what follows from it; True to look again at once (a claim was taken)."""
        from ..host.etcd import EtcdError

        etcd = self._etcd
        sent = time.monotonic()
        self._keep_lease(sent)
        if not self.registered:
            self._register()
        revision, kvs = etcd.range(PREFIX)
        if self.reachable is not True:
            if self.reachable is False:
                self._say(EventType.ETCD_REACHABLE, "", "etcd reached again")
            self.reachable = True
        if self._watch is None or not self._watch.alive:
            if self._watch is not None:
                self._watch.stop()
            try:
                self._watch = etcd.watch(CLAIMS, STATUS, self._wake.set, start_revision=revision + 1)
            except EtcdError:
                self._watch = None  # only a way to look sooner: the periodic pass goes on without it
        by_key = {kv.key: kv for kv in kvs}
        specs = self._specs(kv for kv in kvs if kv.key.startswith(SPECS))
        nodes = self._nodes(kv for kv in kvs if kv.key.startswith(NODES))
        if self.node not in nodes:  # our node key was deleted (by hand?): registered again before deciding
            self.registered = False
            return True
        claims = {kv.key: placement.Claim(_json(kv.value).get("node", ""), kv.create_revision)
                  for kv in kvs if kv.key.startswith(CLAIMS)}
        running = self._running() if any(c.node == self.node for c in claims.values()) else {}
        share = placement.share(list(specs.values()), self.node, nodes, claims, running, lost=self._lost_for(),
                                fence_grace=self.margin / 2)
        took = False
        for key in share.claim:
            done, _ = etcd.create(key, json.dumps({"node": self.node}).encode(), lease=self.lease)
            if done:
                took = True
                self._say(EventType.FLEET_CLAIMED, _object_of(key), f"claimed {key[len(CLAIMS):]} on {self.node}")
        for key in share.release:
            kv = by_key.get(key)
            if kv is not None and etcd.delete(key, mod_revision=kv.mod_revision):
                self._say(EventType.FLEET_RELEASED, _object_of(key), f"gave back {key[len(CLAIMS):]}")
        if took:
            return True  # a fresh look: the claims just taken start their processes now
        self._apply(share.run, share.waiting)
        self._publish()
        return False

    def _keep_lease(self, sent: float) -> None:
        etcd = self._etcd
        ttl = etcd.keepalive(self.lease) if self.lease else -1
        if ttl <= 0:
            if self.lease:  # expired: its claims are gone, so nothing of mode One may go on running on it
                self._fence_now(time.monotonic() - (self.last_ok or sent))
            self.lease = etcd.grant(self.ttl)
            self.registered = False
            self.published = {}
            lease = self.lease
            self.call(lambda r: self.ops.store.set_meta("fleet", json.dumps({"node": self.node, "lease": lease})))
        self.last_ok = sent
        self._arm_fence(sent)
        if self.fenced:
            self.fenced = False  # the next share is applied as usual (what was fenced is claimed again)

    def _register(self) -> None:
        etcd = self._etcd
        value = json.dumps({"name": self.node, "labels": dict(self.config.labels), "version": __version__,
                            "startedAt": self.wall(), "lease": self.lease, "host": socket.gethostname(),
                            "user": getpass.getuser()}).encode()
        done, existing = etcd.create(node_key(self.node), value, lease=self.lease)
        if not done:
            if existing is not None and existing.lease != self.lease:
                raise OrchestratorError(f"node name {self.node} is in use by another live daemon (lease "
                                        f"{existing.lease:x}): give this one another --node-name")
            etcd.put(node_key(self.node), value, lease=self.lease)  # ours (a restart within the lease): labels anew
        member = etcd.get(member_key(self.node))
        first = _json(member.value).get("firstSeen", self.wall()) if member is not None else self.wall()
        etcd.put(member_key(self.node), json.dumps({"name": self.node, "labels": dict(self.config.labels),
                                                    "firstSeen": first}).encode())
        self.registered = True
        self.status_dirty = True
        self._say(EventType.FLEET_JOINED, "", f"node {self.node} registered under lease {self.lease:x} "
                  f"(TTL {self.ttl} s, labels {dict(self.config.labels) or 'none'})")

    def _specs(self, kvs: Any) -> dict[str, ProcessSpec]:
        """The fleet's specs by key, validated as a manifest is; a bad one keeps the last good one of its key."""
        specs: dict[str, ProcessSpec] = {}
        for kv in kvs:
            key = kv.key[len(SPECS):]
            known = self.good.get(key)
            if known is not None and known[0] == kv.mod_revision:
                specs[key] = known[1]
                continue
            try:
                if len(kv.value) > MAX_SPEC_BYTES:
                    raise ValueError(f"{len(kv.value)} bytes, more than {MAX_SPEC_BYTES}")
                document = json.loads(kv.value)["document"]
                spec = codec.spec_from_document(document)
                problems = check_spec(spec, where=f"etcd {kv.key}")
                if problems:
                    raise ValueError("; ".join(str(p) for p in problems[:5]))
                if spec.key != key:
                    raise ValueError(f"its metadata names {spec.key}")
            except (ValueError, KeyError, TypeError, RecursionError) as error:
                if self.refused.get(key) != kv.mod_revision:
                    self.refused[key] = kv.mod_revision
                    kept = " (the last good one goes on)" if known is not None else ""
                    self._say(EventType.FLEET_REFUSED, key, f"refused {kv.key}: {str(error)[:500]}{kept}")
                if known is not None:
                    specs[key] = known[1]
                continue
            self.good[key] = (kv.mod_revision, spec)
            specs[key] = spec
        for key in [k for k in self.good if k not in specs]:
            del self.good[key]
        return specs

    def _nodes(self, kvs: Any) -> dict[str, placement.Node]:
        nodes = {}
        for kv in kvs:
            value = _json(kv.value)
            labels = value.get("labels")
            name = kv.key[len(NODES):]
            nodes[name] = placement.Node(name, {str(k): str(v) for k, v in labels.items()}
                                         if isinstance(labels, dict) else {})
        now = time.monotonic()
        for name, node in self.seen.items():
            if name not in nodes and name not in self.lost:
                self.lost[name] = (node, now)
        for name in nodes:
            self.lost.pop(name, None)
        self.lost = {n: v for n, v in self.lost.items() if now - v[1] < 3600}
        self.seen = nodes
        return nodes

    def _lost_for(self) -> dict[str, tuple[placement.Node, float]]:
        now = time.monotonic()
        return {name: (node, now - since) for name, (node, since) in self.lost.items()}

    def _running(self) -> dict[str, int]:
        def count(r: Any) -> dict[str, int]:
            found: dict[str, int] = {}
            for rid, record in r.records.items():
                if record.process is not None:
                    found[rid.key] = found.get(rid.key, 0) + 1
            return found

        return self.call(count)  # type: ignore[no-any-return]

    def _apply(self, run: Mapping[str, ProcessSpec], waiting: Mapping[str, str]) -> None:
        with self._share_lock:
            if self._fence_due():
                run = placement.fenced(run)  # the deadline passed during this pass: no singleton starts on it
            self._apply_locked(run)

    def _fence_due(self) -> bool:
        with self._fence:
            return self._fence_at is None or time.monotonic() >= self._fence_at

    def _apply_locked(self, run: Mapping[str, ProcessSpec]) -> None:
        if dict(run) == self.applied:
            return
        added = sorted(set(run) - set(self.applied))
        removed = sorted(set(self.applied) - set(run))
        message = f"fleet share of {self.node}" + (f": +{' +'.join(added)}" if added else "") + (
            f" -{' -'.join(removed)}" if removed else "")
        specs = list(run.values())
        self.call(lambda r: self.ops.sync_apply(OWNER, specs, prune=True, git_commit="", paths=[],
                                                message=message))
        self.applied = dict(run)
        self.status_dirty = True

    def _publish(self) -> None:
        """The status of what runs here, under the lease; written only when it changed."""
        if not self.status_dirty:
            return
        self.status_dirty = False
        keys = set(self.applied)
        objects = self.call(lambda r: self.ops.objects({}))["objects"]
        values: dict[str, bytes] = {}
        for document in objects:
            if document["key"] not in keys:
                continue
            namespace, name = document["namespace"], document["name"]
            labels = document.get("labels") or {}
            env = dict(self.applied[document["key"]].env)
            values[status_key(self.node, namespace, name)] = json.dumps({
                "node": self.node, "key": document["key"], "mode": labels.get(placement.MODE_LABEL, "Each"),
                "state": document["state"], "replicas": document["replicas"], "restarts": document["restarts"],
                "pids": [r["pid"] for r in document["replica_status"] if r["pid"] is not None],
                "fencingToken": int(env[placement.FENCING_VARIABLE]) if placement.FENCING_VARIABLE in env
                else None}, sort_keys=True).encode()
        for key, value in values.items():
            if self.published.get(key) != value:
                self._etcd.put(key, value, lease=self.lease)
                self.published[key] = value
        for key in [k for k in self.published if k not in values]:
            self._etcd.delete(key)
            del self.published[key]

    # -- etcd lost, and the self-fence ------------------------------------------------------------

    def _unreachable(self, why: str) -> None:
        if self.reachable is not False:
            self.reachable = False
            self._say(EventType.ETCD_UNREACHABLE, "", f"etcd unreachable: {why[:500]}; what runs here goes on "
                      + ("(mode One processes stop "
                         f"{self.ttl - self.margin:g} s after the last keepalive)" if self._singletons() else ""))
        if self._watch is not None:
            self._watch.stop()
            self._watch = None

    def _singletons(self) -> list[str]:
        return sorted(set(self.applied) - set(placement.fenced(self.applied)))

    def _arm_fence(self, sent: float) -> None:
        with self._fence:
            self._fence_at = sent + self.ttl - self.margin
            self._fence.notify_all()

    def _fence_clock(self) -> None:
        """Waits for the self-fence deadline (moved on by each keepalive that succeeds) and fences at it."""
        with self._fence:
            while not self._stopping.is_set():
                at = self._fence_at
                now = time.monotonic()
                if at is not None and now >= at:
                    self._fence_at = None
                    self._fence.release()
                    try:
                        self._fence_now(now - (at - self.ttl + self.margin))
                    finally:
                        self._fence.acquire()
                    continue
                self._fence.wait(None if at is None else at - now)

    def _fence_now(self, silent: float) -> None:
        with self._share_lock:
            singletons = self._singletons()
            if not singletons:
                return
            kept = placement.fenced(self.applied)
            specs = list(kept.values())
            try:
                self.call(lambda r: self.ops.sync_apply(OWNER, specs, prune=True, git_commit="", paths=[],
                                                        message=f"fenced: etcd not reached for {silent:.1f} s"))
            except Exception as error:  # noqa: BLE001 - tried again at once: a singleton must not outlive its lease
                self._say(EventType.FENCED, "", f"self-fence failed, trying again: {error}")
                with self._fence:
                    if self._fence_at is None:
                        self._fence_at = time.monotonic() + 0.2
                return
            self.applied = kept
            self.fenced = True
        for key in singletons:
            self._say(EventType.FENCED, key, f"stopped: etcd not reached for {silent:.1f} s, so its election may "
                      f"pass to another node once this node's lease expires ({self.ttl} s)")

    def _say(self, kind: EventType, key: str, message: str) -> None:
        self.emit(Event(self.wall(), kind, key, message))


def _json(value: bytes) -> dict[str, Any]:
    if len(value) > MAX_SPEC_BYTES:
        return {}
    try:
        loaded = json.loads(value)
    except (ValueError, RecursionError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _object_of(claim: str) -> str:
    """claims/NS/NAME/SLOT -> NS/NAME."""
    return "/".join(claim[len(CLAIMS):].split("/")[:2])


__all__ = ["MEMBERS", "OWNER", "FleetAgent", "fence_margin"]
