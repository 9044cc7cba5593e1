"""Manifests: find YAML files, read them keeping the line and column of every node (documents.py),
validate each document against its JSON Schema in schemas/ (schema.py), and build frozen ProcessSpecs.

Owns: file discovery (`*.yaml`, `*.yml`, recursive, sorted), schema dispatch by apiVersion and kind,
turning schema errors into plain-word Problems at `file:line:column` with the field path, the checks a
schema cannot express (string command without shell, envFrom files, duplicate names), and reading envFrom
dotenv files. Every problem in every file is collected into one ManifestError.

Never: graph checks (missing dependencies, cycles: graph.py), touching processes, reading the environment
of the orchestrator itself (dotenv interpolation is off, so a spec depends only on files in the checkout).
"""

from __future__ import annotations

import difflib
import io
import math
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..core.errors import Location, ManifestError, Problem
from ..core.model import (
    DEFAULT_NAMESPACE,
    Backoff,
    Condition,
    Dependency,
    DesiredState,
    Kind,
    LogPolicy,
    Probes,
    ProcessSpec,
    RestartPolicy,
    Shutdown,
)
from ..core.units import parse_cpu, parse_quantity
from ..planning import graph
from .codec import (
    API_VERSION,
    autoscale_from_document,
    hooks_from_document,
    limits_from_document,
    probe_from_document,
    spec_to_document,
)
from .documents import Document, FieldPath, dotted, parse_documents
from .files import LIMIT_VARIABLES, NotRegular, ReadLimits, Source, find_manifest_files, read_bounded, read_text
from .schema import full_validator, is_valid, schemas

if TYPE_CHECKING:
    from jsonschema import ValidationError

    from .cache import SpecCache

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Patterns of the schemas, in words: a regular expression is not an explanation.
_PATTERN_WORDS = {
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": "a valid name: use lowercase letters, digits and '-', "
    "starting and ending with a letter or digit",
    "^[A-Za-z_][A-Za-z0-9_]*$": "a valid environment variable name: use letters, digits and '_', "
    "not starting with a digit",
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}"
    r"[A-Za-z0-9])?$": "a valid label key: an optional DNS prefix and '/', then at most 63 letters, digits, "
    "'-', '_' or '.', starting and ending with a letter or digit",
}
_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "nothing",
}


def load_desired(paths: Sequence[str]) -> tuple[tuple[ProcessSpec, ...], DesiredState]:
    """The specs of `paths` and the desired state they make, or a ManifestError listing every problem."""
    specs = load_specs(paths)
    return specs, graph.desired_state(specs)


def load_specs(paths: Sequence[str], cache: SpecCache | None = None) -> tuple[ProcessSpec, ...]:
    """Every Process and Job in the files and directories `paths`, in file and document order.

    Raises ManifestError with every problem found in every file (syntax, schema, envFrom, duplicates,
    and the dependency graph of the documents that are valid).
    """
    limits = ReadLimits.from_environment(os.environ)
    sources, problems = read_sources(paths, limits)
    return load_sources(sources, limits, cache, problems)


def read_sources(paths: Sequence[str], limits: ReadLimits) -> tuple[list[Source], list[Problem]]:
    """The text of every manifest file of `paths`, each within its budget; and why any could not be read."""
    files, found_problems = find_manifest_files(paths, limits)
    problems = list(found_problems)
    sources = []
    for file in files:
        text, read_problems = read_text(file, limits)
        problems += read_problems
        if text is not None:
            sources.append(Source(file, text))
    return sources, problems


