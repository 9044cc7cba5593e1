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


MAX_DEPTH = 20  # ${A:-${B:-...}} nested this deep at most
MAX_VALUE = 1 << 20  # characters one value may reach once substituted


class InterpolationError(ValueError):
    """A reference that cannot be substituted: unset, malformed, or an error its `?` asked for. The message
    names the reference and its position, never the value around it (an env value may be a secret)."""


def interpolate(text: str, variables: Mapping[str, str], used: set[str] | None = None) -> str:
    """`text` with its references substituted; `used` collects the names looked up."""
    if "${" not in text:
        return text
    value, _ = _Substitution(text, variables, used if used is not None else set()).part(0, 0, True, False)
    return value


class _Substitution:
    def __init__(self, text: str, variables: Mapping[str, str], used: set[str]) -> None:
        self.text = text
        self.variables = variables
        self.used = used

    def _at(self, index: int) -> str:
        return f"at character {index + 1}"

    def part(self, start: int, depth: int, evaluate: bool, closing: bool) -> tuple[str, int]:
        """Text from `start` to the end (or, when `closing`, to the `}` that closes a reference). Without
        `evaluate` (an alternative not taken) it is only scanned: no value, no error for an unset name."""
        text = self.text
        out: list[str] = []
        size = 0
        index = start
        while index < len(text):
            char = text[index]
            if closing and char == "}":
                return "".join(out), index
            if char != "$":
                piece, index = char, index + 1
            elif text.startswith("${", index + 1):
                piece, index = "${", index + 3
            elif text.startswith("{", index + 1):
                if depth >= MAX_DEPTH:
                    raise InterpolationError(f"${{ nested more than {MAX_DEPTH} deep {self._at(index)}")
                piece, index = self.reference(index + 2, depth + 1, evaluate)
            else:
                piece, index = "$", index + 1
            if evaluate:
                size += len(piece)
                if size > MAX_VALUE:
                    raise InterpolationError(f"substituted, this value would pass {MAX_VALUE:,} characters: refused")
                out.append(piece)
        if closing:
            raise InterpolationError(f"unclosed ${{ (every ${{ needs its }}; write $${{ for the text ${{), "
                                     f"opened before {self._at(start)}")
        return "".join(out), index

    def reference(self, start: int, depth: int, evaluate: bool) -> tuple[str, int]:
        """The value of the reference whose name starts at `start` (just after `${`), and the index after its `}`."""
        text = self.text
        match = _NAME.match(text, start)
        if match is None:
            raise InterpolationError(f"expected a variable name after ${{ {self._at(start - 2)} "
                                     "(write $${ for the text ${)")
        name = match.group()
        self.used.add(name)
        index = match.end()
        operator = next((op for op in _OPERATORS if text.startswith(op, index)), None)
        value = self.variables.get(name)
        if operator is None:
            if text[index:index + 1] != "}":
                raise InterpolationError(f"the ${{ {self._at(start - 2)} is not closed by }} after its name (or "
                                         "followed by :-, -, :?, ?, :+ or +); write $${ for the text ${")
            if evaluate and value is None:
                raise InterpolationError(f"${{{name}}} is not set in the environment of this command: set it, give "
                                         f"a default (${{{name}:-value}}), or write $${{{name}}} for the text itself")
            return value or "", index + 1
        present = value is not None and (value != "" or ":" not in operator)
        kind = operator[-1]
        # The argument counts only where it is used (as in the shell): a default of a set name is never read.
        wanted = evaluate and ((kind == "-" and not present) or (kind == "+" and present) or (kind == "?" and
                                                                                               not present))
        argument, end = self.part(index + len(operator), depth, wanted, closing=True)
        if not evaluate:
            return "", end + 1
        if kind == "-":
            return (value if present else argument) or "", end + 1
        if kind == "+":
            return (argument if present else ""), end + 1
        if not present:  # "?"
            empty = value is not None
            raise InterpolationError(f"${{{name}}}: {argument or ('is empty' if empty else 'is not set')}")
        return value or "", end + 1


def referenced(text: str) -> set[str]:
    """The names `text` may refer to (a cheap over-estimate: an escaped `$${NAME}` counts too)."""
    return set(REFERENCE.findall(text)) if "${" in text else set()


__all__ = ["InterpolationError", "interpolate", "referenced"]
