"""Manifests: from files (or texts sent to the daemon) to frozen ProcessSpecs, every problem collected.

Each file's text is cut into its documents (at `---` lines), each read within its budget (documents.py),
validated against its JSON Schema (schema.py, with errors in words by explain.py), checked across fields
(rules.py) and built into a spec (specs.py; the kinds the daemon keeps by their own modules); envFrom dotenv
files are read here. With a cache (cache.py), a document
validated before costs a hash. Every problem in every file is collected into one ManifestError.

Never: graph checks beyond calling planning's (missing dependencies, cycles: graph.py), touching processes,
reading the environment of the orchestrator itself (dotenv interpolation is off, so a spec depends only on
files in the checkout).
"""

from __future__ import annotations

import io
import os
import re
from collections import ChainMap
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..core.alerting import ALERT_RULE_KIND, NOTIFIER_KIND, AlertRuleSpec, NotifierSpec
from ..core.cronjob import CRONJOB_KIND, CronJobSpec
from ..core.errors import Location, ManifestError, Problem
from ..core.gitsync import GITSYNC_KIND, GitSyncSpec
from ..core.model import DEFAULT_NAMESPACE, DesiredState, Kind, ProcessSpec
from ..core.queue import QUEUE_KIND, QueueSpec
from ..planning import graph
from .documents import Document, FieldPath, dotted, parse_documents, plain_scalar
from .explain import PATTERN_WORDS, explain
from .files import (
    LIMIT_VARIABLES,
    NotRegular,
    ReadLimits,
    Source,
    find_manifest_files,
    read_bounded,
    read_text,
    shown_as,
)
from .interpolate import InterpolationError, interpolate
from .rules import check_rules, listen_key
from .schema import full_validator, is_valid, schemas
from .specs import build_spec

if TYPE_CHECKING:

    from .cache import SpecCache

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# The kinds the daemon keeps, apart from processes: collected into a `kept` list, never run by the loader's caller.
KeptSpec = GitSyncSpec | AlertRuleSpec | NotifierSpec | CronJobSpec | QueueSpec
KEPT_KINDS = (GITSYNC_KIND, ALERT_RULE_KIND, NOTIFIER_KIND, CRONJOB_KIND, QUEUE_KIND)
HOST_KINDS = (GITSYNC_KIND, QUEUE_KIND)  # kept kinds without a namespace: `kind/NAME`


def kept_key(spec: KeptSpec) -> str:
    """How a kept spec is named beside processes: `gitsync/NAME`, `alertrule/NS/NAME`, `notifier/NS/NAME`,
    `cronjob/NS/NAME`, `queue/NAME`."""
    if isinstance(spec, GitSyncSpec):
        return f"gitsync/{spec.name}"
    if isinstance(spec, QueueSpec):
        return spec.key
    return f"{kept_kind(spec).lower()}/{spec.key}"


def kept_kind(spec: KeptSpec) -> str:
    """The kind of a kept spec: GitSync, AlertRule, Notifier, CronJob or Queue."""
    return (GITSYNC_KIND if isinstance(spec, GitSyncSpec) else ALERT_RULE_KIND if isinstance(spec, AlertRuleSpec)
            else CRONJOB_KIND if isinstance(spec, CronJobSpec) else QUEUE_KIND if isinstance(spec, QueueSpec)
            else NOTIFIER_KIND)


def _kept_by_daemon(kind: str) -> str:
    from .alerting import ALERT_RULE_KEPT_BY_DAEMON, NOTIFIER_KEPT_BY_DAEMON
    from .cronjobs import CRONJOB_KEPT_BY_DAEMON
    from .gitsyncs import KEPT_BY_DAEMON
    from .queues import QUEUE_KEPT_BY_DAEMON

    return {GITSYNC_KIND: KEPT_BY_DAEMON, ALERT_RULE_KIND: ALERT_RULE_KEPT_BY_DAEMON,
            NOTIFIER_KIND: NOTIFIER_KEPT_BY_DAEMON, CRONJOB_KIND: CRONJOB_KEPT_BY_DAEMON,
            QUEUE_KIND: QUEUE_KEPT_BY_DAEMON}[kind]



