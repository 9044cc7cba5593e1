"""AlertRule and Notifier documents: schemas/alertrule.v1.json and notifier.v1.json, the rules of
manifests/alerting.py, the specs the loader builds (core/alerting.py), the check of rules that need a limit
against the processes of the same load, and the documents they go back to."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.core.alerting import EXEC_TIMEOUT, WEBHOOK_TIMEOUT, AlertRuleSpec, NotifierSpec
from orchestrator.core.errors import Location, ManifestError, Problem
from orchestrator.manifests.alerting import (
    ALERT_RULE_KEPT_BY_DAEMON,
    DEFAULT_BAND,
    NOTIFIER_KEPT_BY_DAEMON,
    alert_rule_to_document,
    kept_from_document,
    notifier_to_document,
)
from orchestrator.manifests.cache import SpecCache
from orchestrator.manifests.files import ReadLimits, Source
from orchestrator.manifests.loader import KeptSpec, kept_key, load_sources
from orchestrator.manifests.schema import full_validator, is_valid, schemas

FILE = "deploy/alerts.yaml"


def document(kind: str, spec: str, name: str = "hot", namespace: str | None = "shop") -> str:
    metadata = f"  name: {name}\n" + (f"  namespace: {namespace}\n" if namespace else "")
    return (f"apiVersion: orchestrator/v1\nkind: {kind}\nmetadata:\n{metadata}"
            f"spec:\n{textwrap.indent(textwrap.dedent(spec).rstrip(chr(10)) + chr(10), '  ')}")


def rule(spec: str = "selector: {process: api}\ncondition: {down: {}}", **kw: Any) -> str:
    return document("AlertRule", spec, **kw)


def notifier(spec: str = "exec: {command: [/usr/local/bin/page.sh]}", **kw: Any) -> str:
    return document("Notifier", spec, **kw)


def process(name: str = "api", limits: str = "", labels: str = "{tier: backend}", namespace: str = "shop") -> str:
    resources = f"  resources: {{limits: {limits}}}\n" if limits else ""
    return (f"apiVersion: orchestrator/v1\nkind: Process\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
            f"  labels: {labels}\nspec:\n  command: [sleep, '1']\n{resources}")


def load(text: str, cache: SpecCache | None = None) -> tuple[Any, list[KeptSpec]]:
    kept: list[KeptSpec] = []
    specs = load_sources([Source(FILE, text)], ReadLimits(), cache, kept=kept)
    return specs, kept


def problems_of(text: str, kept: list[KeptSpec] | None = None) -> list[Problem]:
    with pytest.raises(ManifestError) as caught:
        load_sources([Source(FILE, text)], ReadLimits(), kept=kept)
    return list(caught.value.problems)


def at(text: str, marker: str) -> Location:
    """Where `marker` is first written in `text`."""
    for number, line in enumerate(text.splitlines(), 1):
        if marker in line:
            return Location(FILE, number, line.index(marker) + 1)
    raise AssertionError(f"{marker!r} is not in the text")


# --- valid documents -----------------------------------------------------------------------------------------

FULL_RULE = rule("""\
selector: {matchLabels: {tier: backend}}
condition:
  cpu: {abovePercent: 80, of: core}
forSeconds: 30
keepFiringForSeconds: 60
severity: critical
labels: {team: payments}
annotations:
  summary: "{{process}}[{{replica}}] CPU {{value}}% > {{threshold}}% ({{labels.team}})"
  runbook: https://wiki.example/cpu
notify: [ops-webhook, other/pager]
inhibitedBy: [api-down]
""", name="backend-cpu-hot")

FULL_NOTIFIER = notifier("""\
webhook:
  url: https://hooks.example.org/orch
  secretFile: /etc/orchestrator/hook.secret
  headerFiles: {Authorization: /etc/orchestrator/hook.auth}
  timeoutSeconds: 2.5
  maxAlerts: 20
