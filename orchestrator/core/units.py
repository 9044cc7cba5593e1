"""Units: byte quantities (256Mi, 1G), CPU amounts (0.5, 500m) and durations in seconds.

Owns the parsing of these spellings into plain numbers (bytes as int, cores and seconds as float) and the
wording of what was expected when a spelling is wrong. Pure: no I/O, no clock, no knowledge of manifests
(the manifest loader turns the ValueError messages into located problems). A value of the wrong type
(a list where a size was expected) also raises ValueError, not TypeError: it is user input like any other
spelling, and callers catch one exception for "this value is wrong".
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

# Binary suffixes are powers of 1024 and decimal ones powers of 1000, as in Kubernetes quantities; `K` is
# accepted beside `k` because people write both and neither can mean anything else here.
_BYTE_FACTORS: dict[str, int] = {
    "": 1,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
}

_QUANTITY = re.compile(r"^\s*(?P<number>[0-9]+(\.[0-9]+)?|\.[0-9]+)\s*(?P<suffix>[A-Za-z]*)\s*$")
_CPU = re.compile(r"^\s*(?P<number>[0-9]+(\.[0-9]+)?|\.[0-9]+)\s*(?P<suffix>m?)\s*$")

_QUANTITY_EXPECTED = "a size in bytes such as 512, 256Mi or 1G (suffixes Ki Mi Gi Ti, or k M G T for powers of 1000)"
_CPU_EXPECTED = "a number of CPU cores such as 2, 0.5 or 500m (thousandths of a core)"
_DURATION_EXPECTED = "a number of seconds such as 10 or 0.5"


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def parse_quantity(value: object) -> int:
    """Bytes in `value`: a whole number of bytes, or a number with a suffix (`256Mi`, `1G`, `1.5Gi`).

    Raises ValueError naming what was expected. The result must be a whole number of bytes.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        # A float such as 1.5 is refused: bytes are whole and a float hides rounding.
        raise ValueError(f"expected {_QUANTITY_EXPECTED}, got {_show(value)}")  # noqa: TRY004 (see module docstring)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected {_QUANTITY_EXPECTED}, got a negative number {value}")
        return value
    match = _QUANTITY.match(value)
    if match is None:
        raise ValueError(f"expected {_QUANTITY_EXPECTED}, got {value!r}")
    suffix = match["suffix"]
    factor = _BYTE_FACTORS.get(suffix)
    if factor is None:
        hint = ""
        if suffix.upper().endswith("B") or suffix.lower() in {"ki", "mi", "gi", "ti", "m", "g", "t"}:
            hint = " (write 256Mi or 256M, without B, with this exact case)"
        raise ValueError(f"expected {_QUANTITY_EXPECTED}, got {value!r}: unknown suffix {suffix!r}{hint}")
    # Decimal keeps 0.1Ki exact enough to tell whether the result is a whole number of bytes.
    amount = Decimal(match["number"]) * factor
    if amount != amount.to_integral_value():
        raise ValueError(f"expected {_QUANTITY_EXPECTED}, got {value!r}: that is not a whole number of bytes")
    return int(amount)


def parse_cpu(value: object) -> float:
    """CPU cores in `value`: a number (`2`, `0.5`, `"0.5"`) or thousandths of a core (`"500m"`); above 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected {_CPU_EXPECTED}, got {_show(value)}")  # noqa: TRY004 (see module docstring)
    if isinstance(value, str):
        match = _CPU.match(value)
        if match is None:
            raise ValueError(f"expected {_CPU_EXPECTED}, got {value!r}")
        cores = float(Decimal(match["number"]) / (1000 if match["suffix"] else 1))
    else:
        cores = float(value)
    if not math.isfinite(cores) or cores <= 0:
        raise ValueError(f"expected {_CPU_EXPECTED}, above 0, got {_show(value)}")
    return cores


def parse_duration(value: object) -> float:
    """Seconds in `value`: a number >= 0, fractions allowed. Strings such as "10s" are refused on purpose:
    every duration in a manifest is a plain number of seconds, so one spelling is enough."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected {_DURATION_EXPECTED}, got {_show(value)}")  # noqa: TRY004 (see module docstring)
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected {_DURATION_EXPECTED}, at least 0, got {_show(value)}")
    return seconds
