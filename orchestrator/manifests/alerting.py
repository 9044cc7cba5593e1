"""AlertRule and Notifier documents: the rules their schemas cannot say, the frozen specs built from them, the
check across documents of rules that need a limit, and their documents again.

The schemas (schemas/alertrule.v1.json, schemas/notifier.v1.json) say the shape; the rules here say what needs
code, each problem located at its field. An AlertRule: exactly one selector and one condition (and one of
above or abovePercent for memory), a memory quantity's value, rule labels that would overwrite the labels every
alert has, annotation templates naming what no alert has, a rule inhibited by itself, the same Notifier or rule
listed twice under two spellings. A Notifier: a webhook URL that is not http(s), holds credentials (they belong
in headerFiles) or cannot be read, headerFiles over plain http to another host than a loopback one, header names
the daemon sets or given twice, secret files that are not absolute paths, an exec command given as a string (no
shell) or whose program is empty, holds a space or is a relative path. One needs every document of a load:
an `of: limit` or limitHealth condition on a process of the same load without that limit (check_limits).

The loader (loader.py) validates and builds them with build_alert_rule and build_notifier; documents that come
as plain dicts (the daemon's store) go through kept_from_document, and back with alert_rule_to_document and
notifier_to_document. Never: reading the files a Notifier names (the daemon does, at each send), resolving
`notify` against Notifiers (one not in this load may already be kept by the daemon: the daemon's to judge).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..core.addresses import is_loopback
from ..core.alerting import (
    ALERT_RULE_KIND,
    CONDITIONS,
    CPU,
    EXEC_TIMEOUT,
    LIMIT_HEALTH,
    MEMORY,
    NOTIFIER_KIND,
    OF_BYTES,
    OF_CORE,
    OF_LIMIT,
    RESERVED_LABELS,
    RESTARTS,
    TEMPLATE_NAMES,
    WEBHOOK_TIMEOUT,
    AlertRuleSpec,
    NotifierSpec,
)
from ..core.errors import Location, Problem
from ..core.model import DEFAULT_NAMESPACE, ProcessSpec
from ..core.units import parse_quantity
from .codec import API_VERSION
from .documents import Document, FieldPath, dotted
from .rules import _EMPTY_PROGRAM, _nul_paths
from .stored import checked_document, number

ALERT_RULE_KEPT_BY_DAEMON = "an AlertRule is kept by the daemon: apply it with `orchestrator apply`"
NOTIFIER_KEPT_BY_DAEMON = "a Notifier is kept by the daemon: apply it with `orchestrator apply`"
CREDENTIALS_IN_URL = ("credentials in the webhook URL: put the secret in a file and name it in webhook.headerFiles "
                      "(such as Authorization: /etc/orchestrator/hook.auth)")
DAEMON_HEADERS = ("host", "content-type", "content-length", "connection", "transfer-encoding",
                  "x-orchestrator-signature")  # set by the daemon on every request: not a headerFiles entry
SELECTORS = ("matchLabels", "process")
_TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def _text(value: object) -> str | None:
    """A string the rules judge: one the schema took for a string, without a NUL (said once, on its own)."""
    return value if isinstance(value, str) and "\0" not in value else None


def _one_of(mapping: object, where: FieldPath, names: Sequence[str], what: str) -> list[tuple[FieldPath, str]]:
    """Exactly one of `names` in `mapping`, said in words (the schema says min/maxProperties)."""
    if not isinstance(mapping, dict):
        return []
    if not mapping:
        return [(where, f"missing required field: one of {', '.join(map(repr, names))} ({what})")]
    if len(mapping) > 1:
        given = [repr(key) for key in mapping]
        return [(where, f"give only one of {', '.join(map(repr, names))}, got {', '.join(given[:-1])} and {given[-1]}")]
    return []


def object_key(name: str, namespace: str) -> str:
    """`namespace/name` of a name an object gives: a bare one is of `namespace`."""
    return name if "/" in name else f"{namespace}/{name}"


def _namespace(doc: Document) -> str:
    value = doc.value if isinstance(doc.value, dict) else {}
    metadata = value.get("metadata")
    namespace = metadata.get("namespace", DEFAULT_NAMESPACE) if isinstance(metadata, dict) else DEFAULT_NAMESPACE
    return namespace if isinstance(namespace, str) else DEFAULT_NAMESPACE


# --- AlertRule ----------------------------------------------------------------------------------------------


def check_alert_rule_rules(doc: Document, spec: dict[str, Any]) -> list[Problem]:
    """The rules of an AlertRule's spec that JSON Schema cannot say (the module's docstring lists them), each
    problem located at its field."""
    found: list[tuple[FieldPath, str]] = [(path, "contains a NUL character") for path in _nul_paths(spec, ("spec",))]
    found += _one_of(spec.get("selector"), ("spec", "selector"), SELECTORS, "which processes")
    condition = spec.get("condition")
    found += _one_of(condition, ("spec", "condition"), CONDITIONS, "what counts as a breach")
    memory = condition.get(MEMORY) if isinstance(condition, dict) else None
    found += _one_of(memory, ("spec", "condition", MEMORY), ("above", "abovePercent"), "bytes, or percent of the limit")
    above = memory.get("above") if isinstance(memory, dict) else None
    if isinstance(above, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|K|M|G|T)?", above):
        try:
            if parse_quantity(above) < 1:
                found.append((("spec", "condition", MEMORY, "above"), f"must be at least 1 byte, got {above!r}"))
        except ValueError as error:
            found.append((("spec", "condition", MEMORY, "above"), str(error)))
    labels = spec.get("labels")
    for key in (labels if isinstance(labels, dict) else ()):
        if key in RESERVED_LABELS:
            source = "spec.severity" if key == "severity" else "the alert"
            found.append((("spec", "labels", key), (
                f"{key!r} is a label every alert has, set by {source}: choose another name "
                f"(not {', '.join(RESERVED_LABELS)})")))
    annotations = spec.get("annotations")
    for key, template in (annotations.items() if isinstance(annotations, dict) else ()):
        text = _text(template)
        problem = template_problem(text) if text is not None else None
        if problem is not None:
            found.append((("spec", "annotations", key), problem))
    namespace = _namespace(doc)
    metadata = doc.value.get("metadata") if isinstance(doc.value, dict) else None
    own = metadata.get("name") if isinstance(metadata, dict) else None
    for field in ("notify", "inhibitedBy"):
        names = spec.get(field)
        seen: dict[str, int] = {}
        for index, name in enumerate(names if isinstance(names, list) else ()):
            if not isinstance(name, str):
                continue
            key = object_key(name, namespace)
            first = seen.setdefault(key, index)
            if first != index:
                found.append((("spec", field, index), f"{name!r} is already listed at spec.{field}[{first}] ({key})"))
            elif field == "inhibitedBy" and isinstance(own, str) and key == f"{namespace}/{own}":
                found.append((("spec", field, index), "a rule cannot inhibit itself"))
    problems = []
    for where, message in found:
        at = doc.key_at(where) if where[:2] == ("spec", "labels") else doc.at(where)
        problems.append(Problem(at, dotted(where), message))
    return problems


def template_problem(template: str) -> str | None:
    """Why an annotation's template names what no alert has, or leaves a {{ open; None when nothing is wrong."""
    for match in _TEMPLATE.finditer(template):
        name = match.group(1).strip()
        if name in TEMPLATE_NAMES or re.fullmatch(r"labels\.[A-Za-z0-9_./-]+", name):
            continue
        names = ", ".join("{{" + n + "}}" for n in TEMPLATE_NAMES)
        return f"unknown template {match.group(0)!r}: expected one of {names} or {{{{labels.KEY}}}}"
    if "{{" in _TEMPLATE.sub("", template):
        return "a '{{' is not closed by '}}'"
    return None


