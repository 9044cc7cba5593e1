"""The daemon's alerting: the AlertRules and Notifiers it keeps, the state of every alert, the notification
groups, silences, and the outbox that delivers (design/alerts.md §A).

When: an evaluation runs on the reconciler's thread (so it reads one consistent view of specs and records)
after each sampling pass, soon after a replica's state changes (an exit, a start, a probe), and at the next
time a decision is due (a pending alert's `for`, a group's wait or interval). With no rule nothing runs; with
rules but nothing pending no timer is set (an idle daemon does not wake for alerting).

What: planning/alert_conditions.py tells each selected replica's breach and value, planning/alerts.py steps
each alert's state (inactive, pending, firing, resolved: each transition is an event), mutes the inhibited
(a firing `down` mutes the other rules of its process) and the silenced, and decides per (notifier, rule)
group what to send. A notification goes to the outbox, saved in the store before it is sent; one sender
thread delivers it (host/notifiers.py), retrying with backoff (1 s doubling to 5 min) for up to 24 h, so a
receiver that is down loses nothing and the reconciler never waits for one.

Kept across restarts (store meta): rules, notifiers, alert and group states (a firing alert that was
notified is not notified again after a restart; pending ones keep their time when the outage was short:
planning/alerts.py restore), silences and the outbox. Unexpected restarts within a rule's window are counted
from each replica record's `restarts` (which an apply, a `restart` or a scale does not increase), as this
daemon saw them rise: after a daemon restart the window starts empty.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ..core.alerting import AlertRuleSpec, NotifierSpec
from ..core.errors import Location, ManifestError, Problem, StoreBusy
from ..core.events import Event, EventType
from ..core.model import ReplicaId
from ..host.metrics import Sampler
from ..planning import alerts as plan
from ..planning.alert_conditions import Replica, Usage, breaching, judge, selection, snapshot
from . import kept
from .control import Conflict, NotFound

Post = Callable[[Callable[[Any], None]], None]  # run on the reconciler's thread

EVALUATE_AFTER_EVENT_SECONDS = 0.05  # state changes come in bursts (a stop, an exit, a start): one pass for them
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 300.0
GIVE_UP_SECONDS = 24 * 3600.0
MAX_OUTBOX = 1000  # notifications waiting at most; past that the oldest is given up (an event says so)
MAX_SILENCES = 1000
MAX_MATCHERS = 50  # labels one silence matches
HISTORY_TYPES = ("AlertPending", "AlertFiring", "AlertResolved", "AlertSilenced", "NotificationSent",
                 "NotificationFailed")
STATE_CHANGES = {EventType.EXITED, EventType.STARTED, EventType.BACKOFF, EventType.FAILED, EventType.SUCCEEDED,
                 EventType.PROBE_FAILED, EventType.PROBE_PASSED, EventType.START_FAILED, EventType.APPLIED}
EXEC_ENV_STATUS = "ORCH_ALERT_STATUS"


class Alerting:
    def __init__(self, store: Any, emit: Callable[[Event], None], wall: Callable[[], float], sampler: Sampler,
                 post: Post) -> None:
        self.store = store
        self.emit = emit
        self.wall = wall
        self.sampler = sampler
        self.post = post
        self.rules: dict[str, AlertRuleSpec] = {}
        self.notifiers: dict[str, NotifierSpec] = {}
        self.alerts: dict[str, plan.AlertState] = {}  # fingerprint -> state
        self.groups: dict[tuple[str, str], plan.GroupState] = {}  # (notifier key, rule key) -> state
        self.silences: list[plan.Silence] = []
        self._policies: dict[str, plan.AlertPolicy] = {}
        # rule -> the keys it watches, for the desired state below; rules that watch the same keys share one tuple
        self._selected: dict[str, tuple[str, ...]] = {}
        self._selected_for: Any = None
        self._restarts: dict[ReplicaId, tuple[int, deque[float]]] = {}  # last `restarts` seen, when each rose
        self._timer: threading.Timer | None = None
        self._timer_at: float | None = None
        self._posted = False
        self._guard = threading.Lock()  # _posted and the timer: set from the emitting threads
        self.outbox = Outbox(store, emit, wall, lambda key: self.notifiers.get(key))

    # -- life cycle (the loop's thread) -------------------------------------------------------------

    def restore(self) -> None:
        from ..manifests.alerting import kept_from_document

        now = self.wall()
        for meta in ("alert_rules", "notifiers"):
            for document in self.store.json_meta(meta, []):
                try:
                    spec = kept_from_document(document, where=f"<state: {meta}>")
                except ManifestError as error:  # a document this release no longer reads: said, not fatal
                    self._event(EventType.INTERNAL_ERROR, "", f"a kept {meta[:-1]} is not read: {error}")
                    continue
                if isinstance(spec, AlertRuleSpec):
                    self.rules[spec.key] = spec
                else:
                    self.notifiers[spec.key] = spec
        self._policies = {key: plan.policy_from_spec(rule) for key, rule in self.rules.items()}
        saved = self.store.json_meta("alerts", {})
        states = [_state_from_json(item) for item in saved.get("states", [])]
        self.alerts = {s.fingerprint: s for s in plan.restore(states, float(saved.get("saved_at", now)), now)}
        self.groups = {(g["notifier"], g["rule"]): _group_from_json(g) for g in saved.get("groups", [])}
        self.silences = [plan.Silence(**s) for s in saved.get("silences", []) if s.get("until", 0) > now]
        self.outbox.restore()

    def close(self) -> None:
        with self._guard:
            if self._timer is not None:
                self._timer.cancel()
        self.outbox.close()

    def on_event(self, event: Event) -> None:
        """A replica changed state: evaluate soon (once for a burst), if any rule is kept."""
        if self.rules and event.type in STATE_CHANGES:
            self._evaluate_at(time.monotonic() + EVALUATE_AFTER_EVENT_SECONDS)

    def after_sampling(self) -> None:
        """The sampler's pass ended (its thread): evaluate on the loop's."""
        if self.rules:
            self._evaluate_at(time.monotonic())

    # -- kept objects (the loop's thread, through the API's call) ----------------------------------

    def put(self, specs: list[AlertRuleSpec | NotifierSpec], dry_run: bool = False) -> list[dict[str, Any]]:
        """Keep these rules and notifiers (from one apply): created, configured or unchanged each. A rule that
        names a notifier neither kept nor among them is refused, the whole lot with it (ManifestError)."""
        notifiers = {**self.notifiers, **{s.key: s for s in specs if isinstance(s, NotifierSpec)}}
        problems = [Problem(rule.location or Location("<request>"), "spec.notify",
                            f"no Notifier {name}: apply it too (kind: Notifier), or name one the daemon keeps")
                    for rule in specs if isinstance(rule, AlertRuleSpec)
                    for name in rule.notify if name not in notifiers]
        if problems:
            raise ManifestError(problems)
        results = []
        for spec in specs:  # in the order given
            results += kept.put(self.rules if isinstance(spec, AlertRuleSpec) else self.notifiers, [spec], _key,
                                _kind, dry_run)
        if not dry_run and kept.changed(results):
            self._policies = {key: plan.policy_from_spec(rule) for key, rule in self.rules.items()}
            self._selected_for = None
            self._save_kept()
            self._evaluate_at(time.monotonic())
        return results

    def prune(self, applied: set[str], paths: list[str], dry_run: bool) -> list[dict[str, Any]]:
        """Forget the rules and notifiers read from under `paths` that this apply no longer has (apply
        --prune, as for processes)."""
        results = []
        kinds: tuple[tuple[str, dict[str, Any]], ...] = (("AlertRule", self.rules), ("Notifier", self.notifiers))
        for kind, specs in kinds:
            def keep(key: str, kind: str = kind) -> bool:
                return f"{kind.lower()}/{key}" in applied

            results += kept.prune(specs, kind, keep, paths, dry_run)
        if results and not dry_run:
            self._policies = {key: plan.policy_from_spec(rule) for key, rule in self.rules.items()}
            self._selected_for = None
            self._save_kept()
            self._evaluate_at(time.monotonic())
        return results

    def silence(self, body: dict[str, Any]) -> dict[str, Any]:
        """A silence of matching alerts until `for` seconds from now: `rule` (namespace/name), `process`
        (name or namespace/name), or `matchers` (labels)."""
        now = self.wall()
        seconds = float(body.get("for_seconds") or 0)
        if not 0 < seconds <= 365 * 86400:
            raise ValueError("for_seconds: a silence lasts more than 0 seconds and at most a year")
        given = body.get("matchers") or {}
        if not isinstance(given, dict) or len(given) > MAX_MATCHERS:
            raise ValueError(f"matchers: at most {MAX_MATCHERS} label: value pairs")
        matchers: dict[str, str] = {str(k)[:256]: str(v)[:1024] for k, v in given.items()}
        if body.get("rule"):
            matchers["alertname"] = self._rule_key(str(body["rule"]))
        if body.get("process"):
            name = str(body["process"])
            namespace, _, process = name.rpartition("/")
            matchers["process"] = process
            if namespace:
                matchers["namespace"] = namespace
        if not matchers:
            raise ValueError("a silence needs --rule, --process or matchers: one that matches everything is refused")
        if len(self.silences) >= MAX_SILENCES:
            raise Conflict(f"{MAX_SILENCES} silences are in force already: let some expire first")
        made = plan.Silence(id=f"s{int(now * 1000):x}", matchers=matchers, until=now + seconds,
                            reason=str(body.get("reason") or "")[:500], by=str(body.get("by") or "")[:100])
        self.silences.append(made)
        shown = ",".join(f"{k}={v}" for k, v in sorted(matchers.items()))
        self._event(EventType.ALERT_SILENCED, "", f"silence {made.id} of {shown} for {seconds:g}s"
                    + (f": {made.reason}" if made.reason else ""))
        self._save_state(now)
        self._evaluate_at(time.monotonic())
        return {"silence": _silence_json(made)}

    def unsilence(self, body: dict[str, Any]) -> dict[str, Any]:
        ident = str(body.get("id") or "")
        remaining = [s for s in self.silences if s.id != ident]
        if len(remaining) == len(self.silences):
            raise NotFound(f"no silence {ident}")
        self.silences = remaining
        self._event(EventType.ALERT_SILENCED, "", f"silence {ident} ended")
        self._save_state(self.wall())
        self._evaluate_at(time.monotonic())
        return {"removed": ident}

    def listing(self) -> dict[str, Any]:
        now = self.wall()
        muted = self._muted(now)
        return {
            "alerts": [_alert_json(a, a.fingerprint in muted) for a in sorted(
                self.alerts.values(), key=lambda a: (a.rule, sorted(a.labels.items())))
                if a.state != plan.AlertStatus.RESOLVED],
            "rules": [{"key": r.key, "condition": r.condition, "severity": r.severity, "notify": list(r.notify)}
                      for r in sorted(self.rules.values(), key=lambda r: r.key)],
            "notifiers": [{"key": n.key, "kind": n.kind, "outbox": self.outbox.waiting(n.key)}
                          for n in sorted(self.notifiers.values(), key=lambda n: n.key)],
            "silences": [_silence_json(s) for s in self.silences if s.until > now],
        }

    def test(self, name: str) -> dict[str, Any]:
        """Deliver a test notification through NAME now, outside the outbox (the caller waits for the
        outcome; nothing is retried)."""
        key = _resolve(name, self.notifiers, "Notifier")
        notifier = self.notifiers[key]
        now = self.wall()
        labels = {"alertname": "orchestrator/test", "severity": "info", "namespace": notifier.namespace}
        alert = plan.AlertState(fingerprint=plan.fingerprint("orchestrator/test", labels), rule="orchestrator/test",
                                labels=labels, state=plan.AlertStatus.FIRING, active_at=now, fired_at=now,
                                annotations={"summary": f"a test notification of Notifier {key}"})
        body = _body(notifier, plan.Notification(rule="orchestrator/test", alerts=(alert,), at=now), now)
        return self.outbox.deliver_now(notifier, body)

    def _rule_key(self, name: str) -> str:
        return _resolve(name, self.rules, "AlertRule")

    # -- evaluation (the loop's thread) ------------------------------------------------------------

    def _evaluate_at(self, at: float) -> None:
        """Have an evaluation run on the loop at monotonic `at` (or sooner, if one is due sooner)."""
        with self._guard:
            if at <= time.monotonic():
                if not self._posted:
                    self._posted = True
                    self.post(lambda r: self.evaluate(r))
                return
            if self._timer_at is not None and self._timer_at <= at and self._timer is not None \
                    and self._timer.is_alive():
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = at
            self._timer = threading.Timer(at - time.monotonic(), lambda: self._evaluate_at(0.0))
            self._timer.daemon = True
            self._timer.start()

    def evaluate(self, reconciler: Any) -> None:
        """One pass over every rule (the loop's thread): each rule scans its replicas for breaches; only
        those breaching, and those that have an alert, are stepped (alert_conditions.py)."""
        with self._guard:
            self._posted = False
        now = self.wall()
        self._count_restarts(reconciler.records, now)
        changed = False
        wake: list[float] = []
        def latest(rid: ReplicaId) -> Usage | None:
            sample = self.sampler.latest(rid)
            return None if sample is None else Usage(sample.cpu_percent, sample.memory_bytes)

        if reconciler.desired is not self._selected_for:  # which processes each rule watches: anew per change
            shared: dict[tuple[str, ...], tuple[str, ...]] = {}
            self._selected = {}
            for key, rule in self.rules.items():
                keys = tuple(selection(rule, reconciler.desired.specs))
                self._selected[key] = shared.setdefault(keys, keys)
            self._selected_for = reconciler.desired
        watched = {key for keys in self._selected.values() for key in keys}
        table = snapshot(reconciler.desired.specs, reconciler.records, reconciler.waiting, latest, watched,
                         {rule.condition for rule in self.rules.values()})
        alerted: dict[str, dict[ReplicaId, str]] = {}  # rule -> the replicas that have an alert -> its fingerprint
        for fingerprint, state in self.alerts.items():
            if state.state != plan.AlertStatus.RESOLVED:
                alerted.setdefault(state.rule, {})[_replica_of(state)] = fingerprint
        by_key: dict[str, list[Replica]] = {}
        for replica in table.values():
            by_key.setdefault(replica.rid.key, []).append(replica)
        gathered: dict[int, list[Replica]] = {}  # id of a shared selection -> its replicas (built once a pass)
        for key, rule in self.rules.items():
            policy = self._policies[key]
            restarts = self._restarts_within(rule, now) if rule.condition == "restarts" else {}
            chosen = self._selected.get(key, ())
            replicas = gathered.get(id(chosen))
            if replicas is None:
                replicas = gathered[id(chosen)] = [r for process in chosen for r in by_key.get(process, ())]
            found = breaching(rule, replicas, restarts)
            have = alerted.pop(key, {})
            for rid, value in found.items():
                if rid not in have:  # a new breach: its alert begins (pending)
                    labels = plan.alert_labels(policy, _instance(rid, table[rid].spec.name))
                    changed |= self._step(policy, plan.fingerprint(policy.name, labels), labels, True, value, now)
            for rid, fingerprint in have.items():
                verdict = (True, found[rid]) if rid in found else judge(rule, table.get(rid), restarts)
                if isinstance(verdict, str):  # UNJUDGED: it runs but has no sample yet (just started, or adopted
                    continue  # after a restart): no news
                changed |= self._step(policy, fingerprint, dict(self.alerts[fingerprint].labels), verdict[0],
                                      verdict[1], now)
        for rule_key, have in alerted.items():  # rules no longer kept: their series end
            gone = self._policies.get(rule_key) or plan.AlertPolicy(name=rule_key)
            for fingerprint in have.values():
                changed |= self._step(gone, fingerprint, dict(self.alerts[fingerprint].labels), None, None, now)
        for state in self.alerts.values():  # a pending `for`, a keepFiringFor, to be decided at a time
            timing = self._policies.get(state.rule)
            if timing is None:
                continue
            if state.state == plan.AlertStatus.PENDING and timing.consecutive is None:
                due_at: float | None = state.active_at + timing.for_seconds
            elif state.state == plan.AlertStatus.FIRING and timing.keep_firing_for and state.last_true_at:
                due_at = state.last_true_at + timing.keep_firing_for
            else:
                due_at = None
            if due_at is not None and due_at > now:  # past: decided by the next sample (not a loop now)
                wake.append(due_at)
        muted = self._muted(now)
        by_rule: dict[str, list[plan.AlertState]] = {}
        for state in self.alerts.values():
            by_rule.setdefault(state.rule, []).append(state)
        for key, rule in self.rules.items():
            alerts = by_rule.get(key, [])
            for name in rule.notify:
                notifier = self.notifiers.get(name)
                if notifier is None:
                    continue
                group = self.groups.get((name, key), plan.GroupState())
                notification, after, at = plan.due(_group_policy(notifier), group, alerts, now, muted)
                if after != group:
                    self.groups[(name, key)] = after
                    changed = True
                if notification is not None:
                    self.outbox.add(notifier, _body(notifier, notification, now), plan.group_key(name, key), now,
                                    notification.status.value, len(notification.alerts))
                if at is not None:
                    wake.append(at)
        for fingerprint, state in list(self.alerts.items()):  # resolved, and told (or never to be): forgotten
            if state.state == plan.AlertStatus.RESOLVED and not any(g.holds(fingerprint) for g in self.groups.values()):
                del self.alerts[fingerprint]
                changed = True
        for pair in [p for p in self.groups if p[1] not in self.rules or p[0] not in self.notifiers]:
            del self.groups[pair]
            changed = True
        self.silences = [s for s in self.silences if s.until > now]
        if changed:
            self._save_state(now)
        if wake:
            self._evaluate_at(time.monotonic() + max(0.0, min(wake) - now) + 0.001)

    def _step(self, policy: plan.AlertPolicy, fingerprint: str, labels: dict[str, str], breaching: bool | None,
              value: float | None, now: float) -> bool:
        previous = self.alerts.get(fingerprint)
        state, transition = plan.step(policy, previous, labels, breaching, value, now)
        if state is None:
            if previous is None:
                return False
            del self.alerts[fingerprint]
            return True
        self.alerts[fingerprint] = state
        if transition is not None:
            self._transition(state, transition)
        return state != previous

    def _transition(self, state: plan.AlertState, transition: plan.Transition) -> None:
        kinds = {plan.Transition.PENDING: EventType.ALERT_PENDING, plan.Transition.FIRING: EventType.ALERT_FIRING,
                 plan.Transition.RESOLVED: EventType.ALERT_RESOLVED}
        labels = state.labels
        key = f"{labels.get('namespace')}/{labels.get('process')}" if labels.get("process") else ""
        replica = int(labels["replica"]) if str(labels.get("replica", "")).isdigit() else None
        value = plan.format_value(state.value) if transition != plan.Transition.RESOLVED else ""
        summary = state.annotations.get("summary") or ""
        self.emit(Event(self.wall(), kinds[transition], key,
                        f"{state.rule} {transition.value.lower()}" + (f" (value {value})" if value else "")
                        + (f": {summary}" if summary and transition != plan.Transition.RESOLVED else ""),
                        replica=replica))

    def _muted(self, now: float) -> set[str]:
        downs = {key for key, rule in self.rules.items() if rule.condition == "down"}
        inhibitors = {key: rule.inhibited_by for key, rule in self.rules.items() if rule.inhibited_by}
        muted = set(plan.inhibited(self.alerts.values(), downs, inhibitors))
        muted |= {a.fingerprint for a in self.alerts.values() if plan.silenced(a, self.silences, now) is not None}
        return muted

    def _count_restarts(self, records: Mapping[ReplicaId, Any], now: float) -> None:
        """Note when each replica's count of unexpected restarts rose (since this daemon began watching)."""
        if not any(rule.condition == "restarts" for rule in self.rules.values()):
            self._restarts.clear()
            return
        horizon = max((rule.within_seconds or 0) for rule in self.rules.values() if rule.condition == "restarts")
        for rid, record in records.items():
            count = record.restarts
            seen = self._restarts.get(rid)
            if seen is None or count < seen[0]:  # first seen, or a new spec began a new record
                self._restarts[rid] = (count, deque())
                continue
            times = seen[1]
            times.extend([now] * min(count - seen[0], 1000))
            while times and times[0] < now - horizon:
                times.popleft()
            self._restarts[rid] = (count, times)
        for rid in [rid for rid in self._restarts if rid not in records]:
            del self._restarts[rid]

    def _restarts_within(self, rule: AlertRuleSpec, now: float) -> dict[ReplicaId, int]:
        """The replicas with unexpected restarts within the rule's window, and how many."""
        since = now - (rule.within_seconds or 0)
        counts = {rid: sum(1 for at in times if at >= since) for rid, (_, times) in self._restarts.items() if times}
        return {rid: n for rid, n in counts.items() if n}

    # -- persistence ---------------------------------------------------------------------------------

    def _save_kept(self) -> None:
        from ..manifests.alerting import alert_rule_to_document, notifier_to_document

        self.store.set_meta("alert_rules", json.dumps([alert_rule_to_document(r) for r in self.rules.values()]))
        self.store.set_meta("notifiers", json.dumps([notifier_to_document(n) for n in self.notifiers.values()]))

    def _save_state(self, now: float) -> None:
        try:
            self._write_state(now)
        except StoreBusy:
            pass  # another program holds the database: the state is in memory, saved with the next change

    def _write_state(self, now: float) -> None:
        self.store.set_meta("alerts", json.dumps({
            "saved_at": now,
            "states": [_state_json(s) for s in self.alerts.values()],
            "groups": [{"notifier": n, "rule": r, **_group_json(g)} for (n, r), g in self.groups.items()],
            "silences": [_silence_json(s) for s in self.silences],
        }))

    def _event(self, kind: EventType, key: str, message: str) -> None:
        self.emit(Event(self.wall(), kind, key, message))


class Outbox:
    """Notifications not delivered yet, saved in the store (meta "outbox") before they are sent, and one
    thread that hands them out in order of due time (a thread each to deliver, one at a time per notifier): it
    sleeps until the next one is due (or one is added or delivered), never polls, and ends when nothing waits.
    A failed delivery is tried again after 1 s, doubling to 5 min, until it is 24 h old."""

    def __init__(self, store: Any, emit: Callable[[Event], None], wall: Callable[[], float],
                 notifier: Callable[[str], NotifierSpec | None]) -> None:
        self.store = store
        self.emit = emit
        self.wall = wall
        self.notifier = notifier
        self.entries: list[dict[str, Any]] = []
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._busy: set[str] = set()  # notifiers with a delivery under way (one at a time each)

    def restore(self) -> None:
        self.entries = [e for e in self.store.json_meta("outbox", []) if isinstance(e, dict) and "body" in e]
        if self.entries:
            self._start()

    def waiting(self, notifier: str) -> int:
        with self._wake:
            return sum(1 for e in self.entries if e["notifier"] == notifier)

    def add(self, notifier: NotifierSpec, body: bytes, group: str, now: float, status: str, count: int) -> None:
        entry = {"id": f"{int(now * 1e6):x}-{len(self.entries)}", "notifier": notifier.key, "group": group,
                 "status": status, "alerts": count, "body": body.decode(), "created": now, "due": now,
                 "attempts": 0, "error": ""}
        with self._wake:
            self.entries.append(entry)
            dropped = self.entries[:-MAX_OUTBOX] if len(self.entries) > MAX_OUTBOX else []
            del self.entries[:len(dropped)]
            self._save()
            self._wake.notify_all()
        for old in dropped:
            self._said(EventType.NOTIFICATION_FAILED, old, f"given up: more than {MAX_OUTBOX} notifications wait")
        self._start()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def deliver_now(self, notifier: NotifierSpec, body: bytes) -> dict[str, Any]:
        from ..host.notifiers import DeliveryError

        started = time.monotonic()
        try:
            _send(notifier, body, "firing", "orchestrator/test")
        except DeliveryError as error:
            return {"delivered": False, "error": str(error), "seconds": round(time.monotonic() - started, 3)}
        return {"delivered": True, "error": "", "seconds": round(time.monotonic() - started, 3)}

    def _start(self) -> None:
        with self._wake:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._wake:
                entry = None
                while entry is None:
                    if self._closed:
                        return
                    now = self.wall()
                    # Per notifier, its oldest notification first: a group's later one (a resolve) never
                    # overtakes an earlier one (its firing) waiting in backoff.
                    oldest: dict[str, dict[str, Any]] = {}
                    for e in self.entries:
                        if e["notifier"] not in self._busy and (e["notifier"] not in oldest or e["created"] <
                                                                oldest[e["notifier"]]["created"]):
                            oldest[e["notifier"]] = e
                    ready = list(oldest.values())
                    if not self.entries:
                        self._thread = None  # nothing left: this thread ends; the next add starts one
                        return
                    soonest = min(ready, key=lambda e: e["due"]) if ready else None
                    if soonest is not None and soonest["due"] <= now:
                        entry = soonest
                        self._busy.add(entry["notifier"])
                    else:
                        self._wake.wait(None if soonest is None else max(0.01, soonest["due"] - now))
            # A thread per delivery (one at a time per notifier): a receiver that hangs until its timeout holds
            # up only its own notifications.
            threading.Thread(target=self._attempt, args=(entry,), name="notify-send", daemon=True).start()

    def _attempt(self, entry: dict[str, Any]) -> None:
        try:
            self._deliver(entry)
        finally:
            with self._wake:
                self._busy.discard(entry["notifier"])
                self._wake.notify_all()

    def _deliver(self, entry: dict[str, Any]) -> None:
        from ..host.notifiers import DeliveryError

        notifier = self.notifier(entry["notifier"])
        try:
            if notifier is None:
                raise DeliveryError(f"Notifier {entry['notifier']} is no longer kept", retry=False)
            _send(notifier, entry["body"].encode(), entry["status"], entry["group"])
        except DeliveryError as error:
            self._failed(entry, str(error), error.retry)
        except Exception as error:  # noqa: BLE001 - a bug here must not end delivery for good
            self._failed(entry, f"internal error (a bug): {error!r}", True)
        else:
            with self._wake:
                self._busy.discard(entry["notifier"])
                self.entries = [e for e in self.entries if e["id"] != entry["id"]]
                self._save()
            tries = entry["attempts"] + 1
            self._said(EventType.NOTIFICATION_SENT, entry,
                       "sent" + (f" at try {tries}" if tries > 1 else ""))

    def _failed(self, entry: dict[str, Any], error: str, retry: bool) -> None:
        now = self.wall()
        attempts = entry["attempts"] + 1
        give_up = not retry or now - entry["created"] >= GIVE_UP_SECONDS
        with self._wake:
            self._busy.discard(entry["notifier"])
            if give_up:
                self.entries = [e for e in self.entries if e["id"] != entry["id"]]
            else:
                entry.update(attempts=attempts, error=error[:500],
                             due=now + min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (attempts - 1)))
            self._save()
        if give_up:
            self._said(EventType.NOTIFICATION_FAILED, entry, f"given up after {attempts} tries: {error}")
        elif attempts == 1 or attempts % 10 == 0:  # said at the first failure, then now and then
            self._said(EventType.NOTIFICATION_FAILED, entry,
                       f"try {attempts} failed, trying again in {entry['due'] - now:.0f}s: {error}")

    def _said(self, kind: EventType, entry: dict[str, Any], message: str) -> None:
        self.emit(Event(self.wall(), kind, "", f"{entry['status']} notification of {entry['alerts']} alert(s) to "
                        f"{entry['notifier']} ({entry['group']}): {message}"))

    def _save(self) -> None:
        try:
            self.store.set_meta("outbox", json.dumps(self.entries))
        except StoreBusy:
            pass  # another program holds the database: what waits is in memory, saved with the next change


