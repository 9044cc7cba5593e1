"""Watching manifest paths (watchdog): a change, debounced, calls back once.

An editor's save or a `git pull` touches many files in a burst; the callback runs once, `debounce_seconds`
after the last change. Changes inside `.git/` and to editors' swap files are ignored. The callback runs on
a timer thread: it must only load and post work, never change run state itself.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

_IGNORED_SUFFIXES = (".swp", ".swx", "~", ".tmp")


class ManifestWatcher(FileSystemEventHandler):
    def __init__(self, paths: Sequence[str], on_change: Callable[[], None], debounce_seconds: float = 0.3) -> None:
        self.paths = [os.path.abspath(p) for p in paths]
        self.on_change = on_change
        self.debounce_seconds = debounce_seconds
        self._observer = Observer()
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        folders = set()
        for path in self.paths:
            # A file is watched through its folder, so that an editor's replace-by-rename is seen too.
            folders.add((path if os.path.isdir(path) else os.path.dirname(path), os.path.isdir(path)))
        for folder, recursive in sorted(folders):
            if os.path.isdir(folder):
                self._observer.schedule(self, folder, recursive=recursive)
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        self._observer.stop()
        self._observer.join(timeout=5)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [os.fsdecode(event.src_path)]
        if getattr(event, "dest_path", ""):
            paths.append(os.fsdecode(event.dest_path))
        if not any(self._relevant(p) for p in paths):
            return
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.debounce_seconds, self.on_change)
            self._timer.daemon = True
            self._timer.start()

    @staticmethod
    def _relevant(path: str) -> bool:
        # Anything else in a watched folder may matter (a manifest, an envFrom file); re-applying what did
        # not change is a no-op, so erring on the side of "relevant" is cheap.
        return not (f"{os.sep}.git{os.sep}" in path or path.endswith(f"{os.sep}.git")
                    or path.endswith(_IGNORED_SUFFIXES))
