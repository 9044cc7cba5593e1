"""`${VAR}` in manifest values and env files, by docker compose's rules, from the applying command's environment.

    ${NAME}            its value; NAME unset is an error (so a typo never becomes an empty argument)
    ${NAME:-default}   default when NAME is unset or empty      ${NAME-default}   default when unset
    ${NAME:?message}   error with message when unset or empty   ${NAME?message}   error when unset
    ${NAME:+other}     other when NAME is set and not empty     ${NAME+other}     other when set
    $${                the text ${ (so $${NAME} stays ${NAME}, for a shell to expand)

A default, message or other may itself hold `${...}`. Unlike compose, only `${` is special: any other `$`
is left as it is, so `$HOME`, `$$` (a shell's pid) and `$(date)` in a shell command reach the shell
unchanged, and a manifest without `${` means what it meant before interpolation existed. Values are substituted after YAML parsing, so a
variable can never add structure to a manifest, only text to one value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


class InterpolationError(ValueError):
    """A reference that cannot be substituted: unset, malformed, or an error its `?` asked for."""


def interpolate(text: str, variables: Mapping[str, str], used: set[str] | None = None) -> str:
    """`text` with its references substituted; `used` collects the names looked up."""
    if "${" not in text:
        return text
    value, _ = _parse(text, 0, variables, used if used is not None else set(), closing=False)
    return value


def _parse(text: str, start: int, variables: Mapping[str, str], used: set[str], closing: bool) -> tuple[str, int]:
    """Text from `start` up to the end (or, when `closing`, up to the `}` that closes a reference)."""
    out: list[str] = []
    index = start
    while index < len(text):
        char = text[index]
        if closing and char == "}":
            return "".join(out), index
        if char != "$":
            out.append(char)
            index += 1
            continue
        following = text[index + 1:index + 2]
        if text.startswith("${", index + 1):
            out.append("${")
            index += 3
        elif following == "{":
            value, index = _reference(text, index + 2, variables, used)
            out.append(value)
        else:
            out.append("$")
            index += 1
    if closing:
        raise InterpolationError(f"unclosed ${{ in {text!r}: every ${{ needs its }} (write $${{ for a literal ${{)")
    return "".join(out), index


def _reference(text: str, start: int, variables: Mapping[str, str], used: set[str]) -> tuple[str, int]:
    """The value of the reference whose name starts at `start` (just after `${`), and the index after its `}`."""
    match = _NAME.match(text, start)
    if match is None:
        raise InterpolationError(f"expected a variable name after ${{ in {text!r} (write $${{ for a literal ${{)")
    name = match.group()
    used.add(name)
    index = match.end()
    operator = next((op for op in _OPERATORS if text.startswith(op, index)), None)
    if operator is None:
        if text[index:index + 1] != "}":
            raise InterpolationError(f"unexpected {text[index:index + 1] or 'end'!r} after ${{{name} in {text!r}: "
                                     "expected }, :-, -, :?, ?, :+ or +")
        if name not in variables:
            raise InterpolationError(f"${{{name}}} is not set in the environment of this command: set it, give a "
                                     f"default (${{{name}:-value}}), or write $${{{name}}} for the text itself")
        return variables[name], index + 1
    argument, end = _parse(text, index + len(operator), variables, used, closing=True)
    value = variables.get(name)
    present = value is not None and (value != "" or ":" not in operator)
    kind = operator[-1]
    if kind == "-":
        return (value if present else argument), end + 1  # type: ignore[return-value]
    if kind == "+":
        return (argument if present else ""), end + 1
    if not present:  # "?"
        raise InterpolationError(f"${{{name}}}: {argument or 'is not set'}")
    return value, end + 1  # type: ignore[return-value]


def referenced(text: str) -> set[str]:
    """The names `text` may refer to (a cheap over-estimate: an escaped `$${NAME}` counts too)."""
    return set(REFERENCE.findall(text)) if "${" in text else set()


__all__ = ["InterpolationError", "interpolate", "referenced"]