def load_sources(sources: Sequence[Source], limits: ReadLimits, cache: SpecCache | None = None,
                 problems: Sequence[Problem] = ()) -> tuple[ProcessSpec, ...]:
    """The specs of manifest texts, checked as load_specs checks files; with a cache, a document validated
    before (same file, same text, same envFrom files) costs a hash instead of a parse and a validation."""
    found = list(problems)
    specs: list[ProcessSpec] = []
    names: dict[str, Location] = {}
    for source in sources:
        chunks = split_documents(source.text)
        # Every part after the first starts with `---`, a document; the first is one if it holds more than comments.
        bare = any(line.strip() and not line.lstrip().startswith("#") for line in chunks[0][1].splitlines())
        if len(chunks) - 1 + bare > limits.max_documents:
            line = chunks[limits.max_documents + 1 - bare][0]
            found.append(Problem(Location(source.file, line, 1), "", (
                f"more than {limits.max_documents:,} documents in this file: refused (raise the limit with "
                f"{LIMIT_VARIABLES['max_documents']})")))
            continue
        for first_line, text in chunks:
            cached = cache.get(source.file, text, first_line) if cache is not None else None
            if cached is not None:
                for known, where in cached:
                    found += _check_name(known.key, known.kind.value, where, names)
                    specs.append(known)
                continue
            documents, chunk_problems = parse_documents(source.file, text, limits, first_line)
            valid: list[tuple[ProcessSpec, Location]] = []
            env_files: list[str] = []
            for doc in documents:
                built, doc_problems, read_env = _document_spec(doc)
                chunk_problems += doc_problems
                env_files += read_env
                found += _check_unique(doc, names)
                if built is not None:
                    specs.append(built)
                    valid.append((built, doc.at(("metadata", "name"))))
            found += chunk_problems
            if cache is not None and not chunk_problems:
                cache.put(source.file, text, first_line, valid, env_files)
    # A dependency on a document that is itself invalid is not reported as missing a second time.
    found += graph.check(specs, also_defined=frozenset(names))
    if found:
        raise ManifestError(list(dict.fromkeys(found)))
    return tuple(specs)


def _check_unique(doc: Document, names: dict[str, Location]) -> list[Problem]:
    value = doc.value
    if not isinstance(value, dict):
        return []
    metadata = value.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        return []
    namespace = metadata.get("namespace", DEFAULT_NAMESPACE)
    if not isinstance(namespace, str):
        return []
    return _check_name(f"{namespace}/{metadata['name']}", value.get("kind"), doc.at(("metadata", "name")), names)


def _check_name(key: str, kind: object, where: Location, names: dict[str, Location]) -> list[Problem]:
    first = names.setdefault(key, where)
    if first is where:
        return []
    return [Problem(where, "metadata.name", f"duplicate {kind} {key}, first defined at {first}")]


def _document_spec(doc: Document) -> tuple[ProcessSpec | None, list[Problem], list[str]]:
    """Validate one document; build its spec when nothing is wrong with it. Also: the envFrom files it read."""
    value = doc.value
    if not isinstance(value, dict):
        message = f"a manifest must be a mapping with apiVersion, kind, metadata and spec, got {doc.show((), value)}"
        return None, [Problem(doc.at(()), "", message)], []
    problems = _check_kind(doc, value)
    if problems:
        return None, problems, []
    api, kind = value["apiVersion"], value["kind"]
    if not is_valid(api, kind, value):
        for error in full_validator(api, kind).iter_errors(value):
            problems += _explain(doc, error)
    spec = value.get("spec")
    env: dict[str, str] = {}
    env_files: list[str] = []
    if isinstance(spec, dict):
        problems += _check_spec(doc, spec)
        env, env_problems, env_files = _environment(doc, spec)
        problems += env_problems
    if problems:
        return None, list(dict.fromkeys(problems)), env_files
    return _build_spec(doc, value, env), [], env_files


def _check_kind(doc: Document, value: dict[str, Any]) -> list[Problem]:
    known = schemas()
    versions = sorted({api for api, _ in known})
    problems: list[Problem] = []
    for name in ("apiVersion", "kind"):
        if name not in value:
            problems.append(Problem(doc.at(()), "", f"missing required field {name!r}"))
    api, kind = value.get("apiVersion"), value.get("kind")
    if "apiVersion" in value and api not in versions:
        shown = doc.show(("apiVersion",), api)
        message = f"unknown apiVersion {shown}: expected {', '.join(versions)}"
        problems.append(Problem(doc.at(("apiVersion",)), "apiVersion", message))
    # Kinds of this apiVersion, or of any when the apiVersion is unknown (so that both mistakes show at once).
    kinds = sorted({k for a, k in known if a == api} or {k for _, k in known})
    if "kind" in value and kind not in kinds:
        shown = doc.show(("kind",), kind)
        message = f"unknown kind {shown}: expected one of {', '.join(kinds)}"
        problems.append(Problem(doc.at(("kind",)), "kind", message))
    return problems


