"""`apply|diff|get|describe|delete --fleet` and `nodes` against a real etcd (tests/etcdcluster.py), run as the
`orchestrator` command; and the daemon's fleet options (`daemon_config`). No local daemon is ever started:
every command runs with a state dir of its own under tmp_path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO
from etcdcluster import EtcdCluster, etcd_cluster, etcd_member, free_ports  # noqa: F401 - fixtures

from orchestrator.cli import fleet
from orchestrator.cli.main import build_parser
from orchestrator.core.errors import UserError
from orchestrator.core.fleet import (
    MEMBERS,
    SCHEMA_VERSION_KEY,
    EtcdAccess,
    FleetConfig,
    member_key,
    node_key,
    spec_key,
    status_key,
)
from orchestrator.host.etcd import Etcd, KeyValue

pytestmark = pytest.mark.timeout(60)

CLI = [sys.executable, "-m", "orchestrator"]

API = """apiVersion: orchestrator/v1
kind: Process
metadata: {{name: api, labels: {{tier: web}}}}
spec:
  command: [sleep, "{seconds}"]
  env: {{TOKEN: s3cret}}
  placement: {{mode: Spread, replicas: 2}}
"""
WORKER = """apiVersion: orchestrator/v1
kind: Process
metadata: {name: worker, namespace: jobs}
spec:
  command: [sleep, "100"]
