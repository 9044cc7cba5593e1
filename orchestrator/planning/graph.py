"""The dependency graph: missing dependencies, cycles, start and stop order.

Pure: builds values from specs, does no I/O. Edges point from a dependency to its dependent, so a
topological order is a start order. Problems are collected and raised together as one ManifestError.

The common case (no cycle) is ordered with the standard library's graphlib, which costs nothing to
import; networkx (about 200 ms to import, most of the CLI's start-up budget) is imported only when there
is a cycle, to name every cycle through its strongly connected components rather than the first one found.
"""

from __future__ import annotations

from collections.abc import Iterable
from graphlib import CycleError, TopologicalSorter
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..core.errors import Location, ManifestError, Problem
from ..core.model import Condition, DesiredState, ProcessSpec, RestartPolicy

if TYPE_CHECKING:
    import networkx as nx


def build_graph(specs: Iterable[ProcessSpec]) -> nx.DiGraph:
    """A DiGraph of spec keys with an edge dependency -> dependent (missing dependencies become nodes too)."""
    import networkx as nx

    graph = nx.DiGraph()
    for spec in specs:
        graph.add_node(spec.key)
        for dep in spec.depends_on:
            graph.add_edge(spec.dependency_key(dep), spec.key)
    return graph


def check(specs: Iterable[ProcessSpec], also_defined: frozenset[str] = frozenset()) -> list[Problem]:
    """Every missing dependency and every cycle, each located at the dependsOn entry that makes it.

    `also_defined` names keys of documents that exist but failed validation: not missing, only broken.
    """
    return _checked(list(specs), {spec.key: spec for spec in specs}, also_defined)[0]


def _checked(specs: list[ProcessSpec], by_key: dict[str, ProcessSpec], also_defined: frozenset[str] = frozenset()
             ) -> tuple[list[Problem], TopologicalSorter[str] | None]:
    """check()'s problems, and the prepared sorter when there is no cycle (desired_state sorts with it)."""
    problems: list[Problem] = []
    for spec in specs:
        for i, dep in enumerate(spec.depends_on):
            dep_key = spec.dependency_key(dep)
            if dep_key not in by_key and dep_key in also_defined:
                continue
            if dep_key not in by_key:
                problems.append(
                    Problem(
                        _where(spec, dep.location),
                        f"spec.dependsOn[{i}].name",
                        f"{spec.key} depends on '{dep.name}', which is not defined in namespace "
                        f"'{spec.namespace}'",
                    )
                )
            elif dep.name == spec.name:
                problems.append(
                    Problem(_where(spec, dep.location), f"spec.dependsOn[{i}].name", f"{spec.key} depends on itself")
                )
            elif (dep.condition is Condition.COMPLETED
                  and by_key[dep_key].effective_restart_policy is RestartPolicy.ALWAYS):
                target = by_key[dep_key]
                problems.append(Problem(
                    _where(spec, dep.location), f"spec.dependsOn[{i}].condition",
                    f"{spec.key} waits for {target.name} to complete, but {target.name} is restarted whenever it "
                    "exits (restartPolicy Always), so it never completes: wait for `ready` or `started`, or make "
                    f"{target.name} a Job"))
    sorter = _sorter(specs, by_key)
    if sorter is None:
        problems.extend(_cycles(specs, by_key))
    return problems, sorter


def _sorter(specs: list[ProcessSpec], by_key: dict[str, ProcessSpec]) -> TopologicalSorter[str] | None:
    """A prepared sorter over the defined keys (self-dependencies left out), or None on a cycle."""
    sorter: TopologicalSorter[str] = TopologicalSorter()
    for spec in specs:
        sorter.add(spec.key, *(k for d in spec.depends_on if (k := spec.dependency_key(d)) in by_key and k != spec.key))
    try:
        sorter.prepare()
    except CycleError:
        return None
    return sorter


def _cycles(specs: list[ProcessSpec], by_key: dict[str, ProcessSpec]) -> list[Problem]:
    import networkx as nx

    problems: list[Problem] = []
    graph = build_graph(specs)
    graph.remove_nodes_from([key for key in list(graph.nodes) if key not in by_key])
    graph.remove_edges_from(nx.selfloop_edges(graph))
    for component in nx.strongly_connected_components(graph):
        if len(component) < 2:
            continue
        cycle = [edge[0] for edge in nx.find_cycle(graph.subgraph(component))]
        # Name the cycle from its smallest member in the order a dependency chain reads: a -> b means a
        # depends on b, so walk the edges backwards.
        cycle.reverse()
        start = cycle.index(min(cycle))
        cycle = cycle[start:] + cycle[:start]
        names = [by_key[key].name if by_key[key].namespace == by_key[cycle[0]].namespace else key for key in cycle]
        first = by_key[cycle[0]]
        dep_index = next(
            (i for i, d in enumerate(first.depends_on) if first.dependency_key(d) == cycle[1 % len(cycle)]), 0
        )
        location = first.depends_on[dep_index].location if first.depends_on else None
        problems.append(
            Problem(
                _where(first, location),
                f"spec.dependsOn[{dep_index}]",
                "dependency cycle: " + " -> ".join([*names, names[0]]),
            )
        )
    return problems


def desired_state(specs: Iterable[ProcessSpec], previous: DesiredState | None = None) -> DesiredState:
    """The DesiredState of valid specs; raises ManifestError when the graph has problems.

    With `previous`, and the same keys each with the same dependencies and priority as there (as when one
    command of 500 changed), its start order and dependents are the answer already: only the specs are new.
    """
    specs = list(specs)
    by_key = {spec.key: spec for spec in specs}
    if previous is not None and _same_graph(previous, by_key):
        return DesiredState(MappingProxyType(by_key), previous.start_order, previous.dependents)
    problems, sorter = _checked(specs, by_key)
    if problems or sorter is None:
        raise ManifestError(problems)
    order: list[str] = []
    while sorter.is_active():
        generation = sorter.get_ready()
        order.extend(sorted(generation, key=lambda key: (-by_key[key].priority, key)))
        sorter.done(*generation)
    dependents: dict[str, list[str]] = {key: [] for key in by_key}
    for spec in specs:
        for dep in spec.depends_on:
            dependents[spec.dependency_key(dep)].append(spec.key)
    return DesiredState(
        MappingProxyType(by_key),
        tuple(order),
        MappingProxyType({key: tuple(sorted(keys)) for key, keys in dependents.items()}),
    )


def _same_graph(previous: DesiredState, by_key: dict[str, ProcessSpec]) -> bool:
    """Do these specs order and depend exactly as `previous`'s (a valid graph, so no problem either)?"""
    if len(by_key) != len(previous.specs):
        return False
    for key, spec in by_key.items():
        old = previous.specs.get(key)
        if old is spec:
            continue
        if old is None or old.priority != spec.priority or [old.dependency_key(d) for d in old.depends_on] != [
                spec.dependency_key(d) for d in spec.depends_on]:
            return False
    return True


def _where(spec: ProcessSpec, location: Location | None) -> Location:
    return location or spec.location or Location("<unknown>")
