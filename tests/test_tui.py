"""The interactive `orchestrator top` (cli/tui.py) and what it shows (cli/topdata.py).

The app runs against a real daemon (the `orch` fixture of test_daemon, always shut down) with real processes,
driven by Textual's pilot; conditions are polled with deadlines (`until`), never slept on. Then the command
line itself: the plain table when its output is not a terminal, and on a terminal (a pseudo-terminal here)
the interactive view, or the plain table with a hint when textual cannot be imported. Last, tables of cases
for the pure parts: the filter, rows, and the log follower on files written here.
"""

# ruff: noqa: F811 - the fixture `orch` is imported from the module that defines it

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import REPO
from test_daemon import Orchestrator, alive, documents, orch, process  # noqa: F401
from textual.pilot import Pilot
from textual.widgets import DataTable, Log, Static

from orchestrator.cli.topdata import COLUMNS, LogFollower, Row, TopSource, matches, printable, rows_of
from orchestrator.cli.tui import ConfirmRestart, TopApp

T = TypeVar("T")

# Prints its own pid with each line, so that the pane shows which start of it printed what.
TICKER = ["sh", "-c", 'i=0; while :; do i=$((i+1)); echo "$$ tick $i"; sleep 0.1; done']


async def until(pilot: Pilot[Any], condition: Callable[[], T], what: str, timeout: float = 10.0) -> T:
    """Let the app run until `condition` returns something truthy, or fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


def drive(orch: Orchestrator, steps: Callable[[TopApp, Pilot[Any]], Awaitable[None]]) -> TopApp:
    """Run the app against orch's daemon, headless, through `steps`; the app is closed whatever they do."""
    app = TopApp(TopSource(orch.state), interval=0.2)

    async def run() -> None:
        async with app.run_test(size=(160, 40), notifications=True) as pilot:
            await steps(app, pilot)

    asyncio.run(run())
    return app


def table(app: TopApp) -> dict[str, dict[str, str]]:
    """What the table shows: each row's cells by column, by NAMESPACE/NAME."""
    widget = app.query_one("#objects", DataTable)
    rows = (widget.get_row_at(i) for i in range(widget.row_count))
    return {str(cells[0]): dict(zip(COLUMNS, map(str, cells))) for cells in rows}


def status(app: TopApp) -> str:
    return str(app.query_one("#status", Static).render())


def log_lines(app: TopApp) -> list[str]:
    return list(app.query_one("#log", Log).lines)


def toasts(app: TopApp) -> str:
    """The text of the notifications on screen."""
    return "\n".join(str(toast.render()) for toast in app.screen.query("Toast"))


def in_namespace(namespace: str, doc: str) -> str:
    return re.sub(r'metadata: \{"name": "([^"]+)"', rf'metadata: {{"name": "\1", "namespace": "{namespace}"', doc)


def start(orch: Orchestrator, *docs: str) -> dict[str, list[int]]:
    orch.ok("apply", "-f", str(orch.write("m/stack.yaml", documents(*docs))))
    names = [re.search(r'"name": "([^"]+)"', doc)[1] for doc in docs]  # type: ignore[index]
    return orch.wait_running(*names)


# -- the app against a real daemon ---------------------------------------------------------------------


