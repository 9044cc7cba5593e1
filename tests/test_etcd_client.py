"""orchestrator/host/etcd.py against real etcd processes (tests/etcdcluster.py): keys, transactions, leases,
watches, failover between members, bounded waits on dead or stopped members, and authentication."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from etcdcluster import EtcdCluster, etcd_cluster, etcd_member, free_ports  # noqa: F401 - fixtures

from orchestrator.host.etcd import Etcd, EtcdError, KeyValue, prefix_end

pytestmark = pytest.mark.timeout(60)

PASSWORD = "s3cret-Pw-9f1c"


@pytest.fixture
def client(etcd_member: EtcdCluster) -> Iterator[Etcd]:  # noqa: F811
    etcd = Etcd(etcd_member.endpoints, timeout=2.0)
    yield etcd
    etcd.close()


def test_put_get_and_range_by_prefix_sorted_with_a_growing_revision(client: Etcd) -> None:
    first = client.put("jobs/b", b"2")
    second = client.put("jobs/a", b"\x00\xff")
    client.put("jobsx", b"outside")
    client.put("job", b"outside")
    assert second > first
    revision, kvs = client.range("jobs/")
    assert revision >= second + 2
    assert [kv.key for kv in kvs] == ["jobs/a", "jobs/b"]
    assert kvs[0] == KeyValue("jobs/a", b"\x00\xff", second, second, 0)
    assert client.get("jobs/b") == KeyValue("jobs/b", b"2", first, first, 0)
    assert client.get("jobs/none") is None
    assert client.range("nothing/") == (revision, [])
    client.put("jobs/b", b"3")
    updated = client.get("jobs/b")
    assert updated is not None and updated.create_revision == first and updated.mod_revision > revision


def test_a_range_is_read_in_pages_at_one_revision_and_bounded_in_size(client: Etcd) -> None:
    for i in range(23):
        client.put(f"many/{i:02d}", f"v{i}".encode())
    whole = client.range("many/")
    calls = []
    real = client._call

    def call(path: str, payload: dict, deadline: float | None = None) -> dict:  # type: ignore[type-arg]
        calls.append(payload.get("revision"))
        answer = real(path, payload, deadline)
        if len(calls) == 1:  # between the first page and the next: a write the pages must not see
            real("kv/put", client._put_request("many/05x", b"later", 0))
        return answer

    client._call = call  # type: ignore[method-assign]
    revision, paged = client.range("many/", page=4)
    client._call = real  # type: ignore[method-assign]
    assert (revision, paged) == whole  # 6 pages, one answer, the store as it was at the first page
    assert len(calls) == 6 and calls[0] is None and set(calls[1:]) == {str(revision)}
    assert "many/05x" in [kv.key for kv in client.range("many/")[1]]
    with pytest.raises(EtcdError, match="more than 100 bytes"):
        client.range("many/", page=4, max_bytes=100)


def test_utf8_keys_and_empty_values_round_trip(client: Etcd) -> None:
    revision = client.put("hôtes/zoë", b"")
    assert client.get("hôtes/zoë") == KeyValue("hôtes/zoë", b"", revision, revision, 0)
    assert [kv.key for kv in client.range("hôtes/")[1]] == ["hôtes/zoë"]
    assert prefix_end("jobs/") == "jobs0"
    assert prefix_end("") == "\0"
    calls: list[int] = []
    watch = client.watch("hôtesÿ", prefix_end("hôtesÿ"), lambda: calls.append(1))  # an end that is not utf-8
    client.put("hôtesÿ/a", b"1")
    client.put("hôtesz", b"1")
    wait_for(lambda: calls, what="an event under a non-ascii prefix")
    watch.stop()
    assert len(calls) == 1


def test_create_twice_returns_the_existing_key(client: Etcd) -> None:
    created, kv = client.create("leader", b"host-1")
    assert created and kv is not None
    assert kv.create_revision == kv.mod_revision > 0
    again, existing = client.create("leader", b"host-2")
    assert not again
    assert existing == KeyValue("leader", b"host-1", kv.create_revision, kv.create_revision, 0)


def test_replace_only_at_the_expected_mod_revision(client: Etcd) -> None:
    revision = client.put("spec", b"v1")
    assert not client.replace("spec", b"v2", revision - 1)
    assert client.replace("spec", b"v2", revision)
    assert not client.replace("spec", b"v3", revision)  # it moved on
    current = client.get("spec")
    assert current is not None and current.value == b"v2"
    assert not client.replace("spec", b"v3", 0)  # 0: only if absent
    assert client.replace("fresh", b"v1", 0)
    assert not client.replace("fresh", b"v2", 0)


def test_delete_plain_and_at_a_mod_revision(client: Etcd) -> None:
    revision = client.put("gone", b"x")
    assert not client.delete("gone", revision + 100)
    assert client.get("gone") is not None
    assert client.delete("gone", revision)
    assert client.get("gone") is None
    assert not client.delete("gone")
    client.put("plain", b"x")
    assert client.delete("plain")


def test_a_guarded_write_goes_through_only_while_its_election_key_is_the_one_created_then(client: Etcd) -> None:
    made, leader = client.create("leader", b"n1")
    assert made and leader is not None
    guard = ("leader", leader.create_revision)
    assert client.replace("spec", b"v1", 0, guard=guard)
    written = client.get("spec")
    assert written is not None and written.value == b"v1"
    client.delete("leader")
    client.create("leader", b"n2")  # another node won the election: the old guard is stale
    assert not client.replace("spec", b"v2", written.mod_revision, guard=guard)
    assert not client.delete("spec", written.mod_revision, guard=guard)
    kept = client.get("spec")
    assert kept is not None and kept.value == b"v1"
    renewed = client.get("leader")
    assert renewed is not None
    assert client.delete("spec", written.mod_revision, guard=("leader", renewed.create_revision))
    assert client.get("spec") is None


def test_lease_keepalive_expiry_and_revoke(client: Etcd) -> None:
    lease = client.grant(5)
    client.put("alive", b"1", lease=lease)
    kv = client.get("alive")
    assert kv is not None and kv.lease == lease
    assert 4 <= client.keepalive(lease) <= 5

    short = client.grant(2)
    client.put("mortal", b"1", lease=short)
    started = time.monotonic()
    wait_for(lambda: client.get("mortal") is None, timeout=5.0, interval=0.1, what="the unrenewed lease's key to go")
    assert 1.0 <= time.monotonic() - started <= 5.0
    assert client.keepalive(short) == -1

    client.revoke(lease)
    assert client.get("alive") is None
    assert client.keepalive(lease) == -1
    client.revoke(lease)  # again: no error


def test_watch_calls_on_event_for_its_range_only_and_stops_promptly(client: Etcd) -> None:
    calls: list[int] = []
    woken = threading.Event()

    def on_event() -> None:
        calls.append(1)
        woken.set()

    watch = client.watch("fleet/", prefix_end("fleet/"), on_event)
    assert watch.alive
    client.put("other/x", b"1")
    time.sleep(0.3)
    assert calls == []
    client.put("fleet/x", b"1")
    assert woken.wait(5)
    assert len(calls) == 1
    started = time.monotonic()
    watch.stop()
    assert time.monotonic() - started < 1.5
    assert not watch.alive
    assert watch.error is None
    client.put("fleet/y", b"1")
    time.sleep(0.2)
    assert len(calls) == 1


def test_watch_from_a_revision_replays_and_a_dead_member_ends_it(etcd_member: EtcdCluster) -> None:  # noqa: F811
    etcd = Etcd(etcd_member.endpoints, timeout=1.0)
    try:
        revision = etcd.put("w/a", b"1")
        calls: list[int] = []
        watch = etcd.watch("w/", prefix_end("w/"), lambda: calls.append(1), start_revision=revision)
        wait_for(lambda: calls, what="the replayed event")
        etcd_member.kill(0)
        wait_for(lambda: not watch.alive, timeout=5.0, what="the watch to see its member die")
        assert watch.error is not None and etcd_member.endpoints[0] in watch.error
        assert len(calls) >= 2  # the end of the stream woke the caller too
        watch.stop()
    finally:
        etcd.close()


def test_watch_on_a_stopped_member_is_found_dead_by_its_probe(etcd_member: EtcdCluster) -> None:  # noqa: F811
    etcd = Etcd(etcd_member.endpoints, timeout=0.5)
    try:
        watch = etcd.watch("w/", prefix_end("w/"), lambda: None, probe_every=0.3)
        etcd_member.pause()
        try:
            wait_for(lambda: not watch.alive, timeout=3.0, what="the probe to find the member stopped")
        finally:
            etcd_member.resume()
        assert watch.error is not None and "does not answer" in watch.error
    finally:
        etcd.close()


def test_failover_when_the_first_endpoint_is_dead(etcd_cluster: EtcdCluster) -> None:  # noqa: F811
    etcd = Etcd(etcd_cluster.endpoints, timeout=1.0)
    try:
        etcd.put("before", b"1")
        etcd_cluster.kill(0)
        # the two others still make a quorum; a new leader may take a moment to be elected
        wait_for(lambda: _put_works(etcd, "after"), timeout=10.0, interval=0.1, what="a put through the survivors")
        assert etcd.get("before") is not None
        started = time.monotonic()
        assert [kv.key for kv in etcd.range("")[1]] == ["after", "before"]
        assert time.monotonic() - started < 0.5  # the endpoint that answered is tried first now
        calls: list[int] = []
        watch = etcd.watch("w", "", lambda: calls.append(1))
        etcd.put("w", b"1")
        wait_for(lambda: calls, what="a watch event through a survivor")
        watch.stop()
    finally:
        etcd.close()


def _put_works(etcd: Etcd, key: str) -> bool:
    try:
        etcd.put(key, b"1")
    except EtcdError:
        return False
    return True


def test_unreachable_endpoints_raise_within_the_timeouts(tmp_path: Path) -> None:
    from etcdcluster import free_ports

    ports = free_ports(2)
    endpoints = [f"http://127.0.0.1:{port}" for port in ports]
    etcd = Etcd(endpoints, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(EtcdError) as raised:
        etcd.get("x")
    assert time.monotonic() - started < 0.5 * 2 + 0.5
    assert all(endpoint in str(raised.value) for endpoint in endpoints)
    assert "connection refused" in str(raised.value)
    with pytest.raises(EtcdError):
        etcd.watch("a", "b", lambda: None)
    etcd.close()


def test_a_stopped_cluster_raises_instead_of_hanging(etcd_cluster: EtcdCluster) -> None:  # noqa: F811
    etcd = Etcd(etcd_cluster.endpoints, timeout=0.5)
    try:
        etcd.put("k", b"1")
        etcd_cluster.pause()
        try:
            for call in (lambda: etcd.get("k"), lambda: etcd.put("k", b"2"), lambda: etcd.keepalive(1),
                         lambda: etcd.watch("k", "", lambda: None)):
                started = time.monotonic()
                with pytest.raises(EtcdError) as raised:
                    call()
                elapsed = time.monotonic() - started
                assert 0.4 <= elapsed < 0.5 * 3 + 1.0
                assert "no answer within 0.5 s" in str(raised.value)
        finally:
            etcd_cluster.resume()
        assert wait_for(lambda: _put_works(etcd, "k"), timeout=10.0, interval=0.1, what="the resumed cluster")
    finally:
        etcd.close()


def test_patience_waits_for_a_cluster_that_answers_again_but_not_for_a_refused_one(
        etcd_member: EtcdCluster) -> None:  # noqa: F811
    patient = Etcd(etcd_member.endpoints, timeout=0.3, patience=6.0)
    try:
        patient.put("k", b"1")
        etcd_member.pause()  # up, but answering nothing (as members electing a leader time out)
        resume = threading.Timer(1.5, etcd_member.resume)
        resume.start()
        try:
            started = time.monotonic()
            found = patient.get("k")
            waited = time.monotonic() - started
        finally:
            resume.join()
            etcd_member.resume()
        assert found is not None and found.value == b"1"
        assert 1.4 <= waited < 6.0, waited
    finally:
        patient.close()
    [port] = free_ports(1)
    refused = Etcd([f"http://127.0.0.1:{port}"], timeout=0.3, patience=6.0)
    try:
        started = time.monotonic()
        with pytest.raises(EtcdError, match="connection refused"):
            refused.get("k")
        assert time.monotonic() - started < 1.0  # nothing listens: no election to wait for
    finally:
        refused.close()


def _etcdctl(endpoint: str, *args: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ETCD_", "ETCDCTL_"))}
    env["ETCDCTL_API"] = "3"
    subprocess.run(["etcdctl", f"--endpoints={endpoint}", *args], check=True, capture_output=True, env=env,
                   timeout=20)


def test_authentication_with_a_password_file(etcd_member: EtcdCluster, tmp_path: Path) -> None:  # noqa: F811
    if shutil.which("etcdctl") is None:
        pytest.skip("etcdctl (Debian's etcd-client, which .ci/run installs) turns on etcd's auth here: not installed")
    endpoint = etcd_member.endpoints[0]
    _etcdctl(endpoint, "user", "add", "root", f"--new-user-password={PASSWORD}", "--interactive=false")
    _etcdctl(endpoint, "auth", "enable")
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)

    etcd = Etcd([endpoint], user="root", password_file=str(password_file))
    try:
        etcd.put("secured", b"1")
        assert etcd.get("secured") is not None
        calls: list[int] = []
        watch = etcd.watch("secured", "", lambda: calls.append(1))
        etcd.put("secured", b"2")
        wait_for(lambda: calls, what="a watch event with auth")
        watch.stop()
        # a token etcd no longer knows: the client authenticates again, once, by itself
        etcd._endpoints[0].session.headers["Authorization"] = "not-a-token"
        assert etcd.get("secured") is not None
    finally:
        etcd.close()

    anonymous = Etcd([endpoint])
    with pytest.raises(EtcdError) as raised:
        anonymous.get("secured")
    assert endpoint in str(raised.value) and "user name is empty" in str(raised.value)
    anonymous.close()

    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    wrong.chmod(0o600)
    with pytest.raises(EtcdError) as raised:
        Etcd([endpoint], user="root", password_file=str(wrong)).get("secured")
    assert "authentication failed" in str(raised.value)
    assert "not-the-password" not in str(raised.value) and PASSWORD not in str(raised.value)

    password_file.chmod(0o644)
    with pytest.raises(EtcdError) as raised:
        Etcd([endpoint], user="root", password_file=str(password_file))
    assert "chmod 600" in str(raised.value) and PASSWORD not in str(raised.value)