def _instance(rid: ReplicaId, process: str) -> dict[str, str]:
    return {"namespace": rid.key.split("/", 1)[0], "process": process, "replica": str(rid.index)}


def _replica_of(state: plan.AlertState) -> ReplicaId:
    labels = state.labels
    replica = str(labels.get("replica", ""))
    return ReplicaId(f"{labels.get('namespace')}/{labels.get('process')}", int(replica) if replica.isdigit() else -1)


def _key(spec: AlertRuleSpec | NotifierSpec) -> str:
    return spec.key


def _kind(spec: AlertRuleSpec | NotifierSpec) -> str:
    return "AlertRule" if isinstance(spec, AlertRuleSpec) else "Notifier"


def _resolve(name: str, known: Mapping[str, Any], kind: str) -> str:
    """The key of what `name` (name, or namespace/name) names among `known`; NotFound, or Conflict when a bare
    name is in several namespaces."""
    if name in known:
        return name
    if "/" not in name:
        matches = [key for key in known if key.split("/", 1)[1] == name]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise Conflict(f"{name} is ambiguous: " + ", ".join(sorted(matches)))
    raise NotFound(f"no {kind} {name}")


def _send(notifier: NotifierSpec, body: bytes, status: str, group: str) -> None:
    from ..host.notifiers import exec_environment, post_webhook, run_exec

    if notifier.url is not None:
        post_webhook(notifier.url, body, notifier.secret_file, notifier.header_files, notifier.timeout_seconds)
    else:
        document = json.loads(body)  # the webhook v4 body (an exec notifier has no other payload)
        alerts = document.get("alerts") or []
        env = exec_environment({EXEC_ENV_STATUS: status, "ORCH_ALERT_GROUP": group, "ORCH_NOTIFIER": notifier.key,
                                "ORCH_ALERT_NAME": str((document.get("groupLabels") or {}).get("alertname", "")),
                                "ORCH_ALERT_FINGERPRINT": " ".join(str(a.get("fingerprint", "")) for a in alerts)})
        run_exec(notifier.command, body, env, notifier.timeout_seconds)