def load_desired(paths: Sequence[str], used: dict[str, str | None] | None = None,
                 kept: list[KeptSpec] | None = None) -> tuple[tuple[ProcessSpec, ...], DesiredState]:
    """The specs of `paths` and the desired state they make, or a ManifestError listing every problem.
    `kept`: where GitSyncs, AlertRules, Notifiers, CronJobs and Queues go (load_sources)."""
    specs = load_specs(paths, used=used, kept=kept)
    return specs, graph.desired_state(specs)


def load_specs(paths: Sequence[str], cache: SpecCache | None = None,
               variables: Mapping[str, str] | None = None, used: dict[str, str | None] | None = None,
               kept: list[KeptSpec] | None = None, env_root: str | None = None) -> tuple[ProcessSpec, ...]:
    """Every Process and Job in the files and directories `paths`, in file and document order, with their
    ${NAME}s taken from `variables` (default: this process's environment). `env_root`: envFrom files must
    lie under it, links resolved (a GitSync's tree: a commit may not read the host's files into problems).

    Raises ManifestError with every problem found in every file (syntax, schema, envFrom, duplicates,
    and the dependency graph of the documents that are valid).
    """
    limits = ReadLimits.from_environment(os.environ)
    sources, problems = read_sources(paths, limits)
    return load_sources(sources, limits, cache, problems, os.environ if variables is None else variables, used,
                        kept, env_root)


def read_sources(paths: Sequence[str], limits: ReadLimits) -> tuple[list[Source], list[Problem]]:
    """The text of every manifest file of `paths`, each within its budget; and why any could not be read."""
    files, found_problems = find_manifest_files(paths, limits)
    problems = list(found_problems)
    sources = []
    for file in files:
        text, read_problems = read_text(file, limits)
        problems += read_problems
        if text is not None:
            sources.append(Source(shown_as(file), text))
    return sources, problems


