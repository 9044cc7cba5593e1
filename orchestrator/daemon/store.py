"""The state database: one SQLite file in the state dir that survives daemon restarts.

Owns: the schema and its version (`PRAGMA user_version`), revisions of desired state (each a full snapshot of
the desired specs), the records of running replicas that a restarted daemon adopts, the event log (bounded),
the watched manifest paths and a little key/value meta. Specs and records are stored as JSON made by codec.py.

Every write is one transaction (WAL, synchronous=NORMAL): a crash at any moment leaves the last committed
state. One connection, shared by the reconciler and API threads behind a lock.

Never: resets, migrates down or overwrites a database it cannot read (StoreError says what to do instead),
decides anything about processes, or creates the state directory (the daemon owns that).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import StoreBusy, StoreError
from ..core.events import Event, EventType
from ..core.model import ProcessSpec, ReplicaId, ReplicaRecord
from ..manifests import codec
from . import record_codec

SCHEMA_VERSION = 1
# Marks the file as ours ('ORCH'), so that some other program's database at the same path is never taken over.
APPLICATION_ID = 0x4F524348

_SCHEMA = """
CREATE TABLE revisions (
    number INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    paths TEXT NOT NULL,
    user TEXT NOT NULL,
    git_commit TEXT,
    git_dirty INTEGER,
    message TEXT NOT NULL,
    specs TEXT NOT NULL
);
CREATE TABLE records (
    key TEXT NOT NULL,
    replica INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (key, replica)
) WITHOUT ROWID;
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    type TEXT NOT NULL,
    key TEXT NOT NULL,
    replica INTEGER,
    pid INTEGER,
    message TEXT NOT NULL
);
CREATE INDEX events_by_key ON events (key, id);
CREATE TABLE watches (position INTEGER PRIMARY KEY, path TEXT NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
# AUTOINCREMENT above: event ids are never reused, even after pruning, so `events(since=id)` never skips one.


_EVENT = "SELECT id, at, type, key, replica, pid, message FROM events"


@dataclass(frozen=True)
class Revision:
    """One change of desired state and the full set of desired specs after it."""

    number: int
    at: float  # wall-clock time, seconds since the epoch
    action: str  # apply, rollback, scale, delete, watch
    paths: tuple[str, ...]  # the manifest paths it was read from
    user: str
    git_commit: str | None
    git_dirty: bool | None
    message: str
    specs: tuple[ProcessSpec, ...]
    objects: int  # how many specs the snapshot holds (known even when `specs` was not read)


BUSY_SECONDS = 0.1  # how long a write waits for another program's lock before StoreBusy


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


class Store:
    """The state database at `path`, created (mode 0600) when missing.

    Raises StoreError when the file is corrupt, is not an orchestrator state database, or was written by a
    newer orchestrator; it never resets such a file. Safe to use from several threads.
    """

    def __init__(self, path: Path, *, max_events: int = 10000) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.path = Path(path)
        self.max_events = max_events
        # Pruning deletes a tenth at a time, so that a full log does not cost a DELETE on every event.
        self._prune_batch = max_events // 10
        self._lock = threading.Lock()
        # What the database holds, as of our last load or save; None: a stored record we have not decoded.
        self._saved: dict[ReplicaId, ReplicaRecord | None] = {}
        self._encoded: dict[int, tuple[ProcessSpec, str]] = {}  # the latest revision's spec texts, by spec identity
        self._create_file()
        try:
            # A short busy timeout: writes happen on the reconciler's thread, which must not wait out another
            # program's write lock (an admin in `sqlite3`); a busy write is retried later (StoreBusy).
            self._db = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None,
                                       check_same_thread=False)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open state database {self.path}: {error}") from None
        try:
            self._open()
        except BaseException:
            self._db.close()
            raise
        self._identity = self._file_identity()

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return info.st_dev, info.st_ino

    def lost(self) -> str:
        """"" while the file at `path` is the database this store writes; else what became of it (deleted,
        replaced by another file, cut short): what is written from now on would not be found by the next daemon."""
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return "deleted"
        except OSError as error:
            return f"unreadable ({error.strerror or error})"
        if (info.st_dev, info.st_ino) != self._identity:
            return "replaced by another file"
        if info.st_size < 100:  # shorter than SQLite's header
            return f"cut short ({info.st_size} bytes)"
        return ""

    def _create_file(self) -> None:
        # Created here with mode 0600 rather than by SQLite (0644 less the umask): it holds commands and their
        # environments. SQLite gives the -wal and -shm files the mode of the database. An existing file keeps
        # the mode its owner gave it.
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise StoreError(f"cannot open state database {self.path}: {error.strerror or error}") from None
        os.close(fd)

    def _corrupt(self, error: BaseException | str) -> StoreError:
        return StoreError(
            f"state database {self.path} is corrupt: {error}; move it away to start afresh "
            "(processes it records will not be adopted)"
        )

    def _open(self) -> None:
        with self._guard():
            # Looked at before anything is written: switching to WAL rewrites the header of a file that may
            # belong to a newer orchestrator or to another program.
            if self._check_format():
                with self._transaction():
                    if self._check_format():  # looked at again under the write lock: another daemon may be starting
                        for statement in _SCHEMA.split(";"):
                            if statement.strip():
                                self._db.execute(statement)
                        self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._events = self._db.execute("SELECT count(*) FROM events").fetchone()[0]
            self._saved = {
                ReplicaId(key, replica): None
                for key, replica in self._db.execute("SELECT key, replica FROM records").fetchall()
            }

    def _check_format(self) -> bool:
        """Whether the file is an empty database to create the schema in; StoreError if it is not ours."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        application = self._db.execute("PRAGMA application_id").fetchone()[0]
        tables = self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"state database {self.path} was written by a newer orchestrator "
                f"(schema {version}, this one knows {SCHEMA_VERSION})"
            )
        if version == 0 and application == 0 and tables == 0:
            return True
        if application != APPLICATION_ID or version == 0:
            raise StoreError(
                f"{self.path} is not an orchestrator state database; move it away or choose another --state-dir"
            )
        return False

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """SQLite's errors as StoreErrors naming the file; a damaged file is called corrupt, with what to do."""
        try:
            yield
        except sqlite3.OperationalError as error:  # disk full, read-only file system, locked too long
            if "locked" in str(error) or "busy" in str(error):
                raise StoreBusy(f"state database {self.path} is locked by another program: {error}") from None
            raise StoreError(f"state database {self.path}: {error}") from None
        except sqlite3.DatabaseError as error:  # "file is not a database", "database disk image is malformed"
            raise self._corrupt(error) from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock at once: a transaction that reads then writes cannot fail half-way
        # with SQLITE_BUSY because another connection wrote in between.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._guard(), self._transaction() as db:
            yield db

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._guard():
            yield self._db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- revisions ---------------------------------------------------------------------------------------

    def add_revision(
        self,
        specs: Sequence[ProcessSpec],
        *,
        action: str,
        paths: Sequence[str],
        user: str,
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        message: str = "",
    ) -> int:
        """Record the desired specs after a change; returns the new revision's number (1, 2, ...)."""
        document = self._snapshot(specs)  # encoded outside the lock
        with self._write() as db:
            number: int = db.execute("SELECT coalesce(max(number), 0) + 1 FROM revisions").fetchone()[0]
            db.execute(
                "INSERT INTO revisions (number, at, action, paths, user, git_commit, git_dirty, message, specs)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    number,
                    time.time(),
                    action,
                    _dumps(list(paths)),
                    user,
                    git_commit,
                    None if git_dirty is None else int(git_dirty),
                    message,
                    document,
                ),
            )
        return number

    _REVISION = "SELECT number, at, action, paths, user, git_commit, git_dirty, message, json_array_length(specs)"

    def latest_revision(self) -> Revision | None:
        with self._read() as db:
            row = db.execute(f"{self._REVISION}, specs FROM revisions ORDER BY number DESC LIMIT 1").fetchone()
        return None if row is None else self._revision(row)

    def revision(self, number: int) -> Revision | None:
        with self._read() as db:
            row = db.execute(f"{self._REVISION}, specs FROM revisions WHERE number = ?", (number,)).fetchone()
        return None if row is None else self._revision(row)

    def revisions(self, limit: int | None = None) -> list[Revision]:
        """Revisions newest first, WITHOUT their specs (`specs` is empty, `objects` counts them): use
        revision(n) for those.

        History listings need only the metadata, and decoding hundreds of snapshots of hundreds of specs
        would cost seconds.
        """
        with self._read() as db:
            rows = db.execute(
                f"{self._REVISION}, '[]' FROM revisions ORDER BY number DESC LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
        return [self._revision(row) for row in rows]

    def _revision(self, row: tuple[Any, ...]) -> Revision:
        number, at, action, paths, user, git_commit, git_dirty, message, objects, specs = row
        try:
            return Revision(
                number=number,
                at=at,
                action=action,
                paths=tuple(json.loads(paths)),
                user=user,
                git_commit=git_commit,
                git_dirty=None if git_dirty is None else bool(git_dirty),
                message=message,
                specs=tuple(codec.spec_from_json(item, f"[{index}]") for index, item in enumerate(json.loads(specs))),
                objects=objects,
            )
        except (ValueError, TypeError) as error:
            raise self._corrupt(f"revision {number}: {error}") from None

    # --- records -----------------------------------------------------------------------------------------

    def _snapshot(self, specs: Sequence[ProcessSpec]) -> str:
        """The JSON list of `specs` for a revision. Each spec's text is kept from the revision before while the
        spec is the same object (specs are frozen): re-applying 500 objects of which one changed encodes one,
        not 500. Only the latest revision's texts are kept."""
        kept = self._encoded
        texts = {}
        for spec in specs:
            known = kept.get(id(spec))
            texts[id(spec)] = known if known is not None and known[0] is spec else (spec, _dumps(codec.spec_to_json(spec)))
        self._encoded = texts
        return "[" + ",".join(texts[id(spec)][1] for spec in specs) + "]"

    def save_records(self, records: Mapping[ReplicaId, ReplicaRecord]) -> None:
        """Make the stored records equal to `records`, in one transaction.

        Writes only the records that changed since the last save or load (an unchanged record is usually
        the same object; else it is compared) and deletes those gone: when nothing changed, no SQL runs.
        Records have one writer (the reconciler), so what was saved is tracked outside the lock.
        """
        saved = self._saved
        changed = [
            (replica, record)
            for replica, record in records.items()
            if not _same(saved.get(replica, None), record)  # not stored, stored unread, or different
        ]
        gone = [replica for replica in saved if replica not in records]
        if not changed and not gone:
            return
        rows = [(replica.key, replica.index, _dumps(record_codec.record_to_json(record))) for replica, record in changed]
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO records (key, replica, record) VALUES (?, ?, ?)", rows)
            db.executemany("DELETE FROM records WHERE key = ? AND replica = ?", [(r.key, r.index) for r in gone])
        # Only after the commit: a failed save must be retried in full next time.
        for replica, record in changed:
            saved[replica] = record
        for replica in gone:
            del saved[replica]

    def load_records(self) -> dict[ReplicaId, ReplicaRecord]:
        with self._read() as db:
            rows = db.execute("SELECT key, replica, record FROM records ORDER BY key, replica").fetchall()
        records: dict[ReplicaId, ReplicaRecord] = {}
        for key, index, text in rows:
            replica = ReplicaId(key, index)
            try:
                records[replica] = record_codec.record_from_json(json.loads(text))
            except (ValueError, TypeError) as error:
                raise self._corrupt(f"record of {replica}: {error}") from None
        self._saved = dict(records)
        return records

    # --- events ------------------------------------------------------------------------------------------

    def add_event(self, event: Event) -> int:
        """Append an event; returns its id, larger than every earlier one. Keeps at most `max_events`."""
        return self.add_events([event])[0]

    def last_event_id(self) -> int:
        """The highest event id ever given here (AUTOINCREMENT's sequence: pruned events count too)."""
        with self._lock, self._guard():
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
            return int(row[0]) if row else 0

    def add_events(self, events: Sequence[Event]) -> list[int]:
        """Append events in one transaction; returns their ids, in order. Keeps at most `max_events`."""
        if not events:
            return []
        ids: list[int] = []
        with self._lock:
            with self._guard(), self._transaction() as db:
                for event in events:
                    # With the id it was emitted with (the one its live followers saw), when it has one.
                    cursor = db.execute(
                        "INSERT OR REPLACE INTO events (id, at, type, key, replica, pid, message) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (event.id, event.at, event.type.value, event.key, event.replica, event.pid, event.message),
                    )
                    if cursor.lastrowid is None:  # cannot happen after an INSERT; narrows the type
                        raise StoreError(f"state database {self.path}: no id for the new event")
                    ids.append(cursor.lastrowid)
                count = self._events + len(events)
                if count > self.max_events:
                    excess = count - self.max_events + self._prune_batch
                    db.execute("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?)", (excess,))
                    count -= excess
            self._events = count  # after the commit, as the rows are, and before another thread counts
        return ids

    def events(self, since: int = 0, limit: int | None = None, key: str | None = None,
               types: Sequence[str] = ()) -> list[tuple[int, Event]]:
        """Events with id > `since` (of object `key` only, if given; of these `types` only, if given), oldest
        first; with `limit`, the last ones."""
        where = "id > ?" + ("" if key is None else " AND key = ?")
        parameters: list[object] = [since] + ([] if key is None else [key])
        if types:
            where += f" AND type IN ({','.join('?' * len(types))})"
            parameters += list(types)
        with self._read() as db:
            if limit is None:
                rows = db.execute(f"{_EVENT} WHERE {where} ORDER BY id", parameters).fetchall()
            else:
                rows = db.execute(f"{_EVENT} WHERE {where} ORDER BY id DESC LIMIT ?", [*parameters, limit]).fetchall()
                rows.reverse()
        try:
            return [
                (
                    row[0],
                    Event(at=row[1], type=EventType(row[2]), key=row[3], replica=row[4], pid=row[5], message=row[6]),
                )
                for row in rows
            ]
        except ValueError as error:
            raise self._corrupt(f"events: {error}") from None

    # --- watches and meta --------------------------------------------------------------------------------

    def set_watches(self, paths: Sequence[str]) -> None:
        with self._write() as db:
            db.execute("DELETE FROM watches")
            db.executemany("INSERT INTO watches (position, path) VALUES (?, ?)", enumerate(paths))

    def watches(self) -> list[str]:
        with self._read() as db:
            return [path for (path,) in db.execute("SELECT path FROM watches ORDER BY position")]

    def get_meta(self, key: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def json_meta(self, key: str, default: Any) -> Any:
        """The meta value `key` read as JSON, when it is of `default`'s type (a list, a dict); else `default`
        (missing, or not readable: what a later release or a hand edit left)."""
        text = self.get_meta(key)
        if not text:
            return default
        try:
            value = json.loads(text)
        except ValueError:
            return default
        return value if isinstance(value, type(default)) else default

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def _same(saved: ReplicaRecord | None, record: ReplicaRecord) -> bool:
    if saved is record:
        return True
    # Locations take no part in spec equality but are stored, so a moved manifest is written too.
    return saved is not None and saved == record and saved.spec.location == record.spec.location
