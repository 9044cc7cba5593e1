"""The manifest paths the daemon keeps applying (`apply --watch`), kept in the store across restarts.

Owns the running watchers and the store's list of watches. A change calls `on_change(paths, prune)` on a
watcher's timer thread; that callback loads and posts work, it never changes run state itself. watchdog is
imported only when a first watch starts (daemon/watch.py), so a daemon without watches never pays for it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from .store import Store

Watch = dict[str, Any]  # {"paths": [...], "prune": bool, "variables": {NAME: value}}, as `apply --watch` asked


def encode_watch(watch: Watch) -> str:
    return json.dumps(watch, sort_keys=True)


def decode_watch(text: str) -> Watch:
    value = json.loads(text)
    variables = value.get("variables") if isinstance(value.get("variables"), dict) else {}
    return {"paths": [str(p) for p in value["paths"]], "prune": bool(value.get("prune")),
            "variables": {str(k): str(v) for k, v in variables.items()}}


class Watches:
    def __init__(self, store: Store, on_change: Callable[[list[str], bool, dict[str, str]], None]) -> None:
        self.store = store
        self._on_change = on_change
        self._running: list[tuple[Watch, Any]] = []  # (watch, its ManifestWatcher)

    def restore(self) -> None:
        """Start the watches a previous daemon kept."""
        for text in self.store.watches():
            self._start(decode_watch(text))

    def add(self, watch: Watch) -> None:
        """Keep applying `watch` from now on (a watch already kept is left as it is; one of the same paths
        with other ${NAME} values gives way to it)."""
        stored = [decode_watch(w) for w in self.store.watches()]
        if watch in stored:
            return
        same = [w for w in stored if (w["paths"], w["prune"]) == (watch["paths"], watch["prune"])]
        for old in same:
            for running, watcher in [(w, r) for w, r in self._running if w == old]:
                watcher.stop()
                self._running.remove((running, watcher))
        kept = [w for w in stored if w not in same]
        self.store.set_watches([*(encode_watch(w) for w in kept), encode_watch(watch)])
        self._start(watch)

    def remove(self, paths: list[str]) -> dict[str, Any]:
        """Stop watching the given paths (all watches when none is given)."""
        asked = {os.path.realpath(p) for p in paths}
        kept, removed = [], []
        for watch, watcher in self._running:
            if not asked or asked & {os.path.realpath(p) for p in watch["paths"]}:
                watcher.stop()
                removed.append(watch)
            else:
                kept.append((watch, watcher))
        self._running = kept
        self.store.set_watches([encode_watch(w) for w, _ in kept])
        return {"removed": removed, "watching": [w for w, _ in kept]}

    def kept(self) -> list[Watch]:
        """The watches running now."""
        return [watch for watch, _ in self._running]

    def stop_all(self) -> None:
        """Stop every watcher; the store still names them, for the next daemon."""
        running, self._running = self._running, []
        for _, watcher in running:
            watcher.stop()

    def _start(self, watch: Watch) -> None:
        from .watch import ManifestWatcher

        paths = [str(p) for p in watch["paths"]]
        prune = bool(watch.get("prune"))
        variables = dict(watch.get("variables") or {})
        watcher = ManifestWatcher(paths, lambda: self._on_change(paths, prune, variables))
        watcher.start()
        self._running.append((watch, watcher))
