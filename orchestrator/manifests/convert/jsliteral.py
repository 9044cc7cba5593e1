"""The object literal a PM2 ecosystem.config.js exports, read as data: no JavaScript is run, ever.

`module.exports = {...}` (or `export default {...}`) is found, and the literal after it is read in one
pass: objects (keys as identifiers, strings or numbers, trailing commas), arrays, strings in ' " or `
(a template without `${}`), numbers, true, false, null, and // and /* */ comments. JSON is this with
fewer forms, so ecosystem.json is read here too. Anything else is code (`process.env.PORT`, `require()`,
`path.join(...)`, a variable, `+`, `...spread`, a function): a Problem at its line and column that says
so, never an evaluation. The literal is bounded as YAML manifests are (values and depth, ReadLimits), and
its values are recorded in a documents.Document, with the place of every key and value.
"""

from __future__ import annotations

import bisect
import math
import re

from ...core.errors import Location, Problem
from ..documents import Document, FieldPath
from ..files import ReadLimits

_EXPORT = re.compile(r"\bmodule\s*\.\s*exports\s*=|\bexport\s+default\b")
_NUMBER = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|([0-9][0-9_]*)?\.?[0-9][0-9_]*([eE][-+]?[0-9]+)?)")
_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0", "\n": ""}
_WORDS = {"true": True, "false": False, "null": None}
_CODE = ("orchestrator convert reads ecosystem files as data and runs no JavaScript: write the value itself, or "
         "export the configuration as JSON, if you trust the file (node -e 'console.log(JSON.stringify(require("
         "\"./ecosystem.config.js\"), null, 2))' > ecosystem.json), and convert that")