def _explain(doc: Document, error: ValidationError) -> list[Problem]:
    """One schema error in plain words, located at the value, the key or the parent mapping it concerns."""
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
        wanted = " or ".join(_TYPE_WORDS.get(t, t) for t in ([expected] if isinstance(expected, str) else expected))
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
        return f"{shown} is not {_PATTERN_WORDS.get(expected, f'matching the pattern {expected}')}"
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
            return [problem for e in errors for problem in _explain(doc, e)]
        expected = type_errors[0].validator_value
        wrong_type += [expected] if isinstance(expected, str) else expected
    return [
        Problem(
            doc.at(path), dotted(path), _mismatch("type", wrong_type, doc.show(path, error.instance), error.instance)
        )
    ]


def _field_hint(key: str, known: Sequence[str], path: FieldPath) -> str:
    # A field of another kind is no typo: saying so beats suggesting a look-alike (backoffLimit -> backoff).
    if path == ("spec",):
        elsewhere = [kind for (_, kind), s in schemas().items() if key in s["properties"]["spec"]["properties"]]
        if elsewhere:
            return f" (only a {' or '.join(elsewhere)} has it)"
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_spec(spec: ProcessSpec, where: str = "<request>") -> list[Problem]:
    """Problems of a spec that did not come from a manifest file (the API's clients): the daemon checks
    what it is sent against the same schema, so that nothing it runs was not validated."""
    document = spec_to_document(spec)
    location = Location(where)
    problems = [] if is_valid(API_VERSION, spec.kind.value, document) else [
        Problem(location, f"{spec.key}: {dotted(error.absolute_path)}", error.message)
        for error in full_validator(API_VERSION, spec.kind.value).iter_errors(document)
    ]
    problems += [Problem(location, f"{spec.key}: {dotted(path)}", "contains a NUL character")
                 for path in _nul_paths(document)]
    problems += [Problem(location, f"{spec.key}: {dotted(path)}", _EMPTY_PROGRAM)
                 for path in _empty_programs(document.get("spec", {}), ("spec",))]
    problems += [Problem(location, f"{spec.key}: {dotted(path)}", message)
                 for path, message in _pattern_problems(document.get("spec", {}), ("spec",))]
    return problems


def _pattern_problems(spec: Any, path: FieldPath) -> list[tuple[FieldPath, str]]:
    """Log probe patterns that RE2 refuses (each matched in linear time, so none can stall the daemon)."""
    from ..core.patterns import compile_pattern

    found = []
    probes = spec.get("probes") if isinstance(spec, dict) else None
    for kind, probe in (probes.items() if isinstance(probes, dict) else ()):
        log = probe.get("log") if isinstance(probe, dict) else None
        pattern = log.get("pattern") if isinstance(log, dict) else None
        if isinstance(pattern, str) and pattern:
            try:
                compile_pattern(pattern)
            except ValueError as error:
                found.append((path + ("probes", kind, "log", "pattern"), str(error)))
    return found


_EMPTY_PROGRAM = "the program to run must not be empty (its arguments may be: `--save \"\"`)"