def load_sources(sources: Sequence[Source], limits: ReadLimits, cache: SpecCache | None = None,
                 problems: Sequence[Problem] = (), variables: Mapping[str, str] | None = None,
                 used: dict[str, str | None] | None = None, kept: list[KeptSpec] | None = None,
                 env_root: str | None = None) -> tuple[ProcessSpec, ...]:
    """The specs of manifest texts, checked as load_specs checks files; with a cache, a document validated
    before (same file, same text, same envFrom files, same values of the ${NAME}s it used) costs a hash
    instead of a parse and a validation. `variables`: what ${NAME} means (interpolate.py; none given: every
    reference is unset); `used` collects the names looked up, with their values. `kept` collects what the
    daemon keeps, each valid one built: GitSyncs (gitsyncs.py), AlertRules and Notifiers (alerting.py),
    CronJobs (cronjobs.py), Queues (queues.py); without it (a caller that cannot keep them, such as a
    foreground run) each of them is a problem. Their names are their own, apart from processes:
    `gitsync/NAME`, `alertrule/NS/NAME`, `notifier/NS/NAME`, `cronjob/NS/NAME`, `queue/NAME` (kept_key). An
    AlertRule whose condition needs a limit is checked against the processes of the same load
    (alerting.check_limits); a Job (or a CronJob's jobTemplate) whose requests can never fit a Queue of the
    same load, at its requests (queues.check_requests)."""
    given: Mapping[str, str] = variables if variables is not None else {}
    used = used if used is not None else {}
    found = list(problems)
    specs: list[ProcessSpec] = []
    names: dict[str, Location] = {}
    kept_names: dict[str, Location] = {}  # kept_key: apart from processes' (a namespace may be called gitsync)
    rules: list[tuple[AlertRuleSpec, Location]] = []  # with where each asks for a limit, for check_limits
    listens: dict[str, tuple[str, str, Location]] = {}  # listen address -> the first process, socket and place
    queues: list[QueueSpec] = []  # the Queues of this load, and the queued Jobs with where their requests are
    queued: list[tuple[ProcessSpec, dict[str, Location], FieldPath]] = []
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
            cached = cache.get(source.file, text, first_line, given, used) if cache is not None else None
            if cached is not None:
                for known, where in cached:
                    found += _check_name(known.key, known.kind.value, where, names)
                    if known.queue is not None:  # no positions inside a cached document: at its start
                        queued.append((known, {}, _REQUESTS))
                    # A document read from the cache has no positions inside it: its listens are at its start.
                    found += _check_listens(known, [known.location or where] * len(known.sockets), listens)
                    specs.append(known)
                continue
            documents, chunk_problems = parse_documents(source.file, text, limits, first_line)
            valid: list[tuple[ProcessSpec, Location]] = []
            env_files: list[str] = []
            names_used: set[str] = set()
            holds_kept = False  # the cache keeps ProcessSpecs only: a chunk with a GitSync (...) is read afresh
            for doc in documents:
                built, doc_problems, read_env = _document_spec(doc, given, names_used, env_root)
                chunk_problems += doc_problems
                env_files += read_env
                kind = doc.value.get("kind") if isinstance(doc.value, dict) else None
                if kind in KEPT_KINDS:
                    holds_kept = True
                    found += _check_unique(doc, kept_names)
                    if kept is None:
                        chunk_problems.append(Problem(doc.at(("kind",)), "kind", _kept_by_daemon(str(kind))))
                    elif isinstance(built, (GitSyncSpec, AlertRuleSpec, NotifierSpec, CronJobSpec, QueueSpec)):
                        kept.append(built)
                    if isinstance(built, QueueSpec):
                        queues.append(built)
                    if isinstance(built, CronJobSpec) and built.job.queue is not None:
                        from .cronjobs import TEMPLATE

                        queued.append((built.job, _request_places(doc, (*TEMPLATE, "resources", "requests")),
                                       (*TEMPLATE, "resources", "requests")))
                    if isinstance(built, AlertRuleSpec) and built.needs_limit:
                        from .alerting import limit_field

                        rules.append((built, doc.at(limit_field(built))))
                    continue
                found += _check_unique(doc, names)
                if isinstance(built, ProcessSpec):
                    specs.append(built)
                    if built.kind is Kind.JOB and built.queue is not None:
                        queued.append((built, _request_places(doc, _REQUESTS), _REQUESTS))
                    valid.append((built, doc.at(("metadata", "name"))))
                    found += _check_listens(
                        built, [doc.at(("spec", "sockets", i, "listen")) for i in range(len(built.sockets))], listens)
            found += chunk_problems
            chunk_used = {name: given.get(name) for name in names_used}
            used.update(chunk_used)
            if cache is not None and not chunk_problems and not holds_kept:
                cache.put(source.file, text, first_line, valid, env_files, chunk_used)
    # A dependency on a document that is itself invalid is not reported as missing a second time.
    found += graph.check(specs, also_defined=frozenset(names))
    if rules:
        from .alerting import check_limits

        found += check_limits(rules, specs)
    if queues and queued:
        from .queues import check_requests

        found += check_requests(queued, queues)
    if found:
        raise ManifestError(list(dict.fromkeys(found)))
    return tuple(specs)


_REQUESTS: FieldPath = ("spec", "resources", "requests")


def _request_places(doc: Document, path: FieldPath) -> dict[str, Location]:
    """Where a Job's requests' cpu and memory are written in `doc`, those it gives."""
    return {name: doc.at((*path, name)) for name in ("cpu", "memory") if (*path, name) in doc.keys}