def build_alert_rule(doc: Document, value: dict[str, Any]) -> AlertRuleSpec:
    """The spec of an AlertRule document the loader validated (schema and rules), located where it starts."""
    return _build_rule(value, doc.keys.get(("apiVersion",)) or doc.at(()))


def _build_rule(value: Mapping[str, Any], location: Location | None) -> AlertRuleSpec:
    metadata: Mapping[str, Any] = value["metadata"]
    spec: Mapping[str, Any] = value["spec"]
    namespace = metadata.get("namespace", DEFAULT_NAMESPACE)
    selector: Mapping[str, Any] = spec["selector"]
    ((condition, body),) = spec["condition"].items()
    defaults = AlertRuleSpec(name="", condition=CPU)  # they mirror the schema's (tested)
    threshold: dict[str, Any] = {}
    if condition == CPU:
        threshold = {"above": float(body["abovePercent"]) / 100, "of": body.get("of", OF_CORE)}
    elif condition == MEMORY:
        threshold = ({"above": float(parse_quantity(body["above"])), "of": OF_BYTES} if "above" in body
                     else {"above": float(body["abovePercent"]) / 100, "of": OF_LIMIT})
    elif condition == RESTARTS:
        threshold = {"more_than": int(body["moreThan"]), "within_seconds": float(body["withinSeconds"])}
    elif condition == LIMIT_HEALTH:
        threshold = {"band": body.get("band", DEFAULT_BAND)}
    return AlertRuleSpec(
        name=metadata["name"],
        namespace=namespace,
        condition=condition,
        match_labels=tuple(sorted(selector["matchLabels"].items())) if "matchLabels" in selector else (),
        process=object_key(selector["process"], namespace) if "process" in selector else None,
        **threshold,
        for_seconds=float(spec.get("forSeconds", defaults.for_seconds)),
        consecutive=int(spec["consecutive"]) if "consecutive" in spec else None,
        keep_firing_for_seconds=float(spec.get("keepFiringForSeconds", defaults.keep_firing_for_seconds)),
        severity=spec.get("severity", defaults.severity),
        labels=tuple(sorted(spec.get("labels", {}).items())),
        annotations=tuple(sorted(spec.get("annotations", {}).items())),
        notify=tuple(object_key(name, namespace) for name in spec.get("notify", ())),
        inhibited_by=tuple(object_key(name, namespace) for name in spec.get("inhibitedBy", ())),
        metadata_labels=tuple(sorted(metadata.get("labels", {}).items())),
        location=location,
    )