def _empty_programs(spec: Any, path: FieldPath) -> list[FieldPath]:
    """Paths of argv lists (command, exec probes, hooks) whose program is an empty string. Empty arguments
    are fine (execve takes them and servers use them); an empty program name can never run."""
    if not isinstance(spec, dict):
        return []
    argvs: list[tuple[FieldPath, Any]] = [(path + ("command",), spec.get("command"))]
    probes = spec.get("probes")
    for kind, probe in (probes.items() if isinstance(probes, dict) else ()):
        if isinstance(probe, dict) and isinstance(probe.get("exec"), dict):
            argvs.append((path + ("probes", kind, "exec", "command"), probe["exec"].get("command")))
    hooks = spec.get("hooks")
    for kind, hook in (hooks.items() if isinstance(hooks, dict) else ()):
        if isinstance(hook, dict):
            argvs.append((path + ("hooks", kind, "exec"), hook.get("exec")))
    return [where + (0,) for where, argv in argvs if isinstance(argv, list) and argv and argv[0] == ""]


def _nul_paths(value: Any, path: FieldPath = ()) -> list[FieldPath]:
    """Paths of strings holding a NUL character, which no command line or environment can carry."""
    if isinstance(value, str):
        return [path] if "\0" in value else []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nul_paths(k, path) + _nul_paths(v, path + (str(k),))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nul_paths(v, path + (i,))]
    return []


def _check_spec(doc: Document, spec: dict[str, Any]) -> list[Problem]:
    """Rules across fields that the schema does not say in a way users can read."""
    problems: list[Problem] = []
    for path in _nul_paths(spec, ("spec",)):
        problems.append(Problem(doc.at(path), dotted(path), "contains a NUL character"))
    for path in _empty_programs(spec, ("spec",)):
        problems.append(Problem(doc.at(path), dotted(path), _EMPTY_PROGRAM))
    for path, message in _pattern_problems(spec, ("spec",)):
        problems.append(Problem(doc.at(path), dotted(path), message))
    command, shell = spec.get("command"), spec.get("shell", False)
    if isinstance(command, str) and shell is not True:
        problems.append(
            Problem(
                doc.at(("spec", "command")), "spec.command", "command is a string: set shell: true or give an argv list"
            )
        )
    if isinstance(command, list) and shell is True and len(command) > 1:
        # `sh -c a b` would run `a` with $0=b: a shell command is one string.
        problems.append(
            Problem(doc.at(("spec", "command")), "spec.command", "with shell: true, give the command as one string")
        )
    backoff = spec.get("backoff")
    if isinstance(backoff, dict):
        initial = backoff.get("initialSeconds", Backoff.initial_seconds)
        ceiling = backoff.get("maxSeconds", Backoff.max_seconds)
        # Only between values the schema accepted, so one mistake is not reported twice.
        numbers = all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf for v in (initial, ceiling)
        )
        if numbers and initial > ceiling:
            where: FieldPath = (
                ("spec", "backoff", "initialSeconds") if "initialSeconds" in backoff else ("spec", "backoff")
            )
            problems.append(
                Problem(
                    doc.at(where), dotted(where), f"initialSeconds ({initial}) is larger than maxSeconds ({ceiling})"
                )
            )
    logs = spec.get("logs")
    size = logs.get("maxBytes") if isinstance(logs, dict) else None
    # Only a size the schema's pattern accepted: one mistake is reported once.
    if isinstance(size, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|K|M|G|T)?", size):
        at: FieldPath = ("spec", "logs", "maxBytes")
        try:
            if parse_quantity(size) < 1:
                problems.append(Problem(doc.at(at), dotted(at), f"must be at least 1 byte, got {size!r}"))
        except ValueError as error:
            problems.append(Problem(doc.at(at), dotted(at), str(error)))
    limits = spec.get("resources", {}).get("limits") if isinstance(spec.get("resources"), dict) else None
    if isinstance(limits, dict):
        for limit, parse in (("memory", parse_quantity), ("cpu", parse_cpu)):
            value = limits.get(limit)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                try:
                    parse(value)
                except ValueError as error:
                    limit_path: FieldPath = ("spec", "resources", "limits", limit)
                    problems.append(Problem(doc.at(limit_path), dotted(limit_path), str(error)))
    auto = spec.get("autoscale")
    if isinstance(auto, dict):
        if "replicas" in spec:
            problems.append(Problem(doc.key_at(("spec", "replicas")), "spec.replicas",
                                    "give replicas or autoscale, not both: autoscale sets the number of replicas"))
        low, high = auto.get("min"), auto.get("max")
        if isinstance(low, int) and isinstance(high, int) and low > high:
            problems.append(Problem(doc.at(("spec", "autoscale", "min")), "spec.autoscale.min",
                                    f"min ({low}) is larger than max ({high})"))
    seen: dict[str, int] = {}
    listed: FieldPath
    for index, dependency in enumerate(spec.get("dependsOn") or ()):
        name = dependency.get("name") if isinstance(dependency, dict) else None
        if isinstance(name, str):
            first = seen.setdefault(name, index)
            if first != index:
                listed = ("spec", "dependsOn", index, "name")
                message = f"{name!r} is already listed at spec.dependsOn[{first}]"
                problems.append(Problem(doc.at(listed), dotted(listed), message))
    return problems


