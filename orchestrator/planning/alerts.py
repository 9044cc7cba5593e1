"""PURE: alert rules' state machine, inhibition, silences and notification grouping (design/alerts.md A).

Owns the decisions, from values the daemon passes in; times are float seconds since the epoch, given (`now`).
Never: reading a clock or a metric, storing, sending, sleeping, knowing how a condition is measured.

Per alert instance (key: `fingerprint` of the rule and the instance's labels), Prometheus' semantics:

- `inactive -> pending` on the first breaching sample (`active_at = now`); with `for` 0 (and no
  `consecutive`) straight to firing;
- `pending -> firing` once breaching on every sample for `for` seconds (`now - active_at >= for`), or for
  `consecutive` samples in a row (then `for` is not looked at);
- `pending -> inactive` on a sample that does not breach, or on no sample at all: dropped, nothing sent;
- `firing -> resolved` when nothing breached for `keepFiringFor` seconds since the last breaching sample;
  a sample that breaches in that window keeps it firing (hysteresis). No sample (the series is gone) counts
  as not breaching, so with the default keepFiringFor of 0 it resolves at once, as the design says, and a
  keepFiringFor still bridges missing data, which is what Prometheus made it for;
- `resolved` is terminal: a new breach starts a new pending episode (new `active_at`) under the same
  fingerprint.

Per notifier and rule (the group), Alertmanager's semantics (`due`): a new group waits groupWait, then sends
what fires; then every groupInterval (a timer on the grid of the first flush) it sends if something started
firing or (with sendResolved) resolved since the last send, else re-sends while firing once repeatInterval
passed since the last send (so rounded up to a multiple of groupInterval; 0 never repeats). Muted alerts
(inhibited, silenced) are left out as if absent, and their muting is not a change.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum

from ..core.alerting import CPU, MEMORY, OF_BYTES, RESTARTS, AlertRuleSpec

MAX_ANNOTATION_BYTES = 1024  # a rendered annotation is cut (UTF-8 bytes, ending in "…") past this
GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time: Alertmanager's endsAt of a firing alert
SLACK = 1e-6  # seconds: float arithmetic on the group's grid must not miss a tick by a rounding error
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_./-]+)?)\s*\}\}")


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertStatus(str, Enum):
    INACTIVE = "inactive"  # for display only: `step` returns no state (None) for an inactive alert
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


class Transition(str, Enum):
    """What `step` reports; the daemon emits Alert<value> events (AlertPending, AlertFiring, AlertResolved)."""

    PENDING = "Pending"
    FIRING = "Firing"
    RESOLVED = "Resolved"


@dataclass(frozen=True)
class AlertPolicy:
    """What an AlertRule decides with, once its condition is measured: the rule's `ns/name`, `for_seconds`
    (0: fire on the first breaching sample), `consecutive` (N breaching samples in a row instead of `for`),
    `keep_firing_for` seconds, severity, the labels it adds, its annotation templates, the rules whose
    firing alerts mute it (for the same namespace and process) and its threshold as {{threshold}} shows it."""

    name: str
    for_seconds: float = 0.0
    consecutive: int | None = None
    keep_firing_for: float = 0.0
    severity: Severity = Severity.WARNING
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    inhibited_by: tuple[str, ...] = ()
    threshold: str = ""


def policy_from_spec(spec: AlertRuleSpec) -> AlertPolicy:
    """An AlertRule's policy. Its {{threshold}} is in the unit of {{value}} (the schema's): percent for a
    share (abovePercent), bytes for memory `above`, a count for restarts, the band for limitHealth."""
    if spec.above is not None and spec.condition in (CPU, MEMORY):
        threshold = format_value(spec.above if spec.of == OF_BYTES else spec.above * 100)
    elif spec.condition == RESTARTS and spec.more_than is not None:
        threshold = str(spec.more_than)
    else:
        threshold = spec.band or ""
    return AlertPolicy(
        name=spec.key,
        for_seconds=spec.for_seconds,
        consecutive=spec.consecutive,
        keep_firing_for=spec.keep_firing_for_seconds,
        severity=Severity(spec.severity),
        labels=dict(spec.labels),
        annotations=dict(spec.annotations),
        inhibited_by=spec.inhibited_by,
        threshold=threshold,
    )


@dataclass(frozen=True)
class AlertState:
    """One alert instance now. `breaches` counts breaching samples in a row; `value` is the last breaching
    sample's; `annotations` are rendered from it. Times are None until they happen."""

    fingerprint: str
    rule: str
    labels: Mapping[str, str]
    state: AlertStatus
    active_at: float
    fired_at: float | None = None
    resolved_at: float | None = None
    last_true_at: float | None = None
    breaches: int = 0
    value: float | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """16 hex digits (as long as Alertmanager's) of sha256 over the rule and its sorted labels."""
    digest = hashlib.sha256()
    for part in (rule, *(item for pair in sorted(labels.items()) for item in pair)):
        digest.update(part.encode())
        digest.update(b"\0")  # a separator no name or value contains: ("ab", "c") is not ("a", "bc")
    return digest.hexdigest()[:16]