def _check_unique(doc: Document, names: dict[str, Location]) -> list[Problem]:
    value = doc.value
    if not isinstance(value, dict):
        return []
    metadata = value.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        return []
    kind = value.get("kind")
    if kind in HOST_KINDS:  # gitsync/NAME, queue/NAME: no namespace
        return _check_name(f"{str(kind).lower()}/{metadata['name']}", kind, doc.at(("metadata", "name")), names)
    namespace = metadata.get("namespace", DEFAULT_NAMESPACE)
    if not isinstance(namespace, str):
        return []
    prefix = f"{str(kind).lower()}/" if kind in KEPT_KINDS else ""  # alertrule/NS/NAME, cronjob/NS/NAME, ...
    return _check_name(f"{prefix}{namespace}/{metadata['name']}", kind, doc.at(("metadata", "name")), names)


def _check_name(key: str, kind: object, where: Location, names: dict[str, Location]) -> list[Problem]:
    first = names.setdefault(key, where)
    if first is where:
        return []
    return [Problem(where, "metadata.name", f"duplicate {kind} {key}, first defined at {first}")]


def _check_listens(spec: ProcessSpec, locations: Sequence[Location],
                   listens: dict[str, tuple[str, str, Location]]) -> list[Problem]:
    """A listen address is bound once, by the daemon, for one socket of one process: the same one again
    (written alike or not: listen_key) is an error at the later one."""
    problems = []
    for index, (socket, where) in enumerate(zip(spec.sockets, locations)):
        entry = (spec.key, socket.name, where)
        first = listens.setdefault(listen_key(socket.listen), entry)
        if first != entry:
            problems.append(Problem(where, f"spec.sockets[{index}].listen", (
                f"duplicate listen {socket.listen!r}, first used by socket {first[1]!r} of {first[0]} at {first[2]}")))
    return problems


def _document_spec(doc: Document, variables: Mapping[str, str], used: set[str], env_root: str | None = None,
                   ) -> tuple[ProcessSpec | KeptSpec | None, list[Problem], list[str]]:
    """Validate one document; build its spec when nothing is wrong with it. Also: the envFrom files it read."""
    value = doc.value
    if not isinstance(value, dict):
        message = f"a manifest must be a mapping with apiVersion, kind, metadata and spec, got {doc.show((), value)}"
        return None, [Problem(doc.at(()), "", message)], []
    problems = _check_kind(doc, value)
    if problems:
        return None, problems, []
    unsubstituted = _interpolate_document(doc, value, variables, used)
    problems = list(unsubstituted)
    api, kind = value["apiVersion"], value["kind"]
    if not is_valid(api, kind, value):
        failed = {problem.path for problem in unsubstituted}  # a value left as written: its reason is said
        for error in full_validator(api, kind).iter_errors(value):
            problems += [p for p in explain(doc, error) if p.path not in failed]
    spec = value.get("spec")
    if kind == GITSYNC_KIND:  # no envFrom, no command: its own rules
        from .gitsyncs import build_gitsync, check_gitsync_rules  # only where a GitSync is: ~5 ms of a start

        if isinstance(spec, dict):
            problems = _one_message_each(problems, check_gitsync_rules(doc, spec))
        if problems:
            return None, list(dict.fromkeys(problems)), []
        return build_gitsync(doc, value), [], []
    if kind in (ALERT_RULE_KIND, NOTIFIER_KIND):  # as a GitSync: no envFrom, no command of a process
        from . import alerting  # only where one is

        check, build = ((alerting.check_alert_rule_rules, alerting.build_alert_rule) if kind == ALERT_RULE_KIND
                        else (alerting.check_notifier_rules, alerting.build_notifier))
        if isinstance(spec, dict):
            problems = _one_message_each(problems, check(doc, spec))
        if problems:
            return None, list(dict.fromkeys(problems)), []
        return build(doc, value), [], []
    if kind == QUEUE_KIND:  # as a GitSync: host-level, no envFrom, no command
        from .queues import build_queue, check_queue_rules

        if isinstance(spec, dict):
            problems = _one_message_each(problems, check_queue_rules(doc, spec))
        if problems:
            return None, list(dict.fromkeys(problems)), []
        return build_queue(doc, value), [], []
    env: dict[str, str] = {}
    env_files: list[str] = []
    if kind == CRONJOB_KIND:  # its jobTemplate is read as a Job's spec is: envFrom, env, the Job rules
        from .cronjobs import TEMPLATE, build_cronjob, check_cronjob_rules

        template = spec.get("jobTemplate") if isinstance(spec, dict) else None
        if isinstance(spec, dict):
            problems = _one_message_each(problems, check_cronjob_rules(doc, spec))
        if isinstance(template, dict):
            env, env_problems, env_files = _environment(doc, template, variables, used, env_root, TEMPLATE)
            problems += env_problems
        if problems:
            return None, list(dict.fromkeys(problems)), env_files
        return build_cronjob(doc, value, env), [], env_files
    if isinstance(spec, dict):
        problems = _one_message_each(problems, check_rules(doc, spec))
        env, env_problems, env_files = _environment(doc, spec, variables, used, env_root)
        problems += env_problems
    if problems:
        return None, list(dict.fromkeys(problems)), env_files
    return build_spec(doc, value, env), [], env_files


