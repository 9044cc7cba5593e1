"""The one table of which fields need a restart covers every spec field, and diff reports changes."""

from __future__ import annotations

import dataclasses

from orchestrator.core.model import Backoff, ProcessSpec
from orchestrator.planning.diff import FIELDS, changes, needs_restart


def test_every_spec_field_is_in_the_table() -> None:
    fields = {f.name for f in dataclasses.fields(ProcessSpec) if f.compare}
    assert fields == set(FIELDS)


def test_restart_and_in_place_changes() -> None:
    old = ProcessSpec(name="api", command=("a",))
    assert not needs_restart(old, dataclasses.replace(old, labels=(("a", "b"),), replicas=3, backoff=Backoff(2)))
    assert needs_restart(old, dataclasses.replace(old, command=("b",)))
    assert needs_restart(old, dataclasses.replace(old, env=(("X", "1"),)))
    assert needs_restart(old, dataclasses.replace(old, working_dir="/tmp"))


def test_changes_lists_paths_and_values() -> None:
    old = ProcessSpec(name="api", command=("a",))
    new = dataclasses.replace(old, command=("b",), replicas=2)
    assert [(c.path, c.old, c.new, c.restart) for c in changes(old, new)] == [
        ("spec.command", ("a",), ("b",), True),
        ("spec.replicas", 1, 2, False),
    ]
    assert changes(old, old) == ()
