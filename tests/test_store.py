"""store: the SQLite state database, on real files in tmp_path."""

from __future__ import annotations

import dataclasses
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.core.errors import Location, StoreError, UserError
from orchestrator.core.events import Event, EventType
from orchestrator.core.model import Exit, Kind, ProcessIdentity, ProcessSpec, Reason, ReplicaId, ReplicaRecord
from orchestrator.daemon.store import SCHEMA_VERSION, Store

API = ProcessSpec(
    name="api", command=("sleep", "60"), namespace="shop", replicas=2, location=Location("/m/api.yaml", 3, 1)
)
JOB = ProcessSpec(name="migrate", command=("true",), kind=Kind.JOB, backoff_limit=1)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    opened = Store(path)
    yield opened
    opened.close()


def record(spec: ProcessSpec = API, pid: int = 100) -> ReplicaRecord:
    return ReplicaRecord(spec=spec, process=ProcessIdentity(pid, 100050), started_at=12.25, restart_times=(1.0, 2.0))


def event(message: str, key: str = "shop/api", at: float = 1.0) -> Event:
    return Event(at=at, type=EventType.STARTED, key=key, message=message, replica=0, pid=7)


# --- opening --------------------------------------------------------------------------------------------


def test_new_file_is_owner_only(path: Path, store: Store) -> None:
    store.set_meta("boot", "x")
    for name in (path, path.with_name(path.name + "-wal")):
        assert stat.S_IMODE(name.stat().st_mode) == 0o600, name


def test_garbage_file_is_corrupt_and_left_alone(path: Path) -> None:
    garbage = b"this is not a database, it is a shopping list\n" * 100
    path.write_bytes(garbage)
    with pytest.raises(StoreError, match=rf"^state database {path} is corrupt: .*; move it away to start afresh"):
        Store(path)
    assert path.read_bytes() == garbage
    assert issubclass(StoreError, UserError)


def test_damaged_pages_are_corrupt(path: Path) -> None:
    with Store_(path) as store:
        for index in range(200):
            store.add_event(event(f"event {index} " + "x" * 200))
    data = bytearray(path.read_bytes())
    data[4096 * 2 : 4096 * 6] = b"\xff" * (4096 * 4)  # clobber pages past the header
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="is corrupt"), Store_(path) as store:
        store.events()


