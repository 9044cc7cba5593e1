"""What a conversion gives back: the manifest documents and a note for every setting that was not mapped,
or that was mapped with a difference the user should know of; and the pieces every format builds them with.

Owns the Note and Conversion values, the Collector a format's reader fills (notes, problems that stop the
conversion, names made to follow the manifest's name rule, each once), the Fields view that reports every
key of an input mapping nobody took, the last check of every document against the schema (a document that
would not validate is dropped with a note, never written), moving relative paths to where the manifests
will be saved, and the YAML text. Never reads or writes a file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import yaml

from ...core.errors import Location, ManifestError, Problem
from ..codec import API_VERSION
from ..files import ReadLimits
from .values import NAME_RULE, is_name, sanitised

JSONDict = dict[str, Any]
Key = str | int
KeyPath = tuple[Key, ...]


def shown(path: KeyPath) -> str:
    """`services.web.ports`, `apps[0].env`: a place in the input as its own format names it."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class Note(NamedTuple):
    """A setting of the input that was not mapped (or mapped with a difference), and where it was written."""

    location: Location
    path: str  # the setting as the input format names it: services.web.ports, [program:web] stopasgroup
    message: str

    def __str__(self) -> str:
        where = f"{self.location.file}:{self.location.line}" if self.location.line else self.location.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass(frozen=True)
class Conversion:
    """Manifest documents (plain JSON-able mappings, in the input's order) and the notes, in input order."""

    documents: tuple[JSONDict, ...]
    notes: tuple[Note, ...]


class Options(NamedTuple):
    """What a conversion needs to know beyond the input's text."""

    here: str  # the input file's folder, absolute (supervisord's %(here)s)
    namespace: str | None = None  # metadata.namespace for every object (sanitised); None: the input's, or none
    dotenv: str | None = None  # a .env file beside a Procfile (foreman and honcho read it), relative to it
    limits: ReadLimits = ReadLimits()  # budgets of reading the input (the manifests' own)


class Collector:
    """Notes, stopping problems and names of one conversion, in the order they are found."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.notes: list[Note] = []
        self.problems: list[Problem] = []
        self._names: dict[str, str] = {}  # name written -> the input's name it came from

    def note(self, location: Location, path: KeyPath | str, message: str) -> None:
        self.notes.append(Note(location, path if isinstance(path, str) else shown(path), message))

    def unmapped(self, location: Location, path: KeyPath | str, reason: str) -> None:
        self.note(location, path, f"not mapped ({reason})")

    def problem(self, location: Location, path: KeyPath | str, message: str) -> None:
        self.problems.append(Problem(location, path if isinstance(path, str) else shown(path), message))

    def name(self, raw: str, location: Location, path: KeyPath | str) -> str:
        """A unique manifest name for the input's `raw` name, with a note when it had to change."""
        name = raw if is_name(raw) else sanitised(raw)
        if name != raw:
            self.note(location, path, f"name {raw!r} written as {name!r} (names are {NAME_RULE})")
        if name in self._names:
            taken, count = name, 2
            while f"{taken[:60]}-{count}" in self._names:
                count += 1
            name = f"{taken[:60]}-{count}"
            self.note(location, path, f"{taken!r} is already the name of {self._names[taken]!r}: written as {name!r}")
        self._names[name] = raw
        return name

    def namespace(self, raw: str, location: Location, path: KeyPath | str) -> str:
        name = raw if is_name(raw) else sanitised(raw)
        if name != raw:
            self.note(location, path, f"namespace {raw!r} written as {name!r} (namespaces are {NAME_RULE})")
        return name

    def finish(self, documents: list[JSONDict]) -> Conversion:
        """The conversion, every document checked against the schema (one that fails is dropped, with a
        note); raises ManifestError for the problems that stopped it (an input not readable as its format).
        No documents at all is for the caller to refuse, after showing the notes that say why."""
        if self.problems:
            raise ManifestError(self.problems)
        kept = tuple(d for d in (_as_written(d) for d in documents) if self._valid(d))
        return Conversion(kept, tuple(sorted(self.notes, key=lambda n: (n.location.line, n.location.column))))

    def _valid(self, document: JSONDict) -> bool:
        from ..schema import full_validator, is_valid

        kind = document["kind"]
        if is_valid(API_VERSION, kind, document):
            return True
        errors = sorted(full_validator(API_VERSION, kind).iter_errors(document), key=lambda e: str(list(e.path)))
        words = "; ".join(f"{shown(tuple(e.absolute_path))}: {e.message}" for e in errors[:3])
        self.note(Location(self.file), document["metadata"]["name"], f"not converted: the manifest would not be "
                  f"valid ({words})")
        return False