DEFAULT_BAND = "Warning"  # a limitHealth condition's band when none is given (mirrors the schema)


def limit_field(rule: AlertRuleSpec) -> FieldPath:
    """Where in its document a rule asks for a limit (rule.needs_limit): the field a problem is located at."""
    if rule.condition == LIMIT_HEALTH:
        return ("spec", "condition", LIMIT_HEALTH)
    return ("spec", "condition", rule.condition, "of" if rule.condition == CPU else "abovePercent")


def selects(rule: AlertRuleSpec, spec: ProcessSpec) -> bool:
    """Does `rule` watch the process of `spec`? By its key, or by labels within the rule's namespace."""
    if rule.process is not None:
        return spec.key == rule.process
    labels = dict(spec.labels)
    return spec.namespace == rule.namespace and all(labels.get(k) == v for k, v in rule.match_labels)


def check_limits(rules: Iterable[tuple[AlertRuleSpec, Location]], specs: Sequence[ProcessSpec]) -> list[Problem]:
    """Rules whose condition is a share of a limit (`of: limit`, memory's abovePercent, limitHealth) on
    processes of the same load that lack it: a problem at the rule's field (`where`). Processes not in the
    load are not judged: they may come from another apply."""
    problems = []
    for rule, where in rules:
        needed = rule.needs_limit
        if not needed:
            continue
        lacking = [spec.key for spec in specs if selects(rule, spec) and not any(
            (spec.limits.memory_bytes if limit == "memory" else spec.limits.cpu) is not None for limit in needed)]
        if not lacking:
            continue
        wanted = " or ".join(f"spec.resources.limits.{limit}" for limit in needed)
        what = {CPU: "cpu of: limit", MEMORY: "memory abovePercent (a share of the memory limit)",
                LIMIT_HEALTH: "limitHealth"}[rule.condition]
        how = " (selected by matchLabels)" if rule.process is None else ""
        shown = ", ".join(lacking[:SHOWN_KEYS]) + (f" and {len(lacking) - SHOWN_KEYS} more" if len(lacking) >
                                                   SHOWN_KEYS else "")
        problems.append(Problem(where, dotted(limit_field(rule)), (
            f"{what} requires {wanted} on {shown}{how}, which {'has' if len(lacking) == 1 else 'have'} none")))
    return problems


