"""Fleet mode (design/fleet.md): the agent that keeps this node's share of the fleet's desired state running.

The desired state of the fleet lives in etcd (core/fleet.py's layout); each node's agent decides its own
share (planning/placement.py) and applies it to the local engine as the owner "fleet" (the same path a
GitSync takes: Operations.sync_apply), so the engine, its store and its adoption are those of a single host.
Two threads:
- `fleet-lease` keeps the node's lease (TTL --lease-ttl): a keepalive every 0.4 TTL (sooner for a short
  TTL, so that a retry still fits before the self-fence), again after a short pause when one fails; a daemon restarted within the lease resumes it from the
  store (no failover, no duplicate); a lease found expired is replaced and the node registered again. It is
  also the self-fence clock: a slow pass of the other thread cannot cost the lease or delay the fence.
- `fleet` makes the passes: one range of the whole prefix (one revision: specs, nodes and claims agree), the
  share, the claims it takes (a txn create bound to the lease) and gives back, the apply when the share
  changed, and the status of what runs here (under the lease, written when it changed). A watch of
  [claims/, status/) starts a pass on any change of specs, nodes or claims (another node's status does
  not), as does any change of what runs here; without a live watch a pass runs every retry interval, with
  one every RESYNC_SECONDS (and when a lost node's grace ends), so an idle node costs little.
etcd unreachable changes nothing that runs (fleet's #1181, #1186, #1289): the last share stays applied and
converged. Only mode One fences: when etcd has not confirmed the lease for TTL less the margin (min(3 s,
TTL/3)), measured from when the last successful keepalive was sent, it is stopped (its stop capped at half the
margin, SIGKILL after) before its lease can expire in etcd and another node can be elected. When that
keepalive was sent is stamped in the state dir, so a daemon restarted after a long stop fences at once rather
than running a singleton another node may hold by now. A spec in etcd that does not validate is refused with
an event and the last good one is kept. A GitSync of target Fleet (daemon/gitsyncs.py) is elected through the
agent (`lead`: a key under this node's lease) and writes through it (`write_synced`, every write guarded by that
election). When the daemon shuts down, the passes end at once (nothing is
claimed or applied while it stops what runs) and the lease is kept until it is revoked at the end.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
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
    SYNCS,
    FleetConfig,
    member_key,
    node_key,
    spec_key,
    status_key,
    sync_leader_key,
)
from ..core.model import ProcessSpec
from ..host.stamp import LeaseStamp, Stamp, lease_stamp
from ..manifests import codec
from ..manifests.rules import check_spec
from ..planning import placement

OWNER = "fleet"
RESYNC_SECONDS = 30.0  # a pass at least this often with a live watch (a missed event costs no more than this)
MAX_SPEC_BYTES = 1 << 20  # a fleet spec larger than this is refused (etcd's own limit is 1.5 MiB)

Call = Callable[[Callable[[Any], Any]], Any]


def fence_margin(ttl: int) -> float:
    """How long before its lease can expire a node stops its mode One processes: 3 s, less for a short TTL."""
    return min(3.0, ttl / 3)


class FleetAgent:
    def __init__(self, config: FleetConfig, ops: Any, call: Call, emit: Callable[[Event], None],
                 wall: Callable[[], float], stamp: Path | None = None, boot: str = "",
                 fence_list: Path | None = None, marker: str = "") -> None:
        self.config = config
        self.node = config.node
        self.ops = ops
        self.call = call
        self.emit = emit
        self.wall = wall
        self.ttl = config.lease_ttl
        self.retry = max(0.25, min(1.0, self.ttl / 10))  # after a failed keepalive or pass
        self.margin = fence_margin(self.ttl)
        self.request_timeout = min(2.0, max(0.3, self.ttl / 10))  # per etcd request (connect, then read)
        # A keepalive as late as still leaves a retry before the self-fence: an attempt takes up to twice the
        # request timeout, and one that could not end before the fence is not sent (host/etcd.py). 4 s at the
        # default TTL of 10 (attempts at 4 and 5 s, fenced at 7), never sooner than TTL/3 (etcd's client's
        # pace). TTL/2 was tried: a single attempt left, and a healthy node fenced itself.
        self.renew_every = max(self.ttl / 3, min(0.4 * self.ttl,
                                                 self.ttl - self.margin - 2 * self.request_timeout - self.retry))
        self.stamp = Stamp(stamp) if stamp is not None else None
        self.boot = boot
        # The fence guard (host/fenceguard.py), while this node runs a singleton that fences: it stops them
        # at their deadline if this process is killed or stopped and cannot. Needs the stamp.
        self.fence_list = fence_list if stamp is not None else None
        self.marker = marker
        self._guard: Any = None  # its subprocess.Popen
        self._guarded: dict[str, float] | None = None  # the fence list as written
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
        self._reach_lock = threading.Lock()  # reachable, said once per change by either thread
        self._wake = threading.Event()
        self._halted = threading.Event()  # no more passes (the daemon shuts down); the lease is kept
        self._stopping = threading.Event()
        # The self-fence clock: silence counts from _basis (monotonic: when the last keepalive that etcd
        # confirmed was sent); what fences was stopped up to _fenced_upto seconds of it (placement.fence_after).
        self._basis = time.monotonic()
        self._fenced_upto = -math.inf
        self._fence_pause = 0.0  # monotonic: a fence that failed is tried again from then
        self._fence_failure = ""  # why the last fence failed (said once)
        self._keeper_wake = threading.Event()  # the share changed (new deadlines), or the agent stops
        self._thread: threading.Thread | None = None
        self._keeper: threading.Thread | None = None
        self._etcd: Any = None
        self._watch: Any = None
        # GitSyncs of target Fleet (daemon/gitsyncs.py): the syncs this node leads (name -> the create revision
        # of its leader key, which guards every write), and who leads each as the last pass saw it.
        self.leading: dict[str, int] = {}
        self.sync_leaders: dict[str, str] | None = None  # (None: not looked since registering)
        self.on_sync_leaders: Callable[[dict[str, str]], None] | None = None

    # -- life cycle --------------------------------------------------------------------------------

    def start(self) -> None:
        from ..host.etcd import Etcd  # etcd3gw: imported in fleet mode only

        access = self.config.etcd
        self._etcd = Etcd(access.endpoints, timeout=self.request_timeout, ca_file=access.ca_file,
                          cert_file=access.cert_file, key_file=access.key_file, user=access.user,
                          password_file=access.password_file)
        # On the loop's thread, before the loop runs (Daemon.serve): the store and the desired state are read here.
        saved = self.ops.store.get_meta("fleet")
        state = json.loads(saved) if saved else {}
        if state.get("node") == self.node:
            self.lease = int(state.get("lease") or 0)
        self.applied = {k: s for k, s in self.ops.reconciler.desired.specs.items() if self.ops.owners.get(k) == OWNER}
        # Until etcd confirms the lease, a restarted daemon cannot know it still holds its elections: what
        # fences (adopted from the store) is fenced at its deadline from the last keepalive its stamp says
        # succeeded (at once if that is long past); mode One within the margin at the latest.
        now = time.monotonic()
        renewed = self._stamped_renewal()
        latest = now + 2 * self.margin - self.ttl  # mode One then fences `margin` from now
        self._basis = latest if renewed is None else min(renewed, latest)
        self._guard_singletons()
        self._keeper = threading.Thread(target=self._keep_lease, name="fleet-lease", daemon=True)
        self._keeper.start()
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self._thread.start()

    def _stamped_renewal(self) -> float | None:
        """When the last keepalive of this lease that succeeded was sent (monotonic), if this boot's stamp says."""
        found = lease_stamp(self.stamp.read()) if self.stamp is not None else None
        if found is None or (found.boot, found.node, found.lease) != (self.boot, self.node, self.lease) \
                or not self.lease:
            return None
        return found.sent if found.sent <= time.monotonic() else None

    def halt(self) -> None:
        """No more passes: nothing is claimed, given back or applied from now on (the daemon shuts down and
        stops what runs here); the lease is kept alive until stop()."""
        self._halted.set()
        self._wake.set()

    def stop(self, leaving: bool) -> None:
        """End the agent. `leaving` (a shutdown that stopped what runs here): the lease is revoked, so that its
        claims and status go at once and other nodes take over now rather than at its expiry."""
        self._halted.set()
        self._stopping.set()
        self._wake.set()
        self._keeper_wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._keeper is not None:
            self._keeper.join(timeout=10)
        if self._watch is not None:
            self._watch.stop()
        if self._etcd is not None:
            if leaving and self.lease:
                try:
                    self._etcd.revoke(self.lease)
                except OrchestratorError:
                    pass  # it expires by itself
            self._etcd.close()
        if self._guard is not None and leaving:
            from ..host import fenceguard

            fenceguard.end(self._guard)  # what ran here is stopped: nothing is left to guard
            self._guard = None  # (else it stays: what still runs here may outlive this process)
        if self.stamp is not None:
            self.stamp.close()

    def on_event(self, event: Event) -> None:
        """Any change of what runs here: its status is written again at the next pass. A shutdown halts."""
        if event.type is EventType.SHUTDOWN:
            self.halt()
        elif event.key and event.type in (EventType.STARTED, EventType.EXITED, EventType.PROBE_PASSED,
                                          EventType.PROBE_FAILED, EventType.SUCCEEDED, EventType.FAILED,
                                          EventType.BACKOFF, EventType.START_FAILED):
            self.status_dirty = True
            self._wake.set()

    def health(self) -> dict[str, Any]:
        return {"node": self.node, "lease": f"{self.lease:x}" if self.lease else None, "reachable": self.reachable,
                "fenced": self.fenced, "share": sorted(self.applied)}

    # -- the lease and the self-fence (thread fleet-lease) ----------------------------------------

    def _keep_lease(self) -> None:
        from ..host.etcd import EtcdError

        renew_at = time.monotonic()
        while not self._stopping.is_set():
            try:
                now = time.monotonic()
                fence_at = self._next_fence()
                if fence_at is not None and now >= fence_at:
                    self._fence_now(now - self._basis)
                    continue
                if now < renew_at:
                    self._keeper_wake.wait((renew_at if fence_at is None else min(renew_at, fence_at)) - now)
                    self._keeper_wake.clear()
                    continue
                self._renew(self._renew_deadline(now, fence_at))
                renew_at = self._basis + self.renew_every
            except EtcdError as error:
                self._unreachable(str(error))
                renew_at = time.monotonic() + self.retry
            except Exception as error:  # noqa: BLE001 - a bug must not end the lease: said, then retried
                self._say(EventType.FLEET_REFUSED, "", f"fleet lease error: {error!r}")
                renew_at = time.monotonic() + self.retry

    def _renew_deadline(self, now: float, fence_at: float | None) -> float:
        """By when a keepalive must have ended: before the next fence (a blocked keepalive must not delay it),
        and before a mode One applied meanwhile would have to fence. Past that, or while a fence that failed
        waits to be tried again, one attempt all the same: else no keepalive would be sent at all."""
        hard = fence_at if fence_at is not None and self._fence_pause <= now else math.inf
        deadline = min(hard, self._basis + self.ttl - self.margin)
        if deadline < now + 2 * self.request_timeout:
            deadline = min(now + 2 * self.request_timeout + 0.05, hard)  # (at `hard`: not sent, the fence first)
        return deadline

    def _next_fence(self) -> float | None:
        """When (monotonic) something that runs here must be fenced next, if etcd stays silent."""
        later = [after for after in placement.fence_after(self.applied, self.ttl, self.margin).values()
                 if after > self._fenced_upto]
        return max(self._basis + min(later), self._fence_pause) if later else None

    def _renew(self, fence_at: float | None) -> None:
        """One keepalive (bounded so that it ends before the fence deadline), or a new lease for an expired one."""
        etcd = self._etcd
        sent = time.monotonic()
        ttl = etcd.keepalive(self.lease, deadline=fence_at) if self.lease else -1
        if ttl <= 0:
            if self.lease:  # expired: its claims are gone, so nothing of mode One may go on running on it (a
                # Spread replica that fences is another node's only lostAfterSeconds after its node was lost)
                self._fence_now(max(time.monotonic() - self._basis, self.ttl - self.margin))
            lease = etcd.grant(self.ttl)
            self.call(lambda r: self.ops.store.set_meta("fleet", json.dumps({"node": self.node, "lease": lease})))
            self.lease = lease
            self.registered = False
            self.published = {}
        self.last_ok = sent
        self._basis = sent
        self._fenced_upto = -math.inf
        if self.stamp is not None:
            self.stamp.write(LeaseStamp(self.boot, self.node, self.lease, sent, os.getpid()).line())
        self._reached()
        if self.fenced or not self.registered:
            self.fenced = False  # the next share is applied as usual (what was fenced is claimed again)
            self._wake.set()

    def _fence_now(self, silent: float) -> None:
        """Stop what must not run after `silent` seconds without etcd (and what depends on it)."""
        with self._share_lock:
            kept = placement.fenced(self.applied, self.ttl, self.margin, silent)
            stopped = sorted(set(self.applied) - set(kept))
            if stopped and self._halted.is_set():
                stopped = []  # the daemon shuts down: it stops everything itself, and refuses an apply meanwhile
            if stopped:
                specs = list(kept.values())
                try:
                    self.call(lambda r: self.ops.sync_apply(OWNER, specs, prune=True, git_commit="", paths=[],
                                                            message=f"fenced: etcd not reached for {silent:.1f} s"))
                except Exception as error:  # noqa: BLE001 - tried again soon: a singleton must not outlive its lease
                    if str(error) != self._fence_failure:  # said once per cause, not every 0.2 s
                        self._fence_failure = str(error)
                        self._say(EventType.FENCED, "", f"self-fence failed, trying again: {error}")
                    self._fence_pause = time.monotonic() + 0.2
                    return
                self._fence_failure = ""
                self.applied = kept
                self.fenced = True
                self._guard_singletons()
            self._fenced_upto = max(self._fenced_upto, silent)
        for key in stopped:
            self._say(EventType.FENCED, key, f"stopped: etcd not reached for {silent:.1f} s, so another node may "
                      f"run it once this node's lease expires ({self.ttl} s)")

    def _singletons(self) -> dict[str, float]:
        """What runs here and fences: key -> seconds after the last keepalive when it is stopped."""
        return placement.fence_after(self.applied, self.ttl, self.margin)

    def _reached(self) -> None:
        with self._reach_lock:
            was, self.reachable = self.reachable, True
        if was is False:
            self._say(EventType.ETCD_REACHABLE, "", "etcd reached again")

    def _unreachable(self, why: str) -> None:
        with self._reach_lock:
            was, self.reachable = self.reachable, False
        if was is not False:
            self._say(EventType.ETCD_UNREACHABLE, "", f"etcd unreachable: {why[:500]}; what runs here goes on"
                      + (f" (but {', '.join(f'{k} stops {a:g} s' for k, a in sorted(self._singletons().items()))}"
                         " after the last keepalive)" if self._singletons() else ""))

    # -- the passes (thread fleet) -----------------------------------------------------------------

    def _run(self) -> None:
        from ..host.etcd import EtcdError

        while not self._halted.is_set():
            self._wake.clear()
            lease = self.lease
            wait: float | None = self.retry
            try:
                # Not before the keeper has confirmed (or granted) the lease: it wakes this thread then.
                wait = self._pass() if self.last_ok is not None else None
            except EtcdError as error:
                if self.lease == lease:  # (else: the lease was replaced under this pass; look again)
                    self._unreachable(str(error))
                    self._drop_watch()
                else:
                    wait = 0
            except OrchestratorError as error:  # the local apply refused (a port taken, a dependency): said, retried
                self._say(EventType.FLEET_REFUSED, "", f"fleet share not applied: {error}")
            except Exception as error:  # noqa: BLE001 - a bug must not end fleet mode: said, then retried
                self._say(EventType.FLEET_REFUSED, "", f"fleet agent error: {error!r}")
            if wait is None or wait > 0:
                self._wake.wait(wait)

    def _drop_watch(self) -> None:
        if self._watch is not None:
            self._watch.stop()
            self._watch = None

    def _pass(self) -> float:
        """One look at etcd and what follows from it; how long until the next look is needed unwoken (0: at
        once, a claim was taken)."""
        from ..host.etcd import EtcdError

        etcd = self._etcd
        if not self.registered:
            self._register()
        revision, kvs = etcd.range(PREFIX)
        self._reached()
        if self._watch is None or not self._watch.alive:
            self._drop_watch()
            try:
                self._watch = etcd.watch(CLAIMS, STATUS, self._wake.set, start_revision=revision + 1)
            except EtcdError:
                self._watch = None  # only a way to look sooner: the passes go on without it
        by_key = {kv.key: kv for kv in kvs}
        specs = self._specs(kv for kv in kvs if kv.key.startswith(SPECS))
        nodes = self._nodes(kv for kv in kvs if kv.key.startswith(NODES))
        if self.node not in nodes:  # our node key was deleted (by hand?): registered again before deciding
            self.registered = False
            return 0
        claims = {kv.key: placement.Claim(_json(kv.value).get("node", ""), kv.create_revision)
                  for kv in kvs if kv.key.startswith(CLAIMS)}
        self._saw_sync_leaders(kvs)
        running = _Lazy(self._running)  # asked of the loop only if a claim may be given back (an idle pass: never)
        lost = self._lost_for()
        share = placement.share(list(specs.values()), self.node, nodes, claims, running, lost=lost,
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
            return 0  # a fresh look: the claims just taken start their processes now
        self._apply(share.run)
        self._publish()
        if self._watch is None or not self._watch.alive:
            return self.retry
        return min([RESYNC_SECONDS, *placement.grace_left(specs.values(), lost)])

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
        self.sync_leaders = None  # the syncs are told who leads at the next pass, even if nobody does
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

    def _apply(self, run: Mapping[str, ProcessSpec]) -> None:
        with self._share_lock:
            # Nothing starts here that would be past its fence deadline (etcd silent since the basis).
            basis = self._basis
            kept = placement.fenced(run, self.ttl, self.margin, time.monotonic() - basis)
            if len(kept) < len(run):
                # Held back until the keeper's next confirmed keepalive, which then wakes the passes (or did
                # already, between the look at the basis and this flag: then the passes look again at once).
                self.fenced = True
                if self._basis != basis:
                    self._wake.set()
            self._apply_locked(kept)

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
        self._guard_singletons()

    def _guard_singletons(self) -> None:
        """Tell the fence guard which singletons are this node's (the fence list, replaced whole) and make
        sure one runs while there are any; called with the share lock held, or before the threads start."""
        self._keeper_wake.set()  # new deadlines, maybe sooner
        if self.fence_list is None:
            return
        from ..host import fenceguard

        fencing = self._singletons()
        if fencing != self._guarded:
            try:
                fenceguard.write_list(self.fence_list, fencing)
                self._guarded = fencing
            except OSError as error:
                self._say(EventType.FLEET_REFUSED, "", f"the fence guard's list could not be written: {error}")
        if self._guard is not None and self._guard.poll() is not None:
            fenceguard.end(self._guard)  # it ended (another agent's stamp?): reaped, and started again
            self._guard = None
        if fencing and self._guard is None and self.stamp is not None:
            try:
                self._guard = fenceguard.start(str(self.stamp.path), str(self.fence_list), self.marker,
                                               self.ttl, self.margin)
            except OSError as error:
                self._say(EventType.FLEET_REFUSED, "", f"the fence guard could not be started: {error}")

    def _publish(self) -> None:
        """The status of what runs here, under the lease; written only when it changed."""
        if not self.status_dirty:
            return
        self.status_dirty = False  # (before reading: a change meanwhile makes it dirty again)
        try:
            self._write_status()
        except BaseException:
            self.status_dirty = True  # not all written: again at the next pass
            raise

    def _write_status(self) -> None:
        applied = self.applied  # one snapshot: the keeper may fence (replace it) meanwhile
        objects = self.call(lambda r: self.ops.objects({}))["objects"]
        values: dict[str, bytes] = {}
        for document in objects:
            if document["key"] not in applied:
                continue
            namespace, name = document["namespace"], document["name"]
            labels = document.get("labels") or {}
            env = dict(applied[document["key"]].env)
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

    # -- GitSyncs of target Fleet (their workers' threads) -----------------------------------------

    def _saw_sync_leaders(self, kvs: Any) -> None:
        """Who leads each fleet GitSync, from a pass's range: the syncs are told when it changed (a leader key
        gone with its node's lease: another node may take the sync over now, not at its next look)."""
        leaders = {kv.key[len(SYNCS):].rsplit("/", 1)[0]: str(_json(kv.value).get("node", ""))
                   for kv in kvs if kv.key.startswith(SYNCS) and kv.key.endswith("/leader")}
        if leaders != self.sync_leaders:
            self.sync_leaders = leaders
            if self.on_sync_leaders is not None:
                self.on_sync_leaders(leaders)

    def lead(self, sync: str) -> str | None:
        """Take or keep the election of the GitSync `sync` (its leader key, bound to this node's lease): the
        node that leads it now (this one's name while it does); None before this node is registered.
        EtcdError when etcd does not answer."""
        if self._etcd is None or not self.lease or not self.registered:
            return None
        key = sync_leader_key(sync)
        made, kv = self._etcd.create(key, json.dumps({"node": self.node}).encode(), lease=self.lease)
        if made or kv is not None and kv.lease == self.lease:
            revision = kv.create_revision if kv is not None else 0
            if self.leading.get(sync) != revision:
                self.leading[sync] = revision
                self._say(EventType.FLEET_CLAIMED, f"gitsync/{sync}", f"{self.node} leads gitsync/{sync} "
                          f"(election revision {revision})")
            return self.node
        self.leading.pop(sync, None)
        return str(_json(kv.value).get("node") or "another node") if kv is not None else None

    def resign(self, sync: str) -> None:
        """Give up the election of `sync` (removed, or its target changed here): another node may take it now."""
        revision = self.leading.pop(sync, None)
        if revision is not None and self._etcd is not None:
            from ..host.etcd import EtcdError

            try:
                self._etcd.delete(sync_leader_key(sync), guard=(sync_leader_key(sync), revision))
            except EtcdError:
                pass  # it goes with the lease

    def write_synced(self, sync: str, commit: str, specs: list[ProcessSpec], prune: bool) -> dict[str, Any]:
        """Write what a commit of the GitSync `sync` holds to the fleet's specs, as `apply --fleet` does (each
        spec key compared, created or replaced only while it is as read), owned by the sync: with `prune`, its
        keys the commit no longer holds are deleted, else named in prune_skipped. Every write is guarded by
        this node's election of the sync, so a node that lost it (its lease expired in a partition) writes
        nothing. UserError when it does not lead the sync, or for a key another GitSync owns."""
        from ..core.errors import UserError

        etcd = self._etcd
        owner = f"gitsync/{sync}"
        revision = self.leading.get(sync)
        if etcd is None or revision is None:
            raise UserError(f"{self.node} does not lead {owner}: nothing written")
        guard = (sync_leader_key(sync), revision)
        _, kvs = etcd.range(SPECS)
        current = {kv.key: kv for kv in kvs}
        results: list[dict[str, Any]] = []
        written: set[str] = set()
        for spec in specs:
            key = spec_key(spec.namespace, spec.name)
            written.add(key)
            document = json.loads(json.dumps(codec.spec_to_document(spec)))
            record = json.dumps({"document": document, "source": owner, "owner": owner, "commit": commit,
                                 "appliedBy": f"{owner}@{self.node}", "appliedAt": self.wall()},
                                sort_keys=True).encode()
            result = self._write_owned(key, document, record, current.get(key), owner, guard)
            results.append({"key": spec.key, "kind": spec.kind.value, "result": result})
        skipped = []
        for key, kv in sorted(current.items()):
            if key in written or _json(kv.value).get("owner") != owner:
                continue
            if not prune:
                skipped.append(key[len(SPECS):])
            elif etcd.delete(key, kv.mod_revision, guard=guard):
                document = _json(kv.value).get("document")
                kind = document.get("kind") if isinstance(document, dict) else None
                results.append({"key": key[len(SPECS):], "kind": str(kind or "Process"), "result": "pruned"})
            else:
                self._check_lead(sync, guard)  # (else: changed or deleted meanwhile by another writer: kept)
        header = etcd.range(sync_leader_key(sync))[0]
        return {"results": results, "prune_skipped": skipped, "revision": header}

    def _write_owned(self, key: str, document: Any, record: bytes, kv: Any, owner: str, guard: tuple[str, int],
                     ) -> str:
        from ..core.errors import UserError
        from ..host.etcd import write_record

        def same(found: Any) -> bool:
            value = _json(found.value)
            held_by = value.get("owner")
            if held_by not in (None, owner):
                raise UserError(f"{key[len(SPECS):]} is owned by {held_by} in the fleet: {owner} does not write it")
            return held_by == owner and value.get("document") == document

        result = write_record(self._etcd, key, record, kv, same, 3, guard=guard,
                              lost=lambda: self._check_lead(owner.split("/", 1)[1], guard))
        if result is None:
            raise UserError(f"{key[len(SPECS):]}: changed by another writer meanwhile: tried again at the next pass")
        return result

    def _check_lead(self, sync: str, guard: tuple[str, int]) -> None:
        from ..core.errors import UserError

        kv = self._etcd.get(guard[0])
        if kv is None or kv.create_revision != guard[1]:
            self.leading.pop(sync, None)
            raise UserError(f"{self.node} no longer leads gitsync/{sync} (its election moved on): nothing more "
                            "written")

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


class _Lazy(Mapping[str, int]):
    """A mapping read from `load` the first time it is looked into (then kept)."""

    def __init__(self, load: Callable[[], dict[str, int]]) -> None:
        self._load = load
        self._data: dict[str, int] | None = None

    def _loaded(self) -> dict[str, int]:
        if self._data is None:
            self._data = self._load()
        return self._data

    def __getitem__(self, key: str) -> int:
        return self._loaded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())


def _object_of(claim: str) -> str:
    """claims/NS/NAME/SLOT -> NS/NAME."""
    return "/".join(claim[len(CLAIMS):].split("/")[:2])


__all__ = ["MEMBERS", "OWNER", "FleetAgent", "fence_margin"]