sendResolved: false
groupWaitSeconds: 5
groupIntervalSeconds: 30
repeatIntervalSeconds: 0
""", name="ops-webhook")


def test_a_full_rule_builds_every_field() -> None:
    specs, kept = load(FULL_RULE)
    assert specs == ()
    assert kept == [AlertRuleSpec(
        name="backend-cpu-hot", namespace="shop", condition="cpu", match_labels=(("tier", "backend"),), above=0.8,
        of="core", for_seconds=30.0, keep_firing_for_seconds=60.0, severity="critical", labels=(("team", "payments"),),
        annotations=(("runbook", "https://wiki.example/cpu"),
                     ("summary", "{{process}}[{{replica}}] CPU {{value}}% > {{threshold}}% ({{labels.team}})")),
        notify=("shop/ops-webhook", "other/pager"), inhibited_by=("shop/api-down",))]
    assert (kept[0].location, kept[0].key, kept_key(kept[0])) == (
        Location(FILE, 1, 1), "shop/backend-cpu-hot", "alertrule/shop/backend-cpu-hot")


def test_a_full_notifier_builds_every_field() -> None:
    _, kept = load(FULL_NOTIFIER)
    assert kept == [NotifierSpec(
        name="ops-webhook", namespace="shop", url="https://hooks.example.org/orch",
        secret_file="/etc/orchestrator/hook.secret", header_files=(("Authorization", "/etc/orchestrator/hook.auth"),),
        max_alerts=20, timeout_seconds=2.5, send_resolved=False, group_wait_seconds=5.0, group_interval_seconds=30.0,
        repeat_interval_seconds=0.0)]
    assert (kept[0].kind, kept_key(kept[0])) == ("webhook", "notifier/shop/ops-webhook")


def test_defaults_when_fields_are_absent() -> None:
    _, (built_rule, exec_notifier, webhook) = load("---\n".join([
        rule(namespace=None), notifier(), notifier("webhook: {url: 'https://h/x'}", name="w")]))
    assert built_rule == AlertRuleSpec(name="hot", condition="down", process="default/api")
    assert (built_rule.for_seconds, built_rule.consecutive, built_rule.keep_firing_for_seconds, built_rule.severity,
            built_rule.notify) == (0.0, None, 0.0, "warning", ())
    assert exec_notifier == NotifierSpec(name="hot", namespace="shop", command=("/usr/local/bin/page.sh",),
                                         timeout_seconds=EXEC_TIMEOUT)
    assert (exec_notifier.kind, exec_notifier.send_resolved, exec_notifier.group_wait_seconds,
            exec_notifier.group_interval_seconds, exec_notifier.repeat_interval_seconds) == (
        "exec", True, 10.0, 60.0, 14400.0)
    assert webhook == NotifierSpec(name="w", namespace="shop", url="https://h/x", timeout_seconds=WEBHOOK_TIMEOUT)


def _default(schema: dict[str, Any], node: dict[str, Any]) -> Any:
    if "$ref" in node and "default" not in node:
        node = schema["$defs"][node["$ref"].split("/")[-1]]
    return node.get("default")


def test_the_schema_defaults_are_the_specs() -> None:
    schema = schemas()[("orchestrator/v1", "AlertRule")]
    spec = schema["properties"]["spec"]["properties"]
    defaults = AlertRuleSpec(name="", condition="cpu")
    assert {name: _default(schema, spec[name]) for name in (
        "forSeconds", "keepFiringForSeconds", "severity", "labels", "annotations", "notify", "inhibitedBy")} == {
        "forSeconds": defaults.for_seconds, "keepFiringForSeconds": defaults.keep_firing_for_seconds,
        "severity": defaults.severity, "labels": dict(defaults.labels), "annotations": dict(defaults.annotations),
        "notify": list(defaults.notify), "inhibitedBy": list(defaults.inhibited_by)}
    assert "default" not in spec["consecutive"] and defaults.consecutive is None
    condition = spec["condition"]["properties"]
    assert condition["cpu"]["properties"]["of"]["default"] == "core"
    assert condition["limitHealth"]["properties"]["band"]["default"] == DEFAULT_BAND
    assert schema["$defs"]["metadata"]["properties"]["namespace"]["default"] == defaults.namespace

    schema = schemas()[("orchestrator/v1", "Notifier")]
    spec = schema["properties"]["spec"]["properties"]
    empty = NotifierSpec(name="")
    assert {name: spec[name]["default"] for name in (
        "sendResolved", "groupWaitSeconds", "groupIntervalSeconds", "repeatIntervalSeconds")} == {
        "sendResolved": empty.send_resolved, "groupWaitSeconds": empty.group_wait_seconds,
        "groupIntervalSeconds": empty.group_interval_seconds, "repeatIntervalSeconds": empty.repeat_interval_seconds}
    webhook, run = spec["webhook"]["properties"], spec["exec"]["properties"]
    assert (webhook["timeoutSeconds"]["default"], webhook["maxAlerts"]["default"], run["timeoutSeconds"]["default"]) == (
        WEBHOOK_TIMEOUT, empty.max_alerts, EXEC_TIMEOUT)
    assert empty.timeout_seconds == WEBHOOK_TIMEOUT
    assert schema["$defs"]["metadata"]["properties"]["namespace"]["default"] == empty.namespace


# (rule spec, attribute, expected)
VALID_RULES: list[tuple[str, str, object]] = [
    ("selector: {process: other/api}\ncondition: {down: {}}", "process", "other/api"),
    ("selector: {matchLabels: {}}\ncondition: {down: {}}", "match_labels", ()),
    ("selector: {process: api}\ncondition: {notReady: {}}\nforSeconds: 60", "condition", "notReady"),
    ("selector: {process: api}\ncondition: {cpu: {abovePercent: 250}}", "above", 2.5),
    ("selector: {process: api}\ncondition: {cpu: {abovePercent: 250}}", "of", "core"),
    ("selector: {process: api}\ncondition: {memory: {above: 1Gi}}", "above", float(1 << 30)),
    ("selector: {process: api}\ncondition: {memory: {above: 1Gi}}", "of", "bytes"),
    ("selector: {process: api}\ncondition: {memory: {above: 1000}}", "above", 1000.0),
    ("selector: {process: api}\ncondition: {memory: {abovePercent: 90}}", "of", "limit"),
    ("selector: {process: api}\ncondition: {restarts: {moreThan: 5, withinSeconds: 600}}", "more_than", 5),
    ("selector: {process: api}\ncondition: {restarts: {moreThan: 5, withinSeconds: 600}}", "within_seconds", 600.0),
    ("selector: {process: api}\ncondition: {limitHealth: {}}", "band", "Warning"),
    ("selector: {process: api}\ncondition: {limitHealth: {band: Critical}}", "band", "Critical"),
    ("selector: {process: api}\ncondition: {cpu: {abovePercent: 80}}\nconsecutive: 3", "consecutive", 3),
    ("selector: {process: api}\ncondition: {down: {}}\nseverity: info", "severity", "info"),
]


@pytest.mark.parametrize(("spec", "attribute", "expected"), VALID_RULES, ids=[f"{v[1]}={v[2]!r}" for v in VALID_RULES])
def test_valid_rule_fields(spec: str, attribute: str, expected: object) -> None:
    _, (built,) = load(rule(spec))
    assert getattr(built, attribute) == expected


# --- problems, each at its place ----------------------------------------------------------------------------


class Bad:
    def __init__(self, name: str, text: str, marker: str, path: str, message: str) -> None:
        self.name, self.text, self.marker, self.path, self.message = name, text, marker, path, message


BAD = [
    # AlertRule
    Bad("no-selector", rule("condition: {down: {}}"), "condition", "spec", "missing required field 'selector'"),
    Bad("empty-selector", rule("selector: {}\ncondition: {down: {}}"), "{}", "spec.selector",
        "missing required field: one of 'matchLabels', 'process' (which processes)"),
    Bad("two-selectors", rule("selector: {process: api, matchLabels: {a: b}}\ncondition: {down: {}}"), "{process",
        "spec.selector", "give only one of 'matchLabels', 'process', got 'process' and 'matchLabels'"),
    Bad("bad-process-name", rule("selector: {process: API}\ncondition: {down: {}}"), "API", "spec.selector.process",
        "'API' is not a name or NAMESPACE/NAME"),
    Bad("empty-condition", rule("selector: {process: api}\ncondition: {}"), "{}", "spec.condition",
        "missing required field: one of 'cpu', 'memory', 'restarts', 'down', 'notReady', 'limitHealth'"),
    Bad("two-conditions", rule("selector: {process: api}\ncondition: {down: {}, notReady: {}}"), "{down",
        "spec.condition", "give only one of 'cpu', 'memory', 'restarts', 'down', 'notReady', 'limitHealth', got "
        "'down' and 'notReady'"),
    Bad("unknown-condition", rule("selector: {process: api}\ncondition: {crashed: {}}"), "crashed",
        "spec.condition", "unknown field 'crashed'"),
    Bad("cpu-of-host", rule("selector: {process: api}\ncondition: {cpu: {abovePercent: 80, of: host}}"), "host",
        "spec.condition.cpu.of", "'host' is not one of core, limit"),
    Bad("cpu-zero", rule("selector: {process: api}\ncondition: {cpu: {abovePercent: 0}}"), "0}",
        "spec.condition.cpu.abovePercent", "must be greater than 0, got 0"),
    Bad("memory-both", rule("selector: {process: api}\ncondition: {memory: {above: 1Gi, abovePercent: 90}}"),
        "{above", "spec.condition.memory", "give only one of 'above', 'abovePercent', got 'above' and 'abovePercent'"),
    Bad("memory-neither", rule("selector: {process: api}\ncondition: {memory: {}}"), "{}}",
        "spec.condition.memory", "missing required field: one of 'above', 'abovePercent'"),
    Bad("memory-bytes-with-b", rule("selector: {process: api}\ncondition: {memory: {above: 1GB}}"), "1GB",
        "spec.condition.memory.above", "1GB"),
    Bad("memory-fraction-of-a-byte", rule("selector: {process: api}\ncondition: {memory: {above: 0.5}}"), "0.5",
        "spec.condition.memory.above", "expected an integer or a string, got 0.5"),
    Bad("restarts-without-window", rule("selector: {process: api}\ncondition: {restarts: {moreThan: 5}}"),
        "{moreThan", "spec.condition.restarts", "missing required field 'withinSeconds'"),
    Bad("band-healthy", rule("selector: {process: api}\ncondition: {limitHealth: {band: Healthy}}"), "Healthy",
        "spec.condition.limitHealth.band", "'Healthy' is not one of Warning, Critical"),
    Bad("for-and-consecutive", rule("selector: {process: api}\ncondition: {down: {}}\nforSeconds: 5\nconsecutive: 3"),
        "consecutive", "spec.consecutive", "give forSeconds or consecutive, not both"),
    Bad("consecutive-zero", rule("selector: {process: api}\ncondition: {down: {}}\nconsecutive: 0"), "0",
        "spec.consecutive", "must be at least 1, got 0"),
    Bad("duration-string", rule("selector: {process: api}\ncondition: {down: {}}\nforSeconds: 30s"), "30s",
        "spec.forSeconds", "expected a number, got '30s'"),
    Bad("severity", rule("selector: {process: api}\ncondition: {down: {}}\nseverity: Critical"), "Critical",
        "spec.severity", "'Critical' is not one of info, warning, critical (did you mean 'critical'?)"),
    Bad("reserved-label", rule("selector: {process: api}\ncondition: {down: {}}\nlabels: {process: x}"),
        "process: x", "spec.labels.process", "'process' is a label every alert has"),
    Bad("unknown-template", rule("selector: {process: api}\ncondition: {down: {}}\nannotations: {s: '{{proces}} down'}"),
        "'{{", "spec.annotations.s", "unknown template '{{proces}}'"),
    Bad("open-template", rule("selector: {process: api}\ncondition: {down: {}}\nannotations: {s: '{{process down'}"),
        "'{{", "spec.annotations.s", "a '{{' is not closed by '}}'"),
    Bad("notify-twice", rule("selector: {process: api}\ncondition: {down: {}}\nnotify: [pager, shop/pager]"),
        "shop/pager", "spec.notify[1]", "'shop/pager' is already listed at spec.notify[0] (shop/pager)"),
    Bad("inhibits-itself", rule("selector: {process: api}\ncondition: {down: {}}\ninhibitedBy: [hot]"), "hot]",
        "spec.inhibitedBy[0]", "a rule cannot inhibit itself"),
    Bad("notifier-field-in-a-rule", rule("selector: {process: api}\ncondition: {down: {}}\nsendResolved: true"),
        "sendResolved", "spec", "unknown field 'sendResolved' (only a Notifier has it)"),
    # Notifier
    Bad("neither-webhook-nor-exec", notifier("sendResolved: true"), "sendResolved", "spec",
        "missing required field: one of 'webhook', 'exec'"),
    Bad("webhook-and-exec", notifier("webhook: {url: 'https://h/x'}\nexec: {command: [x]}"), "exec", "spec.exec",
        "give only one of 'webhook' and 'exec'"),
    Bad("credentials-in-url", notifier("webhook: {url: 'https://bot:s3cret@hooks.example.org/x'}"), "'https",
        "spec.webhook.url", "credentials in the webhook URL: put the secret in a file and name it in "
        "webhook.headerFiles"),
    Bad("token-as-user", notifier("webhook: {url: 'https://xoxb-123@hooks.example.org/x'}"), "'https",
        "spec.webhook.url", "webhook.headerFiles"),
    Bad("not-http", notifier("webhook: {url: 'ftp://h/x'}"), "'ftp", "spec.webhook.url", "unsupported scheme 'ftp://'"),
    Bad("uppercase-scheme", notifier("webhook: {url: 'HTTPS://h/x'}"), "'HTTPS", "spec.webhook.url",
        "write the scheme in lowercase: https://"),
    Bad("no-scheme", notifier("webhook: {url: hooks.example.org/x}"), "hooks", "spec.webhook.url",
        "not a webhook URL"),
    Bad("bad-port", notifier("webhook: {url: 'https://h:port/x'}"), "'https", "spec.webhook.url",
        "cannot read the webhook URL"),
    Bad("header-files-over-http", notifier("webhook:\n  url: http://hooks.example.org/x\n  headerFiles: "
                                           "{Authorization: /etc/a}"), "{Authorization", "spec.webhook.headerFiles",
        "headers from files over plain http to 'hooks.example.org' would cross the network unencrypted"),
    Bad("relative-secret-file", notifier("webhook: {url: 'https://h/x', secretFile: hook.secret}"), "hook.secret",
        "spec.webhook.secretFile", "must be an absolute path"),
    Bad("relative-header-file", notifier("webhook: {url: 'https://h/x', headerFiles: {X-Token: token}}"), "token}",
        "spec.webhook.headerFiles['X-Token']", "must be an absolute path"),
    Bad("daemon-header", notifier("webhook: {url: 'https://h/x', headerFiles: {Content-Type: /etc/t}}"),
        "Content-Type", "spec.webhook.headerFiles['Content-Type']", "the daemon sets Content-Type"),
    Bad("header-twice", notifier("webhook: {url: 'https://h/x', headerFiles: {X-A: /a, x-a: /b}}"), "x-a",
        "spec.webhook.headerFiles['x-a']", "'x-a' is 'X-A' again: header names ignore case"),
    Bad("bad-header-name", notifier("webhook: {url: 'https://h/x', headerFiles: {'X A': /a}}"), "'X A'",
        "spec.webhook.headerFiles['X A']", "is not a valid header name"),
    Bad("timeout-too-long", notifier("webhook: {url: 'https://h/x', timeoutSeconds: 900}"), "900",
        "spec.webhook.timeoutSeconds", "must be at most 300, got 900"),
    Bad("string-command", notifier("exec: {command: '/usr/local/bin/page.sh --now'}"), "'/usr", "spec.exec.command",
        "give the command as an argv list, such as [/usr/local/bin/page.sh, ...]: a Notifier's command runs without a "
        "shell"),
    Bad("empty-program", notifier("exec: {command: ['', x]}"), "''", "spec.exec.command[0]",
        "the program to run must not be empty"),
    Bad("program-with-space", notifier("exec: {command: ['page.sh --now']}"), "'page", "spec.exec.command[0]",
        "holds a space: give each word its own item (['page.sh', '--now'])"),
    Bad("relative-program", notifier("exec: {command: [./page.sh]}"), "./page", "spec.exec.command[0]",
        "must be an absolute path or a name found on the daemon's PATH, got './page.sh'"),
    Bad("group-interval-zero", notifier("exec: {command: [x]}\ngroupIntervalSeconds: 0"), "0",
        "spec.groupIntervalSeconds", "must be at least 1, got 0"),
    Bad("bad-namespace", notifier(namespace="Shop"), "Shop", "metadata.namespace", "is not a valid name"),
]


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.name)
def test_each_problem_once_at_its_field(case: Bad) -> None:
    (problem,) = problems_of(case.text, kept=[])  # one message per mistake
    assert (problem.location, problem.path) == (at(case.text, case.marker), case.path), problem
    assert case.message in problem.message, problem


def test_every_problem_of_a_document_is_found() -> None:
    text = notifier("webhook:\n  url: https://u:p@h/x\n  secretFile: s\n  headerFiles: {Host: /h}")
    assert [problem.path for problem in problems_of(text, kept=[])] == [
        "spec.webhook.url", "spec.webhook.secretFile", "spec.webhook.headerFiles.Host"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:9093/hook", "http://localhost/x", "http://[::1]/x",
                                 "http://a.localhost/x", "https://hooks.example.org/x?token-free=1"])
def test_header_files_over_http_only_to_a_loopback_host(url: str) -> None:
    _, (built,) = load(notifier(f"webhook: {{url: '{url}', headerFiles: {{Authorization: /etc/a}}}}"))
    assert built.url == url
    _, (plain,) = load(notifier(f"webhook: {{url: '{url.replace('https', 'http')}'}}"))  # without secrets: any host
    assert plain.header_files == ()


# --- where nothing can be kept, names, the cache -------------------------------------------------------------


def test_where_none_can_be_kept_each_is_a_problem() -> None:
    text = f"{rule()}---\n{notifier()}---\n{process()}"
    assert problems_of(text) == [Problem(at(text, "AlertRule"), "kind", ALERT_RULE_KEPT_BY_DAEMON),
                                 Problem(Location(FILE, at(text, "Notifier").line, 7), "kind",
                                         NOTIFIER_KEPT_BY_DAEMON)]
    assert ALERT_RULE_KEPT_BY_DAEMON == "an AlertRule is kept by the daemon: apply it with `orchestrator apply`"


def test_names_are_unique_per_kind_and_namespace() -> None:
    text = "---\n".join([process(name="hot"), rule(), notifier(), rule(namespace="other"), notifier(name="pager")])
    specs, kept = load(text)
    assert [spec.key for spec in specs] == ["shop/hot"]
    assert [kept_key(spec) for spec in kept] == ["alertrule/shop/hot", "notifier/shop/hot", "alertrule/other/hot",
                                                 "notifier/shop/pager"]
    twice = rule() + "---\n" + rule()
    (problem,) = problems_of(twice, kept=[])
    assert (problem.path, problem.location.line) == ("metadata.name", 13)  # the second name:
    assert problem.message == f"duplicate AlertRule alertrule/shop/hot, first defined at {FILE}:4:9"


def test_chunks_with_kept_kinds_are_not_cached_and_still_found() -> None:
    cache = SpecCache()
    text = f"{process()}---\n{rule()}---\n{notifier()}"
    for _ in range(2):
        specs, kept = load(text, cache=cache)
        assert ([spec.name for spec in specs], [kept_key(k) for k in kept]) == (
            ["api"], ["alertrule/shop/hot", "notifier/shop/hot"])


# --- rules that need a limit, against the processes of the same load -------------------------------------------

NEEDS = [
    ("cpu: {abovePercent: 80, of: limit}", "of: limit", "spec.condition.cpu.of",
     "cpu of: limit requires spec.resources.limits.cpu on shop/api"),
    ("memory: {abovePercent: 90}", "90}", "spec.condition.memory.abovePercent",
     "requires spec.resources.limits.memory on shop/api"),
    ("limitHealth: {band: Critical}", "{band", "spec.condition.limitHealth",
     "limitHealth requires spec.resources.limits.memory or spec.resources.limits.cpu on shop/api"),
]


@pytest.mark.parametrize(("condition", "marker", "path", "message"), NEEDS, ids=[n[2] for n in NEEDS])
def test_a_rule_on_a_limit_a_process_lacks(condition: str, marker: str, path: str, message: str) -> None:
    text = rule(f"selector: {{process: api}}\ncondition:\n  {condition}") + "---\n" + process()
    (problem,) = problems_of(text, kept=[])
    assert (problem.location, problem.path) == (at(text, marker if marker != "of: limit" else "limit}"), path)
    assert message in problem.message, problem
    by_labels = rule(f"selector: {{matchLabels: {{tier: backend}}}}\ncondition:\n  {condition}") + "---\n" + \
        process() + "---\n" + process(name="db", labels="{tier: data}")
    (problem,) = problems_of(by_labels, kept=[])
    assert problem.message.endswith("on shop/api (selected by matchLabels), which has none"), problem


@pytest.mark.parametrize("limits", ["{memory: 64Mi, cpu: 0.5}"])
def test_a_rule_on_a_limit_a_process_has(limits: str) -> None:
    for condition, *_ in NEEDS:
        text = rule(f"selector: {{process: api}}\ncondition:\n  {condition}") + "---\n" + process(limits=limits)
        specs, (built,) = load(text)
        assert built.needs_limit and specs[0].limits.memory_or_cpu
    # limitHealth takes either limit.
    load(rule("selector: {process: api}\ncondition: {limitHealth: {}}") + "---\n" + process(limits="{cpu: 1}"))


def test_processes_not_in_the_load_or_not_selected_are_not_judged() -> None:
    load(rule("selector: {process: api}\ncondition: {memory: {abovePercent: 90}}"))  # api may come from elsewhere
    load(rule("selector: {process: api}\ncondition: {memory: {abovePercent: 90}}") + "---\n"
         + process(namespace="other"))  # other/api is not shop/api
    load(rule("selector: {matchLabels: {tier: web}}\ncondition: {cpu: {abovePercent: 50, of: limit}}") + "---\n"
         + process())
    load(rule("selector: {process: api}\ncondition: {memory: {above: 1Gi}}") + "---\n" + process())  # bytes: no limit


def test_notify_may_name_a_notifier_not_in_the_load() -> None:
    _, (built,) = load(rule("selector: {process: api}\ncondition: {down: {}}\nnotify: [elsewhere/pager]"))
    assert built.notify == ("elsewhere/pager",)


# --- the command line ------------------------------------------------------------------------------------------


def run_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *argv], capture_output=True, text=True, timeout=60,
                          check=False)


def test_validate_names_a_rule_on_a_missing_limit_with_its_place(tmp_path: Path) -> None:
    (tmp_path / "api.yaml").write_text(process())
    text = rule("selector: {process: api}\ncondition:\n  memory: {abovePercent: 90}")
    (tmp_path / "alerts.yaml").write_text(text)
    result = run_cli("validate", "-f", str(tmp_path))
    assert result.returncode == 1, result.stderr
    line = at(text, "90}")
    assert result.stderr.splitlines()[0] == (
        f"{tmp_path / 'alerts.yaml'}:{line.line}:{line.column}: spec.condition.memory.abovePercent: memory abovePercent "
        "(a share of the memory limit) requires spec.resources.limits.memory on shop/api, which has none")
    (tmp_path / "api.yaml").write_text(process(limits="{memory: 64Mi}"))
    (tmp_path / "notify.yaml").write_text(FULL_NOTIFIER)
    result = run_cli("validate", "-f", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "valid: 3 objects in 3 files\n"
    result = run_cli("validate", "-f", str(tmp_path), "-o", "json")
    assert json.loads(result.stdout)["objects"] == 3, result.stdout


def test_a_foreground_run_refuses_them(tmp_path: Path) -> None:
    (tmp_path / "alerts.yaml").write_text(rule())
    result = run_cli("run", "-f", str(tmp_path / "alerts.yaml"))
    assert result.returncode != 0
    assert ALERT_RULE_KEPT_BY_DAEMON in result.stderr, result.stderr


# --- the schemas ---------------------------------------------------------------------------------------------


def test_the_manifest_schema_says_what_the_kinds_schemas_say() -> None:
    from test_schema import _manifest_validator

    manifest = _manifest_validator()
    for text in [FULL_RULE, FULL_NOTIFIER, *(case.text for case in BAD)]:
        doc = yaml.safe_load(text)
        by_kind = sorted((list(e.absolute_path), e.message)
                         for e in full_validator("orchestrator/v1", doc["kind"]).iter_errors(doc))
        assert sorted((list(e.absolute_path), e.message) for e in manifest.iter_errors(doc)) == by_kind, text


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.name)
def test_the_compiled_check_agrees_with_jsonschema(case: Bad) -> None:
    doc = yaml.safe_load(case.text)
    full = not list(full_validator("orchestrator/v1", doc["kind"]).iter_errors(doc))
    assert is_valid("orchestrator/v1", doc["kind"], doc) == full


# --- to a document and back ------------------------------------------------------------------------------------


def test_round_trip_through_the_document() -> None:
    _, (full_rule,) = load(FULL_RULE)
    _, (full_notifier,) = load(FULL_NOTIFIER)
    others: list[AlertRuleSpec | NotifierSpec] = [
        AlertRuleSpec(name="m", condition="memory", process="default/api", above=float(1 << 30), of="bytes",
                      consecutive=5),
        AlertRuleSpec(name="p", namespace="x", condition="memory", match_labels=(("a", "b"),), above=0.07, of="limit"),
        AlertRuleSpec(name="r", condition="restarts", process="default/api", more_than=5, within_seconds=60.5),
        AlertRuleSpec(name="h", condition="limitHealth", process="other/api", band="Critical"),
        AlertRuleSpec(name="c", condition="cpu", process="default/api", above=0.5, of="limit"),
        NotifierSpec(name="e", namespace="ops", command=("/bin/page", "-v"), timeout_seconds=3.0,
                     metadata_labels=(("t", "u"),)),
    ]
    for spec in [full_rule, full_notifier, *others]:
        document = alert_rule_to_document(spec) if isinstance(spec, AlertRuleSpec) else notifier_to_document(spec)
        assert yaml.safe_load(yaml.safe_dump(document)) == document == json.loads(json.dumps(document))
        assert kept_from_document(document) == spec
        assert not list(full_validator("orchestrator/v1", document["kind"]).iter_errors(document))


def test_the_document_leaves_defaults_out() -> None:
    assert alert_rule_to_document(AlertRuleSpec(name="a", condition="down", process="default/api")) == {
        "apiVersion": "orchestrator/v1", "kind": "AlertRule", "metadata": {"name": "a"},
        "spec": {"selector": {"process": "api"}, "condition": {"down": {}}}}
    assert notifier_to_document(NotifierSpec(name="n", command=("x",), timeout_seconds=EXEC_TIMEOUT))["spec"] == {
        "exec": {"command": ["x"]}}


def test_a_document_from_a_dict_is_checked_as_a_file_is() -> None:
    document = notifier_to_document(NotifierSpec(name="n", url="https://h/x"))
    document["spec"]["webhook"]["url"] = "https://u:p@h/x"
    document["spec"]["groupWait"] = 1
    with pytest.raises(ManifestError) as caught:
        kept_from_document(document, where="notifier/default/n (state.db)")
    assert [str(problem) for problem in caught.value.problems] == [
        "notifier/default/n (state.db): spec: unknown field 'groupWait' (did you mean 'groupWaitSeconds'?)",
        ("notifier/default/n (state.db): spec.webhook.url: credentials in the webhook URL: put the secret in a file and "
        "name it in webhook.headerFiles (such as Authorization: /etc/orchestrator/hook.auth)")]
    with pytest.raises(ManifestError):
        kept_from_document({"apiVersion": "orchestrator/v1", "kind": "GitSync"})
