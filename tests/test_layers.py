"""The layers of docs/architecture.md, checked: import-linter's contracts in pyproject.toml, no import cycles,
and every import inside the package resolving to a module that exists."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "orchestrator"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the package found first on the path from `cwd` (the checkout itself, or a copy)."""
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    script = ("import sys; from importlinter.cli import lint_imports; "
              "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")
    return subprocess.run([sys.executable, "-c", script], check=False, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def test_import_contracts_are_kept() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_import_contracts_catch_an_upward_import_and_a_side_effect_in_pure_code(tmp_path: Path) -> None:
    """The contracts bite: a copy of the package with core reaching up into the CLI and the planner importing
    os (inside a function, where it is easiest to miss) breaks both."""
    shutil.copytree(PACKAGE, tmp_path / "orchestrator", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "orchestrator" / "core" / "model.py").open("a") as model:
        model.write("\n\ndef _upward() -> None:\n    from ..cli import main  # noqa: F401\n")
    with (tmp_path / "orchestrator" / "planning" / "plan.py").open("a") as plan:
        plan.write("\n\ndef _impure() -> None:\n    import os  # noqa: F401\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 2 broken" in result.stdout
    assert "orchestrator.core.model -> orchestrator.cli.main" in result.stdout
    assert "orchestrator.planning.plan -> os" in result.stdout


def test_no_import_cycles() -> None:
    """Not even through lazy or TYPE_CHECKING imports: a cycle means two modules are really one concern, or
    that one of them needs a narrower interface passed in."""
    graph = grimp.build_graph("orchestrator")
    imports = nx.DiGraph()
    for module in graph.modules:
        imports.add_node(module)
        imports.add_edges_from((module, imported) for imported in graph.find_modules_directly_imported_by(module))
    assert sorted(sorted(cycle) for cycle in nx.simple_cycles(imports)) == []


def test_every_import_inside_the_package_resolves() -> None:
    """A lazy import inside a function is only run when its command is: a module moved without it being
    updated would fail for users first. Every `from .x import y` must name a module that exists."""
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        package = parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                try:
                    importlib.import_module(target)
                except ImportError as error:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: {target}: {error}")
    assert missing == []