def alert_labels(policy: AlertPolicy, instance: Mapping[str, str]) -> dict[str, str]:
    """An alert's labels: the rule's, then the instance's (namespace, process, replica: they win), then `severity`
    and `alertname` (the rule's ns/name, as in Prometheus). Idempotent: full labels give themselves back."""
    labels = {**policy.labels, **instance}
    labels["severity"] = Severity(policy.severity).value
    labels["alertname"] = policy.name
    return labels


def format_value(value: float | None) -> str:
    """A sample for people: 93.2, 1073741824, 0.00012, NaN, +Inf; nothing for no value."""
    if value is None:
        return ""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 1:
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def _fill(name: str, labels: Mapping[str, str], value: float | None, threshold: str) -> str | None:
    if name == "value":
        return format_value(value)
    if name == "threshold":
        return threshold
    if name == "rule":
        return labels.get("alertname")
    return labels.get(name.removeprefix("labels."))


def render(template: str, labels: Mapping[str, str], value: float | None, threshold: str = "") -> str:
    """`{{name}}` (spaces allowed inside the braces) replaced by that label (`{{labels.KEY}}` too),
    `{{value}}` by the sample, `{{threshold}}` by the rule's, `{{rule}}` by its ns/name; unknown
    placeholders stay as written. No expressions. The result is at most MAX_ANNOTATION_BYTES, and the work
    stops once it is exceeded, however many placeholders the template has."""
    out: list[str] = []
    size, at = 0, 0
    for match in _PLACEHOLDER.finditer(template):
        filled = _fill(match.group(1), labels, value, threshold)
        if filled is None:
            filled = match.group(0)
        for piece in (template[at : match.start()], filled):
            out.append(piece)
            size += len(piece.encode())
        at = match.end()
        if size > MAX_ANNOTATION_BYTES:
            break
    else:
        out.append(template[at:])
    text = "".join(out)
    encoded = text.encode()
    if len(encoded) <= MAX_ANNOTATION_BYTES:
        return text
    return encoded[: MAX_ANNOTATION_BYTES - 3].decode(errors="ignore") + "…"


def _ready(policy: AlertPolicy, alert: AlertState, now: float) -> bool:
    if policy.consecutive is not None:
        return alert.breaches >= policy.consecutive
    return now - alert.active_at >= policy.for_seconds


def step(
    policy: AlertPolicy,
    previous: AlertState | None,
    labels: Mapping[str, str],
    breaching: bool | None,
    value: float | None,
    now: float,
) -> tuple[AlertState | None, Transition | None]:
    """One evaluation of one alert instance: its state after the sample (None: inactive, forget it) and the
    transition to report, if any. `labels` are the instance's (alert_labels adds the rule's); `breaching`
    None means no sample (the replica or its series is gone); `value` is the sample, if any."""
    full = alert_labels(policy, labels)
    live = previous if previous is not None and previous.state in (AlertStatus.PENDING, AlertStatus.FIRING) else None
    if breaching:
        annotations = {key: render(text, full, value, policy.threshold) for key, text in policy.annotations.items()}
        if live is None:
            alert = AlertState(
                fingerprint=fingerprint(policy.name, full),
                rule=policy.name,
                labels=full,
                state=AlertStatus.PENDING,
                active_at=now,
                last_true_at=now,
                breaches=1,
                value=value,
                annotations=annotations,
            )
        else:
            alert = replace(live, last_true_at=now, breaches=live.breaches + 1, value=value, annotations=annotations)
        if alert.state is AlertStatus.PENDING and _ready(policy, alert, now):
            return replace(alert, state=AlertStatus.FIRING, fired_at=now), Transition.FIRING
        return alert, Transition.PENDING if live is None else None
    if previous is None or previous.state is AlertStatus.RESOLVED:
        return previous, None
    if previous.state is not AlertStatus.FIRING:  # pending (or inactive): the streak is broken
        return None, None
    calm = replace(previous, breaches=0)
    last_true = previous.last_true_at if previous.last_true_at is not None else previous.active_at
    if now - last_true >= policy.keep_firing_for:
        return replace(calm, state=AlertStatus.RESOLVED, resolved_at=now), Transition.RESOLVED
    return calm, None


