"""Programs a manifest names that this host does not have: warnings of `validate`, not errors.

A replica's PATH is known (the fixed base of host/environment.py, or the `PATH` of its env), so a bare
program name can be looked up as exec would; a name with a slash is checked as a file. Only warnings,
since the host that runs the manifests may not be the one that validates them, and `--pass-env PATH`
can change the PATH a daemon gives.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..core.errors import Location, Problem
from ..core.model import DEFAULT_PATH, HookKind, ProbeKind, ProcessSpec


def missing_programs(specs: Iterable[ProcessSpec]) -> list[Problem]:
    """A warning for each command, hook or exec check whose program is not found where its replica runs."""
    warnings = []
    for spec in specs:
        env = dict(spec.env)
        search = env.get("PATH", DEFAULT_PATH)
        for field, argv in _commands(spec):
            why = _not_runnable(argv[0], search, spec.working_dir)
            if why:
                warnings.append(Problem(spec.location or Location(spec.key), f"{field}[0]", why))
    return warnings


def _commands(spec: ProcessSpec) -> Iterator[tuple[str, tuple[str, ...]]]:
    if spec.command and not spec.shell:
        yield "spec.command", spec.command
    for kind in HookKind:
        hook = spec.hooks.of(kind)
        if hook is not None and hook.command:
            yield f"spec.hooks.{kind.value}.exec", hook.command
    for probe_kind in ProbeKind:
        probe = spec.probes.of(probe_kind)
        if probe is not None and probe.command:
            yield f"spec.probes.{probe_kind.value}.exec.command", probe.command


def _not_runnable(program: str, search: str, working_dir: str) -> str:
    if not program or "$(" in program:  # empty is an error elsewhere; $(NAME) is only known at each start
        return ""
    if "/" in program:
        path = Path(working_dir, program)
        if not path.is_file():
            return f"{program!r} does not exist on this host"
        if not os.access(path, os.X_OK):
            return f"{program!r} is not executable on this host"
        return ""
    for folder in search.split(os.pathsep):
        candidate = Path(folder or ".", program)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return ""
    return (f"{program!r} is not on the replicas' PATH on this host ({search}); give its full path, "
            "or set PATH in env")


__all__ = ["missing_programs"]