def test_the_table_shows_every_object_and_the_filter_narrows_it(orch: Orchestrator) -> None:
    pids = start(orch, process("api", labels={"tier": "web"}), process("worker", replicas=2),
                 in_namespace("shop", process("cache")))

    async def steps(app: TopApp, pilot: Pilot[Any]) -> None:
        shown = await until(pilot, lambda: len(table(app)) == 3 and table(app), "three rows")
        assert set(shown) == {"default/api", "default/worker", "shop/cache"}
        api = shown["default/api"]
        assert (api["KIND"], api["READY"], api["STATE"], api["RESTARTS"]) == ("Process", "1/1", "Running", "0")
        assert api["PID"] == str(pids["api"][0]) and api["COMMAND"] == "sleep 60"
        assert re.fullmatch(r"\d+(\.\d)?%", api["CPU"]) and re.fullmatch(r"[\d.]+(B|Ki|Mi)", api["MEM"]), api
        assert shown["default/worker"]["READY"] == "2/2"
        assert shown["default/worker"]["PID"] == ",".join(map(str, pids["worker"]))
        assert "revision 1, 3 objects, every 0.2 s" in status(app)

        await pilot.press("slash", *"shop/")  # a `/` typed into the filter is text, not the key again
        await until(pilot, lambda: set(table(app)) == {"shop/cache"}, "only shop's row")
        assert "1 of 3 objects" in status(app) and "filter: shop/" in status(app)
        await pilot.press("enter")  # keeps the filter, back to the table
        assert app.focused is app.query_one("#objects", DataTable)
        await pilot.pause(0.5)  # refreshes keep filtering
        assert set(table(app)) == {"shop/cache"}

        await pilot.press("slash", *["backspace"] * 5, *"tier=web")
        await until(pilot, lambda: set(table(app)) == {"default/api"}, "only the labelled row")
        await pilot.press("escape")  # clears the filter
        await until(pilot, lambda: len(table(app)) == 3, "every row again")
        assert app.filter_text == "" and "filter" not in status(app)

        await pilot.press("q")

    app = drive(orch, steps)
    assert app.return_code == 0


def test_l_follows_the_selected_log_and_r_restarts_the_selected_object(orch: Orchestrator) -> None:
    pids = start(orch, process("a-sleeper"), process("ticker", TICKER))
    old = pids["ticker"][0]

    async def steps(app: TopApp, pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: list(table(app)) == ["default/a-sleeper", "default/ticker"], "both rows")
        await pilot.press("down")
        assert app.selected() is not None and app.selected().key == "default/ticker"  # type: ignore[union-attr]

        await pilot.press("l")
        assert app.following == "default/ticker"
        first = await until(pilot, lambda: [line for line in log_lines(app) if line.startswith(f"{old} tick")],
                            "the ticker's lines in the pane")
        seen = len(first)
        await until(pilot, lambda: len([line for line in log_lines(app) if line.startswith(f"{old} ")]) > seen + 2,
                    "new lines appearing as they are printed")

        await pilot.press("r")
        assert isinstance(app.screen, ConfirmRestart)
        await pilot.press("n")  # not restarted
        assert not isinstance(app.screen, ConfirmRestart)
        await pilot.pause(0.3)
        assert orch.pids()["ticker"] == [old] and not orch.events("Restarting", "ticker")

        await pilot.press("r", "y")
        new = await until(pilot, lambda: (p := orch.running("ticker")) and p["ticker"] != [old] and p["ticker"][0],
                          "the ticker restarted by the daemon")
        assert orch.events("Restarting", "ticker")
        await until(pilot, lambda: "default/ticker restarting (1 replica)" in toasts(app), "the restart notified")
        await until(pilot, lambda: table(app)["default/ticker"]["PID"] == str(new), "the new pid in the table")
        await until(pilot, lambda: any(line.startswith(f"{new} tick") for line in log_lines(app)),
                    "the new process's lines in the same pane")

        await pilot.press("l")  # closes the pane
        assert app.following is None
        await pilot.press("enter")  # Enter opens it too
        assert app.following == "default/ticker"
        await pilot.press("escape")
        assert app.following is None
        await pilot.press("q")

    app = drive(orch, steps)
    assert app.return_code == 0


def test_a_daemon_that_goes_away_is_shown_and_q_still_quits(orch: Orchestrator) -> None:
    start(orch, process("api"))

    async def steps(app: TopApp, pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: "default/api" in table(app), "the row")
        pid = orch.daemon_pid()
        orch.api("POST", "/shutdown")
        await until(pilot, lambda: "daemon not answering" in status(app), "the daemon shown gone")
        assert app.query_one("#status", Static).has_class("down")
        assert "no daemon is running" in status(app)
        await until(pilot, lambda: "The daemon does not answer" in toasts(app), "the notification")  # mounts later
        assert "default/api" in table(app)  # its last answer stays, dimmed
        await until(pilot, lambda: pid is None or not alive(pid), "the daemon ended")
        await pilot.press("q")

    app = drive(orch, steps)
    assert app.return_code == 0 and not app.is_running


