"""The Prometheus text endpoint (`daemon --metrics-addr HOST:PORT`), served by prometheus_client.

Each scrape asks the daemon for the status of every replica (on the reconciler's thread, like any API
request) and the sampler for cpu and memory. Off by default; reachable by whoever can reach the address,
so bind it to 127.0.0.1 unless the host's network is trusted. Labels carry names only, never env values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..core.errors import UserError
from ..core.model import Phase, ReplicaId
from ..host.metrics import Histogram, Sampler
from ..planning.health import BANDS

Objects = Callable[[], dict[str, Any]]  # the answer of GET /objects?usage=1: every object, its replicas' status


class _Collector:
    def __init__(self, objects: Objects, sampler: Sampler, spawns: Histogram) -> None:
        self.objects = objects
        self.sampler = sampler
        self.spawns = spawns

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        labels = ["namespace", "name", "replica"]
        up = GaugeMetricFamily("orchestrator_replica_up", "1 while the replica's process runs", labels=labels)
        ready = GaugeMetricFamily("orchestrator_replica_ready", "1 while the replica is ready", labels=labels)
        restarts = CounterMetricFamily("orchestrator_replica_restarts", "Restarts of the replica", labels=labels)
        cpu = CounterMetricFamily("orchestrator_replica_cpu_seconds", "CPU time of the replica's process tree",
                                  labels=labels)
        memory = GaugeMetricFamily("orchestrator_replica_memory_bytes", "Resident memory of the replica's tree",
                                   labels=labels)
        proportional = GaugeMetricFamily("orchestrator_replica_memory_pss_bytes", "Proportional set size of the "
                                         "replica's tree: shared pages divided among their sharers", labels=labels)
        # One series per phase, 1 for the replica's own: a Job that succeeded is Succeeded, not "down".
        phase = GaugeMetricFamily("orchestrator_replica_phase", "1 for the phase the replica is in",
                                  labels=[*labels, "phase"])
        health = GaugeMetricFamily("orchestrator_replica_limit_health", "1 for the band the replica is in, of its "
                                   "memory or cpu limit: Healthy below 80 %, Warning from 80 %, Critical from 100 %",
                                   labels=[*labels, "band"])
        answer = self.objects()
        for document in answer["objects"]:
            for replica in document["replica_status"]:
                values = [document["namespace"], document["name"], str(replica["index"])]
                up.add_metric(values, 1.0 if replica["phase"] == "Running" else 0.0)
                ready.add_metric(values, 1.0 if replica.get("ready") else 0.0)
                restarts.add_metric(values, float(replica["restarts"]))
                for name in PHASES:
                    phase.add_metric([*values, name], 1.0 if replica["phase"] == name else 0.0)
                band = (replica.get("limit_health") or {}).get("band")
                if band is not None:
                    for name in BANDS:
                        health.add_metric([*values, name], 1.0 if band == name else 0.0)
                sample = self.sampler.latest(ReplicaId(document["key"], replica["index"]))
                if sample is not None and replica["pid"]:
                    cpu.add_metric(values, sample.cpu_seconds)
                    memory.add_metric(values, float(sample.memory_bytes))
                    proportional.add_metric(values, float(sample.proportional_bytes))
        cost = GaugeMetricFamily("orchestrator_metrics_pass_seconds", "Duration of the last sampling pass")
        cost.add_metric([], self.sampler.last_pass_seconds)
        spawns = HistogramMetricFamily("process_spawn_duration_seconds", "Time one start of a replica or hook "
                                       "takes the daemon, from fork to watched")
        counts = list(self.spawns.counts)
        spawns.add_metric([], [*((f"{b:g}", float(c)) for b, c in zip(self.spawns.bounds, counts, strict=True)),
                               ("+Inf", float(self.spawns.count))], self.spawns.sum)
        yield from (up, ready, restarts, phase, health, cpu, memory, proportional, cost, spawns)


PHASES = tuple(phase.value for phase in Phase)


def registry(objects: Objects, sampler: Sampler, spawns: Histogram) -> Any:
    """A prometheus_client registry of the replicas' metrics and the daemon's own process metrics
    (process_cpu_seconds_total, process_resident_memory_bytes, open fds...)."""
    try:
        from prometheus_client import CollectorRegistry, ProcessCollector
    except ImportError as error:
        raise UserError("metrics need the prometheus_client package (pip install prometheus_client)") from error
    made = CollectorRegistry(auto_describe=False)
    made.register(_Collector(objects, sampler, spawns))  # type: ignore[arg-type]
    ProcessCollector(registry=made)
    return made


def exposition(objects: Objects, sampler: Sampler, spawns: Histogram) -> Callable[[], bytes]:
    """The text of one scrape, made when called (the TCP listener's GET /metrics)."""
    from prometheus_client import generate_latest

    made = registry(objects, sampler, spawns)
    return lambda: generate_latest(made)


def serve_metrics(address: str, objects: Objects, sampler: Sampler, spawns: Histogram) -> None:
    """Serve /metrics on `address` (HOST:PORT) in a background thread, unauthenticated (bind it to loopback)."""
    from prometheus_client import start_http_server

    host, _, port = address.rpartition(":")
    if not port.isdigit() or not host:
        raise UserError(f"--metrics-addr {address!r}: expected HOST:PORT, such as 127.0.0.1:9100")
    made = registry(objects, sampler, spawns)
    try:
        start_http_server(int(port), addr=host.strip("[]"), registry=made)
    except OSError as error:
        raise UserError(f"--metrics-addr {address}: {error.strerror or error}") from error
