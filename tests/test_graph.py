"""Dependency graph: missing names, cycles named as paths, start order by generation and priority."""

from __future__ import annotations

import dataclasses

import pytest

from orchestrator.core.errors import Location, ManifestError
from orchestrator.core.model import Dependency, ProcessSpec
from orchestrator.planning.graph import check, desired_state


def spec(name: str, *deps: str, priority: int = 0, namespace: str = "default") -> ProcessSpec:
    return ProcessSpec(
        name=name,
        namespace=namespace,
        command=("true",),
        priority=priority,
        depends_on=tuple(Dependency(d, location=Location(f"{name}.yaml", 9, 7)) for d in deps),
        location=Location(f"{name}.yaml", 1, 1),
    )


def test_missing_dependency_names_who_asked() -> None:
    problems = check([spec("api", "db")])
    assert [str(p) for p in problems] == [
        ("api.yaml:9:7: spec.dependsOn[0].name: default/api depends on 'db', which is not defined in namespace "
        "'default'")
    ]


def test_dependency_in_another_namespace_is_missing() -> None:
    assert len(check([spec("api", "db"), spec("db", namespace="other")])) == 1


def test_cycle_is_named_as_a_path() -> None:
    problems = check([spec("api", "worker"), spec("worker", "api"), spec("db")])
    assert [p.message for p in problems] == ["dependency cycle: api -> worker -> api"]
    assert problems[0].location == Location("api.yaml", 9, 7)


def test_longer_cycle_and_self_dependency_are_both_reported() -> None:
    problems = check([spec("a", "b"), spec("b", "c"), spec("c", "a"), spec("d", "d")])
    messages = sorted(p.message for p in problems)
    assert messages == ["default/d depends on itself", "dependency cycle: a -> b -> c -> a"]


def test_desired_state_raises_every_problem() -> None:
    with pytest.raises(ManifestError) as raised:
        desired_state([spec("a", "b"), spec("b", "a"), spec("c", "nope")])
    assert len(raised.value.problems) == 2


def test_start_order_is_generations_then_priority_then_name() -> None:
    state = desired_state(
        [spec("web", "api"), spec("api", "db", "cache"), spec("db"), spec("cache", priority=3), spec("zeta")]
    )
    assert state.start_order == ("default/cache", "default/db", "default/zeta", "default/api", "default/web")
    assert state.dependents["default/db"] == ("default/api",)


BASE = [spec("db", priority=5), spec("cache"), spec("api", "db", "cache"), spec("worker", "db")]


@pytest.mark.parametrize(("name", "after"), [
    ("unchanged", BASE),
    ("one command changed", [*BASE[:3], dataclasses.replace(BASE[3], command=("other",))]),
    ("a priority changed", [dataclasses.replace(BASE[0], priority=-5), *BASE[1:]]),
    ("a dependency added", [*BASE[:3], spec("worker", "db", "cache")]),
    ("a dependency dropped", [*BASE[:2], spec("api", "db"), BASE[3]]),
    ("an object added", [*BASE, spec("zed", priority=9)]),
    ("an object removed", BASE[:3]),
    ("a dependency now missing", [*BASE[:3], spec("worker", "gone")]),
])
def test_the_previous_order_is_reused_only_when_it_is_still_right(name: str, after: list[ProcessSpec]) -> None:
    previous = desired_state(BASE)
    try:
        fresh = desired_state(after)
    except ManifestError as error:
        with pytest.raises(ManifestError) as again:
            desired_state(after, previous=previous)
        assert again.value.problems == error.problems
        return
    reused = desired_state(after, previous=previous)
    assert (dict(reused.specs), reused.start_order, dict(reused.dependents)) == (
        dict(fresh.specs), fresh.start_order, dict(fresh.dependents)), name
