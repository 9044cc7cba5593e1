"""YAML documents read with the file, line and column of every key and value, bounded in bytes, documents,
depth and values, for messages that point at them.

PyYAML's parser (libyaml's where PyYAML was built with it) streams events; the Builder turns them straight
into plain values, never holding a node tree, recording where each came from and what is wrong on the way:
duplicate keys (which PyYAML would quietly merge), aliases that contain themselves, tags that are not YAML's
standard ones (`!!python/...`, `!Ref`, any local tag), numbers that are not finite. An alias adds the values
it stands for to the file's count, so a small file whose aliases expand exponentially ("billion laughs")
stops at its budget in milliseconds. Only regular files are opened (a FIFO would block), never more than
their budget of bytes is read. Nothing here knows what a manifest is.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from ..core.errors import Location, Problem
from .files import LIMIT_VARIABLES, ReadLimits, read_text

FieldPath = tuple[str | int, ...]

_YAML = "tag:yaml.org,2002:"
# libyaml's parser streams the same events with the same marks several times faster; the pure-Python one is
# the fallback where PyYAML was built without it.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Scalars with these tags become Python values; the other standard scalar tags (timestamp, binary) keep their
# text, because no manifest field is a date and turning one into a datetime only makes messages stranger.
_VALUE_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null")}
_TEXT_TAGS = {_YAML + t for t in ("timestamp", "binary", "value", "yaml")}
_SEQUENCE_TAG, _MAPPING_TAG, _MERGE_TAG = _YAML + "seq", _YAML + "map", _YAML + "merge"
_RESOLVER = Resolver()
_CONSTRUCTOR = SafeConstructor()
_NON_SPECIFIC = (None, "!")  # "!" forces the kind's default tag (YAML 1.1, 6.9.1): resolved like an untagged node


class _OverBudget(Exception):
    """A budget of ReadLimits was reached: reading this file stops here."""

    def __init__(self, location: Location, path: FieldPath, message: str) -> None:
        super().__init__(message)
        self.problem = Problem(location, dotted(path), message)


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
    # Unquoted scalars holding ${: once interpolated, read as YAML reads an unquoted value (`port: ${PORT}` an int)
    plain_references: set[FieldPath] = field(default_factory=set)

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


@dataclass
class _Anchored:
    """A value with an anchor: what an alias to it copies, its size, and where it and its parts were written."""

    path: FieldPath
    location: Location
    start: int  # its parts' paths are the Builder's `order[start:end]`
    end: int = 0
    value: object = None
    size: int = 0
    done: bool = False


@dataclass
class _Collection:
    """A list or mapping being built, while its events stream by."""

    path: FieldPath
    location: Location
    value: list[object] | dict[str, object]
    anchor: str | None
    mapping: bool
    size: int = 1
    key: object = None  # a mapping's key whose value comes next, or one of the sentinels below
    key_location: Location | None = None
    merges: list[tuple[object, Location]] = field(default_factory=list)
    seen: dict[str, Location] = field(default_factory=dict)


_NO_KEY = object()  # a mapping's key comes next
_MERGE = object()  # the key was `<<`: the value comes next, to be merged
_KEY_BUILT = object()  # a key that is a list or mapping is being built (to count it), then dropped
_SKIP = object()  # the key was refused: its value is built (to count it) and dropped


class Builder:
    """Builds plain values from the parser's events, recording positions and problems on the way."""

    def __init__(self, file: str, limits: ReadLimits, line_offset: int = 0) -> None:
        self.file = file
        self.limits = limits
        self.line_offset = line_offset  # lines of the file before the text being parsed
        self.problems: list[Problem] = []
        self.values = 0  # every key and value of the document so far, aliases expanded
        self.written = 0  # those written out, not through an alias
        self.started = 0  # documents begun
        self.documents: list[Document] = []  # those read whole (kept when a later one is broken)
        self.order: list[FieldPath] = []  # every path of the document being read, in the order written

    def _loc(self, mark: Any) -> Location:
        if mark is None:
            return Location(self.file)
        return Location(self.file, mark.line + 1 + self.line_offset, mark.column + 1)

    def read(self, events: Iterable[yaml.Event]) -> None:
        """Every document of the stream into `documents`; stops with a problem at the first budget it goes over,
        and lets the parser's errors through (what was read before them stays read)."""
        stack: list[_Collection] = []
        doc = Document(self.file)
        anchors: dict[str, _Anchored] = {}
        try:
            for event in events:
                if isinstance(event, yaml.DocumentStartEvent):
                    self.started += 1
                    if self.started > self.limits.max_documents:
                        raise _OverBudget(self._loc(event.start_mark), (), self._limit_words(
                            f"more than {self.limits.max_documents:,} documents in this file", "max_documents"))
                    doc, anchors, self.order = Document(self.file), {}, []
                    self.values = self.written = 0  # the values budget is per document, as anchors are
                elif isinstance(event, yaml.DocumentEndEvent):
                    # An empty document (`---` alone, or only comments) is an empty plain scalar: nothing to read.
                    if not (doc.value is None and doc.raws.get(()) == "" and () not in doc.keys):
                        self.documents.append(doc)
                elif isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent, yaml.SequenceStartEvent,
                                        yaml.MappingStartEvent)):
                    self._node(event, stack, doc, anchors)
                elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                    self._end(stack.pop(), stack, doc, anchors)
        except _OverBudget as over:
            self.problems.append(over.problem)

    # -- one node ------------------------------------------------------------------------------------

    def _node(self, event: Any, stack: list[_Collection], doc: Document, anchors: dict[str, _Anchored]) -> None:
        parent = stack[-1] if stack else None
        if parent is not None and parent.mapping and parent.key is _NO_KEY:
            if isinstance(event, yaml.ScalarEvent):
                self._key(event, parent, doc)
                return
            where = self._loc(event.start_mark)
            self.problems.append(Problem(where, dotted(parent.path), "a key must be a plain word, not a list, "
                                         "mapping or alias"))
            parent.key = _SKIP if isinstance(event, yaml.AliasEvent) else _KEY_BUILT
            if isinstance(event, yaml.AliasEvent):
                return
        path = self._child_path(parent)
        location = self._loc(event.start_mark)
        doc.values[path] = location
        self.order.append(path)
        if isinstance(event, yaml.AliasEvent):
            self._add(self._alias(event, path, location, doc, anchors), stack, doc)
            return
        anchor = event.anchor
        if anchor is not None:
            anchors[anchor] = _Anchored(path, location, start=len(self.order))
        if isinstance(event, yaml.ScalarEvent):
            value = self._scalar(event, path, location, doc)
            self._count(1, location, path)
            if anchor is not None:
                anchors[anchor].value, anchors[anchor].size, anchors[anchor].done = value, 1, True
                anchors[anchor].end = len(self.order)
            self._add((value, 1), stack, doc)
            return
        if len(stack) >= self.limits.max_depth:
            raise _OverBudget(location, path, f"nested more than {self.limits.max_depth} levels deep")
        mapping = isinstance(event, yaml.MappingStartEvent)
        expected = _MAPPING_TAG if mapping else _SEQUENCE_TAG
        if event.tag not in _NON_SPECIFIC and event.tag != expected:
            self.problems.append(Problem(location, dotted(path), _unsupported(event.tag)))
        self._count(1, location, path)
        collection = _Collection(path, location, {} if mapping else [], anchor, mapping)
        if mapping:
            collection.key = _NO_KEY
        stack.append(collection)

    def _key(self, event: yaml.ScalarEvent, parent: _Collection, doc: Document) -> None:
        where = self._loc(event.start_mark)
        tag = event.tag if event.tag not in _NON_SPECIFIC else _RESOLVER.resolve(ScalarNode, event.value, event.implicit)
        self._count(1, where, parent.path)
        parent.size += 1
        if tag == _MERGE_TAG:
            parent.key, parent.key_location = _MERGE, where
            return
        key = event.value  # the text as written: in a manifest every key is a name
        first = parent.seen.setdefault(key, where)
        if first is not where:
            self.problems.append(Problem(where, dotted(parent.path + (key,)),
                                         f"duplicate key {key!r}, first at line {first.line}, column {first.column}"))
        parent.key, parent.key_location = key, where
        doc.keys[parent.path + (key,)] = where

    @staticmethod
    def _child_path(parent: _Collection | None) -> FieldPath:
        if parent is None:
            return ()
        if parent.mapping:
            key = parent.key
            return parent.path + (key if isinstance(key, str) else "<<" if key is _MERGE else "<key>",)
        assert isinstance(parent.value, list)
        return parent.path + (len(parent.value),)

    def _scalar(self, event: yaml.ScalarEvent, path: FieldPath, location: Location, doc: Document) -> object:
        doc.raws[path] = event.value
        if not event.style and "${" in event.value and event.tag in _NON_SPECIFIC:  # plain, untagged
            doc.plain_references.add(path)
        tag = event.tag
        if tag in _NON_SPECIFIC:
            tag = _RESOLVER.resolve(ScalarNode, event.value, event.implicit)
        if tag not in _VALUE_TAGS:
            if tag not in _TEXT_TAGS:
                self.problems.append(Problem(location, dotted(path), _unsupported(tag)))
            return event.value
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)  # type: ignore[arg-type]
        try:
            value = _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, node)
        except (ConstructorError, ValueError) as error:
            self.problems.append(Problem(location, dotted(path), f"cannot read {event.value!r}: {error}"))
            return event.value
        if isinstance(value, float) and not math.isfinite(value):
            self.problems.append(Problem(location, dotted(path), f"expected a finite number, got {event.value}"))
        return value

    def _alias(self, event: yaml.AliasEvent, path: FieldPath, location: Location, doc: Document,
               anchors: dict[str, _Anchored]) -> tuple[object, int]:
        anchored = anchors.get(event.anchor or "")
        if anchored is None:
            self.problems.append(Problem(location, dotted(path), f"unknown alias *{event.anchor}: no anchor "
                                         f"&{event.anchor} before it in this document"))
            return None, 0
        if not anchored.done:
            self.problems.append(Problem(anchored.location, dotted(path), "an alias refers to a node that contains it"))
            return None, 0
        self._count(anchored.size, location, path, aliased=True)
        # Where the parts of the anchored value were written is where the alias's copy of them was too.
        prefix = len(anchored.path)
        for known in self.order[anchored.start:anchored.end]:
            copied = path + known[prefix:]
            doc.values.setdefault(copied, doc.values[known])
            if known in doc.keys:
                doc.keys.setdefault(copied, doc.keys[known])
            if known in doc.raws:
                doc.raws.setdefault(copied, doc.raws[known])
            self.order.append(copied)
        return copy.deepcopy(anchored.value), anchored.size

    # -- building up ---------------------------------------------------------------------------------

    def _add(self, built: tuple[object, int], stack: list[_Collection], doc: Document) -> None:
        """Put a finished value where it belongs: into the collection being built, or as the document."""
        value, size = built
        if not stack:
            doc.value = value
            return
        parent = stack[-1]
        parent.size += size
        if not parent.mapping:
            assert isinstance(parent.value, list)
            parent.value.append(value)
            return
        assert isinstance(parent.value, dict)
        if parent.key is _KEY_BUILT:  # the refused key itself: its value comes next, and is dropped
            parent.key = _SKIP
            return
        if parent.key is _MERGE:
            parent.merges.append((value, parent.key_location or parent.location))
        elif isinstance(parent.key, str):
            parent.value[parent.key] = value
        parent.key = _NO_KEY

    def _end(self, done: _Collection, stack: list[_Collection], doc: Document, anchors: dict[str, _Anchored]) -> None:
        value: object = done.value
        if done.mapping and done.merges:
            value = self._merged(done, doc)
        if done.anchor is not None:
            anchored = anchors[done.anchor]
            anchored.value, anchored.size, anchored.done = value, done.size, True
            anchored.end = len(self.order)
        self._add((value, done.size), stack, doc)

    def _merged(self, done: _Collection, doc: Document) -> dict[str, object]:
        """A mapping with merge keys (`<<: *base`, `<<: [*a, *b]`): keys written here win over merged ones,
        and among merged mappings the earlier wins, as YAML's merge key says; keys keep PyYAML's order."""
        merged: list[dict[str, object]] = []
        for value, where in done.merges:
            parts = value if isinstance(value, list) else [value]
            if not all(isinstance(part, dict) for part in parts):
                self.problems.append(Problem(where, dotted(done.path), "bad merge key: expected a mapping or a "
                                             "list of mappings to merge"))
                continue
            merged += parts  # type: ignore[arg-type]
        result: dict[str, object] = {}
        for part in reversed(merged):
            result.update(part)
        assert isinstance(done.value, dict)
        result.update(done.value)
        return result

    def _count(self, added: int, location: Location, path: FieldPath, aliased: bool = False) -> None:
        self.values += added
        if not aliased:
            self.written += added
        elif self.values - self.written > self.limits.alias_allowance + self.limits.alias_ratio * self.written:
            raise _OverBudget(location, path, f"aliases expand to {self.values - self.written:,} values, more than "
                              f"{self.limits.alias_ratio} times the {self.written:,} written in this document: refused "
                              "(an alias bomb?)")
        if self.values > self.limits.max_values:
            raise _OverBudget(location, path, self._limit_words(
                f"more than {self.limits.max_values:,} keys and values in this document, aliases expanded", "max_values"))

    def _limit_words(self, what: str, limit: str) -> str:
        return f"{what}: refused (raise the limit with {LIMIT_VARIABLES[limit]})"


