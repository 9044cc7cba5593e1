"""units.py: quantities, cpu and durations, valid and invalid spellings."""

from __future__ import annotations

import pytest

from orchestrator.core.units import parse_cpu, parse_duration, parse_quantity


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (0, 0),
        (512, 512),
        ("512", 512),
        ("512k", 512_000),
        ("512K", 512_000),
        ("1Ki", 1024),
        ("256Mi", 256 * 1024**2),
        ("1Gi", 1024**3),
        ("1G", 10**9),
        ("2M", 2 * 10**6),
        ("1T", 10**12),
        ("1Ti", 1024**4),
        ("1.5Gi", 3 * 1024**3 // 2),
        ("0.5k", 500),
        (" 10Mi ", 10 * 1024**2),
    ],
)
def test_quantity_valid(text: object, expected: int) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("10MB", "unknown suffix 'MB' (write 256Mi or 256M, without B"),
        ("10mi", "unknown suffix 'mi'"),
        ("abc", "expected a size in bytes such as 512, 256Mi or 1G"),
        ("", "expected a size in bytes"),
        ("-1", "expected a size in bytes"),
        (-1, "got a negative number -1"),
        (1.5, "expected a size in bytes such as 512, 256Mi or 1G (suffixes Ki Mi Gi Ti, or k M G T"),
        (True, "got True"),
        ("0.1", "not a whole number of bytes"),
        ("1.0001k", "not a whole number of bytes"),
        (None, "got None"),
    ],
)
def test_quantity_invalid(text: object, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_quantity(text)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.5", 0.5), (0.5, 0.5), ("500m", 0.5), ("2", 2.0), (2, 2.0), ("1500m", 1.5), ("1m", 0.001), (".25", 0.25)],
)
def test_cpu_valid(text: object, expected: float) -> None:
    assert parse_cpu(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0", "above 0, got '0'"),
        (0, "above 0, got 0"),
        ("-1", "expected a number of CPU cores such as 2, 0.5 or 500m"),
        ("500M", "got '500M'"),
        ("half", "got 'half'"),
        (False, "got False"),
        (float("inf"), "above 0"),
        ([1], "got [1]"),
    ],
)
def test_cpu_invalid(text: object, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_cpu(text)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(("value", "expected"), [(0, 0.0), (10, 10.0), (0.5, 0.5), (1e-3, 0.001)])
def test_duration_valid(value: object, expected: float) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (-1, "at least 0, got -1"),
        ("10s", "expected a number of seconds such as 10 or 0.5, got '10s'"),
        ("10", "got '10'"),
        (True, "got True"),
        (float("nan"), "at least 0, got nan"),
        (None, "got None"),
    ],
)
def test_duration_invalid(value: object, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert fragment in str(caught.value)