def _environment(doc: Document, spec: dict[str, Any]) -> tuple[dict[str, str], list[Problem], list[str]]:
    """envFrom files in order, then `env` over them, and the files read. Entries the schema refused are
    skipped, not read."""
    folder = os.path.dirname(doc.file)
    env: dict[str, str] = {}
    problems: list[Problem] = []
    files: list[str] = []
    sources = spec.get("envFrom")
    for index, source in enumerate(sources if isinstance(sources, list) else ()):
        if not isinstance(source, dict) or not isinstance(source.get("file"), str) or not source["file"]:
            continue
        path: FieldPath = ("spec", "envFrom", index, "file")
        file = os.path.join(folder, source["file"])
        files.append(file)
        values, file_problems = _read_env_file(file, doc.at(path), dotted(path))
        env.update(values)
        problems += file_problems
    given = spec.get("env")
    if isinstance(given, dict):
        env.update(given)
    return env, problems, files


_DOCUMENT_START = re.compile(r"^---(?=[ \t\r\n]|$)", re.MULTILINE)


def split_documents(text: str) -> list[tuple[int, str]]:
    """The text cut before each `---` line, with the line each part starts at: the first part is what comes
    before any `---` (often nothing, or comments). A `---` at the start of a line always starts a document in
    YAML (no scalar may hold one), so the parts parse alone as they do together. With a directive (`%YAML`)
    the text stays whole: a directive belongs to the document after it."""
    if text.startswith("%") or "\n%" in text:
        return [(1, text)]
    parts: list[tuple[int, str]] = []
    start, line = 0, 1
    for match in _DOCUMENT_START.finditer(text):
        parts.append((line, text[start:match.start()]))
        line += text.count("\n", start, match.start())
        start = match.start()
    parts.append((line, text[start:]))
    return parts


def _read_env_file(file: str, at: Location, field_path: str) -> tuple[dict[str, str], list[Problem]]:
    from dotenv import dotenv_values  # only when a document has envFrom: about 9 ms to import
    from dotenv.parser import parse_stream

    limit = ReadLimits.from_environment(os.environ).max_bytes
    try:
        data = read_bounded(file, limit)
        text = data.decode("utf-8")
    except FileNotFoundError:
        return {}, [Problem(at, field_path, f"env file {file!r} does not exist")]
    except NotRegular as error:
        return {}, [Problem(at, field_path, f"env file {file!r} is {error.kind}, not a dotenv file")]
    except (OSError, UnicodeDecodeError) as error:
        return {}, [Problem(at, field_path, f"cannot read env file {file!r}: {error}")]
    if len(data) > limit:
        return {}, [Problem(at, field_path, f"env file {file!r} is larger than {limit:,} bytes: refused (raise the "
                            f"limit with {LIMIT_VARIABLES['max_bytes']})")]
    problems: list[Problem] = []
    for binding in parse_stream(io.StringIO(text)):
        where = Location(file, binding.original.line, 1)
        if binding.error:
            problems.append(Problem(where, field_path, "cannot parse this line: expected NAME=value"))
        elif binding.key is not None and not _ENV_NAME.match(binding.key):
            problems.append(Problem(where, field_path, f"{binding.key!r} is not {_PATTERN_WORDS[_ENV_NAME.pattern]}"))
        elif binding.key is not None and binding.value is None:
            problems.append(
                Problem(where, field_path, f"{binding.key!r} has no value: write {binding.key}= for an empty one")
            )
    if problems:
        return {}, problems
    # No interpolation: ${HOME} in a dotenv file must not take the value of the orchestrator's own environment.
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    return {name: value for name, value in values.items() if value is not None}, []


