"""Alert rules' pure decisions as tables: the state machine, grouping, inhibition, silences, payload, restore."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from orchestrator.core.alerting import AlertRuleSpec
from orchestrator.planning.alerts import (
    GO_ZERO_TIME,
    MAX_ANNOTATION_BYTES,
    AlertPolicy,
    AlertState,
    AlertStatus,
    GroupPolicy,
    GroupState,
    Notification,
    Severity,
    Silence,
    Transition,
    alert_labels,
    due,
    fingerprint,
    inhibited,
    policy_from_spec,
    render,
    restore,
    resume_group,
    rfc3339,
    silenced,
    step,
    webhook_payload,
)

API = {"namespace": "shop", "process": "api", "replica": "0"}
P, F, R = Transition.PENDING, Transition.FIRING, Transition.RESOLVED

Sample = tuple[float, "bool | None"]


def run(policy: AlertPolicy, samples: Sequence[Sample]) -> tuple[list[Transition | None], AlertState | None]:
    """Steps one instance through (time, breaching) samples: the transitions and the last state."""
    state: AlertState | None = None
    seen: list[Transition | None] = []
    for at, breaching in samples:
        state, transition = step(policy, state, API, breaching, 90.0 if breaching else None, at)
        seen.append(transition)
    return seen, state


@pytest.mark.parametrize(
    ("policy", "samples", "transitions", "last"),
    [
        pytest.param(AlertPolicy("shop/cpu"), [(0, True)], [F], AlertStatus.FIRING, id="for-0-fires-at-once"),
        pytest.param(
            AlertPolicy("shop/cpu", for_seconds=30),
            [(0, True), (20, True), (30, True)],
            [P, None, F],
            AlertStatus.FIRING,
            id="for-30-pending-then-firing",
        ),
        pytest.param(
            AlertPolicy("shop/cpu", for_seconds=30),
            [(0, True), (20, False), (30, True), (50, True), (60, True)],
            [P, None, P, None, F],
            AlertStatus.FIRING,
            id="for-interrupted-starts-again",
        ),
        pytest.param(
            AlertPolicy("shop/cpu", for_seconds=30),
            [(0, True), (10, False)],
            [P, None],
            None,
            id="pending-cleared-sends-nothing",
        ),
        pytest.param(
            AlertPolicy("shop/cpu", for_seconds=3600, consecutive=3),
            [(0, True), (1, True), (2, True)],
            [P, None, F],
            AlertStatus.FIRING,
            id="consecutive-3-ignores-for",
        ),
        pytest.param(
            AlertPolicy("shop/cpu", consecutive=3),
            [(0, True), (1, None), (2, True), (3, True), (4, True)],
            [P, None, P, None, F],
            AlertStatus.FIRING,
            id="consecutive-broken-by-a-missing-sample",
        ),
        pytest.param(
            AlertPolicy("shop/cpu", consecutive=1, for_seconds=30),
            [(0, True)],
            [F],
            AlertStatus.FIRING,
            id="consecutive-1-fires-at-once",
        ),
        pytest.param(
            AlertPolicy("shop/cpu"),
            [(0, True), (10, False)],
            [F, R],
            AlertStatus.RESOLVED,
            id="keep-0-resolves-on-first-false",
        ),
        pytest.param(
            AlertPolicy("shop/cpu", keep_firing_for=30),
            [(0, True), (10, False), (20, True), (40, False), (49, False), (50, False)],
            [F, None, None, None, None, R],
            AlertStatus.RESOLVED,
            id="keep-firing-for-a-flap-in-the-window-does-not-resolve",
        ),
        pytest.param(
            AlertPolicy("shop/cpu"),
            [(0, True), (10, None)],
            [F, R],
            AlertStatus.RESOLVED,
            id="missing-sample-resolves-firing",
        ),
        pytest.param(
            AlertPolicy("shop/cpu", keep_firing_for=30),
            [(0, True), (10, None), (29, None), (30, None)],
            [F, None, None, R],
            AlertStatus.RESOLVED,
            id="keep-firing-for-bridges-missing-data",
        ),
        pytest.param(
            AlertPolicy("shop/cpu", for_seconds=30),
            [(0, True), (10, None)],
            [P, None],
            None,
            id="missing-sample-drops-pending",
        ),
        pytest.param(
            AlertPolicy("shop/cpu", for_seconds=5),
            [(0, True), (5, True), (10, False), (15, False), (20, True), (25, True)],
            [P, F, R, None, P, F],
            AlertStatus.FIRING,
            id="resolved-then-breach-starts-a-new-episode",
        ),
        pytest.param(AlertPolicy("shop/cpu"), [(0, False), (1, None)], [None, None], None, id="never-breaching"),
    ],
)
def test_state_machine(
    policy: AlertPolicy, samples: list[Sample], transitions: list[Transition | None], last: AlertStatus | None
) -> None:
    seen, state = run(policy, samples)
    assert seen == transitions
    assert (state.state if state is not None else None) == last


def test_a_new_episode_has_its_own_times() -> None:
    policy = AlertPolicy("shop/cpu", for_seconds=5)
    _, state = run(policy, [(0, True), (5, True), (10, False), (20, True), (25, True)])
    assert state is not None
    assert (state.active_at, state.fired_at, state.resolved_at) == (20, 25, None)


def test_the_firing_state_records_times_value_and_annotations() -> None:
    policy = AlertPolicy(
        "shop/cpu",
        for_seconds=10,
        severity=Severity.CRITICAL,
        labels={"team": "payments", "process": "x"},
        annotations={"summary": "{{process}}[{{replica}}] CPU {{value}}% > 80%"},
    )
    state, _ = step(policy, None, API, True, 85.0, 100.0)
    state, transition = step(policy, state, API, True, 93.2, 110.0)
    assert transition is F and state is not None
    assert (state.active_at, state.fired_at, state.last_true_at, state.breaches) == (100, 110, 110, 2)
    assert state.value == 93.2
    assert state.annotations == {"summary": "api[0] CPU 93.2% > 80%"}
    assert state.labels == {**API, "team": "payments", "severity": "critical", "alertname": "shop/cpu"}
    assert state.fingerprint == fingerprint("shop/cpu", state.labels)


@pytest.mark.parametrize(
    ("spec", "threshold"),
    [
        (AlertRuleSpec(name="cpu", namespace="shop", condition="cpu", above=0.8, of="core"), "80"),
        (AlertRuleSpec(name="m", namespace="shop", condition="memory", above=1073741824.0, of="bytes"), "1073741824"),
        (AlertRuleSpec(name="r", namespace="shop", condition="restarts", more_than=5, within_seconds=600), "5"),
        (AlertRuleSpec(name="h", namespace="shop", condition="limitHealth", band="Critical"), "Critical"),
        (AlertRuleSpec(name="d", namespace="shop", condition="down"), ""),
    ],
)
def test_policy_from_spec(spec: AlertRuleSpec, threshold: str) -> None:
    policy = policy_from_spec(spec)
    assert policy.name == f"shop/{spec.name}" and policy.threshold == threshold


def test_policy_from_spec_carries_the_rule() -> None:
    spec = AlertRuleSpec(
        name="cpu",
        namespace="shop",
        condition="cpu",
        above=0.8,
        of="core",
        consecutive=3,
        keep_firing_for_seconds=30,
        severity="critical",
        labels=(("team", "payments"),),
        annotations=(("summary", "{{value}} > {{threshold}}"),),
        inhibited_by=("shop/down",),
    )
    policy = policy_from_spec(spec)
    assert (policy.consecutive, policy.keep_firing_for, policy.severity) == (3, 30, Severity.CRITICAL)
    assert (policy.labels, policy.inhibited_by) == ({"team": "payments"}, ("shop/down",))
    state, _ = step(policy, None, API, True, 93.2, 0)
    assert state is not None and state.annotations == {"summary": "93.2 > 80"}


def test_fingerprint() -> None:
    one = fingerprint("shop/cpu", {"process": "api", "replica": "0"})
    assert one == fingerprint("shop/cpu", {"replica": "0", "process": "api"})  # order does not matter
    assert len(one) == 16 and int(one, 16) >= 0
    assert one != fingerprint("shop/mem", {"process": "api", "replica": "0"})
    assert one != fingerprint("shop/cpu", {"process": "api", "replica": "1"})
    assert fingerprint("r", {"ab": "c"}) != fingerprint("r", {"a": "bc"})


def test_alert_labels_are_idempotent() -> None:
    policy = AlertPolicy("shop/cpu", labels={"team": "payments"})
    full = alert_labels(policy, API)
    assert alert_labels(policy, full) == full


@pytest.mark.parametrize(
    ("template", "value", "text"),
    [
        ("{{process}} CPU {{value}}%", 93.2, "api CPU 93.2%"),
        ("{{ process }} {{value}}", 80.0, "api 80"),
        ("{{value}}", 1073741824.0, "1073741824"),
        ("{{value}}", 93.256, "93.26"),
        ("{{value}}", 0.00012, "0.00012"),
        ("{{value}}", float("nan"), "NaN"),
        ("{{value}}", None, ""),
        ("{{nosuch}} {{process}}", None, "{{nosuch}} api"),  # unknown placeholders stay
        ("{{__import__('os')}}", None, "{{__import__('os')}}"),  # no expressions
        ("{{process", None, "{{process"),
        ("{{labels.replica}}/{{rule}}", None, "0/shop/cpu"),
        ("{{labels.nosuch}}", None, "{{labels.nosuch}}"),
        ("{{value}}% > {{threshold}}%", 93.2, "93.2% > 80%"),
        ("plain", None, "plain"),
    ],
)
def test_render(template: str, value: float | None, text: str) -> None:
    assert render(template, {**API, "alertname": "shop/cpu"}, value, "80") == text


class CountingLabels(dict[str, str]):
    def __init__(self) -> None:
        super().__init__(big="x" * 1000)
        self.reads = 0

    def get(self, key: str, default: object = None) -> Any:
        self.reads += 1
        return super().get(key, default)


def test_render_stops_working_once_past_its_budget() -> None:
    labels = CountingLabels()
    render("{{big}}" * 100_000, labels, None)
    assert labels.reads <= 2


def test_render_is_bounded() -> None:
    huge = render("{{big}}" * 10_000, {"big": "x" * 1000}, None)
    assert len(huge.encode()) <= MAX_ANNOTATION_BYTES and huge.endswith("…")
    multibyte = render("é" * 2000, {}, None)
    assert len(multibyte.encode()) <= MAX_ANNOTATION_BYTES and multibyte.startswith("éé")


# --- grouping ---------------------------------------------------------------------------------------------


def fire(process: str, at: float, rule: str = "shop/cpu") -> AlertState:
    state, _ = step(AlertPolicy(rule), None, {**API, "process": process}, True, 90.0, at)
    assert state is not None
    return state


def resolve(alert: AlertState, at: float) -> AlertState:
    state, transition = step(AlertPolicy(alert.rule), alert, alert.labels, False, None, at)
    assert transition is R and state is not None
    return state


def names(notification: Notification | None) -> list[tuple[str, str]]:
    assert notification is not None
    return [(alert.labels["process"], alert.state.value) for alert in notification.alerts]


GROUP = GroupPolicy(group_wait=10, group_interval=60, repeat_interval=3600, send_resolved=True)


def test_group_wait_sends_nothing_for_an_alert_resolved_inside_it() -> None:
    a = fire("api", 0)
    sent, state, wake = due(GROUP, GroupState(), [a], 0)
    assert (sent, wake) == (None, 10)
    sent, state, wake = due(GROUP, state, [resolve(a, 5)], 5)
    assert (sent, wake) == (None, 10)
    sent, state, wake = due(GROUP, state, [resolve(a, 5)], 10)
    assert (sent, state, wake) == (None, GroupState(), None)  # no group left, nothing to wake for


def test_group_wait_then_one_send() -> None:
    a = fire("api", 0)
    _, state, wake = due(GROUP, GroupState(), [a], 0)
    sent, state, wake = due(GROUP, state, [a], 10)
    assert names(sent) == [("api", "firing")] and wake == 70
    assert state.holds(a.fingerprint) and state.last_sent_at == 10


def test_group_interval_batches_alerts_firing_apart_into_one_notification() -> None:
    a, b = fire("api", 0), fire("web", 5)
    sends: list[tuple[float, list[tuple[str, str]]]] = []
    state = GroupState()
    c, d = fire("db", 15), fire("queue", 20)
    timeline = [(0, [a]), (5, [a, b]), (10, [a, b]), (15, [a, b, c]), (20, [a, b, c, d]), (70, [a, b, c, d])]
    for at, alerts in timeline:
        sent, state, _ = due(GROUP, state, alerts, at)
        if sent is not None:
            sends.append((at, names(sent)))
    assert sends == [
        (10, [("api", "firing"), ("web", "firing")]),
        (70, [("api", "firing"), ("db", "firing"), ("queue", "firing"), ("web", "firing")]),
    ]


def sends_over(policy: GroupPolicy, alerts: list[AlertState], until: float) -> list[float]:
    """Calls due at every time it asks for (from 0) while the alerts stay as given; when it sent."""
    state, at, times = GroupState(), 0.0, []
    wake: float | None = 0.0
    while wake is not None and wake <= until:
        at = wake
        sent, state, wake = due(policy, state, alerts, at)
        if sent is not None:
            times.append(at)
    return times


@pytest.mark.parametrize(
    ("interval", "repeat", "times"),
    [
        (60, 120, [0, 120, 240, 360]),  # a multiple of groupInterval: as given
        (60, 150, [0, 180, 360]),  # rounded up to the next multiple
        (60, 30, [0, 60, 120, 180, 240, 300, 360]),  # shorter than groupInterval: every groupInterval
        (60, 0, [0]),  # 0: never again
        (100, 250, [0, 300]),
    ],
)
def test_repeat_interval_is_rounded_up_to_group_intervals(interval: float, repeat: float, times: list[float]) -> None:
    policy = GroupPolicy(group_wait=0, group_interval=interval, repeat_interval=repeat)
    assert sends_over(policy, [fire("api", 0)], 360) == times


@pytest.mark.parametrize(("send_resolved", "expected"), [(True, [("api", "resolved")]), (False, None)])
def test_send_resolved(send_resolved: bool, expected: list[tuple[str, str]] | None) -> None:
    policy = GroupPolicy(group_wait=10, group_interval=60, send_resolved=send_resolved)
    a = fire("api", 0)
    _, state, _ = due(policy, GroupState(), [a], 0)
    _, state, _ = due(policy, state, [a], 10)
    gone = resolve(a, 30)
    sent, state, wake = due(policy, state, [gone], 30)
    assert (sent, wake) == (None, 70)  # waits for the groupInterval tick
    sent, state, wake = due(policy, state, [gone], 70)
    assert (names(sent) if sent else None) == expected
    if sent is not None:
        assert sent.status is AlertStatus.RESOLVED and sent.alerts[0].resolved_at == 30
    assert (state, wake) == (GroupState(), None)
    assert not state.holds(a.fingerprint)


def test_a_resolved_alert_is_sent_once_beside_a_firing_one() -> None:
    a, b = fire("api", 0), fire("web", 0)
    _, state, _ = due(GROUP, GroupState(), [a, b], 0)
    _, state, _ = due(GROUP, state, [a, b], 10)
    a_gone = resolve(a, 20)
    sent, state, _ = due(GROUP, state, [a_gone, b], 70)
    assert names(sent) == [("web", "firing"), ("api", "resolved")]
    assert sent is not None and sent.status is AlertStatus.FIRING
    sent, state, wake = due(GROUP, state, [a_gone, b], 130)
    assert (sent, wake) == (None, 190)
    assert not state.holds(a.fingerprint) and state.holds(b.fingerprint)


def test_without_send_resolved_a_resolve_beside_a_firing_alert_sends_nothing() -> None:
    policy = GroupPolicy(group_wait=10, group_interval=60, send_resolved=False)
    a, b = fire("api", 0), fire("web", 0)
    _, state, _ = due(policy, GroupState(), [a, b], 0)
    _, state, _ = due(policy, state, [a, b], 10)
    sent, state, wake = due(policy, state, [resolve(a, 20), b], 70)
    assert (sent, wake) == (None, 130)
    assert not state.holds(a.fingerprint) and state.holds(b.fingerprint)  # nothing to deliver: let it go


def test_a_notified_alert_pending_again_is_reported_resolved() -> None:
    policy = AlertPolicy("shop/cpu", for_seconds=60)
    a = fire("api", 0)
    _, state, _ = due(GROUP, GroupState(), [a], 0)
    _, state, _ = due(GROUP, state, [a], 10)
    again, transition = step(policy, resolve(a, 20), API, True, 90.0, 30)  # a new episode, pending
    assert transition is P and again is not None
    sent, state, _ = due(GROUP, state, [again], 70)
    assert names(sent) == [("api", "resolved")]
    assert sent is not None and sent.alerts[0].resolved_at == 30


def test_muted_alerts_are_not_sent_and_their_muting_is_no_resolve() -> None:
    a, b = fire("api", 0), fire("web", 0)
    sent, state, wake = due(GROUP, GroupState(), [a, b], 0, muted={a.fingerprint, b.fingerprint})
    assert (sent, wake) == (None, None)  # nothing to send: no group starts
    _, state, _ = due(GROUP, state, [a, b], 0, muted={a.fingerprint})
    sent, state, _ = due(GROUP, state, [a, b], 10, muted={a.fingerprint})
    assert names(sent) == [("web", "firing")]
    _, state, _ = due(GROUP, state, [a, b], 10)
    sent, state, _ = due(GROUP, state, [a, b], 70, muted={b.fingerprint})  # a unmuted: new; b muted: no resolve
    assert names(sent) == [("api", "firing")]


def test_group_policy_refuses_a_zero_interval() -> None:
    with pytest.raises(ValueError, match="group_interval"):
        GroupPolicy(group_interval=0)


# --- inhibition and silences ------------------------------------------------------------------------------


def test_inhibition() -> None:
    down = fire("api", 0, rule="shop/down")
    down_web_pending, _ = step(AlertPolicy("shop/down", for_seconds=60), None, {**API, "process": "web"}, True, 1, 0)
    assert down_web_pending is not None
    other_down = fire("api", 0, rule="shop/crashed")
    cpu_api, cpu_web, mem_api = fire("api", 0), fire("web", 0), fire("api", 0, rule="shop/mem")
    other_ns = step(AlertPolicy("shop/cpu"), None, {**API, "namespace": "lab"}, True, 1, 0)[0]
    assert other_ns is not None
    alerts = [down, down_web_pending, other_down, cpu_api, cpu_web, mem_api, other_ns]
    muted = inhibited(alerts, {"shop/down", "shop/crashed"})
    assert muted == {cpu_api.fingerprint, mem_api.fingerprint}  # not web (its down is pending), not lab, no down
    assert inhibited([down], {"shop/down"}) == set()  # not itself
    cpu_api_1 = step(AlertPolicy("shop/cpu"), None, {**API, "replica": "1"}, True, 1, 0)[0]
    assert cpu_api_1 is not None
    assert inhibited([cpu_api], (), {"shop/cpu": ["shop/cpu"]}) == set()  # a rule inhibited by itself: not itself
    assert inhibited([cpu_api, cpu_api_1], (), {"shop/cpu": ["shop/cpu"]}) == {
        cpu_api.fingerprint,
        cpu_api_1.fingerprint,
    }  # but one of its alerts mutes another, as in Alertmanager


def test_explicit_inhibited_by() -> None:
    mem, cpu_api, cpu_web = fire("api", 0, rule="shop/mem"), fire("api", 0), fire("web", 0)
    assert inhibited([mem, cpu_api, cpu_web], (), {"shop/cpu": ["shop/mem"]}) == {cpu_api.fingerprint}
    assert inhibited([mem, cpu_api], (), {"shop/mem": ["shop/cpu"], "shop/cpu": ["shop/mem"]}) == {
        mem.fingerprint,
        cpu_api.fingerprint,
    }


@pytest.mark.parametrize(
    ("matchers", "until", "now", "hit"),
    [
        ({"process": "api"}, 100, 50, True),
        ({"alertname": "shop/cpu", "namespace": "shop"}, 100, 50, True),
        ({"process": "api"}, 100, 100, False),  # expired at `until`
        ({"process": "api"}, 100, 150, False),
        ({"process": "api", "replica": "1"}, 100, 50, False),  # every matcher must equal
        ({"alertname": "shop/mem"}, 100, 50, False),
        ({}, 100, 50, False),  # no matchers: mutes nothing
    ],
)
def test_silenced(matchers: dict[str, str], until: float, now: float, hit: bool) -> None:
    silence = Silence(id="s1", matchers=matchers, until=until, reason="deploy", by="ops")
    expired = Silence(id="s0", matchers={"process": "api"}, until=10)
    assert silenced(fire("api", 0), [expired, silence], now) == (silence if hit else None)


# --- payload ----------------------------------------------------------------------------------------------


def test_webhook_payload_shape() -> None:
    policy = AlertPolicy("shop/cpu", annotations={"summary": "{{process}} hot", "runbook": "https://wiki/cpu"})
    a, _ = step(policy, None, API, True, 93.2, 1_700_000_000.25)
    b, _ = step(policy, None, {**API, "process": "web"}, True, 91.0, 1_700_000_001)
    assert a is not None and b is not None
    b_gone, _ = step(policy, b, b.labels, False, None, 1_700_000_060)
    assert b_gone is not None
    payload = webhook_payload(Notification("shop/cpu", (a, b_gone), 1_700_000_070), "ops-webhook", "http://h:1/")
    assert set(payload) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert payload["version"] == "4" and payload["status"] == "firing" and payload["truncatedAlerts"] == 0
    assert payload["receiver"] == "ops-webhook" and payload["externalURL"] == "http://h:1/"
    assert payload["groupKey"] == '{}/{notifier="ops-webhook"}:{alertname="shop/cpu"}'
    assert payload["groupLabels"] == {"alertname": "shop/cpu"}
    assert payload["commonLabels"] == {
        "alertname": "shop/cpu",
        "namespace": "shop",
        "replica": "0",
        "severity": "warning",
    }
    assert payload["commonAnnotations"] == {"runbook": "https://wiki/cpu"}
    alerts = payload["alerts"]
    assert isinstance(alerts, list) and len(alerts) == 2
    for alert in alerts:
        assert set(alert) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
        assert all(isinstance(alert[key], str) for key in ("status", "startsAt", "endsAt", "generatorURL"))
        assert all(isinstance(v, str) for v in alert["labels"].values())
    assert alerts[0]["status"] == "firing" and alerts[0]["endsAt"] == GO_ZERO_TIME == "0001-01-01T00:00:00Z"
    assert alerts[0]["startsAt"] == "2023-11-14T22:13:20.25Z"
    assert (
        alerts[0]["fingerprint"] == a.fingerprint and alerts[0]["generatorURL"] == f"http://h:1/alerts/{a.fingerprint}"
    )
    assert alerts[0]["annotations"] == {"summary": "api hot", "runbook": "https://wiki/cpu"}
    assert alerts[1]["status"] == "resolved" and alerts[1]["endsAt"] == "2023-11-14T22:14:20Z"
    resolved_only = webhook_payload(Notification("shop/cpu", (b_gone,), 0), "r", max_alerts=1)
    assert resolved_only["status"] == "resolved" and resolved_only["externalURL"] == ""
    cut = webhook_payload(Notification("shop/cpu", (a, b_gone), 0), "r", max_alerts=1)
    assert cut["truncatedAlerts"] == 1 and len(cut["alerts"]) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("moment", "text"),
    [(0, "1970-01-01T00:00:00Z"), (1.5, "1970-01-01T00:00:01.5Z"), (None, "0001-01-01T00:00:00Z")],
)
def test_rfc3339(moment: float | None, text: str) -> None:
    assert rfc3339(moment) == text


# --- restart ----------------------------------------------------------------------------------------------


def pending_at(at: float) -> AlertState:
    state, _ = step(AlertPolicy("shop/cpu", for_seconds=600), None, API, True, 90.0, at)
    assert state is not None and state.state is AlertStatus.PENDING
    return state


@pytest.mark.parametrize(
    ("alert", "now", "expected"),
    [
        pytest.param(pending_at(100), 1000, ("pending", 100 + 800, None), id="pending-inside-shifted-by-outage"),
        pytest.param(pending_at(100), 200 + 3600, None, id="pending-outside-dropped"),
        pytest.param(fire("api", 100), 1000, ("firing", 100, None), id="firing-inside-kept"),
        pytest.param(fire("api", 100), 200 + 3600, ("resolved", 100, 200), id="firing-outside-resolved-at-save"),
        pytest.param(resolve(fire("api", 100), 150), 9999, ("resolved", 100, 150), id="resolved-kept"),
    ],
)
def test_restore(alert: AlertState, now: float, expected: tuple[str, float, float | None] | None) -> None:
    restored = restore([alert], saved_at=200, now=now)
    got = [(a.state.value, a.active_at, a.resolved_at) for a in restored]
    assert got == ([expected] if expected else [])


def test_a_restored_firing_alert_is_not_sent_again_but_its_resolve_is() -> None:
    policy = AlertPolicy("shop/cpu")
    a = fire("api", 0)
    _, state, _ = due(GROUP, GroupState(), [a], 0)
    sent, state, _ = due(GROUP, state, [a], 10)
    assert sent is not None
    # The daemon dies at 50 and is back at 100: states and the notification log are read back.
    (restored,) = restore([a], saved_at=50, now=100)
    back: AlertState | None = restored
    group = resume_group(GROUP, [restored], last_sent_at=10, now=100)
    assert group.next_flush_at == 130 and group.holds(a.fingerprint)  # the grid of the last send
    assert resume_group(GROUP, [restored], last_sent_at=10, now=10).next_flush_at == 70
    assert resume_group(GROUP, [restored], last_sent_at=10, now=130).next_flush_at == 130
    sends = []
    for at in (100, 130, 190, 250):
        back, _ = step(policy, back, API, True, 90.0, at)
        assert back is not None
        sent, group, _ = due(GROUP, group, [back], at)
        sends.append(sent)
    assert sends == [None, None, None, None]
    back, transition = step(policy, back, API, False, None, 260)
    assert transition is R and back is not None
    sent, group, _ = due(GROUP, group, [back], 310)
    assert names(sent) == [("api", "resolved")]


def test_a_fresh_alert_after_restart_without_a_log_is_sent() -> None:
    assert resume_group(GROUP, [], None, 100) == GroupState()
    sent, _, _ = due(GROUP, GroupState(), [fire("api", 100)], 110)
    assert names(sent) == [("api", "firing")]


@pytest.mark.parametrize(
    ("wait", "interval", "late", "wake"),
    [
        (10, 60, 100, 130),  # a pass after a missed tick (70) keeps the grid: 10, 70, 130
        (0.1, 0.1, 0.3, 0.4),  # (0.3 - 0.1) / 0.1 is 1.999...: the next tick is still after the pass
    ],
)
def test_a_late_pass_keeps_the_grid(wait: float, interval: float, late: float, wake: float) -> None:
    policy = GroupPolicy(group_wait=wait, group_interval=interval)
    a = fire("api", 0)
    _, state, _ = due(policy, GroupState(), [a], 0)
    sent, state, _ = due(policy, state, [a], wait)
    assert sent is not None
    sent, state, next_at = due(policy, state, [a], late)
    assert sent is None and next_at == pytest.approx(wake)