def _one_message_each(schema_problems: list[Problem], rule_problems: list[Problem]) -> list[Problem]:
    """The messages that make the point, once: where a rule explains a field (`256MB`: write 256Mi), the
    schema's word on that field (a pattern it does not match) goes; where a field of a mapping is a near
    miss (`htpp`: did you mean 'http'?), the fields the mapping then lacks are no news."""
    explained = {(problem.path, problem.location) for problem in rule_problems}
    # `htpp` at spec.probes.readiness suggests 'http': "missing required field 'http'" there is no news
    suggested = {(problem.path, match.group(1)) for problem in schema_problems
                 if problem.message.startswith("unknown field")
                 and (match := re.search(r"\(did you mean '([^']+)'\?\)", problem.message))}

    def news(problem: Problem) -> bool:
        if problem.message.startswith("missing required field"):  # 'x', or: one of 'a', 'b' (...)
            wanted = re.findall(r"'([^']+)'", problem.message.split("(", 1)[0])
            return not any((problem.path, name) in suggested for name in wanted)
        if problem.message.startswith("unknown field"):
            return True
        return (problem.path, problem.location) not in explained  # a value the rule explains better

    return [problem for problem in schema_problems if news(problem)] + rule_problems


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


MAX_SUBSTITUTED = 8 << 20  # characters ${NAME}s may add to one document


def _interpolate_document(doc: Document, value: dict[str, Any], variables: Mapping[str, str],
                          used: set[str]) -> list[Problem]:
    """Substitute the ${NAME}s of every string value (not keys, not apiVersion or kind) in place; a value
    that cannot be substituted is left as written, with a problem. Bounded: one value may grow to
    interpolate.MAX_VALUE characters, the whole document by MAX_SUBSTITUTED."""
    problems: list[Problem] = []
    grown = [0]

    def walk(node: Any, path: FieldPath) -> Any:
        if isinstance(node, str):
            if "${" not in node:
                return node
            try:
                text = interpolate(node, variables, used)
            except InterpolationError as error:
                problems.append(Problem(doc.at(path), dotted(path), str(error)))
                return node
            grown[0] += max(0, len(text) - len(node))
            if grown[0] > MAX_SUBSTITUTED:
                problems.append(Problem(doc.at(path), dotted(path), (
                    f"substituted, this document's values would grow by more than {MAX_SUBSTITUTED:,} "
                    "characters: refused")))
                return node
            return plain_scalar(text) if path in doc.plain_references else text
        if isinstance(node, dict):
            for key in node:
                node[key] = walk(node[key], (*path, key))
        elif isinstance(node, list):
            for index, item in enumerate(node):
                node[index] = walk(item, (*path, index))
        return node

    for key, item in value.items():
        if key not in ("apiVersion", "kind"):
            value[key] = walk(item, (key,))
    return problems


