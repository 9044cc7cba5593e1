"""Patterns users give (log probes), matched in linear time by RE2.

Python's `re` backtracks: a pattern such as `(a+)+$` met by one long line of output holds the interpreter (and
its GIL) for minutes, and with it the whole daemon. RE2 matches in time linear in the line, whatever the
pattern, within a memory budget; it has no backreferences or lookaround, so a pattern that needs them is
refused when the manifest is read, with its place, rather than at run time.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

MAX_PATTERN_MEMORY = 8 << 20  # bytes RE2 may use for one compiled pattern


@lru_cache(maxsize=256)
def compile_pattern(text: str) -> Any:
    """The compiled pattern; raises ValueError saying why RE2 refuses it."""
    import re2  # google-re2, imported where a pattern is first needed

    options = re2.Options()
    options.log_errors = False  # the reason is raised, not printed on stderr by the C++ library
    options.max_mem = MAX_PATTERN_MEMORY
    try:
        return re2.compile(text, options)
    except re2.error as error:
        reason = error.args[0].decode(errors="replace") if error.args and isinstance(error.args[0], bytes) else error
        raise ValueError(f"{text!r} is not a pattern RE2 matches in linear time (no backreferences or "
                         f"lookaround): {reason}") from None