# -- the command line ----------------------------------------------------------------------------------


def test_top_whose_output_is_not_a_terminal_prints_the_plain_table(orch: Orchestrator) -> None:
    pids = start(orch, process("api"))
    for args in (("top", "-n", "1"), ("top", "--plain", "-n", "1", "--interval", "0.1")):
        out = orch.ok(*args)
        title, header, row = out.splitlines()
        assert title.startswith("orchestrator top: revision 1, every ")
        assert header.split() == ["NAME", "KIND", "READY", "STATE", "RESTARTS", "AGE", "UP-TO-DATE", "REVISION",
                                  "HEALTH", "PID", "CPU", "MEM", "COMMAND"]
        assert row.split()[:4] == ["api", "Process", "1/1", "Running"] and str(pids["api"][0]) in row
        assert "\x1b" not in out


class Terminal:
    """A command on a pseudo-terminal of 160x40 (its input and output), and what it printed."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"}
        try:
            self.child = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env,
                                          start_new_session=True)
        finally:
            os.close(slave)
        self.output = b""

    @property
    def text(self) -> str:
        return printable(self.output.decode(errors="replace"))

    def wait_for(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                pytest.fail(f"{text!r} never shown; the terminal showed: {self.text[-2000:]!r}")

    def ended(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while self.child.poll() is None and time.monotonic() < deadline:
            self._read(0.05)  # keep the terminal drained, or a child writing to it blocks
        code = self.child.poll()
        if code is None:
            pytest.fail(f"still running after {timeout} s; the terminal showed: {self.text[-2000:]!r}")
        return code

    def _read(self, timeout: float) -> bool:
        """False when the child has closed the terminal."""
        ready, _, _ = select.select([self.master], [], [], min(timeout, 0.5))
        if ready:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every holder of the other side closed it
                return False
            if not data:
                return False
            self.output += data
        return True

    def close(self) -> None:
        if self.child.poll() is None:
            self.child.kill()
        self.child.wait()
        os.close(self.master)


@pytest.fixture
def terminals() -> Iterator[Callable[[Sequence[str]], Terminal]]:
    started: list[Terminal] = []

    def run(argv: Sequence[str]) -> Terminal:
        started.append(Terminal(argv))
        return started[-1]

    try:
        yield run
    finally:
        for terminal in started:
            terminal.close()


def test_top_on_a_terminal_is_interactive_and_q_quits(orch: Orchestrator,
                                                      terminals: Callable[[Sequence[str]], Terminal]) -> None:
    start(orch, process("api"))
    terminal = terminals(orch.argv("top", "--interval", "0.2"))
    terminal.wait_for("default/api")
    terminal.wait_for("Restart")  # the footer's keys
    os.write(terminal.master, b"q")
    assert terminal.ended() == 0
    assert "Traceback" not in terminal.text


def test_top_on_a_terminal_with_no_daemon_says_so_as_the_plain_one_does(
        orch: Orchestrator, terminals: Callable[[Sequence[str]], Terminal]) -> None:
    terminal = terminals(orch.argv("top"))
    assert terminal.ended() == 1
    assert "orchestrator: no daemon is running for state dir" in terminal.text
    assert "Traceback" not in terminal.text


def test_top_without_textual_prints_the_plain_table_with_a_hint(orch: Orchestrator,
                                                                terminals: Callable[[Sequence[str]], Terminal]) -> None:
    start(orch, process("api"))
    hidden = "import sys; sys.modules['textual'] = None; from orchestrator.cli.main import entry_point; entry_point()"
    terminal = terminals([sys.executable, "-c", hidden, "--state-dir", str(orch.state), "top", "--interval", "0.2"])
    terminal.wait_for("pip install 'orchestrator[tui]'")
    terminal.wait_for("NAME  KIND")
    os.kill(terminal.child.pid, signal.SIGINT)  # Ctrl-C, as on the plain table
    assert terminal.ended() == 0
    assert "Traceback" not in terminal.text


# -- the pure parts ------------------------------------------------------------------------------------


def row(key: str, state: str = "Running", **labels: str) -> Row:
    cells = (key, "Process", "1/1", state, "0", "1m", "100", "0.0%", "1Mi", "sleep 60")
    return Row(key, tuple(sorted(labels.items())), (0,), cells)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ["default/api", "default/worker", "shop/cache"]),
        ("shop/", ["shop/cache"]),
        ("API", ["default/api"]),
        ("backoff", ["default/worker"]),
        ("tier=web", ["default/api", "shop/cache"]),
        ("tier!=web", ["default/worker"]),
        ("tier=web shop", ["shop/cache"]),
        ("tier=", []),
        ("nothing", []),
    ],
)
def test_filter(text: str, expected: list[str]) -> None:
    rows = [row("default/api", tier="web"), row("default/worker", "BackOff"), row("shop/cache", tier="web")]
    assert [r.key for r in rows if matches(r, text)] == expected


def test_rows_are_get_wide_cells_under_namespace_and_name() -> None:
    obj = {"key": "shop/cache", "name": "cache", "namespace": "shop", "kind": "Process", "labels": {"a": "b"},
           "replicas": {"ready": 1, "desired": 2}, "state": "Running", "restarts": 3, "created_at": 1000.0,
           "command": ["redis-server", "--port", "7000"],
           "replica_status": [{"index": 0, "pid": 41, "cpu_percent": 1.5, "memory_bytes": 2 << 20},
                              {"index": 1, "pid": None}]}
    [made] = rows_of([obj], now=1090.0)
    assert made.key == "shop/cache" and made.labels == (("a", "b"),) and made.replicas == (0, 1)
    assert made.cells == ("shop/cache", "Process", "1/2", "Running", "3", "90s", "41", "1.5%", "2.0Mi",
                          "redis-server --port 7000")
    [bare] = rows_of([{"key": "x/y"}], now=0.0)
    assert bare.cells[:6] == ("x/y", "-", "-", "-", "0", "-") and bare.replicas == ()


def test_printable_drops_colours_and_shows_controls() -> None:
    assert printable("\x1b[31mred\x1b[0m and\tmore") == "red and more"
    assert printable("bell\x07 erase\x1b[2J home\x1b[H") == "bell? erase home"


def test_the_log_follower_tails_then_follows_and_starts_over_after_a_rotation(tmp_path: Path) -> None:
    log = tmp_path / "a.0.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(10)) + b"half")
    follower = LogFollower([(0, log)], tail=3)
    assert follower.read() == ["line 7", "line 8", "line 9"]  # the last three, not the unfinished one
    assert follower.read() == []
    with log.open("ab") as handle:
        handle.write(b" done\nnext\n")
    assert follower.read() == ["half done", "next"]
    log.write_bytes(b"after rotation\n")  # copied away and truncated, then written again
    assert follower.read() == ["after rotation"]


def test_the_log_follower_prefixes_replicas_and_waits_for_a_file_not_written_yet(tmp_path: Path) -> None:
    first, second = tmp_path / "w.0.log", tmp_path / "w.1.log"
    first.write_text("from zero\n")
    follower = LogFollower([(0, first), (1, second)])
    assert follower.read() == ["[0] from zero"]
    second.write_text("from one\n")
    assert follower.read() == ["[1] from one"]


def test_the_log_follower_reads_a_flood_in_bounded_pieces(tmp_path: Path) -> None:
    log = tmp_path / "flood.0.log"
    log.write_bytes(b"")
    follower = LogFollower([(0, log)])
    assert follower.read() == []
    line = b"x" * 1023 + b"\n"
    log.write_bytes(line * 1024)  # 1 MiB
    pieces = [follower.read() for _ in range(5)]
    assert [len(piece) for piece in pieces] == [256, 256, 256, 256, 0]
    huge = tmp_path / "huge.0.log"
    huge.write_bytes(b"y" * (600 * 1024))  # one line, unfinished, larger than a read: shown cut
    tailed = LogFollower([(0, huge)])
    assert tailed.read() == []
    huge.write_bytes(b"z" * (300 * 1024))
    assert [len(line) for line in tailed.read()] == [256 * 1024]