def _build_spec(doc: Document, value: dict[str, Any], env: dict[str, str]) -> ProcessSpec:
    metadata: dict[str, Any] = value["metadata"]
    spec: dict[str, Any] = value["spec"]
    command = spec["command"]
    backoff = spec.get("backoff", {})
    shutdown = spec.get("shutdown", {})
    logs = spec.get("logs", {})
    folder = os.path.abspath(os.path.dirname(doc.file))
    defaults = ProcessSpec(name="", command=())  # the model's defaults mirror the schemas' (tested)
    return ProcessSpec(
        name=metadata["name"],
        namespace=metadata.get("namespace", defaults.namespace),
        kind=Kind(value["kind"]),
        labels=tuple(sorted(metadata.get("labels", {}).items())),
        command=(command,) if isinstance(command, str) else tuple(command),
        shell=spec.get("shell", defaults.shell),
        working_dir=os.path.normpath(os.path.join(folder, spec.get("workingDir", "."))),
        env=tuple(sorted(env.items())),
        user=spec.get("user"),
        # An autoscaled pool starts at its minimum; the autoscaler moves it from there.
        replicas=int(spec["autoscale"]["min"]) if "autoscale" in spec else int(spec.get("replicas", defaults.replicas)),
        priority=int(spec.get("priority", defaults.priority)),
        restart_policy=RestartPolicy(spec.get("restartPolicy", defaults.restart_policy)),
        success_exit_codes=tuple(int(c) for c in spec.get("successExitCodes", defaults.success_exit_codes)),
        backoff=Backoff(
            initial_seconds=float(backoff.get("initialSeconds", Backoff.initial_seconds)),
            max_seconds=float(backoff.get("maxSeconds", Backoff.max_seconds)),
            multiplier=float(backoff.get("multiplier", Backoff.multiplier)),
            reset_after_seconds=float(backoff.get("resetAfterSeconds", Backoff.reset_after_seconds)),
        ),
        max_restarts=int(spec["maxRestarts"]) if "maxRestarts" in spec else None,
        restart_window_seconds=float(spec.get("restartWindowSeconds", defaults.restart_window_seconds)),
        backoff_limit=int(spec.get("backoffLimit", defaults.backoff_limit)),
        depends_on=tuple(
            Dependency(
                name=item["name"],
                condition=Condition(item.get("condition", Condition.STARTED)),
                location=doc.at(("spec", "dependsOn", index)),
            )
            for index, item in enumerate(spec.get("dependsOn", ()))
        ),
        restart_with_dependency=bool(spec.get("restartWithDependency", False)),
        shutdown=Shutdown(
            signal=shutdown.get("signal", Shutdown.signal),
            timeout_seconds=float(shutdown.get("timeoutSeconds", Shutdown.timeout_seconds)),
        ),
        logs=LogPolicy(
            max_bytes=parse_quantity(logs.get("maxBytes", LogPolicy.max_bytes)),
            keep=int(logs.get("keep", LogPolicy.keep)),
        ),
        probes=Probes(**{kind: probe_from_document(spec["probes"][kind])
                         for kind in ("startup", "readiness", "liveness") if kind in spec.get("probes", {})}),
        hooks=hooks_from_document(spec.get("hooks", {})),
        limits=limits_from_document(spec.get("resources", {})),
        autoscale=autoscale_from_document(spec.get("autoscale")),
        cpu_affinity=tuple(spec.get("cpuAffinity", ())),
        io_class=spec.get("ioClass"),
        location=doc.keys.get(("apiVersion",)) or doc.at(()),
    )