def _group_policy(notifier: NotifierSpec) -> plan.GroupPolicy:
    repeat = notifier.repeat_interval_seconds
    if notifier.payload == "alertmanager":  # Alertmanager resolves what is not sent again before its endsAt
        repeat = notifier.group_interval_seconds
    return plan.GroupPolicy(group_wait=notifier.group_wait_seconds, group_interval=notifier.group_interval_seconds,
                            repeat_interval=repeat, send_resolved=notifier.send_resolved)


def _body(notifier: NotifierSpec, notification: plan.Notification, now: float) -> bytes:
    if notifier.payload == "alertmanager":
        ends = now + 4 * notifier.group_interval_seconds
        alerts = [{"labels": dict(a.labels), "annotations": dict(a.annotations), "startsAt": plan.rfc3339(a.fired_at),
                   "endsAt": plan.rfc3339(a.resolved_at if a.state == plan.AlertStatus.RESOLVED else ends),
                   "generatorURL": ""} for a in notification.alerts]
        return json.dumps(alerts).encode()
    return json.dumps(plan.webhook_payload(notification, notifier.key, max_alerts=notifier.max_alerts)).encode()


def _state_json(state: plan.AlertState) -> dict[str, Any]:
    document = dataclasses.asdict(state)
    document["state"] = state.state.value
    return document


