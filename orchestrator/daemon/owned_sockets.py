"""The listening sockets the daemon owns: bound before any replica of their process starts, held for as long as
the process exists (so that replicas of every revision share one accept queue), and got back after a daemon
restart from an adopted replica.

Binding happens at apply, before the new desired state is taken up: a socket that cannot be bound
(EADDRINUSE, EACCES) refuses the apply with the errno, and nothing changes. A changed `listen` binds the new
socket first; the old one is closed once no running replica was started with it. After a daemon restart the
daemon's copy is gone: it is taken back from a running replica of the process with pidfd_getfd(2) (checked
against the spec: a listening socket at that address); failing that, it is bound anew if its address is free,
and otherwise reported lost, and the process's next change is a Recreate (its old replicas must let go of
the address before new ones can have it). Runs on the reconciler's thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping

from ..core.errors import ListenError
from ..core.events import Event, EventType
from ..core.model import ProcessSpec, ReplicaId, ReplicaRecord, Socket, StrategyType
from ..engine.reconcile import Reconciler
from ..host.listeners import HIGH_FD, Listener, bind, close, recover
from .control import Conflict


class OwnedSockets:
    def __init__(self, reconciler: Reconciler, wall: object, emit: object) -> None:
        self.reconciler = reconciler
        self.wall = wall
        self.emit = emit
        self.held: dict[tuple[str, Socket], Listener] = {}  # (process key, socket spec) -> the daemon's copy
        self.lost: dict[str, str] = {}  # process key -> why its sockets could not be had back

    def bind_for(self, specs: Mapping[str, ProcessSpec]) -> None:
        """Bind every socket `specs` declare that is not held yet; Conflict (nothing kept) when one fails."""
        made: list[tuple[tuple[str, Socket], Listener]] = []
        try:
            for key, spec in specs.items():
                for socket_spec in spec.sockets:
                    if (key, socket_spec) in self.held or any(k == (key, socket_spec) for k, _ in made):
                        continue
                    made.append(((key, socket_spec), bind(socket_spec)))
        except (ListenError, OSError, ValueError) as error:
            for _, listener in made:
                close(listener)
            raise Conflict(f"{key}: {error}") from None
        for where, listener in made:
            self.held[where] = listener
            self._say(EventType.SOCKET_BOUND, where[0], f"socket {where[1].name} bound at {where[1].listen}")

    def hand_over(self, specs: Mapping[str, ProcessSpec]) -> None:
        """Tell the executor which fds each process's replicas inherit (the desired spec's sockets)."""
        executor = self.reconciler.executor
        for key, spec in specs.items():
            if not spec.sockets:
                continue
            fds = [self.held.get((key, s)) for s in spec.sockets]
            executor.set_listeners(key, tuple(fd.fd for fd in fds if fd is not None) if all(fds) else None)

    def release_unused(self, specs: Mapping[str, ProcessSpec], records: Mapping[ReplicaId, ReplicaRecord]) -> None:
        """Close the copies no desired spec declares and no running replica was started with."""
        if not self.held:
            return
        wanted = {(key, s) for key, spec in specs.items() for s in spec.sockets}
        running = {(r.spec.key, s) for r in records.values() if r.process is not None for s in r.spec.sockets}
        for where in [w for w in self.held if w not in wanted and w not in running]:
            close(self.held.pop(where))
            if not any(k == where[0] for k, _ in wanted):
                self.reconciler.executor.set_listeners(where[0], None)

    def recover(self, specs: Mapping[str, ProcessSpec], records: Mapping[ReplicaId, ReplicaRecord]) -> dict[str, str]:
        """After a restart: take each declared socket back from a running replica, else bind it anew if free;
        returns the keys whose sockets are lost, and why."""
        for key, spec in specs.items():
            if not spec.sockets:
                continue
            live = [r for r in records.values() if r.spec.key == key and r.process is not None]
            for position, socket_spec in enumerate(spec.sockets):
                if (key, socket_spec) in self.held:
                    continue
                fd = self._take_back(live, position, socket_spec)
                if fd is not None:
                    self.held[(key, socket_spec)] = Listener(socket_spec, fd, None)
                    continue
                try:
                    self.held[(key, socket_spec)] = bind(socket_spec)
                except (ListenError, OSError, ValueError) as error:
                    self.lost[key] = f"socket {socket_spec.name}: {error}"
                    self._say(EventType.SOCKET_LOST, key, f"socket {socket_spec.name} could not be had back from a "
                              f"running replica, nor bound anew ({error}): the next change of {key} is a Recreate")
        self.hand_over(specs)
        return dict(self.lost)

    def _take_back(self, live: list[ReplicaRecord], position: int, socket_spec: Socket) -> int | None:
        for record in live:
            if record.process is None or position >= len(record.spec.sockets) or \
                    record.spec.sockets[position] != socket_spec:
                continue
            try:
                pidfd = os.pidfd_open(record.process.pid)
            except OSError:
                continue
            try:
                fd = recover(pidfd, 3 + position, socket_spec)
            except OSError:
                fd = None
            finally:
                os.close(pidfd)
            if fd is not None:
                return fd
        return None

    def with_lost(self, specs: Mapping[str, ProcessSpec]) -> dict[str, ProcessSpec]:
        """Specs whose sockets are lost roll as Recreate (their old replicas must let go of the address first),
        and a bind is tried again for them; specs of processes whose sockets are back are left as they are."""
        if not self.lost:
            return dict(specs)
        out = dict(specs)
        for key in list(self.lost):
            spec = specs.get(key)
            if spec is None:
                del self.lost[key]
                continue
            missing = [s for s in spec.sockets if (key, s) not in self.held]
            try:
                for socket_spec in missing:
                    self.held[(key, socket_spec)] = bind(socket_spec)
            except (ListenError, OSError, ValueError):
                out[key] = dataclasses.replace(spec, strategy=dataclasses.replace(spec.strategy,
                                                                                   type=StrategyType.RECREATE))
                continue
            del self.lost[key]
            self._say(EventType.SOCKET_BOUND, key, "sockets bound again")
        self.hand_over(out)
        return out

    def close_all(self) -> None:
        for listener in self.held.values():
            with contextlib.suppress(OSError):
                os.close(listener.fd)  # the daemon's copy only: a unix path stays for the next daemon
        self.held.clear()

    def _say(self, type: EventType, key: str, message: str) -> None:
        self.emit(Event(self.wall(), type, key, message))  # type: ignore[operator]


assert HIGH_FD >= 10  # the shim's renumbering to 3.. never meets a source