def _site(alert: AlertState) -> tuple[str | None, str | None]:
    return alert.labels.get("namespace"), alert.labels.get("process")


def inhibited(
    alerts: Iterable[AlertState],
    down_rules: Collection[str],
    inhibited_by: Mapping[str, Collection[str]] | None = None,
) -> set[str]:
    """The fingerprints muted by inhibition: a firing alert of a `down` rule mutes the alerts of every rule
    that is not a down rule for the same namespace and process (so two down rules cannot mute each other);
    a firing alert of a rule in a rule's `inhibited_by` (rule name -> source rule names) mutes that rule's
    alerts for the same namespace and process. No alert mutes itself. Pending alerts mute nothing."""
    alerts = list(alerts)
    firing: dict[tuple[str | None, str | None], list[AlertState]] = {}
    for alert in alerts:
        if alert.state is AlertStatus.FIRING:
            firing.setdefault(_site(alert), []).append(alert)
    sources = inhibited_by or {}
    muted: set[str] = set()
    for alert in alerts:
        muting = set(sources.get(alert.rule, ()))
        if alert.rule not in down_rules:
            muting.update(down_rules)
        if any(
            source.rule in muting and source.fingerprint != alert.fingerprint for source in firing.get(_site(alert), ())
        ):
            muted.add(alert.fingerprint)
    return muted


@dataclass(frozen=True)
class Silence:
    """An operator's `alerts silence`: mutes the alerts whose labels (alertname is the rule's ns/name) equal
    every matcher, until `until`. A silence without matchers mutes nothing."""

    id: str
    matchers: Mapping[str, str]
    until: float
    reason: str = ""
    by: str = ""


def silenced(alert: AlertState, silences: Iterable[Silence], now: float) -> Silence | None:
    """The first silence in force at `now` (until > now) that matches the alert, if any."""
    for silence in silences:
        if (
            silence.until > now
            and silence.matchers
            and all(alert.labels.get(key) == wanted for key, wanted in silence.matchers.items())
        ):
            return silence
    return None


@dataclass(frozen=True)
class GroupPolicy:
    """A notifier's grouping, in seconds (Alertmanager's defaults are 30, 300 and 14400; ours are the
    Notifier schema's). repeat_interval 0: never re-send. group_interval must be positive."""

    group_wait: float = 10.0
    group_interval: float = 60.0
    repeat_interval: float = 4 * 3600.0
    send_resolved: bool = True

    def __post_init__(self) -> None:
        if self.group_interval <= 0 or self.group_wait < 0 or self.repeat_interval < 0:
            raise ValueError(f"GroupPolicy needs group_interval > 0 and no negative times: {self}")


@dataclass(frozen=True)
class GroupState:
    """What one (notifier, rule) group keeps between passes: the grid its flushes run on (the first flush;
    None: idle, no group), the next flush, the last send and the firing alerts it told the receiver about,
    as sent (so a resolve can be reported even when the alert itself is gone). Persist it to survive a
    restart, or rebuild it with `resume_group`."""

    first_flush_at: float | None = None
    next_flush_at: float | None = None
    last_sent_at: float | None = None
    notified: tuple[AlertState, ...] = ()

    def holds(self, fingerprint: str) -> bool:
        """Does this group still need the alert (the receiver was told it fires, and not yet that it ended)?
        The daemon forgets a resolved alert once no group holds it."""
        return any(alert.fingerprint == fingerprint for alert in self.notified)


