"""Values of alerting: the frozen specs of an AlertRule (when to alert on which processes) and of a Notifier
(where alerts are sent, and how often).

Built from validated documents (manifests/alerting.py), compared to tell "changed" from "unchanged". Defaults
and units are written once, in schemas/alertrule.v1.json and schemas/notifier.v1.json; the defaults below
mirror them (tested). Names of other objects are kept as keys, `namespace/name`, resolved against the
document's own namespace. A spec holds paths to secrets, never a secret. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Location

ALERT_RULE_KIND = "AlertRule"
NOTIFIER_KIND = "Notifier"

# The closed set of conditions (the keys of an AlertRule's spec.condition).
CPU, MEMORY, RESTARTS, DOWN, NOT_READY, LIMIT_HEALTH = "cpu", "memory", "restarts", "down", "notReady", "limitHealth"
CONDITIONS = (CPU, MEMORY, RESTARTS, DOWN, NOT_READY, LIMIT_HEALTH)
# What `above` is a share of: cpu of one core (as top) or of the cpu limit; memory of its limit, or bytes.
OF_CORE, OF_LIMIT, OF_BYTES = "core", "limit", "bytes"
BANDS = ("Warning", "Critical")  # a limitHealth condition fires from this band of planning/health.py's on
SEVERITIES = ("info", "warning", "critical")
# Labels every alert has, set from the rule and the replica: a rule's own labels may not use these names.
RESERVED_LABELS = ("alertname", "namespace", "process", "replica", "severity")
# What an annotation's {{NAME}} may name; also {{labels.KEY}} for any label of the alert.
TEMPLATE_NAMES = ("rule", "namespace", "process", "replica", "severity", "value", "threshold")


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


@dataclass(frozen=True)
class AlertRuleSpec:
    """The desired state of one AlertRule: which processes it watches (`match_labels` of the rule's namespace,
    or one `process` key; exactly one of the two), which `condition` (one of CONDITIONS) with its threshold,
    and how a breach becomes an alert (`for_seconds` of continuous breach, or `consecutive` breaching
    samples; then `keep_firing_for_seconds` of hysteresis).

    Threshold fields, by condition (None where the condition has none):
    - cpu: `above` a fraction (0.8 is 80 %) `of` OF_CORE (one core, so 2.5 is two and a half cores) or OF_LIMIT.
    - memory: `above` a fraction of the memory limit (`of` OF_LIMIT), or a number of bytes (`of` OF_BYTES).
    - restarts: `more_than` unexpected restarts (crashed, OOM-killed, liveness) within `within_seconds`.
    - limitHealth: `band`, one of BANDS: fires while the replica's limit health is at least that band.
    - down, notReady: none.

    `process`, `notify` and `inhibited_by` hold keys (`namespace/name`; a bare name in the manifest is of
    the rule's namespace). `annotations` are templates (TEMPLATE_NAMES in {{...}}), rendered by the daemon.
    `location` says where the document is and takes no part in comparisons."""

    name: str
    condition: str  # one of CONDITIONS
    namespace: str = "default"
    match_labels: tuple[tuple[str, str], ...] = ()
    process: str | None = None  # a key, namespace/name
    above: float | None = None
    of: str | None = None
    more_than: int | None = None
    within_seconds: float | None = None
    band: str | None = None
    for_seconds: float = 0.0
    consecutive: int | None = None
    keep_firing_for_seconds: float = 0.0
    severity: str = "warning"
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    notify: tuple[str, ...] = ()  # Notifier keys
    inhibited_by: tuple[str, ...] = ()  # AlertRule keys
    metadata_labels: tuple[tuple[str, str], ...] = ()  # the rule's own labels (metadata.labels), for `get -l`
    location: Location | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """`namespace/name`: unique among the AlertRules."""
        return _key(self.namespace, self.name)

    @property
    def needs_limit(self) -> tuple[str, ...]:
        """The limits (of "memory", "cpu") of which a selected process needs at least one for this rule to
        mean anything: `of: limit` and limitHealth conditions. Empty when it needs none."""
        if self.condition == LIMIT_HEALTH:
            return ("memory", "cpu")
        if self.of == OF_LIMIT and self.condition in (CPU, MEMORY):
            return (self.condition,)
        return ()


@dataclass(frozen=True)
class NotifierSpec:
    """The desired state of one Notifier: exactly one of a webhook (`url`, set) or an exec command
    (`command`, set), and the grouping of Alertmanager: collect new alerts for `group_wait_seconds`, send
    changes at most every `group_interval_seconds`, send an unchanged group again after
    `repeat_interval_seconds` (0: never). `timeout_seconds` is the webhook's or the command's; its default
    depends on which (WEBHOOK_TIMEOUT, EXEC_TIMEOUT). `header_files` are (header name, file path) pairs: the
    header's value is the file's content, read by the daemon at each send, as is `secret_file` (the key of
    the body's HMAC-SHA256 signature). `location` says where the document is and takes no part in
    comparisons."""

    name: str
    namespace: str = "default"
    url: str | None = None  # webhook
    secret_file: str | None = None
    header_files: tuple[tuple[str, str], ...] = ()
    max_alerts: int = 0  # alerts per webhook body; 0: all
    payload: str = "webhook"  # PAYLOADS: Alertmanager's webhook body, or the alerts of its POST /api/v2/alerts
    command: tuple[str, ...] = ()  # exec: an argv list, run without a shell, the payload on its stdin
    timeout_seconds: float = 5.0
    send_resolved: bool = True
    group_wait_seconds: float = 10.0
    group_interval_seconds: float = 60.0
    repeat_interval_seconds: float = 14400.0
    metadata_labels: tuple[tuple[str, str], ...] = ()  # metadata.labels, for `get -l`
    location: Location | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """`namespace/name`: unique among the Notifiers."""
        return _key(self.namespace, self.name)

    @property
    def kind(self) -> str:
        """"webhook" or "exec": how it sends."""
        return "webhook" if self.url is not None else "exec"


PAYLOADS = ("webhook", "alertmanager")
WEBHOOK_TIMEOUT = 5.0  # NotifierSpec.timeout_seconds of a webhook when none is given (mirrors the schema)
EXEC_TIMEOUT = 10.0  # and of an exec command
