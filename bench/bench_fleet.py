"""Fleet mode: failover of a singleton, moving a Spread off a dead node, etcd paused, and what fleet mode adds to
an idle agent. A real 3-member etcd on loopback and three agents (n1, n2 disk=ssd; n3 disk=hdd), reusing the
test harness (tests/etcdcluster.py, tests/test_fleet.py), lease TTL 4 s (test_fleet.TTL).

    python bench/bench_fleet.py [--runs 3] [--pause-seconds 30] [--idle-seconds 20] [--json]

The fleet: an Each 'agent' (disk=ssd), a One 'leader' and a Spread 'web' of 30 replicas, maxPerNode 15,
lostAfterSeconds 1.

1. Failover: SIGKILL the leader's node (the agent and every process group it started) and time until the leader
   runs on another node, sampled every 100 ms, never two copies (else the bench fails); the dead agent is
   restarted and the fleet settles before the next run. RUNS runs, median. Target: TTL + 3 s.
2. Spread: in the same runs, time from the kill until 30 web replicas run again, and how many replicas on the
   surviving nodes changed pid (target 0). Target: TTL + lostAfterSeconds.
3. etcd paused (every member SIGSTOPped) for PAUSE_SECONDS: Each and Spread pids changed (target 0), when the
   singleton stopped (expected TTL - TTL/3 s) and how long after the resume it ran again.
4. Idle: wake-ups per second (voluntary + involuntary context switches of all threads) of the fleet agent that
   holds the singleton, and of its fence guard, over IDLE_SECONDS, beside a single-host daemon (`orchestrator
   --state-dir X daemon`) with the same processes that node runs applied locally without placement, measured
   over the same window (the floor): at TTL 4 (a keepalive
   every 1.33 s) for information, then with every agent restarted at the default TTL (10 s), which the target
   is for. Target: <= floor + 1/s.

This script makes itself a child subreaper: whatever the agents leave behind is killed and reaped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchlib import BenchError, environment, figure_row, log, run_bench, table_lines
from etcdcluster import EtcdCluster, etcd_binary
from test_fleet import TTL, Agent, cli, copies

from orchestrator.cli.client import Client
from orchestrator.cli.fleet import DEFAULT_LEASE_TTL

T = TypeVar("T")
REPLICAS, MAX_PER_NODE, LOST_AFTER = 30, 15, 1.0
LABELS = {"n1": {"disk": "ssd"}, "n2": {"disk": "ssd"}, "n3": {"disk": "hdd"}}


def wait(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def fleet_manifest(directory: Path) -> Path:
    directory.mkdir(exist_ok=True)
    docs = [
        {"kind": "Process", "metadata": {"name": "agent"},
         "spec": {"command": ["sleep", "600"], "placement": {"nodeSelector": {"matchLabels": {"disk": "ssd"}}}}},
        {"kind": "Process", "metadata": {"name": "leader"},
         "spec": {"command": ["sleep", "600"], "placement": {"mode": "One"}}},
        {"kind": "Process", "metadata": {"name": "web"},
         "spec": {"command": ["sleep", "600"], "shutdown": {"timeoutSeconds": 2},
                  "placement": {"mode": "Spread", "replicas": REPLICAS, "maxPerNode": MAX_PER_NODE,
                                "lostAfterSeconds": LOST_AFTER}}},
    ]
    (directory / "fleet.yaml").write_text(
        "---\n".join(json.dumps({"apiVersion": "orchestrator/v1", **d}) + "\n" for d in docs))
    return directory


def settled(agents: dict[str, Agent]) -> dict[str, dict[int, str]] | None:
    now = {name: copies(agents, name) for name in ("agent", "leader", "web")}
    ok = sorted(now["agent"].values()) == ["n1", "n2"] and len(now["leader"]) == 1 and len(now["web"]) == REPLICAS
    return now if ok else None


def steady(agents: dict[str, Agent], hold: float = 3.0) -> dict[str, dict[int, str]] | None:
    """Settled, and the same pids `hold` seconds later: a node that rejoined has taken back its replicas (the
    counts are right for a moment while they move, and a kill then would count the move as a restart)."""
    first = settled(agents)
    if first is None:
        return None
    time.sleep(hold)
    return first if settled(agents) == first else None


def failovers(agents: dict[str, Agent], runs: int) -> dict[str, Any]:
    leader_s, spread_s, restarted, most = [], [], [], 0
    for run in range(runs):
        before = wait(lambda: steady(agents), 90, "the fleet settled and steady", 0.2)
        [(_, holder)] = before["leader"].items()
        survivors = {pid for pid, node in before["web"].items() if node != holder}
        agents[holder].die()
        died = time.monotonic()
        elsewhere = web_back = None
        while time.monotonic() - died < 60:  # every 100 ms: never two leaders
            leaders = copies(agents, "leader")
            most = max(most, len(leaders))
            if len(leaders) > 1:
                raise BenchError(f"two leaders at once: {leaders}")
            now = time.monotonic() - died
            if elsewhere is None and leaders and holder not in leaders.values():
                elsewhere = now
            if web_back is None:
                web = copies(agents, "web")
                if len(web) == REPLICAS:
                    web_back = now
                    restarted.append(len(survivors - set(web)))
            if elsewhere is not None and web_back is not None:
                break
            time.sleep(0.1)
        if elsewhere is None or web_back is None:
            raise BenchError(f"run {run}: leader {elsewhere}, web {web_back} not back within 60 s")
        leader_s.append(elsewhere)
        spread_s.append(web_back)
        log(f"run {run}: killed {holder}; leader elsewhere after {elsewhere:.2f} s, {REPLICAS} web after "
            f"{web_back:.2f} s, {restarted[-1]} surviving replicas restarted")
        agents[holder].start()
    wait(lambda: settled(agents), 60, "the fleet settled", 0.2)
    return {"leader_s": leader_s, "spread_s": spread_s, "restarted": restarted, "most_leaders": most}


def paused(cluster: EtcdCluster, agents: dict[str, Agent], seconds: float) -> dict[str, Any]:
    before = wait(lambda: settled(agents), 60, "the fleet settled", 0.2)
    cluster.pause()
    start = time.monotonic()
    stopped_at = None
    try:
        while time.monotonic() - start < seconds:
            if stopped_at is None and not copies(agents, "leader"):
                stopped_at = time.monotonic() - start
            time.sleep(0.1)
        during = {name: copies(agents, name) for name in ("agent", "web")}
    finally:
        cluster.resume()
    resumed = time.monotonic()
    wait(lambda: len(copies(agents, "leader")) == 1, TTL + 30, "the singleton back after the resume")
    back = time.monotonic() - resumed
    changed = {name: len(set(before[name]) - set(during[name])) for name in ("agent", "web")}
    return {"seconds": seconds, "stopped_s": stopped_at, "back_s": back, "changed": changed,
            "each": len(before["agent"]), "spread": len(before["web"])}


def switches(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that ended
    return total


def idle(agents: dict[str, Agent], root: Path, seconds: float) -> dict[str, Any]:
    now = wait(lambda: settled(agents), 60, "the fleet settled", 0.2)
    [node] = now["leader"].values()  # the singleton's node: it runs the fence guard too
    mine = {name: list(now[name].values()).count(node) for name in ("agent", "leader", "web")}
    local = root / "local"
    (local / "m").mkdir(parents=True)
    docs = [{"kind": "Process", "metadata": {"name": name},
             "spec": {"command": ["sleep", "600"], "replicas": count, "shutdown": {"timeoutSeconds": 2}}}
            for name, count in mine.items() if count]
    (local / "m" / "p.yaml").write_text(
        "---\n".join(json.dumps({"apiVersion": "orchestrator/v1", **d}) + "\n" for d in docs))
    state = local / "state"
    state.mkdir()
    base = [sys.executable, "-m", "orchestrator", "--state-dir", str(state)]
    out = open(local / "daemon.out", "ab")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen([*base, "daemon"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait(lambda: Client(state).ping() or daemon.poll() is not None, 30, "the local daemon answering", 0.05)
        if daemon.poll() is not None:
            raise BenchError("the local daemon exited")
        done = subprocess.run([*base, "apply", "-f", str(local / "m"), "--wait"], capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode != 0:
            raise BenchError(f"local apply: {done.stderr.strip()}")
        time.sleep(3)  # settle: the starts' work is done
        # The agent and its fence guard (host/fenceguard.py): what fleet mode costs this node.
        pids = [agents[node].proc.pid, *(g.pid for g in agents[node].guards())]  # type: ignore[union-attr]
        a0, d0 = sum(switches(pid) for pid in pids), switches(daemon.pid)
        time.sleep(seconds)
        a1, d1 = sum(switches(pid) for pid in pids), switches(daemon.pid)
        if settled(agents) is None:
            raise BenchError("the fleet changed during the idle window")
    finally:
        try:
            Client(state).request("POST", "/shutdown")
            daemon.wait(timeout=30)
        except Exception as error:  # noqa: BLE001 - killed below
            log(f"local daemon shutdown: {error}")
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        out.close()
    return {"node": node, "processes": mine, "seconds": seconds, "guards": len(pids) - 1,
            "agent_wakeups_per_s": (a1 - a0) / seconds, "local_wakeups_per_s": (d1 - d0) / seconds}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    if etcd_binary() is None:
        raise BenchError("no etcd binary")
    report: dict[str, Any] = {"env": environment(), "ttl": TTL, "lost_after": LOST_AFTER}
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        root = Path(tmp)
        (root / "etcd").mkdir()
        cluster = EtcdCluster(root / "etcd", members=3)
        agents: dict[str, Agent] = {}
        try:
            cluster.start()
            agents = {name: Agent(root, name, cluster.endpoints, LABELS[name]) for name in LABELS}
            for agent in agents.values():
                agent.start()
            cli(cluster, root, "apply", "-f", str(fleet_manifest(root / "m")), "--fleet")
            report["failover"] = failovers(agents, args.runs)
            log(json.dumps(report["failover"]))
            report["idle"] = idle(agents, root, args.idle_seconds)
            log(json.dumps(report["idle"]))
            report["paused"] = paused(cluster, agents, args.pause_seconds)
            log(json.dumps(report["paused"]))
            for agent in agents.values():  # the idle cost again at the default TTL, the one the target is for
                agent.close()
                agent.ttl = DEFAULT_LEASE_TTL
                agent.start()
            report["idle_default"] = idle(agents, root / "default", args.idle_seconds)
            log(json.dumps(report["idle_default"]))
        finally:
            for agent in agents.values():
                try:
                    agent.close()
                except Exception as error:  # noqa: BLE001 - the next ones still close
                    log(f"closing {agent.name}: {error}")
            cluster.close()
    return report


def table(report: dict[str, Any]) -> str:
    ttl, fo, quiet, pause = report["ttl"], report["failover"], report["idle"], report["paused"]
    leader_m, spread_m = statistics.median(fo["leader_s"]), statistics.median(fo["spread_s"])
    runs = len(fo["leader_s"])
    fence = ttl - ttl / 3
    changed = pause["changed"]["agent"] + pause["changed"]["web"]
    default = report["idle_default"]
    extra = default["agent_wakeups_per_s"] - default["local_wakeups_per_s"]
    rows = [
        figure_row("singleton failover, median (s)", runs, ttl + 3, leader_m, "{:.2f}", "<= TTL + 3 s",
                   leader_m <= ttl + 3),
        figure_row("most leader copies seen at once", runs, 1, fo["most_leaders"], "{:g}", "1",
                   fo["most_leaders"] <= 1),
        figure_row(f"spread {REPLICAS} back after node kill, median (s)", runs, ttl + report["lost_after"],
                   spread_m, "{:.2f}", "<= TTL + lostAfterSeconds", spread_m <= ttl + report["lost_after"]),
        figure_row("surviving replicas restarted (sum)", runs, 0, sum(fo["restarted"]), "{:g}", "0",
                   sum(fo["restarted"]) == 0),
        figure_row(f"etcd paused {pause['seconds']:g} s: Each+Spread pids changed", pause["each"] + pause["spread"],
                   0, changed, "{:g}", "0", changed == 0),
        figure_row("etcd paused: singleton stopped after (s)", 1, fence, pause["stopped_s"], "{:.2f}",
                   "about TTL - TTL/3, < TTL", pause["stopped_s"] is not None and pause["stopped_s"] < ttl),
        figure_row("etcd resumed: singleton back after (s)", 1, None, pause["back_s"], "{:.2f}", "-", None),
        figure_row(f"idle wake-ups/s at TTL {ttl}, {quiet['node']} vs local", sum(quiet["processes"].values()),
                   quiet["local_wakeups_per_s"], quiet["agent_wakeups_per_s"], "{:.2f}", "-", None),
        figure_row(f"idle wake-ups/s at TTL {DEFAULT_LEASE_TTL}, {default['node']} vs local",
                   sum(default["processes"].values()), default["local_wakeups_per_s"],
                   default["agent_wakeups_per_s"], "{:.2f}", "<= floor + 1/s", extra <= 1.0),
    ]
    env = report["env"]
    head = (f"Python {env['python']}, nproc {env['nproc']}, kernel {env['kernel']}; lease TTL {ttl} s, "
            f"lostAfterSeconds {report['lost_after']:g}; 3 etcd members, agents n1,n2 (ssd) n3 (hdd)\n"
            f"failover runs {', '.join(f'{s:.2f}' for s in fo['leader_s'])} s; spread back "
            f"{', '.join(f'{s:.2f}' for s in fo['spread_s'])} s; restarted per run {fo['restarted']}; "
            f"idle {quiet['seconds']:g} s, {quiet['node']} runs {quiet['processes']} (both measured together)")
    return "\n".join([head, *table_lines(rows)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pause-seconds", type=float, default=30.0)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return run_bench(lambda: measure(args), table, args.json)


if __name__ == "__main__":
    sys.exit(main())