@dataclass(frozen=True)
class Notification:
    """One message for one group: its alerts, firing ones first, then resolved ones; sent `at`."""

    rule: str
    alerts: tuple[AlertState, ...]
    at: float

    @property
    def status(self) -> AlertStatus:
        firing = any(alert.state is AlertStatus.FIRING for alert in self.alerts)
        return AlertStatus.FIRING if firing else AlertStatus.RESOLVED


def _order(alert: AlertState) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(alert.labels.items()))


def _tick_after(state: GroupState, policy: GroupPolicy, now: float) -> float:
    origin = state.first_flush_at if state.first_flush_at is not None else now
    tick = origin + policy.group_interval * (math.floor((now - origin) / policy.group_interval) + 1)
    return tick if tick > now + SLACK else tick + policy.group_interval


def _ended(old: AlertState, current: AlertState | None, now: float) -> AlertState:
    """How a notified alert that no longer fires is reported: as it resolved, or (gone, or pending again in a
    new episode) as it was sent, resolved when the new episode began or, if gone, now."""
    if current is not None and current.state is AlertStatus.RESOLVED:
        return current
    ended = current.active_at if current is not None and current.state is AlertStatus.PENDING else now
    return replace(old, state=AlertStatus.RESOLVED, resolved_at=ended)


def due(
    policy: GroupPolicy,
    state: GroupState,
    alerts: Iterable[AlertState],
    now: float,
    muted: Collection[str] = frozenset(),
) -> tuple[Notification | None, GroupState, float | None]:
    """The group's pass at `now`: what to send now (if anything), its new state, and when to look again
    (None: idle until an alert of the rule fires). `alerts` are the rule's alert states (any state: a pending
    one tells a notified earlier episode ended); `muted` the fingerprints inhibited or silenced now.

    A resolved alert is only reported to a receiver that was told it fired (Alertmanager also sends resolved
    alerts the receiver never saw when another change sends the group). An active group flushes every
    groupInterval on its grid, like Alertmanager's timer; call it at the returned time and after each
    evaluation pass."""
    current = {alert.fingerprint: alert for alert in alerts}
    firing = {fp: alert for fp, alert in current.items() if alert.state is AlertStatus.FIRING and fp not in muted}
    flush_at = state.next_flush_at
    if flush_at is None:
        if not firing:
            return None, state, None
        started = min(alert.fired_at if alert.fired_at is not None else now for alert in firing.values())
        flush_at = max(started + policy.group_wait, now)  # an alert older than groupWait is flushed at once
        state = GroupState(first_flush_at=flush_at, next_flush_at=flush_at)
    if now + SLACK < flush_at:
        return None, state, flush_at

    told = {alert.fingerprint: alert for alert in state.notified}
    ended = [_ended(old, current.get(fp), now) for fp, old in told.items() if fp not in firing and fp not in muted]
    if state.last_sent_at is None:
        changed = bool(firing)
    else:
        changed = not firing.keys() <= told.keys() or (not firing and bool(told))
        changed = changed or (policy.send_resolved and bool(ended))
        repeat = policy.repeat_interval > 0 and now + SLACK >= state.last_sent_at + policy.repeat_interval
        changed = changed or (bool(firing) and repeat)

    notification = None
    if changed:
        sent = sorted(firing.values(), key=_order) + (sorted(ended, key=_order) if policy.send_resolved else [])
        if sent:
            notification = Notification(rule=sent[0].rule, alerts=tuple(sent), at=now)
        state = replace(state, notified=tuple(sorted(firing.values(), key=_order)))
        if notification is not None:
            state = replace(state, last_sent_at=now)
    elif not policy.send_resolved and ended:  # the receiver never hears of ends: stop holding them
        gone = {alert.fingerprint for alert in ended}
        state = replace(state, notified=tuple(alert for alert in state.notified if alert.fingerprint not in gone))

    if not firing and not state.notified:
        return notification, GroupState(), None  # the group is over; a new one waits groupWait again
    next_at = _tick_after(state, policy, now)
    return notification, replace(state, next_flush_at=next_at), next_at