def _environment(doc: Document, spec: dict[str, Any], variables: Mapping[str, str], used: set[str],
                 env_root: str | None = None, at: FieldPath = ("spec",),
                 ) -> tuple[dict[str, str], list[Problem], list[str]]:
    """envFrom files in order, then `env` over them, and the files read. Entries the schema refused are
    skipped, not read. `at`: where the spec is in the document (a CronJob's jobTemplate: spec.jobTemplate)."""
    folder = os.path.dirname(doc.file)
    env: dict[str, str] = {}
    problems: list[Problem] = []
    files: list[str] = []
    sources = spec.get("envFrom")
    for index, source in enumerate(sources if isinstance(sources, list) else ()):
        if not isinstance(source, dict) or not isinstance(source.get("file"), str) or not source["file"]:
            continue
        path: FieldPath = (*at, "envFrom", index, "file")
        file = os.path.join(folder, source["file"])
        if env_root is not None and not _inside(file, env_root):
            problems.append(Problem(doc.at(path), dotted(path), (
                "envFrom outside the synced tree: a GitSync's manifests may only read files of their commit")))
            continue
        files.append(file)
        values, file_problems = _read_env_file(file, doc.at(path), dotted(path), variables, used)
        env.update(values)
        problems += file_problems
    given = spec.get("env")
    if isinstance(given, dict):
        env.update(given)
    return env, problems, files


def _inside(file: str, root: str) -> bool:
    real, top = os.path.realpath(file), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip("/") + "/")


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


MAX_ENV_FILE_PROBLEMS = 20  # listed per env file; a file of garbage says so without a million lines


def _read_env_file(file: str, at: Location, field_path: str, variables: Mapping[str, str] | None = None,
                   used: set[str] | None = None) -> tuple[dict[str, str], list[Problem]]:
    """The values of a dotenv file; ${NAME} in a value not in single quotes is substituted from `variables`
    and the names the file set above it, as compose does."""
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
    bindings = list(parse_stream(io.StringIO(text)))
    for binding in bindings:
        if len(problems) == MAX_ENV_FILE_PROBLEMS:
            problems.append(Problem(Location(file, binding.original.line, 1), field_path,
                                    f"more problems in this env file are not listed (the first {len(problems)} are)"))
            break
        where = Location(file, binding.original.line, 1)
        if binding.error:
            problems.append(Problem(where, field_path, "cannot parse this line: expected NAME=value"))
        elif binding.key is not None and not _ENV_NAME.match(binding.key):
            problems.append(Problem(where, field_path, f"{binding.key!r} is not {PATTERN_WORDS[_ENV_NAME.pattern]}"))
        elif binding.key is not None and binding.value is None:
            problems.append(
                Problem(where, field_path, f"{binding.key!r} has no value: write {binding.key}= for an empty one")
            )
    if problems:
        return {}, problems
    # Substituted here, not by python-dotenv: from the applying command's variables, never the daemon's own.
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    literal = {binding.key for binding in bindings
               if binding.key is not None and binding.original.string.split("=", 1)[-1].lstrip().startswith("'")}
    lines = {binding.key: binding.original.line for binding in bindings if binding.key is not None}
    found: dict[str, str] = {}
    names = ChainMap(found, dict(variables or {}))  # names the file set above a value, then the command's
    for name, value in values.items():
        if value is None:
            continue
        if name not in literal and "${" in value:
            if len(problems) == MAX_ENV_FILE_PROBLEMS:
                problems.append(Problem(Location(file, lines.get(name, 1), 1), field_path, (
                    f"more problems in this env file are not listed (the first {len(problems)} are)")))
                break
            try:
                value = interpolate(value, names, used)
            except InterpolationError as error:
                problems.append(Problem(Location(file, lines.get(name, 1), 1), field_path, f"{name}: {error}"))
                continue
        found[name] = value
    return ({}, problems) if problems else (found, [])
