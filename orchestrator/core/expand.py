"""Values that differ per replica: `$(NAME)` and `$((expression))`, expanded when a replica starts.

`${NAME}` (manifests/interpolate.py) is read once, from the environment of the command that applies the
manifests. These are read at each start, from the replica's own environment (the fixed base, its env,
ORCH_REPLICA...), so that the replicas of one spec can differ:

    command: [gunicorn, --bind, "127.0.0.1:$((8000 + ORCH_REPLICA))"]   # 8000, 8001, ...
    env: {WORKER_ID: "worker-$(ORCH_REPLICA)"}

- `$(NAME)`: the value of NAME, as Kubernetes expands `$(VAR)` in a container's command, args and env;
- `$((...))`: whole-number arithmetic as in the shell: + - * / % and parentheses over numbers and names
  whose values are whole numbers (`/` rounds toward zero, as the shell's);
- `$$(` is the text `$(`. A name that is not set, or an expression that is not arithmetic over set whole
  numbers, is left as written, so a command that never meant these is unchanged.

Expanded in the argv of commands without a shell (with `shell: true` the shell does its own), of hooks and
exec checks, and in env values (over the environment without them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN = re.compile(rf"\s*(?:(\d+)|({_NAME})|(\*\*|[-+*/%()]))")
_LIMIT = 10**18  # whole numbers beyond this (operands or results) are no port or id: left as written
_PATTERN = re.compile(rf"\$\$\(|\$\(\((?P<expr>[^()]*(?:\([^()]*\)[^()]*)*)\)\)|\$\((?P<name>{_NAME})\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """`text` with its `$(NAME)` and `$((...))` expanded over `env` (module docstring)."""
    if "$(" not in text:
        return text

    def substitute(match: re.Match[str]) -> str:
        if match.group() == "$$(":
            return "$("
        name = match.group("name")
        if name is not None:
            return env.get(name, match.group())
        value = _arithmetic(match.group("expr"), env)
        return match.group() if value is None else str(value)

    return _PATTERN.sub(substitute, text)


def expand_all(argv: Sequence[str], env: Mapping[str, str]) -> list[str]:
    return [expand(word, env) for word in argv]


def _arithmetic(expression: str, env: Mapping[str, str]) -> int | None:
    """The value of a shell arithmetic expression over whole numbers, or None if it is not one."""
    tokens: list[str | int] = []
    index = 0
    while index < len(expression):
        match = _TOKEN.match(expression, index)
        if match is None:
            if expression[index:].strip() == "":
                break
            return None
        number, name, operator = match.groups()
        if number is not None:
            if len(number) > 18:
                return None
            tokens.append(int(number))
        elif name is not None:
            number_text = env.get(name, "").strip()
            if not re.fullmatch(r"-?\d{1,18}", number_text):
                return None
            tokens.append(int(number_text))
        elif operator == "**":
            return None
        else:
            tokens.append(operator)
        index = match.end()
    parser = _Parser(tokens)
    try:
        value = parser.sum()
    except (ValueError, ZeroDivisionError, IndexError, RecursionError):
        return None
    return value if parser.done() else None


class _Parser:
    """sum := product (("+" | "-") product)*; product := unary (("*" | "/" | "%") unary)*;
    unary := ("-" | "+") unary | number | "(" sum ")"."""

    def __init__(self, tokens: list[str | int]) -> None:
        self.tokens = tokens
        self.at = 0

    def done(self) -> bool:
        return self.at == len(self.tokens)

    def _peek(self) -> str | int | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _take(self) -> str | int:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def sum(self) -> int:
        value = self.product()
        while self._peek() in ("+", "-"):
            value = _bounded(value + self.product() if self._take() == "+" else value - self.product())
        return value

    def product(self) -> int:
        value = self.unary()
        while self._peek() in ("*", "/", "%"):
            operator, right = self._take(), self.unary()
            if operator == "*":
                value = _bounded(value * right)
            else:
                quotient = abs(value) // abs(right) * (1 if (value >= 0) == (right >= 0) else -1)
                value = quotient if operator == "/" else value - right * quotient
        return value

    def unary(self) -> int:
        sign = 1
        token = self._take()
        while token in ("-", "+"):  # a run of signs, however long, without recursion
            sign = -sign if token == "-" else sign
            token = self._take()
        return sign * self._operand(token)

    def _operand(self, token: str | int) -> int:
        if token == "(":
            value = self.sum()
            if self._take() != ")":
                raise ValueError("unbalanced")
            return value
        if isinstance(token, int):
            return token
        raise ValueError(f"unexpected {token}")


def _bounded(value: int) -> int:
    if abs(value) > _LIMIT:
        raise ValueError("out of range")
    return value


__all__ = ["expand", "expand_all"]
