"""What the daemon's keepers of kept kinds (daemon/alerting.py, cronjobs.py, queues.py) share: the result
lines of an apply and of its prune, and one alarm that wakes the keeper at its next due time (none set: it
never wakes)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from .operations import _under


def result(key: str, kind: str, outcome: str) -> dict[str, Any]:
    """One line of an apply's answer for a kept object (it has no replicas to restart or stop)."""
    return {"key": key, "kind": kind, "result": outcome, "restart": False, "stopped": False}


def outcome(kept: dict[str, Any], key: str, spec: Any) -> str:
    """created, configured or unchanged: `spec` against what `kept` holds under `key`."""
    old = kept.get(key)
    return "created" if old is None else ("unchanged" if old == spec else "configured")


def put(kept: dict[str, Any], specs: Iterable[Any], key: Callable[[Any], str], kind: Callable[[Any], str],
        dry_run: bool) -> list[dict[str, Any]]:
    """Keep each spec in `kept` under key(spec) (unless `dry_run`); the result of each."""
    results = []
    for spec in specs:
        said = outcome(kept, key(spec), spec)
        results.append(result(key(spec), kind(spec), said))
        if not dry_run and said != "unchanged":
            kept[key(spec)] = spec
    return results


def prune(kept: dict[str, Any], kind: str, keep: Callable[[str], bool], paths: list[str],
          dry_run: bool) -> list[dict[str, Any]]:
    """Forget (unless `dry_run`) what `kept` holds that was read from under `paths` and is not to `keep`
    (apply --prune, as for processes); the result of each."""
    results = []
    for key, spec in list(kept.items()):
        if keep(key) or spec.location is None or not _under(spec.location.file, paths):
            continue
        results.append(result(key, kind, "pruned"))
        if not dry_run:
            del kept[key]
    return results


def changed(results: list[dict[str, Any]]) -> bool:
    return any(r["result"] != "unchanged" for r in results)


class Alarm:
    """One timer: `set(delay)` replaces the one set before (None: none), `fire` runs on the timer's thread."""

    def __init__(self, fire: Callable[[], None]) -> None:
        self.fire = fire
        self._timer: threading.Timer | None = None
        self._guard = threading.Lock()

    def set(self, delay: float | None) -> None:
        with self._guard:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if delay is None:
                return
            self._timer = threading.Timer(max(0.0, delay) + 0.01, self.fire)
            self._timer.daemon = True
            self._timer.start()

    def cancel(self) -> None:
        self.set(None)