def test_newer_schema_is_refused_untouched(path: Path) -> None:
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 2}")
    before = path.read_bytes()
    message = (
        f"state database {path} was written by a newer orchestrator (schema {SCHEMA_VERSION + 2}, this one knows 1)"
    )
    with pytest.raises(StoreError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Store(path)
    assert path.read_bytes() == before


def test_another_programs_database_is_refused(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE songs (title TEXT)")
    with pytest.raises(StoreError, match="is not an orchestrator state database"):
        Store(path)


def test_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open state database"):
        Store(tmp_path / "nowhere" / "state.db")


class Store_:
    """Store as a context manager, for tests that reopen the same file."""

    def __init__(self, path: Path, **kwargs: int) -> None:
        self.store = Store(path, **kwargs)

    def __enter__(self) -> Store:
        return self.store

    def __exit__(self, *_: object) -> None:
        self.store.close()


def test_reopen_keeps_everything(path: Path) -> None:
    records = {ReplicaId("shop/api", 0): record(), ReplicaId("default/migrate", 0): ReplicaRecord(spec=JOB)}
    with Store_(path) as store:
        store.add_revision([API, JOB], action="apply", paths=["m/"], user="ann", git_commit="abc", git_dirty=True)
        store.save_records(records)
        store.add_event(event("one"))
        store.set_watches(["m/", "other.yaml"])
        store.set_meta("boot_id", "b1")
    with Store_(path) as store:
        latest = store.latest_revision()
        assert latest is not None and latest.number == 1 and latest.specs == (API, JOB)
        assert [spec.location for spec in latest.specs] == [API.location, None]
        assert store.load_records() == records
        assert store.events() == [(1, event("one"))]
        assert store.watches() == ["m/", "other.yaml"]
        assert store.get_meta("boot_id") == "b1"
        assert store.get_meta("other") is None


# --- revisions ------------------------------------------------------------------------------------------


def test_revisions_are_numbered_and_round_trip(store: Store) -> None:
    assert store.latest_revision() is None and store.revisions() == [] and store.revision(1) is None
    first = store.add_revision([API], action="apply", paths=["a.yaml", "b/"], user="ann", message="first")
    scaled = dataclasses.replace(API, replicas=5)
    second = store.add_revision([scaled, JOB], action="scale", paths=[], user="bob", git_commit="f00", git_dirty=False)
    third = store.add_revision([], action="delete", paths=["a.yaml"], user="ann")
    assert (first, second, third) == (1, 2, 3)

    one = store.revision(1)
    assert one is not None
    assert (one.action, one.paths, one.user, one.git_commit, one.git_dirty, one.message) == (
        "apply",
        ("a.yaml", "b/"),
        "ann",
        None,
        None,
        "first",
    )
    assert one.specs == (API,) and one.specs[0].location == API.location
    two = store.revision(2)
    assert two is not None and two.specs == (scaled, JOB) and (two.git_commit, two.git_dirty) == ("f00", False)
    assert two.at >= one.at > 1.6e9  # wall time
    latest = store.latest_revision()
    assert latest is not None and latest.number == 3 and latest.specs == ()

    listed = store.revisions()
    assert [r.number for r in listed] == [3, 2, 1]
    assert all(r.specs == () for r in listed)  # the listing leaves specs out
    assert listed[1] == dataclasses.replace(two, specs=())
    assert [r.number for r in store.revisions(limit=2)] == [3, 2]


def test_a_revision_of_mostly_the_same_spec_objects_stores_each_as_it_is(store: Store) -> None:
    """Spec texts are kept from the revision before by identity: what is stored must still be each spec."""
    specs = [dataclasses.replace(API, name=f"p{i}") for i in range(3)]
    one = store.add_revision(specs, action="apply", paths=[], user="u")
    changed = [specs[0], dataclasses.replace(specs[1], command=("other",)), specs[2]]
    two = store.add_revision(changed, action="apply", paths=[], user="u")
    again = store.add_revision(specs, action="apply", paths=[], user="u")
    assert [store.revision(n).specs for n in (one, two, again)] == [tuple(specs), tuple(changed), tuple(specs)]


def test_concurrent_revisions_all_land_with_distinct_numbers(store: Store) -> None:
    numbers: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def add(who: str) -> None:
        try:
            for index in range(50):
                spec = dataclasses.replace(API, name=f"{who}-{index}")
                number = store.add_revision([spec], action="apply", paths=[], user=who)
                with lock:
                    numbers.append(number)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    threads = [threading.Thread(target=add, args=(who,)) for who in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sorted(numbers) == list(range(1, 101))
    by_number = {n: store.revision(n) for n in numbers}
    names = {r.specs[0].name for r in by_number.values() if r is not None}
    assert names == {f"{who}-{index}" for who in "ab" for index in range(50)}


# --- records --------------------------------------------------------------------------------------------


def statements(store: Store) -> list[str]:
    """Record the SQL the store runs from now on (its one connection is private; tests may look)."""
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    return seen


def test_save_records_writes_only_changes(store: Store) -> None:
    a, b, c = ReplicaId("shop/api", 0), ReplicaId("shop/api", 1), ReplicaId("default/migrate", 0)
    records = {a: record(pid=1), b: record(pid=2), c: ReplicaRecord(spec=JOB)}
    seen = statements(store)
    store.save_records(records)
    assert len([s for s in seen if s.startswith("INSERT")]) == 3

    seen.clear()
    store.save_records(dict(records))  # same objects
    store.save_records({a: record(pid=1), b: record(pid=2), c: ReplicaRecord(spec=JOB)})  # equal values
    assert seen == []  # no SQL at all

    exited = dataclasses.replace(
        records[b], process=None, last_exit=Exit(1, None, Reason.ERROR, 20.0, 7.75), crash_streak=1
    )
    store.save_records({a: records[a], b: exited})
    assert [s.split(" (")[0] for s in seen if not s.startswith(("BEGIN", "COMMIT"))] == [
        "INSERT OR REPLACE INTO records",
        "DELETE FROM records WHERE key = 'default/migrate' AND replica = 0",
    ]
    assert store.load_records() == {a: records[a], b: exited}

    seen.clear()
    moved = dataclasses.replace(records[a], spec=dataclasses.replace(API, location=Location("/moved.yaml")))
    store.save_records({a: moved, b: exited})  # equal, but a location is stored too
    assert len([s for s in seen if s.startswith("INSERT")]) == 1
    assert store.load_records()[a].spec.location == Location("/moved.yaml")


def test_save_after_reopen_replaces_what_is_stored(path: Path) -> None:
    a, b = ReplicaId("shop/api", 0), ReplicaId("shop/api", 1)
    with Store_(path) as store:
        store.save_records({a: record(pid=1), b: record(pid=2)})
    with Store_(path) as store:  # saved without loading first: b must still go
        store.save_records({a: record(pid=3)})
        assert store.load_records() == {a: record(pid=3)}


def test_load_then_save_the_same_writes_nothing(path: Path) -> None:
    with Store_(path) as store:
        store.save_records({ReplicaId("shop/api", 0): record()})
    with Store_(path) as store:
        loaded = store.load_records()
        seen = statements(store)
        store.save_records(loaded)
        assert seen == []


def test_save_records_empty(store: Store) -> None:
    seen = statements(store)
    store.save_records({})
    assert seen == [] and store.load_records() == {}


# --- events ---------------------------------------------------------------------------------------------


def test_events_since_limit_and_key(store: Store) -> None:
    ids = [store.add_event(event(f"e{index}", key="shop/api" if index % 2 else "shop/db")) for index in range(10)]
    assert ids == sorted(ids) and len(set(ids)) == 10
    assert [e.message for _, e in store.events()] == [f"e{index}" for index in range(10)]
    assert [i for i, _ in store.events(since=ids[6])] == ids[7:]
    assert [e.message for _, e in store.events(limit=3)] == ["e7", "e8", "e9"]  # the last three, oldest first
    assert [e.message for _, e in store.events(since=ids[1], limit=100)] == [f"e{index}" for index in range(2, 10)]
    assert [e.message for _, e in store.events(key="shop/api")] == ["e1", "e3", "e5", "e7", "e9"]
    assert [e.message for _, e in store.events(key="shop/api", limit=2, since=ids[2])] == ["e7", "e9"]
    assert store.events(key="nobody") == [] and store.events(since=ids[-1]) == []
    assert store.events()[0][1] == event("e0", key="shop/db")


def test_events_are_pruned_past_max_events_and_ids_never_reused(path: Path) -> None:
    with Store_(path, max_events=20) as store:
        ids = [store.add_event(event(f"e{index}")) for index in range(55)]
        kept = store.events()
        assert 0 < len(kept) <= 20
        assert kept[-1] == (ids[-1], event("e54"))
        assert [i for i, _ in kept] == ids[-len(kept) :]  # the newest are kept, in order
    with Store_(path, max_events=20) as store:
        new = store.add_event(event("after reopen"))
        assert new > ids[-1]
        assert len(store.events()) <= 20


def test_an_event_about_the_orchestrator(store: Store) -> None:
    shutdown = Event(at=5.5, type=EventType.SHUTDOWN, key="", message="bye")
    number = store.add_event(shutdown)
    assert store.events() == [(number, shutdown)]


# --- watches and meta -----------------------------------------------------------------------------------


def test_watches_are_replaced_in_order(store: Store) -> None:
    assert store.watches() == []
    store.set_watches(["b/", "a.yaml"])
    store.set_watches(["z.yaml", "b/", "a.yaml"])
    assert store.watches() == ["z.yaml", "b/", "a.yaml"]
    store.set_watches([])
    assert store.watches() == []


def test_meta_overwrites(store: Store) -> None:
    store.set_meta("boot_id", "one")
    store.set_meta("boot_id", "two")
    assert store.get_meta("boot_id") == "two"


def test_concurrent_events_keep_the_bound(path: Path) -> None:
    with Store_(path, max_events=50) as store:
        ids: list[int] = []

        def add() -> None:
            ids.extend(store.add_event(event("e")) for _ in range(100))

        threads = [threading.Thread(target=add) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(set(ids)) == 200
        kept = store.events()
        assert 0 < len(kept) <= 50 and kept[-1][0] == max(ids)
