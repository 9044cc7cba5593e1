"""The layers of DESIGN.md section 3: pure modules import no clock, process or OS modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "orchestrator"
PURE = ["core/model", "core/errors", "core/units", "planning/graph", "planning/diff", "planning/policy", "planning/plan"]
FORBIDDEN = {"time", "subprocess", "signal", "os", "psutil", "selectors", "threading", "socket"}


def imported(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_side_effects(module: str) -> None:
    assert imported(module) & FORBIDDEN == set()
