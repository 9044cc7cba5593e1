"""Typed reads from JSON-able mappings, for every decoder of a document the orchestrator wrote or received.

Each failure is a ValueError that names the field's dotted path; nothing here asserts, and a field nobody
read is an error (`done()`), so a typo or a field of a newer version is never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

E = TypeVar("E", bound=Enum)
MISSING: Any = object()


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


class Reader:
    """Typed reads from one JSON mapping. Each failure is a ValueError naming the field's dotted path.

    A default of None means "optional, may be null"; without a default the field is required. `done()`
    rejects fields nobody read, so a typo or a field of a newer version is not silently dropped.
    """

    def __init__(self, value: object, path: str) -> None:
        if not isinstance(value, Mapping):
            # One error type for every garbled document, whatever is wrong with it: callers catch ValueError.
            raise ValueError(f"{path or 'document'}: expected a mapping, got {_show(value)}")  # noqa: TRY004
        self._value: Mapping[str, Any] = value
        self._path = path
        self._read: set[str] = set()

    def field(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def raw(self, name: str, default: Any = MISSING) -> Any:
        self._read.add(name)
        if name in self._value:
            return self._value[name]
        if default is MISSING:
            raise ValueError(f"{self.field(name)}: missing")
        return default

    def _typed(self, name: str, default: Any, accept: tuple[type, ...], words: str) -> Any:
        value = self.raw(name, default)
        if value is None and default is None:
            return None
        # bool is an int to Python but never a number here.
        if (isinstance(value, bool) and bool not in accept) or not isinstance(value, accept):
            raise ValueError(f"{self.field(name)}: expected {words}, got {_show(value)}")
        return value

    def text(self, name: str, default: Any = MISSING) -> Any:
        return self._typed(name, default, (str,), "a string")

    def integer(self, name: str, default: Any = MISSING) -> Any:
        return self._typed(name, default, (int,), "an integer")

    def number(self, name: str, default: Any = MISSING) -> Any:
        value = self._typed(name, default, (int, float), "a number")
        return None if value is None else float(value)

    def flag(self, name: str, default: Any = MISSING) -> bool:
        return bool(self._typed(name, default, (bool,), "true or false"))

    def enum(self, name: str, cls: type[E], default: Any = MISSING) -> E:
        value = self.raw(name, default)
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(str(member.value) for member in cls)
            raise ValueError(f"{self.field(name)}: {_show(value)} is not one of {choices}") from None

    def reader(self, name: str, default: Any = MISSING) -> Reader:
        return Reader(self.raw(name, default), self.field(name))

    def _list(self, name: str, default: Any) -> list[Any]:
        value = self.raw(name, default)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{self.field(name)}: expected a list, got {_show(value)}")  # noqa: TRY004
        return list(value)

    def _items(self, name: str, default: Any, accept: tuple[type, ...], words: str) -> list[Any]:
        items = self._list(name, default)
        for index, item in enumerate(items):
            if (isinstance(item, bool) and bool not in accept) or not isinstance(item, accept):
                raise ValueError(f"{self.field(name)}[{index}]: expected {words}, got {_show(item)}")
        return items

    def texts(self, name: str, default: Any = MISSING) -> tuple[str, ...]:
        return tuple(self._items(name, default, (str,), "a string"))

    def integers(self, name: str, default: Any = MISSING) -> list[int]:
        return self._items(name, default, (int,), "an integer")

    def numbers(self, name: str, default: Any = ()) -> list[float]:
        return [float(item) for item in self._items(name, default, (int, float), "a number")]

    def readers(self, name: str) -> list[Reader]:
        return [Reader(item, f"{self.field(name)}[{index}]") for index, item in enumerate(self._list(name, ()))]

    def text_pairs(self, name: str) -> tuple[tuple[str, str], ...]:
        """A mapping of strings as (name, value) pairs in the order written (the spec's order, kept exactly)."""
        found = self.reader(name, {})
        return tuple((key, found.text(key)) for key in found._value)

    def done(self) -> None:
        unknown = [name for name in self._value if name not in self._read]
        if unknown:
            raise ValueError(f"{self.field(unknown[0])}: unknown field")