class NotData(Exception):
    """What was read is code, not a literal (or not well formed): the problem says where."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def read_module(text: str, file: str, limits: ReadLimits) -> tuple[Document, list[str]]:
    """The literal a module exports, and what the file holds besides it that is not run (for notes)."""
    exports = list(_EXPORT.finditer(text))
    if not exports:
        raise NotData(Problem(Location(file), "", "no `module.exports = {...}`: not a PM2 ecosystem file (or one "
                              "this cannot read: " + _CODE + ")"))
    if len(exports) > 1:
        raise NotData(Problem(_location(text, file, exports[1].start()), "", "module.exports is set more than once: "
                              + _CODE))
    reader = _Reader(text, file, limits, exports[0].end())
    doc = reader.document()
    skipped = []
    before = _code(text[:exports[0].start()])
    if before:
        end = text.rindex(before[-1], 0, exports[0].start())
        lines = sorted({1, reader.line_of(end)})
        skipped.append("the code before module.exports, on line" + ("s 1-" if len(lines) > 1 else " ")
                       + str(lines[-1]))
    reader.skip()
    if reader.text.startswith(";", reader.at):
        reader.at += 1
        reader.skip()
    if reader.at < len(text) and _code(text[reader.at:]):
        skipped.append(f"the code after the exported object, from line {reader.line_of(reader.at)}")
    return doc, skipped


def read_json(text: str, file: str, limits: ReadLimits) -> Document:
    reader = _Reader(text, file, limits, 0)
    doc = reader.document()
    reader.skip()
    if reader.at < len(text):
        raise NotData(Problem(reader.location(), "", "more text after the value"))
    return doc


def _code(text: str) -> str:
    """`text` without comments, whitespace and a leading 'use strict', in one pass over it."""
    kept: list[str] = []
    at = 0
    block, line = text.find("/*"), text.find("//")  # the next of each, searched again only once passed
    while at < len(text):
        if 0 <= block < at:
            block = text.find("/*", at)
        if 0 <= line < at:
            line = text.find("//", at)
        starts = [i for i in (block, line) if i >= 0]
        if not starts:
            kept.append(text[at:])
            break
        start = min(starts)
        kept.append(text[at:start])
        end = text.find("*/", start + 2) if start == block else text.find("\n", start)
        at = len(text) if end < 0 else end + (2 if start == block else 0)
    code = "".join(kept).strip()
    return re.sub(r"^(['\"])use strict\1;?", "", code).strip()


def _location(text: str, file: str, at: int) -> Location:
    line = text.count("\n", 0, at) + 1
    return Location(file, line, at - (text.rfind("\n", 0, at) + 1) + 1)


class _Reader:
    def __init__(self, text: str, file: str, limits: ReadLimits, at: int) -> None:
        self.text, self.file, self.limits, self.at = text, file, limits, at
        self.doc = Document(file)
        self.count = 0
        self.newlines = [match.start() for match in re.finditer("\n", text)]

    def location(self, at: int | None = None) -> Location:
        """Where `at` is (default: here), found among the line starts (counting from the start each time
        would make a file of many values take quadratic time)."""
        at = self.at if at is None else at
        line = bisect.bisect_right(self.newlines, at - 1)
        return Location(self.file, line + 1, at - (self.newlines[line - 1] + 1 if line else 0) + 1)

    def line_of(self, at: int) -> int:
        return self.location(at).line

    def fail(self, message: str, at: int | None = None) -> NotData:
        return NotData(Problem(self.location(at), "", message))

    def document(self) -> Document:
        self.doc.value = self.value((), 0)
        return self.doc

    def skip(self) -> None:
        """Past whitespace and comments."""
        while self.at < len(self.text):
            if self.text[self.at].isspace():
                self.at += 1
            elif self.text.startswith("//", self.at):
                end = self.text.find("\n", self.at)
                self.at = len(self.text) if end < 0 else end
            elif self.text.startswith("/*", self.at):
                end = self.text.find("*/", self.at + 2)
                if end < 0:
                    raise self.fail("a /* comment that never ends")
                self.at = end + 2
            else:
                return

    def counted(self, path: FieldPath) -> None:
        self.count += 1
        if self.count > self.limits.max_values:
            raise self.fail(f"more than {self.limits.max_values:,} keys and values: refused")

    def value(self, path: FieldPath, depth: int) -> object:
        self.skip()
        if self.at >= len(self.text):
            raise self.fail("the file ends where a value was expected")
        if depth > self.limits.max_depth:
            raise self.fail(f"nested more than {self.limits.max_depth} levels deep")
        self.doc.values[path] = self.location()
        self.counted(path)
        char = self.text[self.at]
        if char == "{":
            return self.members(path, depth)
        if char == "[":
            return self.array(path, depth)
        if char in "'\"`":
            return self.string()
        number = _NUMBER.match(self.text, self.at)
        if number and number.group(0) not in ("-", "+", "."):
            return self.number(number.group(0), path)
        word = _IDENTIFIER.match(self.text, self.at)
        if word and word.group(0) in _WORDS and not self._continues(word.end()):
            self.at = word.end()
            self.doc.raws[path] = word.group(0)
            return _WORDS[word.group(0)]
        shown = self.text[self.at:self.at + 40].split("\n")[0]
        raise self.fail(f"`{shown}` is JavaScript to run, not a value: " + _CODE)

    def _continues(self, end: int) -> bool:
        """Does an expression go on after a value (`true || x`, `'a' + b`, `x.y`), past comments?"""
        at = self.at
        self.at = end
        try:
            self.skip()
            return self.text[self.at:self.at + 1] in tuple(".([+-*/%?|&<>=!`")
        finally:
            self.at = at

    def number(self, text: str, path: FieldPath) -> float | int:
        start = self.at
        self.at += len(text)
        if self._continues(self.at):
            raise self.fail("an expression, not a value: " + _CODE, start)
        self.doc.raws[path] = text
        digits = text.replace("_", "")
        sign = -1 if digits.startswith("-") else 1
        digits = digits.lstrip("+-")
        if len(digits) > 64:
            raise self.fail(f"a number of {len(digits):,} characters: not a setting", start)
        try:
            if digits[:2].lower() in ("0x", "0o", "0b"):
                return sign * int(digits, 0)
            value = float(digits)
        except ValueError:
            raise self.fail(f"{text!r} is not a number", start) from None
        if not math.isfinite(value):
            raise self.fail(f"{text!r} is not a finite number", start)
        return sign * (int(value) if value == int(value) and "." not in digits and "e" not in digits.lower()
                       else value)

    def string(self) -> str:
        quote = self.text[self.at]
        start = self.at
        self.at += 1
        out: list[str] = []
        while True:
            if self.at >= len(self.text):
                raise self.fail("a string that never ends", start)
            char = self.text[self.at]
            if char == quote:
                self.at += 1
                break
            if char == "\n" and quote != "`":
                raise self.fail("a line ends inside a string", start)
            if quote == "`" and self.text.startswith("${", self.at):
                raise self.fail("a template with ${...} is JavaScript to run: " + _CODE)
            if char == "\\":
                out.append(self.escape())
                continue
            out.append(char)
            self.at += 1
        if self._continues(self.at):
            raise self.fail("an expression, not a value (`+`?): " + _CODE, start)
        return "".join(out)

    def escape(self) -> str:
        code = self.text[self.at + 1:self.at + 2]
        if code in ("u", "x"):
            braced = code == "u" and self.text.startswith("{", self.at + 2)
            if braced:
                end = self.text.find("}", self.at + 3, self.at + 10)
                digits, after = (self.text[self.at + 3:end], end + 1) if end > 0 else ("", 0)
            else:
                width = 4 if code == "u" else 2
                digits, after = self.text[self.at + 2:self.at + 2 + width], self.at + 2 + width
                digits = digits if len(digits) == width else ""
            if not re.fullmatch(r"[0-9a-fA-F]{1,6}", digits) or int(digits, 16) > 0x10FFFF:
                raise self.fail("a bad \\u or \\x escape")
            self.at = after
            return chr(int(digits, 16))
        if not code:
            raise self.fail("a string that never ends")
        self.at += 2
        return _ESCAPES.get(code, code)

    def key(self, path: FieldPath) -> str:
        self.skip()
        char = self.text[self.at:self.at + 1]
        where = self.location()
        if char in ("'", '"'):
            key = self.string()
        else:
            word = _IDENTIFIER.match(self.text, self.at) or re.compile(r"[0-9]+").match(self.text, self.at)
            if word is None:
                shown = self.text[self.at:self.at + 20].split("\n")[0]
                raise self.fail(f"`{shown}` is not a key (a computed key, a spread or a method is JavaScript to "
                                "run): " + _CODE)
            key = word.group(0)
            self.at = word.end()
        self.doc.keys[path + (key,)] = where
        return key

    def members(self, path: FieldPath, depth: int) -> dict[str, object]:
        self.at += 1
        found: dict[str, object] = {}
        while True:
            self.skip()
            if self.at >= len(self.text):
                raise self.fail("the file ends inside an object: a `}` is missing")
            if self.text.startswith("}", self.at):
                self.at += 1
                return found
            start = self.at
            key = self.key(path)
            if key in found:
                raise self.fail(f"duplicate key {key!r}", start)
            self.skip()
            if not self.text.startswith(":", self.at):
                raise self.fail(f"expected `:` after {key!r} (a shorthand or a method is JavaScript to run): "
                                + _CODE)
            self.at += 1
            self.counted(path)
            found[key] = self.value(path + (key,), depth + 1)
            self.skip()
            if self.text.startswith(",", self.at):
                self.at += 1
            elif self.at >= len(self.text):
                raise self.fail("the file ends inside an object: a `}` is missing")
            elif not self.text.startswith("}", self.at):
                raise self.fail("expected `,` or `}` (an expression is JavaScript to run)")

    def array(self, path: FieldPath, depth: int) -> list[object]:
        self.at += 1
        found: list[object] = []
        while True:
            self.skip()
            if self.at >= len(self.text):
                raise self.fail("the file ends inside a list: a `]` is missing")
            if self.text.startswith("]", self.at):
                self.at += 1
                return found
            if self.text.startswith(",", self.at):
                raise self.fail("an empty place in a list")
            found.append(self.value(path + (len(found),), depth + 1))
            self.skip()
            if self.text.startswith(",", self.at):
                self.at += 1
            elif self.at >= len(self.text):
                raise self.fail("the file ends inside a list: a `]` is missing")
            elif not self.text.startswith("]", self.at):
                raise self.fail("expected `,` or `]` (an expression is JavaScript to run)")