def _state_from_json(document: dict[str, Any]) -> plan.AlertState:
    return plan.AlertState(**{**document, "state": plan.AlertStatus(document["state"]),
                              "labels": dict(document.get("labels", {})),
                              "annotations": dict(document.get("annotations", {}))})


def _group_json(group: plan.GroupState) -> dict[str, Any]:
    return {"first_flush_at": group.first_flush_at, "next_flush_at": group.next_flush_at,
            "last_sent_at": group.last_sent_at, "notified": [_state_json(s) for s in group.notified]}


def _group_from_json(document: dict[str, Any]) -> plan.GroupState:
    return plan.GroupState(first_flush_at=document.get("first_flush_at"), next_flush_at=document.get("next_flush_at"),
                           last_sent_at=document.get("last_sent_at"),
                           notified=tuple(_state_from_json(s) for s in document.get("notified", [])))


def _silence_json(silence: plan.Silence) -> dict[str, Any]:
    return {"id": silence.id, "matchers": dict(silence.matchers), "until": silence.until, "reason": silence.reason,
            "by": silence.by}


def _alert_json(state: plan.AlertState, muted: bool) -> dict[str, Any]:
    return {"fingerprint": state.fingerprint, "rule": state.rule, "labels": dict(state.labels),
            "state": state.state.value, "active_at": state.active_at, "fired_at": state.fired_at,
            "value": state.value, "annotations": dict(state.annotations), "muted": muted}
