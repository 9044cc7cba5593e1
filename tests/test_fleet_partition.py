"""Fleet mode across a real network partition (design/fleet.md section 7, Tier 2): a single-member etcd and three
agents, each in a network namespace of its own joined to a bridge (in one more namespace) by a veth pair, with
addresses only inside those namespaces; a node is cut off by setting its link down inside its namespace and
healed by setting it up. Covers: a partitioned holder of a mode One process stops it before another node
claims and starts it (sampled every 100 ms: never two copies; and the events' times in the agents' logs), while
its Each and Spread processes keep their pids (Spread is at least once: the replicas of the cut-off node are
started elsewhere after lostAfterSeconds and run twice until the heal); after the heal exactly one singleton,
no restart of any Each process, the healed node registered and reachable again and its stale Spread replicas
given up; and a bounded, seeded chaos loop (partition, heal, SIGKILL of an agent alone and its restart, etcd
SIGSTOPped for a few seconds) that checks at every sample that the singleton never runs twice and no Each
process is restarted, and at the end that the fleet converges to one singleton, one Each process per node and
the Spread's replicas. Needs root, `ip netns` and etcd; skipped otherwise."""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TypeVar

import psutil
import pytest
from conftest import wait_for
from etcdcluster import etcd_binary
from test_fleet import TTL, Agent, logs, manifests

pytestmark = pytest.mark.timeout(300)
FENCE_AFTER = TTL - min(3, TTL / 3)  # a mode One process is stopped this long after the last keepalive sent
SUBNET = "10.213.0"
ETCD_ADDRESS = f"{SUBNET}.10"
ETCD_URL = f"http://{ETCD_ADDRESS}:2379"
NODES = ("n1", "n2", "n3")
NAMES = ("agent", "leader", "web")
START_SECONDS = 20.0
T = TypeVar("T")


# -- the network ------------------------------------------------------------------------------------------------


def ip(*words: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *words], capture_output=True, text=True, timeout=20, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(words)}: {done.returncode} {done.stderr.strip()}")
    return done


