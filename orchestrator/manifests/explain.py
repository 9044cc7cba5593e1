"""Schema errors in plain words: what was expected at a field, located where the user wrote it.

jsonschema says what failed (a `pattern`, a `type`, `anyOf`); this says what to write instead, names a
mistyped field's likely spelling, picks the one alternative of an `anyOf` that the user meant, and names the
rule across fields (a titled `if`/`then` or `oneOf` of the schemas) that a document breaks.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..core.errors import Problem
from .documents import Document, FieldPath, dotted
from .schema import full_validator, schemas

if TYPE_CHECKING:
    from jsonschema import ValidationError

# Patterns of the schemas, in words: a regular expression is not an explanation.
PATTERN_WORDS = {
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": "a valid name: use lowercase letters, digits and '-', "
    "starting and ending with a letter or digit",
    "^[A-Za-z_][A-Za-z0-9_]*$": "a valid environment variable name: use letters, digits and '_', "
    "not starting with a digit",
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}"
    r"[A-Za-z0-9])?$": "a valid label key: an optional DNS prefix and '/', then at most 63 letters, digits, "
    "'-', '_' or '.', starting and ending with a letter or digit",
    "^[0-9]+%$": "a count or a percentage of replicas: 2 or '25%'",
    r"^(tcp://([A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}|unix:/.+)$": "a listen "
    "address: tcp://HOST:PORT, tcp://[IPv6]:PORT or unix:/absolute/path",
    "^0?[0-7]{3}$": "an octal mode such as '0660'",
    "^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?/)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$": "a name or NAMESPACE/NAME: each "
    "a DNS label of lowercase letters, digits and '-', starting and ending with a letter or digit",
    "^[!#\\$%&'*+.^_`|~0-9A-Za-z-]+$": "a valid header name: letters, digits and !#$%&'*+.^_`|~-",
}
TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "nothing",
}



def explain(doc: Document, error: ValidationError) -> list[Problem]:
    """One schema error in plain words, located at the value, the key or the parent mapping it concerns."""
    value: Any = doc.value  # a mapping with a known apiVersion and kind: only those are validated
    broken = rule_words(full_validator(value["apiVersion"], value["kind"]).schema, error, value)
    if broken is not None:
        where, message, at_key = broken
        return [Problem(doc.key_at(where) if at_key else doc.at(where), dotted(where), message)]
    path: FieldPath = tuple(error.absolute_path)
    rule, expected, instance = error.validator, error.validator_value, error.instance
    if "propertyNames" in error.absolute_schema_path:
        # The instance is a key of the mapping at `path`: point at that key.
        key_path = path + (str(instance),)
        return [Problem(doc.key_at(key_path), dotted(key_path), _mismatch(rule, expected, repr(instance), instance))]
    if rule == "additionalProperties" and expected is False and isinstance(instance, dict):
        known = list(error.schema.get("properties", {}))
        return [
            Problem(doc.key_at(path + (key,)), dotted(path), f"unknown field {key!r}{_field_hint(key, known, path)}")
            for key in instance
            if key not in known
        ]
    if rule == "required" and isinstance(instance, dict):
        return [
            Problem(doc.at(path), dotted(path), f"missing required field {name!r}")
            for name in expected
            if name not in instance
        ]
    if rule in ("anyOf", "oneOf"):
        return _explain_alternatives(doc, error, path)
    return [
        Problem(
            doc.at(path),
            dotted(path),
            _mismatch(rule, expected, doc.show(path, instance), instance, doc.raws.get(path)),
        )
    ]


def _mismatch(rule: str, expected: Any, shown: str, instance: object, raw: str | None = None) -> str:
    if rule == "type":
        wanted = " or ".join(TYPE_WORDS.get(t, t) for t in ([expected] if isinstance(expected, str) else expected))
        message = f"expected {wanted}, got {shown}"
        if expected == "string" and isinstance(instance, (int, float, bool)) and raw is not None:
            message += f': quote it ("{raw}")'  # YAML read 8080 or yes as a number or a boolean
        return message
    if rule == "enum":
        choices = [str(c) for c in expected]
        close = difflib.get_close_matches(str(instance).lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
        hint = f" (did you mean {choices[[c.lower() for c in choices].index(close[0])]!r}?)" if close else ""
        return f"{shown} is not one of {', '.join(choices)}{hint}"
    if rule == "const":
        return f"expected {expected}, got {shown}"
    if rule == "pattern":
        return f"{shown} is not {PATTERN_WORDS.get(expected, f'matching the pattern {expected}')}"
    numeric = {
        "minimum": "at least",
        "maximum": "at most",
        "exclusiveMinimum": "greater than",
        "exclusiveMaximum": "less than",
    }
    if rule in numeric:
        return f"must be {numeric[rule]} {expected}, got {shown}"
    if rule in ("minItems", "minLength") and expected == 1:
        return "must not be empty"
    if rule == "minItems":
        return f"must have at least {expected} items"
    if rule == "maxItems":
        return f"must have at most {expected} items"
    if rule == "minLength":
        return f"must be at least {expected} characters long"
    if rule == "maxLength":
        return f"must be at most {expected} characters long, got {len(str(instance))}"
    if rule == "uniqueItems":
        return "must not list the same value twice"
    return f"{shown}: does not satisfy the schema's {rule} {expected!r}"


# The rules across fields, each a subschema titled with its key here: an `if`/`then` in a spec's allOf, the
# probe's `oneOf`. When one fails, jsonschema says what failed inside it ("'shell' is a required property",
# "False schema does not allow 2"); this names the rule instead, at the field it is about. Each takes the value
# the rule applies to (the spec, the probe) and gives the field (relative to it), the message, and whether the
# key is meant rather than its value.
_ACTIONS = ("exec", "http", "tcp", "log", "notify")


def _probe_action(probe: Any) -> tuple[FieldPath, str, bool]:
    given = [action for action in _ACTIONS if isinstance(probe, dict) and action in probe]
    if not given:
        return (), f"missing required field: one of {', '.join(map(repr, _ACTIONS))} (what the probe checks)", False
    named = [repr(action) for action in given]
    return (), f"give only one of {', '.join(map(repr, _ACTIONS))}, got {', '.join(named[:-1])} and {named[-1]}", False


def _webhook_or_exec(spec: Any) -> tuple[FieldPath, str, bool]:
    if isinstance(spec, dict) and "webhook" in spec and "exec" in spec:
        return ("exec",), "give only one of 'webhook' and 'exec': a Notifier sends one way", True
    return (), "missing required field: one of 'webhook', 'exec' (how the Notifier sends)", False


def _schedule_or_interval(spec: Any) -> tuple[FieldPath, str, bool]:
    if isinstance(spec, dict) and "schedule" in spec and "intervalSeconds" in spec:
        return ("intervalSeconds",), "give schedule or intervalSeconds, not both: each says when runs are due", True
    return (), "missing required field: one of 'schedule', 'intervalSeconds' (when runs are due)", False


RULE_WORDS: dict[str, Callable[[Any], tuple[FieldPath, str, bool]]] = {
    "string command needs shell": lambda _: (
        ("command",), "command is a string: set shell: true or give an argv list", False),
    "shell command is one string": lambda _: (("command",), "with shell: true, give the command as one string", False),
    "replicas or autoscale": lambda _: (
        ("replicas",), "give replicas or autoscale, not both: autoscale sets the number of replicas", True),
    "probe": _probe_action,
    "rollingUpdate only with RollingUpdate": lambda _: (
        ("rollingUpdate",), "rollingUpdate is for type RollingUpdate: a Recreate stops and starts every replica at once",
        True),
    "mode only for unix sockets": lambda _: (
        ("mode",), "mode is for unix sockets only: a tcp socket has no file to set it on", True),
    "forSeconds or consecutive": lambda _: (
        ("consecutive",), "give forSeconds or consecutive, not both: each says when a breach fires", True),
    "webhook or exec": _webhook_or_exec,
    "schedule or intervalSeconds": _schedule_or_interval,
}
_RULE_KEYWORDS = {"then", "else", "oneOf", "anyOf", "not"}  # a rule's own combinators: what makes it fail
_NAMED = {"properties", "patternProperties", "prefixItems"}  # followed by the name or index the value is at
_DESCENDING = {"items", "additionalProperties", "contains"}  # into every item or value, with no name


def rule_words(schema: dict[str, Any], error: ValidationError, document: Any) -> tuple[FieldPath, str, bool] | None:
    """The rule across fields that `error` (of `schema`, the validator's own) says is broken, in words: the
    field's path in `document`, the message, and whether the key is meant. None when the error is no rule's."""
    parts, node, depth = list(error.absolute_schema_path), schema, 0
    found: tuple[str, int] | None = None
    try:
        index = 0
        while index < len(parts):
            part = parts[index]
            if isinstance(node, dict) and node is not schema and part in _RULE_KEYWORDS \
                    and node.get("title") in RULE_WORDS:
                found = (node["title"], depth)  # the innermost rule on the way wins
            if part in _NAMED and index + 1 < len(parts):
                node, depth, index = node[part][parts[index + 1]], depth + 1, index + 2
                continue
            depth += part in _DESCENDING
            node, index = node[part], index + 1
    except (KeyError, IndexError, TypeError):  # a path that is not the schema's: no rule to name
        return None
    if found is None:
        return None
    title, depth = found
    at: FieldPath = tuple(error.absolute_path)[:depth]
    value: Any = document
    for step in at:
        value = value.get(step) if isinstance(value, dict) else None
    field, message, at_key = RULE_WORDS[title](value)
    return at + field, message, at_key


def _explain_alternatives(doc: Document, error: ValidationError, path: FieldPath) -> list[Problem]:
    """anyOf/oneOf: explain the alternative whose type fits the value; if none fits, name the types wanted."""
    if not error.context:  # oneOf matched more than one alternative: nothing finer to say
        return [Problem(doc.at(path), dotted(path), error.message)]
    branches: dict[object, list[ValidationError]] = {}
    for sub in error.context or ():
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    wrong_type: list[str] = []
    for errors in branches.values():
        type_errors = [e for e in errors if e.validator == "type" and tuple(e.absolute_path) == path]
        if not type_errors:
            return [problem for e in errors for problem in explain(doc, e)]
        expected = type_errors[0].validator_value
        wrong_type += [expected] if isinstance(expected, str) else expected
    return [
        Problem(
            doc.at(path), dotted(path), _mismatch("type", wrong_type, doc.show(path, error.instance), error.instance)
        )
    ]


def _properties_at(schema: dict[str, Any], path: FieldPath) -> dict[str, Any]:
    """The fields a kind's schema knows of the object at `path` (local $refs followed); none if it has none."""
    node: Any = schema
    for step in path:
        properties = node.get("properties", {}) if isinstance(node, dict) else {}
        node = properties.get(step)
        while isinstance(node, dict) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/$defs/"):
            node = schema.get("$defs", {}).get(node["$ref"].removeprefix("#/$defs/"))
    return node.get("properties", {}) if isinstance(node, dict) else {}


def _field_hint(key: str, known: Sequence[str], path: FieldPath) -> str:
    # A field of another kind is no typo: saying so beats suggesting a look-alike (backoffLimit -> backoff).
    if path[:1] == ("spec",) and all(isinstance(step, str) for step in path):  # spec or spec.resources
        elsewhere = [kind for (_, kind), s in schemas().items() if key in _properties_at(s, path)]
        if elsewhere:
            article = "an" if elsewhere[0][0] in "AEIOU" else "a"
            return f" (only {article} {' or '.join(elsewhere)} has it)"
    if path == ("spec", "jobTemplate"):  # a CronJob's runs are Jobs: a Process's field is no typo either
        process = schemas().get(("orchestrator/v1", "Process"), {}).get("properties", {}).get("spec", {})
        if key in process.get("properties", {}):
            return " (only a Process has it: each run of a CronJob is a Job)"
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