SHOWN_KEYS = 5  # processes a problem names; the rest are counted


# --- Notifier -----------------------------------------------------------------------------------------------


def _url_problem(url: str) -> str | None:
    """What is wrong with a webhook URL, in words; None when nothing is. Refuses all the schema's pattern does."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "the webhook URL must not hold spaces or control characters"
    match = _SCHEME.match(url)
    if match is None or not url[match.end():].startswith("//"):
        return f"not a webhook URL: {url!r}; write https://HOST/PATH (or http://)"
    scheme = match.group(1)
    if scheme.lower() in ("http", "https") and scheme not in ("http", "https"):
        return f"write the scheme in lowercase: {scheme.lower()}://"
    if scheme not in ("http", "https"):
        return f"unsupported scheme {scheme + '://'!r}: a webhook URL is https:// or http://"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError as error:
        return f"cannot read the webhook URL: {error}"
    if "@" in parts.netloc:
        return CREDENTIALS_IN_URL
    if not parts.hostname:
        return f"no host in the webhook URL: {scheme}://HOST/PATH"
    return None


def _loopback(host: str) -> bool:
    return host.endswith(".localhost") or is_loopback(host)  # RFC 6761 names too, for a URL's host


def _program_problem(program: str) -> str | None:
    if program == "":
        return _EMPTY_PROGRAM
    if any(c.isspace() for c in program):
        return (f"the program {program!r} holds a space: give each word its own item ({program.split()!r}); "
                "a Notifier's command runs without a shell")
    if "/" in program and not program.startswith("/"):
        return (f"the program must be an absolute path or a name found on the daemon's PATH, got {program!r}: "
                "a Notifier's command runs in the daemon's working directory, not the manifest's")
    return None


def check_notifier_rules(doc: Document, spec: dict[str, Any]) -> list[Problem]:
    """The rules of a Notifier's spec that JSON Schema cannot say (the module's docstring lists them), each
    problem located at its field."""
    found: list[tuple[FieldPath, str]] = [(path, "contains a NUL character") for path in _nul_paths(spec, ("spec",))]
    keys: list[FieldPath] = []  # problems about a mapping's key: located at the key
    webhook = spec.get("webhook")
    if isinstance(webhook, dict):
        url = _text(webhook.get("url"))
        problem = _url_problem(url) if url else None
        if problem is not None:
            found.append((("spec", "webhook", "url"), problem))
        files: list[tuple[FieldPath, object]] = [(("spec", "webhook", "secretFile"), webhook.get("secretFile"))]
        headers = webhook.get("headerFiles")
        named: dict[str, str] = {}
        for name, file in (headers.items() if isinstance(headers, dict) else ()):
            where: FieldPath = ("spec", "webhook", "headerFiles", name)
            files.append((where, file))
            if name.lower() in DAEMON_HEADERS:
                found.append((where, f"the daemon sets {name}: it cannot come from a file"))
                keys.append(where)
            elif name.lower() in named:
                found.append((where, f"{name!r} is {named[name.lower()]!r} again: header names ignore case"))
                keys.append(where)
            named.setdefault(name.lower(), name)
        for where, value in files:
            text = _text(value)
            if text is not None and not text.startswith("/"):
                found.append((where, (
                    f"must be an absolute path (the daemon reads it, in a working directory of its own), got {text!r}")))
        if url and problem is None and headers and urlsplit(url).scheme == "http" \
                and not _loopback(urlsplit(url).hostname or ""):
            found.append((("spec", "webhook", "headerFiles"), (
                f"headers from files over plain http to {urlsplit(url).hostname!r} would cross the network "
                "unencrypted: use https:// (plain http takes headerFiles only to a loopback host)")))
    run = spec.get("exec")
    if isinstance(run, dict):
        command = run.get("command")
        if isinstance(command, str):
            found.append((("spec", "exec", "command"), (
                f"give the command as an argv list, such as [{command.split()[0] if command.split() else 'PROGRAM'}, "
                "...]: a Notifier's command runs without a shell (for one, write [sh, -c, SCRIPT])")))
        elif isinstance(command, list) and command and isinstance(command[0], str) and "\0" not in command[0]:
            problem = _program_problem(command[0])
            if problem is not None:
                found.append((("spec", "exec", "command", 0), problem))
    return [Problem(doc.key_at(where) if where in keys else doc.at(where), dotted(where), message)
            for where, message in found]


def build_notifier(doc: Document, value: dict[str, Any]) -> NotifierSpec:
    """The spec of a Notifier document the loader validated (schema and rules), located where it starts."""
    return _build_notifier(value, doc.keys.get(("apiVersion",)) or doc.at(()))


def _build_notifier(value: Mapping[str, Any], location: Location | None) -> NotifierSpec:
    metadata: Mapping[str, Any] = value["metadata"]
    spec: Mapping[str, Any] = value["spec"]
    defaults = NotifierSpec(name="")  # they mirror the schema's (tested)
    how: dict[str, Any]
    if "webhook" in spec:
        webhook: Mapping[str, Any] = spec["webhook"]
        how = {"url": webhook["url"], "secret_file": webhook.get("secretFile"),
               "header_files": tuple(sorted(webhook.get("headerFiles", {}).items())),
               "max_alerts": int(webhook.get("maxAlerts", defaults.max_alerts)),
               "payload": str(webhook.get("payload", defaults.payload)),
               "timeout_seconds": float(webhook.get("timeoutSeconds", WEBHOOK_TIMEOUT))}
    else:
        run: Mapping[str, Any] = spec["exec"]
        how = {"command": tuple(run["command"]), "timeout_seconds": float(run.get("timeoutSeconds", EXEC_TIMEOUT))}
    return NotifierSpec(
        name=metadata["name"],
        namespace=metadata.get("namespace", DEFAULT_NAMESPACE),
        **how,
        send_resolved=bool(spec.get("sendResolved", defaults.send_resolved)),
        group_wait_seconds=float(spec.get("groupWaitSeconds", defaults.group_wait_seconds)),
        group_interval_seconds=float(spec.get("groupIntervalSeconds", defaults.group_interval_seconds)),
        repeat_interval_seconds=float(spec.get("repeatIntervalSeconds", defaults.repeat_interval_seconds)),
        metadata_labels=tuple(sorted(metadata.get("labels", {}).items())),
        location=location,
    )


# --- from a plain dict, and back ------------------------------------------------------------------------------


def kept_from_document(document: Mapping[str, Any], where: str = "<request>") -> AlertRuleSpec | NotifierSpec:
    """The spec of an AlertRule or Notifier document given as a plain dict (the daemon's store, a client's
    request), checked against the same schema and rules as a manifest file's; raises ManifestError with every
    problem, each at `where` and its field path."""
    kind, value, location = checked_document(document, where, {ALERT_RULE_KIND: check_alert_rule_rules,
                                                                NOTIFIER_KIND: check_notifier_rules})
    return _build_rule(value, location) if kind == ALERT_RULE_KIND else _build_notifier(value, location)



def _percent(fraction: float) -> float | int:
    return number(round(fraction * 100, 9))  # 0.07 * 100 is 7.000000000000001


def _bare(key: str, namespace: str) -> str:
    """A key as the document of an object in `namespace` writes it: bare when it is of that namespace."""
    return key.split("/", 1)[1] if key.startswith(f"{namespace}/") else key


def _metadata(name: str, namespace: str, labels: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace != DEFAULT_NAMESPACE:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = dict(labels)
    return metadata


def alert_rule_to_document(spec: AlertRuleSpec) -> dict[str, Any]:
    """The manifest document of `spec`, defaults left out; kept_from_document reads it back to an equal spec."""
    ns = spec.namespace
    selector = ({"process": _bare(spec.process, ns)} if spec.process is not None
                else {"matchLabels": dict(spec.match_labels)})
    body: dict[str, Any] = {}
    if spec.condition == CPU and spec.above is not None:
        body = {"abovePercent": _percent(spec.above)} | ({"of": spec.of} if spec.of != OF_CORE else {})
    elif spec.condition == MEMORY and spec.above is not None:
        body = ({"above": int(spec.above)} if spec.of == OF_BYTES else {"abovePercent": _percent(spec.above)})
    elif spec.condition == RESTARTS:
        body = {"moreThan": spec.more_than, "withinSeconds": number(spec.within_seconds or 0)}
    elif spec.condition == LIMIT_HEALTH and spec.band != DEFAULT_BAND:
        body = {"band": spec.band}
    document: dict[str, Any] = {"selector": selector, "condition": {spec.condition: body}}
    defaults = AlertRuleSpec(name="", condition=CPU)
    if spec.for_seconds != defaults.for_seconds:
        document["forSeconds"] = number(spec.for_seconds)
    if spec.consecutive is not None:
        document["consecutive"] = spec.consecutive
    if spec.keep_firing_for_seconds != defaults.keep_firing_for_seconds:
        document["keepFiringForSeconds"] = number(spec.keep_firing_for_seconds)
    if spec.severity != defaults.severity:
        document["severity"] = spec.severity
    for name, pairs in (("labels", spec.labels), ("annotations", spec.annotations)):
        if pairs:
            document[name] = dict(pairs)
    for name, keys in (("notify", spec.notify), ("inhibitedBy", spec.inhibited_by)):
        if keys:
            document[name] = [_bare(key, ns) for key in keys]
    return {"apiVersion": API_VERSION, "kind": ALERT_RULE_KIND,
            "metadata": _metadata(spec.name, ns, spec.metadata_labels), "spec": document}


def notifier_to_document(spec: NotifierSpec) -> dict[str, Any]:
    """The manifest document of `spec`, defaults left out; kept_from_document reads it back to an equal spec."""
    defaults = NotifierSpec(name="")
    document: dict[str, Any] = {}
    if spec.url is not None:
        webhook: dict[str, Any] = {"url": spec.url}
        if spec.secret_file is not None:
            webhook["secretFile"] = spec.secret_file
        if spec.header_files:
            webhook["headerFiles"] = dict(spec.header_files)
        if spec.timeout_seconds != WEBHOOK_TIMEOUT:
            webhook["timeoutSeconds"] = number(spec.timeout_seconds)
        if spec.max_alerts != defaults.max_alerts:
            webhook["maxAlerts"] = spec.max_alerts
        if spec.payload != defaults.payload:
            webhook["payload"] = spec.payload
        document["webhook"] = webhook
    else:
        run: dict[str, Any] = {"command": list(spec.command)}
        if spec.timeout_seconds != EXEC_TIMEOUT:
            run["timeoutSeconds"] = number(spec.timeout_seconds)
        document["exec"] = run
    for name, value, default in (
        ("sendResolved", spec.send_resolved, defaults.send_resolved),
        ("groupWaitSeconds", spec.group_wait_seconds, defaults.group_wait_seconds),
        ("groupIntervalSeconds", spec.group_interval_seconds, defaults.group_interval_seconds),
        ("repeatIntervalSeconds", spec.repeat_interval_seconds, defaults.repeat_interval_seconds),
    ):
        if value != default:
            document[name] = number(value) if isinstance(value, float) else value
    return {"apiVersion": API_VERSION, "kind": NOTIFIER_KIND,
            "metadata": _metadata(spec.name, spec.namespace, spec.metadata_labels), "spec": document}