@functools.lru_cache(maxsize=1)
def unsupported() -> str | None:
    """Why this machine cannot run these tests (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    if etcd_binary() is None:
        return "no etcd binary (apt-get install etcd-server)"
    probe = f"tp-{uuid.uuid4().hex[:6]}-probe"
    try:
        added = ip("netns", "add", probe, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`ip netns add` failed: {error}"
    if added.returncode != 0:
        return f"`ip netns add` failed: {added.stderr.strip()}"
    ip("netns", "delete", probe, check=False)
    return None


class Network:
    """A bridge in namespace PREFIX-br, and one namespace per member (PREFIX-NAME) with `eth0` on that bridge."""

    def __init__(self) -> None:
        self.prefix = f"tp-{uuid.uuid4().hex[:6]}"
        self.bridge = f"{self.prefix}-br"
        self.namespaces: list[str] = []
        self.cut: set[str] = set()

    def ns(self, member: str) -> str:
        return f"{self.prefix}-{member}"

    def _add_namespace(self, name: str) -> None:
        self.namespaces.append(name)  # before it exists: a failure half-way still deletes it
        ip("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")

    def start(self) -> None:
        self._add_namespace(self.bridge)
        ip("-n", self.bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", self.bridge, "link", "set", "br0", "up")

    def add(self, member: str, address: str) -> None:
        name = self.ns(member)
        self._add_namespace(name)
        port = f"b-{member}"
        ip("-n", self.bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", name)
        ip("-n", self.bridge, "link", "set", port, "master", "br0")
        ip("-n", self.bridge, "link", "set", port, "up")
        ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", name, "link", "set", "eth0", "up")

    def partition(self, member: str) -> None:
        ip("netns", "exec", self.ns(member), "ip", "link", "set", "eth0", "down")
        self.cut.add(member)

    def heal(self, member: str) -> None:
        ip("netns", "exec", self.ns(member), "ip", "link", "set", "eth0", "up")
        self.cut.discard(member)

    def close(self) -> None:
        for member in sorted(self.cut):
            try:
                self.heal(member)
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                pass
        for name in reversed(self.namespaces):
            ip("netns", "delete", name, check=False)
        self.namespaces = []


def in_ns(ns: str, command: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *command]


# -- etcd and the agents in their namespaces ----------------------------------------------------------------------

HEALTH = """
import json, sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(sys.argv[1] + "/health", timeout=0.5) as response:
            if json.loads(response.read()).get("health") == "true":
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit(1)
"""


class NetEtcd:
    """One etcd member in namespace `ns`, listening on its address there (as EtcdCluster launches its members)."""

    def __init__(self, directory: Path, ns: str) -> None:
        self.directory = directory
        self.ns = ns
        self.endpoints = [ETCD_URL]
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.log_path = directory / "etcd.log"
        self.paused = False

    def start(self) -> None:
        binary = etcd_binary()
        assert binary is not None
        self.directory.mkdir(exist_ok=True)
        env = {key: value for key, value in os.environ.items() if not key.startswith(("ETCD_", "ETCDCTL_"))}
        peer = f"http://{ETCD_ADDRESS}:2380"
        command = [
            binary, "--name", "m0", "--data-dir", str(self.directory / "m0.data"),
            "--listen-client-urls", ETCD_URL, "--advertise-client-urls", ETCD_URL,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"m0={peer}", "--initial-cluster-token", f"test-{uuid.uuid4().hex}",
            "--initial-cluster-state", "new", "--heartbeat-interval", "100", "--election-timeout", "1000",
            "--logger", "zap",
        ]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(in_ns(self.ns, command), stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        healthy = subprocess.run(in_ns(self.ns, [sys.executable, "-I", "-c", HEALTH, ETCD_URL, str(START_SECONDS)]),
                                 capture_output=True, timeout=START_SECONDS + 10, check=False)
        if healthy.returncode != 0 or self.proc.poll() is not None:
            raise RuntimeError(f"etcd did not start in {self.ns} (exit {self.proc.poll()}):\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process dies of SIGKILL too; this keeps wait() short
                self.proc.kill()
            self.proc.wait(timeout=20)
        if self._log is not None:
            self._log.close()


class NetAgent(Agent):
    """test_fleet's Agent, its daemon run by `ip netns exec NS` (which execs it: the Popen's pid is the daemon's)."""

    def __init__(self, root: Path, name: str, endpoints: list[str], labels: dict[str, str], ns: str) -> None:
        super().__init__(root, name, endpoints, labels)
        self.ns = ns

    def start(self) -> None:
        self.state.mkdir(exist_ok=True)
        command = [sys.executable, "-m", "orchestrator", "--state-dir", str(self.state), "daemon",
                   "--etcd", ",".join(self.endpoints), "--node-name", self.name, "--lease-ttl", str(TTL)]
        for key, value in self.labels.items():
            command += ["--node-label", f"{key}={value}"]
        log = open(self.state / "agent.log", "ab")  # noqa: SIM115 - the daemon's, closed with it
        self.proc = subprocess.Popen(in_ns(self.ns, command), stdout=log, stderr=log, start_new_session=True)
        log.close()
        wait_for(lambda: (self.state / "orchestrator.sock").exists() or self.proc.poll() is not None,  # type: ignore[union-attr]
                 timeout=20, what=f"{self.name} serving")
        assert self.proc.poll() is None, (self.state / "agent.log").read_text()