def _as_written(document: JSONDict) -> JSONDict:
    """The document with every `$(` a replica would expand at its start (core/expand.py: in an argv without a
    shell, an exec check's argv and env values) written `$$(`, the text `$(`: no source format means that
    (a shell, where one runs, does its own). The converters write none of their own there."""
    spec = dict(document["spec"])

    def text(value: str) -> str:
        return value.replace("$(", "$$(")

    if isinstance(spec.get("command"), list):
        spec["command"] = [text(word) for word in spec["command"]]
    if isinstance(spec.get("env"), dict):
        spec["env"] = {name: text(value) for name, value in spec["env"].items()}
    if isinstance(spec.get("probes"), dict):
        spec["probes"] = {kind: {**probe, "exec": {**probe["exec"], "command": [text(w) for w in
                                                                              probe["exec"]["command"]]}}
                          if "exec" in probe else probe for kind, probe in spec["probes"].items()}
    return {**document, "spec": spec}


def document(kind: str, name: str, spec: JSONDict, namespace: str | None = None,
             labels: Mapping[str, str] | None = None) -> JSONDict:
    """A manifest document in the order people read one: apiVersion, kind, metadata, spec."""
    metadata: JSONDict = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


@dataclass
class Fields:
    """One mapping of the input, read key by key; `report` notes every key nobody took as not mapped.

    `reasons` says why a key that is known not to map does not (`ports`: orchestrator does not publish
    ports); any other key is reported with `otherwise`.
    """

    value: Mapping[str, Any]
    path: KeyPath
    locate: Callable[[KeyPath], Location]
    taken: set[str] = field(default_factory=set)

    def take(self, key: str) -> Any:
        self.taken.add(key)
        return self.value.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self.value

    def at(self, key: str | None = None) -> Location:
        return self.locate(self.path if key is None else self.path + (key,))

    def place(self, key: str) -> KeyPath:
        return self.path + (key,)

    def rest(self) -> Iterator[str]:
        return (key for key in self.value if key not in self.taken)

    def report(self, into: Collector, reasons: Mapping[str, str], otherwise: str) -> None:
        for key in list(self.rest()):
            reason = reasons.get(key) or (_EXTENSION if key.startswith("x-") else otherwise)
            into.unmapped(self.at(key), self.place(key), reason)
            self.taken.add(key)


_EXTENSION = "an extension field: only read where an alias refers to it"


def mapping(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


# --- where the manifests are saved --------------------------------------------------------------------------


def placed(conversion: Conversion, source_dir: str, target_dir: str) -> Conversion:
    """The documents with their relative paths (workingDir, envFrom files) made relative to `target_dir`,
    the folder the manifests are saved in, from `source_dir`, the input's folder, which they were written
    relative to (both absolute). A document without a workingDir ran in the input's folder: it gets one."""
    if os.path.normpath(source_dir) == os.path.normpath(target_dir):
        return conversion

    def moved(path: str) -> str:
        return path if os.path.isabs(path) else os.path.relpath(os.path.join(source_dir, path), target_dir)

    documents = []
    for original in conversion.documents:
        spec = original["spec"]
        folder = moved(spec.get("workingDir", "."))
        after = "shell" if "shell" in spec else "command"  # workingDir next to the command it is for
        ordered: JSONDict = {}
        for key, value in spec.items():
            if key == "envFrom":
                value = [{**item, "file": moved(item["file"])} for item in value]
            if key != "workingDir":
                ordered[key] = value
            if key == after:
                ordered["workingDir"] = folder
        documents.append({**original, "spec": ordered})
    return replace(conversion, documents=tuple(documents))


def to_yaml(conversion: Conversion, source: str, kind: str) -> str:
    """Multi-document YAML, headed by a comment that names the input and lists the notes."""
    lines = [f"# Converted from {_one_line(source)} ({kind}) by `orchestrator convert`."]
    if conversion.notes:
        lines.append(f"# {len(conversion.notes)} note(s): settings not mapped, or mapped with a difference:")
        lines += [f"#   {_one_line(str(note))}" for note in conversion.notes]
    body = yaml.dump_all(list(conversion.documents), Dumper=_Dumper, explicit_start=True, sort_keys=False,
                         default_flow_style=False, allow_unicode=True, width=120)
    return "\n".join(lines) + "\n" + body


# libyaml's emitter where PyYAML was built with it: several times faster than the pure-Python one.
_BASE_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BASE_DUMPER):  # type: ignore[valid-type,misc]
    """Strings holding `${` are quoted: the loader reads an unquoted one as YAML reads a plain value once it
    is substituted (`${PORT}` as the number 8080), and an env value or argv item must stay a string."""


def _string(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "'" if "${" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _string)


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