def resume_group(
    policy: GroupPolicy, notified: Iterable[AlertState], last_sent_at: float | None, now: float
) -> GroupState:
    """A group rebuilt after a restart from the notification log: the alerts last sent as firing and when.
    They are not sent again (unless repeatInterval passes); their resolves still are. Its grid restarts at
    the last send: its next flush is the first tick of that grid from `now` on."""
    told = tuple(sorted(notified, key=_order))
    if not told or last_sent_at is None:
        return GroupState()
    ticks = max(1, math.ceil((now - last_sent_at) / policy.group_interval - SLACK))
    next_at = last_sent_at + ticks * policy.group_interval
    return GroupState(first_flush_at=last_sent_at, next_flush_at=next_at, last_sent_at=last_sent_at, notified=told)


def restore(
    states: Iterable[AlertState], saved_at: float, now: float, tolerance: float = 3600.0
) -> tuple[AlertState, ...]:
    """Alert states loaded after a restart (saved at `saved_at`), as Prometheus' for-outage-tolerance does:

    - an outage (now - saved_at) shorter than `tolerance`: pending alerts resume with `active_at` moved on
      by the outage (it was not watched, so it does not count towards `for`; breaches are kept), firing and
      resolved ones as they were (a firing one is not re-sent: its group, resumed, remembers it);
    - a longer one: pending alerts are dropped (they start again), firing ones are resolved as of
      `saved_at` (the last time it was known to fire; the receiver gets that resolve, and a new firing after
      `for` if the condition still holds), resolved ones kept so their resolves are delivered.

    Prometheus' 10 m for-grace-period is not applied: the shifted active_at already gives `for` its time."""
    outage = max(0.0, now - saved_at)
    restored: list[AlertState] = []
    for alert in states:
        if alert.state is AlertStatus.PENDING:
            if outage < tolerance:
                restored.append(replace(alert, active_at=alert.active_at + outage))
        elif alert.state is AlertStatus.FIRING and outage >= tolerance:
            restored.append(replace(alert, state=AlertStatus.RESOLVED, resolved_at=saved_at, breaches=0))
        elif alert.state in (AlertStatus.FIRING, AlertStatus.RESOLVED):
            restored.append(alert)
    return tuple(restored)


def rfc3339(moment: float | None) -> str:
    """UTC, as Go marshals a time.Time (fractional seconds without trailing zeros); None is Go's zero time."""
    if moment is None:
        return GO_ZERO_TIME
    stamp = datetime.fromtimestamp(moment, timezone.utc)
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    if stamp.microsecond:
        text += f".{stamp.microsecond:06d}".rstrip("0")
    return text + "Z"


def group_key(receiver: str, rule: str) -> str:
    """Alertmanager's shape (route key, then the group labels): stable per notifier and rule."""
    return f"{{}}/{{notifier={json.dumps(receiver)}}}:{{alertname={json.dumps(rule)}}}"


def _common(maps: list[Mapping[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    return {key: value for key, value in sorted(maps[0].items()) if all(m.get(key) == value for m in maps[1:])}


def webhook_payload(
    notification: Notification, receiver: str, external_url: str = "", max_alerts: int = 0
) -> dict[str, object]:
    """The Alertmanager webhook body, version 4: what existing receivers consume. `max_alerts` (0: all)
    cuts the list as Alertmanager's max_alerts does, counting the rest in truncatedAlerts."""
    alerts = list(notification.alerts)
    shown = alerts[:max_alerts] if max_alerts > 0 else alerts
    base = external_url.rstrip("/")
    return {
        "version": "4",
        "groupKey": group_key(receiver, notification.rule),
        "truncatedAlerts": len(alerts) - len(shown),
        "status": notification.status.value,
        "receiver": receiver,
        "groupLabels": {"alertname": notification.rule},
        "commonLabels": _common([alert.labels for alert in alerts]),
        "commonAnnotations": _common([alert.annotations for alert in alerts]),
        "externalURL": external_url,
        "alerts": [
            {
                "status": "firing" if alert.state is AlertStatus.FIRING else "resolved",
                "labels": dict(sorted(alert.labels.items())),
                "annotations": dict(sorted(alert.annotations.items())),
                "startsAt": rfc3339(alert.fired_at if alert.fired_at is not None else alert.active_at),
                "endsAt": rfc3339(alert.resolved_at if alert.state is AlertStatus.RESOLVED else None),
                "generatorURL": f"{base}/alerts/{alert.fingerprint}" if base else "",
                "fingerprint": alert.fingerprint,
            }
            for alert in shown
        ],
    }
