"""The dependency graph (networkx): missing dependencies, cycles, start and stop order.

Pure: builds values from specs, does no I/O. Edges point from a dependency to its dependent, so a
topological order is a start order. Problems are collected and raised together as one ManifestError.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType

import networkx as nx

from .errors import Location, ManifestError, Problem
from .model import DesiredState, ProcessSpec


def build_graph(specs: Iterable[ProcessSpec]) -> nx.DiGraph:
    """A DiGraph of spec keys with an edge dependency -> dependent (missing dependencies become nodes too)."""
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
    specs = list(specs)
    by_key = {spec.key: spec for spec in specs}
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


def desired_state(specs: Iterable[ProcessSpec]) -> DesiredState:
    """The DesiredState of valid specs; raises ManifestError when the graph has problems."""
    specs = list(specs)
    problems = check(specs)
    if problems:
        raise ManifestError(problems)
    by_key = {spec.key: spec for spec in specs}
    graph = build_graph(specs)
    order: list[str] = []
    for generation in nx.topological_generations(graph):
        order.extend(sorted(generation, key=lambda key: (-by_key[key].priority, key)))
    dependents = {key: tuple(sorted(graph.successors(key))) for key in graph.nodes}
    return DesiredState(MappingProxyType(by_key), tuple(order), MappingProxyType(dependents))


def _where(spec: ProcessSpec, location: Location | None) -> Location:
    return location or spec.location or Location("<unknown>")
