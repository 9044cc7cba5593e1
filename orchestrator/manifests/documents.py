"""YAML documents read with the file, line and column of every key and value, for messages that point at
them.

PyYAML composes the nodes (libyaml's loader where PyYAML was built with it); the Builder turns them into
plain values, recording where each came from and what is wrong on the way: duplicate keys (which PyYAML
would quietly merge), aliases that contain themselves, tags no manifest uses, numbers that are not finite.
Nothing here knows what a manifest is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..core.errors import Location, Problem

FieldPath = tuple[str | int, ...]

_YAML = "tag:yaml.org,2002:"
# libyaml's loader composes the same nodes with the same marks about nine times faster (measured: 500
# documents in 60 ms against 561 ms); the pure-Python one is the fallback where PyYAML was built without it.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Scalars with these tags become Python values; any other standard tag (timestamp, binary) keeps its text,
# because no manifest field is a date and turning one into a datetime only makes messages stranger.
_VALUE_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null")}


def dotted(path: Iterable[str | int]) -> str:
    """`spec.dependsOn[1].name`; keys that are not identifiers (label keys) are quoted in brackets."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


@dataclass
class Document:
    """One YAML document as plain Python values, with where each value and each mapping key was written."""

    file: str
    value: object = None
    values: dict[FieldPath, Location] = field(default_factory=dict)
    keys: dict[FieldPath, Location] = field(default_factory=dict)
    raws: dict[FieldPath, str] = field(default_factory=dict)  # scalar text as written, to quote it back

    def at(self, path: FieldPath) -> Location:
        """Where the value at `path` starts, or the nearest enclosing value that exists."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, Location(self.file, 1, 1))

    def key_at(self, path: FieldPath) -> Location:
        return self.keys.get(path) or self.at(path)

    def show(self, path: FieldPath, value: object) -> str:
        """A value as the user wrote it: strings quoted, other scalars in their YAML spelling."""
        if isinstance(value, str):
            return repr(value)
        if isinstance(value, list):
            return "a list"
        if isinstance(value, dict):
            return "a mapping"
        raw = self.raws.get(path)
        if value is None:
            return raw or "nothing"
        return raw if raw is not None else json.dumps(value)


class Builder:
    """Builds plain values from a composed YAML node, recording positions and problems on the way."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self._constructor = SafeConstructor()
        self._open: set[int] = set()  # nodes being built: an alias back into one of them is a cycle

    def _loc(self, mark: yaml.Mark | None) -> Location:
        if mark is None:
            return Location(self.file)
        return Location(self.file, mark.line + 1, mark.column + 1)

    def document(self, node: Node) -> Document:
        doc = Document(self.file)
        doc.value = self._build(node, (), doc)
        return doc

    def _build(self, node: Node, path: FieldPath, doc: Document) -> object:
        doc.values[path] = self._loc(node.start_mark)
        if isinstance(node, ScalarNode):
            return self._scalar(node, path, doc)
        if id(node) in self._open:
            self.problems.append(Problem(doc.values[path], dotted(path), "an alias refers to a node that contains it"))
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self._build(item, path + (index,), doc) for index, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self._mapping(node, path, doc)
            return None
        finally:
            self._open.discard(id(node))

    def _scalar(self, node: ScalarNode, path: FieldPath, doc: Document) -> object:
        doc.raws[path] = node.value
        if node.tag not in _VALUE_TAGS:
            if not node.tag.startswith(_YAML):
                self.problems.append(Problem(doc.values[path], dotted(path), f"unsupported YAML tag {node.tag!r}"))
            return node.value
        try:
            value = self._constructor.construct_object(node)
        except (ConstructorError, ValueError) as error:
            self.problems.append(Problem(doc.values[path], dotted(path), f"cannot read {node.value!r}: {error}"))
            return node.value
        if isinstance(value, float) and not math.isfinite(value):
            self.problems.append(Problem(doc.values[path], dotted(path), f"expected a finite number, got {node.value}"))
        return value

    def _mapping(self, node: MappingNode, path: FieldPath, doc: Document) -> dict[str, object]:
        # Duplicates are looked for before merge keys (`<<`) are expanded: a key written here may override a
        # merged one on purpose, but the same key written twice is a mistake PyYAML would hide.
        seen: dict[str, Location] = {}
        for key_node, _ in node.value:
            if key_node.tag == _YAML + "merge":
                continue
            where = self._loc(key_node.start_mark)
            if not isinstance(key_node, ScalarNode):
                self.problems.append(Problem(where, dotted(path), "a key must be a plain word, not a list or mapping"))
                continue
            first = seen.setdefault(key_node.value, where)
            if first is not where:
                self.problems.append(
                    Problem(
                        where,
                        dotted(path + (key_node.value,)),
                        f"duplicate key {key_node.value!r}, first at line {first.line}, column {first.column}",
                    )
                )
        try:
            self._constructor.flatten_mapping(node)
        except ConstructorError as error:
            self.problems.append(
                Problem(self._loc(error.problem_mark), dotted(path), f"bad merge key: {error.problem}")
            )
        result: dict[str, object] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _YAML + "merge":
                continue
            key = key_node.value  # the text as written: in a manifest every key is a name
            doc.keys[path + (key,)] = self._loc(key_node.start_mark)
            result[key] = self._build(value_node, path + (key,), doc)
        return result


def read_documents(file: str) -> tuple[list[Document], list[Problem]]:
    try:
        text = Path(file).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        return [], [Problem(Location(file), "", f"not UTF-8 text: {error.reason} at byte {error.start}")]
    except OSError as error:
        return [], [Problem(Location(file), "", f"cannot read: {error.strerror or error}")]
    builder = Builder(file)
    documents: list[Document] = []
    try:
        for node in yaml.compose_all(text, Loader=_LOADER):
            # An empty document (`---` alone, or only comments) composes to an empty plain null scalar.
            if node is None or (isinstance(node, ScalarNode) and node.tag == _YAML + "null" and node.value == ""):
                continue
            documents.append(builder.document(node))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = f"invalid YAML: {error.problem or error.context}"
        if error.context and error.problem and error.context_mark is not None:
            context = error.context_mark
            message += f" ({error.context} at line {context.line + 1}, column {context.column + 1})"
        builder.problems.append(Problem(builder._loc(mark), "", message))
    except yaml.YAMLError as error:
        builder.problems.append(Problem(Location(file), "", f"invalid YAML: {error}"))
    return documents, builder.problems