def _unsupported(tag: str) -> str:
    shown = "!!" + tag[len(_YAML):] if tag.startswith(_YAML) else tag
    return f"unsupported YAML tag {shown!r}"


def read_documents(file: str, limits: ReadLimits | None = None) -> tuple[list[Document], list[Problem]]:
    """The documents of a manifest file on disk, within `limits` (the environment's, by default)."""
    limits = limits if limits is not None else ReadLimits.from_environment(os.environ)
    text, problems = read_text(file, limits)
    if text is None:
        return [], problems
    return parse_documents(file, text, limits)


def parse_documents(file: str, text: str, limits: ReadLimits, first_line: int = 1) -> tuple[list[Document],
                                                                                           list[Problem]]:
    """The documents of `text`, which starts at line `first_line` of `file` (positions are the file's)."""
    builder = Builder(file, limits, first_line - 1)
    try:
        builder.read(yaml.parse(text, Loader=_LOADER))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = f"invalid YAML: {error.problem or error.context}"
        if error.context and error.problem and error.context_mark is not None:
            context = builder._loc(error.context_mark)
            message += f" ({error.context} at line {context.line}, column {context.column})"
        builder.problems.append(Problem(builder._loc(mark), "", message))
    except yaml.YAMLError as error:
        builder.problems.append(Problem(Location(file), "", f"invalid YAML: {error}"))
    except RecursionError:  # the pure-Python parser on deep nesting (libyaml stops at 1,000 levels itself)
        builder.problems.append(Problem(Location(file), "", f"nested more than {limits.max_depth} levels deep"))
    return builder.documents, builder.problems


def plain_scalar(text: str) -> object:
    """`text` as YAML reads it when written unquoted: an int, float, bool or null when it spells one, else itself."""
    tag = _RESOLVER.resolve(ScalarNode, text, (True, False))
    if tag not in _VALUE_TAGS:
        return text
    try:
        return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, ScalarNode(tag, text))
    except (ConstructorError, ValueError):
        return text