@dataclass
class Fleet:
    net: Network
    etcd: NetEtcd
    root: Path
    agents: dict[str, Agent] = field(default_factory=dict)

    def cli(self, *words: str) -> str:
        """The CLI, run in etcd's namespace (the only one from where the test reaches etcd)."""
        env = {**os.environ, "ORCHESTRATOR_HOME": str(self.root / "cli-home")}
        command = [sys.executable, "-m", "orchestrator", *words, "--etcd", ETCD_URL]
        done = subprocess.run(in_ns(self.etcd.ns, command), capture_output=True, text=True, timeout=60, env=env,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def nodes(self) -> dict[str, dict[str, object]]:
        return {n["name"]: n for n in json.loads(self.cli("nodes", "-o", "json"))["nodes"]}

    def logs(self) -> str:
        return logs(self.agents, lines=60) + f"\n--- etcd\n{self.etcd.tail(8)}"

    def snapshot(self) -> dict[str, dict[int, str]]:
        """name -> {pid: node} of every running copy of the fleet's Processes, in one look at the process table."""
        nodes = {str(agent.state.resolve()): name for name, agent in self.agents.items()}
        found: dict[str, dict[int, str]] = {name: {} for name in NAMES}
        for process in psutil.process_iter():
            try:
                env = process.environ()
                node = nodes.get(env.get("ORCH_STATE_DIR", ""))
                name = env.get("ORCH_NAME", "")
                if node is not None and name in found and process.status() != psutil.STATUS_ZOMBIE:
                    found[name][process.pid] = node
            except (psutil.Error, OSError):
                continue
        return found

    def settled(self) -> dict[str, dict[int, str]] | None:
        now = self.snapshot()
        ok = sorted(now["agent"].values()) == list(NODES) and len(now["leader"]) == 1 and len(now["web"]) == 6
        return now if ok else None

    def until(self, condition: Callable[[], T | None], timeout: float, what: str) -> T:
        """wait_for, failing with the agents' logs."""
        try:
            value = wait_for(condition, timeout=timeout, interval=0.2, what=what)
        except pytest.fail.Exception as error:
            pytest.fail(f"{error}\n{self.logs()}")
        assert value is not None
        return value

    def apply(self) -> dict[str, dict[int, str]]:
        assert "created" in self.cli("apply", "-f", str(manifests(self.root / "m")), "--fleet")
        return self.until(self.settled, timeout=40, what="Each on every node, One once, 6 web")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """etcd and three agents (all disk=ssd: Each runs on every node) on a bridged network of namespaces; always
    healed, stopped and deleted afterwards, whatever happened."""
    why = unsupported()
    if why is not None:
        pytest.skip(f"network partition tests: {why}")
    net = Network()
    fleet = Fleet(net, NetEtcd(tmp_path / "etcd", net.ns("etcd")), tmp_path)
    try:
        net.start()
        net.add("etcd", ETCD_ADDRESS)
        for index, name in enumerate(NODES, start=11):
            net.add(name, f"{SUBNET}.{index}")
        fleet.etcd.start()
        for name in NODES:
            fleet.agents[name] = NetAgent(tmp_path, name, [ETCD_URL], {"disk": "ssd"}, net.ns(name))
            fleet.agents[name].start()
        yield fleet
    finally:
        try:
            for member in sorted(net.cut):
                net.heal(member)  # so that the agents stop as usual and revoke their leases
            fleet.etcd.resume()
            for agent in fleet.agents.values():
                agent.close()
            fleet.etcd.close()
        finally:
            net.close()


# -- the agents' logs ---------------------------------------------------------------------------------------------


def event_at(agent: Agent, needle: str) -> float | None:
    """Seconds since midnight of the last line of the agent's log with `needle` ("HH:MM:SS.mmm KEY Type: ...")."""
    found = None
    for line in (agent.state / "agent.log").read_text(errors="replace").splitlines():
        if needle in line:
            try:
                stamp = datetime.strptime(line.split(" ", 1)[0], "%H:%M:%S.%f")
            except ValueError:
                continue
            found = stamp.hour * 3600 + stamp.minute * 60 + stamp.second + stamp.microsecond / 1e6
    return found


def after(earlier: float, later: float) -> float:
    """later - earlier, both times of day (a test that spans midnight still compares right)."""
    return (later - earlier + 43200) % 86400 - 43200


# -- the tests ------------------------------------------------------------------------------------------------------


def _cut_off_holder(fleet: Fleet, before: dict[str, dict[int, str]]) -> tuple[str, int, int, float, float]:
    """Partition the singleton's node and sample every 100 ms until it runs elsewhere: never two copies, and the
    cut-off node's Each and Spread processes keep their pids. Returns (holder, old pid, new pid, gone, elsewhere)
    with the seconds after the cut when the old copy was gone and the new one running."""
    [(leader_pid, holder)] = before["leader"].items()
    mine = {name: {pid for pid, node in before[name].items() if node == holder} for name in ("agent", "web")}
    assert mine["agent"], before
    fleet.net.partition(holder)
    cut = time.monotonic()
    gone = elsewhere = None
    new_pid = 0
    while time.monotonic() - cut < TTL + 20 and elsewhere is None:
        now = fleet.snapshot()
        at = time.monotonic() - cut
        assert len(now["leader"]) <= 1, f"two copies of the singleton {at:.2f} s after the cut: {now['leader']}\n" \
            + fleet.logs()
        for name, pids in mine.items():
            assert pids <= set(now[name]), f"{name} on the cut-off {holder} stopped at {at:.2f} s: {now[name]}\n" \
                + fleet.logs()
        if gone is None and leader_pid not in now["leader"]:
            gone = at
        if now["leader"] and holder not in now["leader"].values():
            elsewhere = at
            [new_pid] = now["leader"]
        time.sleep(0.1)
    assert gone is not None and elsewhere is not None, f"no failover (gone {gone}):\n" + fleet.logs()
    return holder, leader_pid, new_pid, gone, elsewhere


def _spread_twice(fleet: Fleet, before: dict[str, dict[int, str]], holder: str) -> dict[str, dict[int, str]]:
    """Spread is at least once (planning/placement.py): the cut-off node keeps its replicas (the same pids)
    while the others start them too, once its lease expired and lostAfterSeconds passed."""
    mine_web = {pid for pid, node in before["web"].items() if node == holder}
    mine_agent = {pid for pid, node in before["agent"].items() if node == holder}

    def moved() -> dict[str, dict[int, str]] | None:
        now = fleet.snapshot()
        assert mine_web <= set(now["web"]) and mine_agent <= set(now["agent"]), f"{now}\n" + fleet.logs()
        assert len(now["leader"]) <= 1, now
        return now if sum(node != holder for node in now["web"].values()) == 6 else None

    now = fleet.until(moved, timeout=TTL + 20, what="the cut-off node's web replicas started on the others too")
    assert {pid for pid, node in now["web"].items() if node == holder} == mine_web
    print(f"web: {len(mine_web)} replica(s) still on the cut-off {holder} and 6 on the others")
    return now


def test_a_partitioned_holder_stops_its_singleton_before_another_node_starts_it(fleet: Fleet) -> None:
    before = fleet.apply()
    token = int(psutil.Process(next(iter(before["leader"]))).environ()["ORCH_FENCING_TOKEN"])
    holder, _, new_pid, gone, elsewhere = _cut_off_holder(fleet, before)
    assert gone < elsewhere, (gone, elsewhere)
    # Fenced at the deadline of the last keepalive sent (at most TTL/3 before the cut), its stop capped.
    assert gone <= FENCE_AFTER + TTL / 3 + 1, f"{gone:.2f} s\n" + fleet.logs()
    new_holder = fleet.snapshot()["leader"][new_pid]
    assert int(psutil.Process(new_pid).environ()["ORCH_FENCING_TOKEN"]) > token

    # The same from the events (one host clock for every agent, so exact to the ms): the cut-off holder's copy
    # exited and it said Fenced (once that stop was done) before the other node claimed the election, and that
    # before it started its copy.
    fenced = event_at(fleet.agents[holder], "default/leader Fenced:")
    exited = event_at(fleet.agents[holder], "default/leader[0] Exited:")
    claimed = event_at(fleet.agents[new_holder], "Claimed: claimed default/leader/one")
    started = event_at(fleet.agents[new_holder], f"default/leader[0] Started: started pid {new_pid}")
    assert None not in (fenced, exited, claimed, started), (fenced, exited, claimed, started, fleet.logs())
    assert fenced is not None and exited is not None and claimed is not None and started is not None
    assert after(exited, claimed) > 0 and after(fenced, claimed) > 0 and after(claimed, started) >= 0, \
        f"exited {exited}, fenced {fenced}, claimed {claimed}, started {started} (seconds of the day)\n" + fleet.logs()
    print(f"cut-off singleton gone {gone:.2f} s after the cut, running on {new_holder} after {elsewhere:.2f} s; "
          f"exited {after(exited, claimed):.3f} s before the other node's claim")

    now = _spread_twice(fleet, before, holder)
    assert now["agent"] == before["agent"], "an Each process was restarted"
    assert fleet.nodes()[holder]["status"] == "NotReady"


def test_after_the_heal_one_singleton_and_no_each_process_restarted(fleet: Fleet) -> None:
    before = fleet.apply()
    lease = fleet.nodes()
    holder, _, new_pid, _, _ = _cut_off_holder(fleet, before)
    stale = {pid for pid, node in _spread_twice(fleet, before, holder)["web"].items() if node == holder}
    assert fleet.nodes()[holder]["status"] == "NotReady"
    fleet.net.heal(holder)
    healed = time.monotonic()

    def converged() -> dict[str, dict[int, str]] | None:
        now = fleet.snapshot()
        assert len(now["leader"]) <= 1, f"two copies after the heal: {now['leader']}\n" + fleet.logs()
        assert now["agent"] == before["agent"], f"an Each process was restarted: {now['agent']}\n" + fleet.logs()
        done = len(now["web"]) == 6 and not stale & set(now["web"]) and len(now["leader"]) == 1
        return now if done else None

    # The healed node holds no claim of web any more (they went with its lease): it stops those replicas,
    # and runs again only those it claims once the others, no longer their owners, gave them back.
    now = fleet.until(converged, timeout=TTL + 20, what="the healed node's stale web replicas given up")
    print(f"converged {time.monotonic() - healed:.2f} s after the heal")
    assert list(now["leader"]) == [new_pid]  # the new holder keeps it: the healed node does not take it back
    sampled = time.monotonic()
    while time.monotonic() - sampled < 2:  # and it stays so
        now = fleet.snapshot()
        assert list(now["leader"]) == [new_pid] and now["agent"] == before["agent"] and len(now["web"]) == 6, \
            f"{now}\n" + fleet.logs()
        time.sleep(0.1)

    def ready() -> dict[str, dict[str, object]] | None:
        nodes = fleet.nodes()
        return nodes if all(node["status"] == "Ready" for node in nodes.values()) else None

    nodes = fleet.until(ready, timeout=10, what="every node Ready")
    assert nodes[holder]["lease"] != lease[holder]["lease"]  # its lease expired: registered under a new one
    agent = fleet.agents[holder]
    unreachable = event_at(agent, "EtcdUnreachable:")
    reachable = event_at(agent, "EtcdReachable:")
    assert unreachable is not None and reachable is not None and after(unreachable, reachable) > 0, \
        (unreachable, reachable, fleet.logs())


def test_a_seeded_chaos_of_partitions_agent_kills_and_etcd_stops_never_runs_the_singleton_twice(fleet: Fleet) -> None:
    seed = int(os.environ.get("TP_CHAOS_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"chaos seed {seed} (TP_CHAOS_SEED={seed} repeats it)")
    rng = random.Random(seed)
    before = fleet.apply()
    done: list[str] = []
    stats = {"samples": 0, "leaderless": 0}

    def watch(seconds: float) -> None:
        """Sample every 100 ms for `seconds`: at most one copy of the singleton, no Each process restarted."""
        end = time.monotonic() + seconds
        while True:
            now = fleet.snapshot()
            stats["samples"] += 1
            stats["leaderless"] += not now["leader"]
            context = f"seed {seed}, after steps {done}"
            assert len(now["leader"]) <= 1, f"two copies of the singleton: {now['leader']} ({context})\n" \
                + fleet.logs()
            assert now["agent"] == before["agent"], f"an Each process was restarted: {now['agent']} " \
                f"(before {before['agent']}; {context})\n" + fleet.logs()
            if time.monotonic() >= end:
                return
            time.sleep(0.1)

    started = time.monotonic()
    for _ in range(16):
        action = rng.choice(["partition", "heal", "kill", "etcd"])
        if action == "heal" and not fleet.net.cut:
            action = "partition"
        if action == "partition" and len(fleet.net.cut) >= 2:
            action = "heal"
        if action == "partition":
            node = rng.choice([n for n in NODES if n not in fleet.net.cut])
            hold = rng.uniform(1, 8)
            done.append(f"partition {node} {hold:.1f}s")
            fleet.net.partition(node)
            watch(hold)
        elif action == "heal":
            node = rng.choice(sorted(fleet.net.cut))
            hold = rng.uniform(1, 6)
            done.append(f"heal {node} {hold:.1f}s")
            fleet.net.heal(node)
            watch(hold)
        elif action == "kill":
            node = rng.choice(NODES)
            down, hold = rng.uniform(0.2, 5), rng.uniform(0.5, 3)
            done.append(f"kill {node} {down:.1f}s+{hold:.1f}s")
            fleet.agents[node].crash()
            watch(down)
            fleet.agents[node].start()
            watch(hold)
        else:
            stop, hold = rng.uniform(1, 6), rng.uniform(0.5, 3)
            done.append(f"etcd stopped {stop:.1f}s+{hold:.1f}s")
            fleet.etcd.pause()
            try:
                watch(stop)
            finally:
                fleet.etcd.resume()
            watch(hold)
    print(f"{len(done)} steps in {time.monotonic() - started:.1f} s: {'; '.join(done)}")

    for node in sorted(fleet.net.cut):
        fleet.net.heal(node)
    healed = time.monotonic()

    def converged() -> dict[str, dict[int, str]] | None:
        watch(0)
        now = fleet.snapshot()
        ok = len(now["leader"]) == 1 and sorted(now["agent"].values()) == list(NODES) and len(now["web"]) == 6
        return now if ok else None

    fleet.until(converged, timeout=TTL + 30, what=f"one singleton, Each once per node, 6 web (seed {seed})")
    converged_after = time.monotonic() - healed
    watch(2)  # and it stays so
    final = fleet.snapshot()
    assert len(final["leader"]) == 1 and len(final["web"]) == 6, f"{final}\n" + fleet.logs()
    print(f"converged {converged_after:.2f} s after the last heal; {stats['samples']} samples, "
          f"{stats['leaderless']} without a singleton")