"""


def cli(state: Path, *args: str, etcd: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != fleet.ETCD_VARIABLE}
    env["ORCHESTRATOR_HOME"] = str(state)
    if etcd is not None:
        env[fleet.ETCD_VARIABLE] = etcd
    return subprocess.run([*CLI, *args], check=False, capture_output=True, text=True, timeout=30, env=env, cwd=REPO)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def stored(etcd: Etcd, namespace: str, name: str) -> dict[str, object] | None:
    kv = etcd.get(spec_key(namespace, name))
    return json.loads(kv.value) if kv else None


@pytest.fixture
def member(etcd_member: EtcdCluster) -> Iterator[tuple[str, Etcd]]:  # noqa: F811
    client = Etcd(etcd_member.endpoints, timeout=2.0)
    yield ",".join(etcd_member.endpoints), client
    client.close()


def test_apply_writes_documents_then_unchanged_then_configured(tmp_path: Path, member: tuple[str, Etcd]) -> None:
    urls, etcd = member
    manifests = tmp_path / "m"
    write(manifests, "api.yaml", API.format(seconds=100))
    write(manifests, "worker.yaml", WORKER)
    first = cli(tmp_path / "s", "apply", "--fleet", "--etcd", urls, "-f", str(manifests))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["process/default/api created", "process/jobs/worker created"]
    record = stored(etcd, "default", "api")
    assert record is not None
    assert record["source"] == str(manifests / "api.yaml")
    assert str(record["appliedBy"]).count("@") == 1 and isinstance(record["appliedAt"], float)
    document = record["document"]
    assert isinstance(document, dict)
    assert document["spec"]["placement"] == {"mode": "Spread", "replicas": 2, "lostAfterSeconds": 5.0}
    assert document["spec"]["env"] == {"TOKEN": "s3cret"}  # the agents need it; only views hide it
    version = etcd.get(SCHEMA_VERSION_KEY)
    assert version is not None and json.loads(version.value) == "1"
    before = etcd.get(spec_key("default", "api"))

    again = cli(tmp_path / "s", "apply", "--fleet", "-o", "json", "-f", str(manifests), etcd=urls)  # $ORCHESTRATOR_ETCD
    assert again.returncode == 0, again.stderr
    answer = json.loads(again.stdout)
    assert [r["result"] for r in answer["results"]] == ["unchanged", "unchanged"]
    assert answer["results"][0]["key"] == "default/api" and isinstance(answer["revision"], int)
    assert etcd.get(spec_key("default", "api")) == before  # no write at all

    write(manifests, "api.yaml", API.format(seconds=200))
    changed = cli(tmp_path / "s", "apply", "--fleet", "--etcd", urls, "-f", str(manifests))
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.splitlines() == ["process/default/api configured", "process/jobs/worker unchanged"]
    record = stored(etcd, "default", "api")
    assert record is not None and record["document"]["spec"]["command"] == ["sleep", "200"]  # type: ignore[index]


def test_dry_run_writes_nothing_and_prune_removes_what_left_the_files(tmp_path: Path,
                                                                      member: tuple[str, Etcd]) -> None:
    urls, etcd = member
    manifests = tmp_path / "m"
    write(manifests, "api.yaml", API.format(seconds=100))
    dry = cli(tmp_path / "s", "apply", "--fleet", "--etcd", urls, "--dry-run", "-f", str(manifests))
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == "process/default/api created (dry run)"
    assert etcd.range("/orch/")[1] == []  # not even the format's version

    write(manifests, "worker.yaml", WORKER)
    elsewhere = write(tmp_path / "other", "x.yaml", WORKER.replace("worker", "other"))
    for path in (manifests, elsewhere):
        assert cli(tmp_path / "s", "apply", "--fleet", "--etcd", urls, "-f", str(path)).returncode == 0
    (manifests / "worker.yaml").unlink()
    dry_prune = cli(tmp_path / "s", "apply", "--fleet", "--etcd", urls, "--prune", "--dry-run", "-f", str(manifests))
    assert "process/jobs/worker pruned (dry run)" in dry_prune.stdout.splitlines()
    assert stored(etcd, "jobs", "worker") is not None
    pruned = cli(tmp_path / "s", "apply", "--fleet", "--etcd", urls, "--prune", "-f", str(manifests))
    assert pruned.returncode == 0, pruned.stderr
    assert pruned.stdout.splitlines() == ["process/default/api unchanged", "process/jobs/worker pruned"]
    assert stored(etcd, "jobs", "worker") is None
    assert stored(etcd, "jobs", "other") is not None  # from a file not under the applied paths


def test_a_broken_manifest_writes_nothing_and_says_where(tmp_path: Path, member: tuple[str, Etcd]) -> None:
    urls, etcd = member
    manifests = tmp_path / "m"
    write(manifests, "api.yaml", API.format(seconds=100))
    write(manifests, "bad.yaml", WORKER.replace('command: [sleep, "100"]', "command: [sleep]\n  replica: 2"))
    result = cli(tmp_path / "s", "apply", "--fleet", "--etcd", urls, "-f", str(manifests))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{manifests}/bad.yaml:6:3: spec" in result.stderr
    assert etcd.range("/orch/")[1] == []


def test_kinds_the_fleet_does_not_keep_are_refused_by_name(tmp_path: Path, member: tuple[str, Etcd]) -> None:
    urls, etcd = member
    queue = "apiVersion: orchestrator/v1\nkind: Queue\nmetadata: {name: batch}\nspec: {maxConcurrent: 2}\n"
    manifests = tmp_path / "m"
    write(manifests, "api.yaml", API.format(seconds=100))
    write(manifests, "queue.yaml", queue)
    result = cli(tmp_path / "s", "apply", "--fleet", "--etcd", urls, "-f", str(manifests))
    assert result.returncode == 1
    assert "queue/batch: not kept in the fleet yet" in result.stderr
    assert etcd.range("/orch/")[1] == []


def test_write_spec_rereads_after_another_writer_and_gives_up_after_its_tries(member: tuple[str, Etcd]) -> None:
    _, etcd = member
    key = spec_key("default", "api")
    mine = {"kind": "Process", "n": 1}
    record = json.dumps({"document": mine}).encode()
    # Read as absent, then another writer creates it: the replace fails, the key is read again and written.
    etcd.put(key, json.dumps({"document": {"kind": "Process", "n": 0}}).encode())
    assert fleet.write_spec(etcd, key, mine, record, None) == "configured"
    assert json.loads(etcd.get(key).value)["document"] == mine  # type: ignore[union-attr]
    # Read stale while another writer put the very same document: nothing left to write.
    stale = etcd.get(key)
    assert stale is not None
    etcd.put(key, json.dumps({"document": {"kind": "Process", "n": 2}}).encode())
    etcd.put(key, json.dumps({"document": mine, "by": "other"}).encode())
    assert fleet.write_spec(etcd, key, mine, record, KeyValue(key, b"{}", stale.create_revision,
                                                                stale.mod_revision, 0)) == "unchanged"
    assert json.loads(etcd.get(key).value).get("by") == "other"  # type: ignore[union-attr]

    class Busy:
        """Another writer that changes the key again right after each read."""

        def __init__(self) -> None:
            self.reads = 0

        def get(self, name: str) -> KeyValue | None:
            found = etcd.get(name)
            self.reads += 1
            etcd.put(name, json.dumps({"document": {"n": 100 + self.reads}}).encode())
            return found

        def replace(self, name: str, value: bytes, mod_revision: int, guard: tuple[str, int] | None = None) -> bool:
            return etcd.replace(name, value, mod_revision, guard=guard)

    busy = Busy()
    with pytest.raises(UserError, match="changed by another writer meanwhile: apply again"):
        fleet.write_spec(busy, key, {"n": 7}, b'{"document": {"n": 7}}', None)  # type: ignore[arg-type]
    assert busy.reads == fleet.WRITE_TRIES


def test_diff_get_describe_delete(tmp_path: Path, member: tuple[str, Etcd]) -> None:
    urls, etcd = member
    manifests = tmp_path / "m"
    write(manifests, "api.yaml", API.format(seconds=100))
    write(manifests, "worker.yaml", WORKER)
    state = tmp_path / "s"
    fresh = cli(state, "diff", "--fleet", "--etcd", urls, "-f", str(manifests))
    assert fresh.returncode == 1 and "+++ manifest/default/api" in fresh.stdout
    assert "s3cret" not in fresh.stdout
    assert cli(state, "apply", "--fleet", "--etcd", urls, "-f", str(manifests)).returncode == 0
    same = cli(state, "diff", "--fleet", "--etcd", urls, "-f", str(manifests))
    assert (same.returncode, same.stdout) == (0, "")
    write(manifests, "api.yaml", API.format(seconds=300).replace("s3cret", "n3w"))
    changed = cli(state, "diff", "--fleet", "--etcd", urls, "-o", "json", "-f", str(manifests))
    assert changed.returncode == 1, changed.stderr
    [change] = json.loads(changed.stdout)["changes"]
    assert change["key"] == "default/api" and change["change"] == "configured"
    assert {f["path"] for f in change["fields"]} == {"spec.command", "spec.env.TOKEN"}
    assert "n3w" not in changed.stdout and "s3cret" not in changed.stdout

    # As the agents report: api runs on two nodes, worker on none yet.
    for node, ready in (("n1", 1), ("n2", 0)):
        etcd.put(status_key(node, "default", "api"), json.dumps({
            "node": node, "key": "default/api", "mode": "Spread", "state": "Running" if ready else "Starting",
            "replicas": {"desired": 1, "running": 1, "ready": ready}, "restarts": 3 - ready, "pids": [4000 + ready],
            "fencingToken": None}).encode())
    table = cli(state, "get", "--fleet", "--etcd", urls)
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0] == ["NAME", "NAMESPACE", "MODE", "NODE", "STATE", "READY", "RESTARTS", "AGE"]
    assert rows[1][:7] == ["api", "default", "Spread", "n1", "Running", "1/1", "2"]
    assert rows[2][:7] == ["api", "default", "Spread", "n2", "Starting", "0/1", "3"]
    assert rows[3][:7] == ["worker", "jobs", "Each", "<none>", "Pending", "-", "-"]
    document = json.loads(cli(state, "get", "--fleet", "--etcd", urls, "-o", "json", "api").stdout)
    [api] = document["objects"]
    assert (api["key"], api["mode"], api["placement"]["replicas"]) == ("default/api", "Spread", 2)
    assert [s["node"] for s in api["nodes"]] == ["n1", "n2"] and api["nodes"][0]["state"] == "Running"
    selected = cli(state, "get", "--fleet", "--etcd", urls, "-l", "tier=web", "-o", "json")
    assert [o["name"] for o in json.loads(selected.stdout)["objects"]] == ["api"]
    missing = cli(state, "get", "--fleet", "--etcd", urls, "nope")
    assert missing.returncode == 1 and "no object named nope in the fleet" in missing.stderr

    text = cli(state, "describe", "--fleet", "--etcd", urls, "api")
    assert text.returncode == 0, text.stderr
    assert "TOKEN=<hidden>" in text.stdout and "s3cret" not in text.stdout
    assert "mode Spread, 2 replicas" in text.stdout and "n2" in text.stdout
    shown = json.loads(cli(state, "describe", "--fleet", "--etcd", urls, "-o", "json", "default/api").stdout)
    assert shown["document"]["spec"]["env"] == {"TOKEN": "<hidden>"} and len(shown["nodes"]) == 2

    unknown = cli(state, "delete", "--fleet", "--etcd", urls, "api", "ghost")
    assert unknown.returncode == 1 and "no object named ghost in the fleet" in unknown.stderr
    assert stored(etcd, "default", "api") is not None  # nothing deleted
    deleted = cli(state, "delete", "--fleet", "--etcd", urls, "api")
    assert (deleted.returncode, deleted.stdout.strip()) == (0, "process/default/api deleted")
    assert stored(etcd, "default", "api") is None
    by_file = cli(state, "delete", "--fleet", "--etcd", urls, "-f", str(manifests / "worker.yaml"))
    assert by_file.returncode == 0 and by_file.stdout.strip() == "process/jobs/worker deleted"
    assert etcd.range(spec_key("", ""))[1] == []


def test_nodes_ready_and_not_ready(tmp_path: Path, member: tuple[str, Etcd]) -> None:
    urls, etcd = member
    now = time.time()
    lease = etcd.grant(30)
    try:
        etcd.put(member_key("alpha"), json.dumps({"name": "alpha", "labels": {"zone": "a"},
                                                  "firstSeen": now - 100}).encode())
        etcd.put(node_key("alpha"), json.dumps({"name": "alpha", "labels": {"zone": "a", "disk": "ssd"},
                                                "version": "1.2.3", "startedAt": now - 10, "lease": lease}).encode(),
                 lease=lease)
        etcd.put(member_key("beta"), json.dumps({"name": "beta", "labels": {}, "firstSeen": now - 50}).encode())
        etcd.put(status_key("alpha", "default", "api"), b'{"node": "alpha", "state": "Running"}', lease=lease)
        table = cli(tmp_path / "s", "nodes", "--etcd", urls, "-o", "wide")
        assert table.returncode == 0, table.stderr
        rows = [line.split() for line in table.stdout.splitlines()]
        assert rows[0] == ["NAME", "STATUS", "LABELS", "PROCESSES", "VERSION", "AGE", "LEASE"]
        ages = [row.pop(5) for row in rows[1:]]  # as old as they were written, give or take this command's start
        assert rows[1] == ["alpha", "Ready", "disk=ssd,zone=a", "1", "1.2.3", format(lease, "x")]
        assert rows[2] == ["beta", "NotReady", "-", "0", "-", "-"]
        assert ages[0] in ("10s", "11s", "12s") and ages[1] in ("50s", "51s", "52s"), ages
        document = json.loads(cli(tmp_path / "s", "nodes", "-o", "json", etcd=urls).stdout)
        assert [(n["name"], n["status"], n["processes"]) for n in document["nodes"]] == [
            ("alpha", "Ready", 1), ("beta", "NotReady", 0)]
        assert etcd.range(MEMBERS)[0] > 0
    finally:
        etcd.revoke(lease)


def test_a_three_member_cluster_is_written_through_any_member(tmp_path: Path,
                                                              etcd_cluster: EtcdCluster) -> None:  # noqa: F811
    manifests = write(tmp_path / "m", "api.yaml", API.format(seconds=100))
    leader = etcd_cluster.leader()
    others = [url for index, url in enumerate(etcd_cluster.endpoints) if index != leader]
    urls = ",".join([etcd_cluster.endpoints[leader], *others])  # the leader first
    assert cli(tmp_path / "s", "apply", "--fleet", "--etcd", urls, "-f", str(manifests)).returncode == 0
    # The first endpoint, the leader, is gone: the others answer once they have elected one of them (until
    # then they time out or say "leader changed", and the command waits for them, within its patience).
    etcd_cluster.kill(leader)
    again = cli(tmp_path / "s", "apply", "--fleet", "--etcd", urls, "-f", str(manifests))
    assert again.returncode == 0 and again.stdout.strip() == "process/default/api unchanged", again.stderr
    client = Etcd(others)
    try:
        assert stored(client, "default", "api") is not None
    finally:
        client.close()


def test_missing_and_unreachable_etcd(tmp_path: Path) -> None:
    manifests = write(tmp_path / "m", "api.yaml", API.format(seconds=100))
    missing = cli(tmp_path / "s", "apply", "--fleet", "-f", str(manifests))
    assert missing.returncode == 1
    assert missing.stderr.strip() == "orchestrator: fleet mode needs --etcd URLS (or $ORCHESTRATOR_ETCD)"
    [port] = free_ports(1)
    started = time.monotonic()
    for args in (["apply", "--fleet", "-f", str(manifests)], ["get", "--fleet"], ["nodes"]):
        result = cli(tmp_path / "s", *args, "--etcd", f"http://127.0.0.1:{port}")
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"127.0.0.1:{port}" in result.stderr and "unreachable" in result.stderr
    assert time.monotonic() - started < 15
    diff = cli(tmp_path / "s", "diff", "--fleet", "--etcd", f"http://127.0.0.1:{port}", "-f", str(manifests))
    assert diff.returncode == 2
    alone = cli(tmp_path / "s", "get", "--etcd", f"http://127.0.0.1:{port}")
    assert alone.returncode == 2 and "options of --fleet" in alone.stderr


def test_single_host_commands_do_not_import_etcd3gw() -> None:
    code = "import orchestrator.cli.main, orchestrator.cli.commands, sys; assert 'etcd3gw' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=30, check=False).returncode == 0


@pytest.mark.parametrize("command", [["nodes"], ["apply"], ["diff"], ["get"], ["describe"], ["delete"], ["daemon"]])
def test_help_names_the_fleet_options(tmp_path: Path, command: list[str]) -> None:
    result = cli(tmp_path / "s", *command, "--help")
    assert result.returncode == 0, result.stderr
    assert "--etcd URLS" in result.stdout and "--etcd-password-file" in result.stdout
    if command != ["nodes"] and command != ["daemon"]:
        assert "--fleet" in result.stdout
    if command == ["daemon"]:
        assert "--node-name" in result.stdout and "--node-label" in result.stdout and "--lease-ttl" in result.stdout


def parsed(*words: str) -> object:
    return build_parser().parse_args(["daemon", *words])


def test_daemon_config() -> None:
    assert fleet.daemon_config(parsed()) is None  # type: ignore[arg-type]
    config = fleet.daemon_config(parsed("--etcd", "http://a:2379, http://b:2379", "--node-name", "n-1",  # type: ignore[arg-type]
                                        "--node-label", "zone=b", "--node-label", "disk=ssd", "--lease-ttl", "20"))
    assert config == FleetConfig(EtcdAccess(("http://a:2379", "http://b:2379")), "n-1",
                                 (("disk", "ssd"), ("zone", "b")), 20)
    assert fleet.daemon_words(config) == ["--etcd", "http://a:2379,http://b:2379", "--node-name", "n-1",
                                          "--node-label", "disk=ssd", "--node-label", "zone=b", "--lease-ttl", "20"]
    default = fleet.daemon_config(parsed("--etcd", "http://a:2379", "--node-name", "x",  # type: ignore[arg-type]
                                         "--etcd-user", "u", "--etcd-password-file", "pw"))
    assert default is not None and default.lease_ttl == 10 and default.labels == ()
    assert default.etcd.password_file == os.path.abspath("pw") and default.etcd.user == "u"
    for words, message in ((["--node-name", "x"], "--node-name: options of fleet mode"),
                           (["--lease-ttl", "20", "--etcd-ca", "ca"], "--etcd-ca, --lease-ttl: options of fleet mode"),
                           (["--etcd", "http://a:1", "--node-name", "x", "--etcd-user", "u"], "go together"),
                           (["--etcd", "http://a:1", "--node-name", "x", "--node-label", "a=1", "--node-label", "a=2"],
                            "given twice")):
        with pytest.raises(UserError, match=message):
            fleet.daemon_config(parsed(*words))  # type: ignore[arg-type]


@pytest.mark.parametrize("words", [["--node-name", "Bad_Name"], ["--node-name", "-x"], ["--node-label", "novalue"],
                                   ["--node-label", "bad key=1"], ["--node-label", "k=bad value"],
                                   ["--lease-ttl", "3"], ["--lease-ttl", "301"]])
def test_daemon_options_are_checked(tmp_path: Path, words: list[str]) -> None:
    result = cli(tmp_path / "s", "daemon", "--etcd", "http://127.0.0.1:1", *words)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr


def test_startup_writes_a_unit_whose_daemon_joins_the_fleet_with_the_same_options(tmp_path: Path) -> None:
    import shlex


    words = ["startup", "--systemd-version", "250", "--etcd", "http://10.0.0.1:2379,http://10.0.0.2:2379",
             "--node-name", "n1", "--node-label", "disk=ssd", "--node-label", "zone=a", "--lease-ttl", "6",
             "--etcd-user", "ops", "--etcd-password-file", str(tmp_path / "pass 100% $x")]
    args = build_parser().parse_args(["--state-dir", str(tmp_path / "s"), *words])
    done = subprocess.run([sys.executable, "-m", "orchestrator", "--state-dir", str(tmp_path / "s"), *words],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    [line] = [x for x in done.stdout.splitlines() if x.startswith("ExecStart=")]
    # systemd's quoting: % and $ doubled in the unit, single in what the daemon is given.
    given = shlex.split(line[len("ExecStart="):].replace("%%", "%").replace("$$", "$"))
    daemon = build_parser().parse_args(given[given.index("-m") + 2:])
    assert fleet.daemon_config(daemon) == fleet.daemon_config(args)  # the same node, labels, TTL and etcd
    assert fleet.daemon_config(daemon).lease_ttl == 6  # type: ignore[union-attr]
    refused = subprocess.run([sys.executable, "-m", "orchestrator", "startup", "--node-name", "n1"],
                             capture_output=True, text=True, timeout=30, check=False)
    assert refused.returncode == 1 and "needs --etcd URLS" in refused.stderr, refused
