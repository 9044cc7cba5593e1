"""The interactive `orchestrator top`, on Textual: the table of every object, refreshed every --interval
seconds; the selected object's log, followed, in a pane; its restart, confirmed first; a filter; the keys in
the footer.

Owns the widgets and the keys, nothing else: what they show comes from topdata.py (the daemon's answers made
rows, the log follower), which is where anything worth a table of cases is tested. Imported only by `top` on
a terminal, so textual (the `tui` extra) is needed by nobody else and `orchestrator --help` never loads it.
The daemon is asked off the event loop (a request may wait for its timeout); a daemon that goes away is a
line in red and a notification, and the table stays as it last answered until it is back.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Input, Log, Static

from ..core.errors import UserError
from .exit_codes import EXIT_FAILED, EXIT_OK
from .topdata import COLUMNS, STATE_COLUMN, LogFollower, Row, Snapshot, TopSource, down_line, matches, status_line

_MIN_INTERVAL = 0.1  # seconds: a table redrawn more often is not read, and each redraw is a request
_FOLLOW_EVERY = 0.25  # seconds between looks at the followed log while its pane is open (as `logs -f`)
_LOG_LINES = 5000  # kept in the pane; older ones scroll away

_STATE_STYLES = {
    "Running": "green",
    "Succeeded": "green",
    "Pending": "yellow",
    "Waiting": "yellow",
    "Stopping": "yellow",
    "BackOff": "bold red",
    "Failed": "bold red",
}


def run_top(state_dir: Path, interval: float) -> int:
    """`orchestrator top` on a terminal, until `q`."""
    source = TopSource(state_dir)
    source.snapshot(time.time())  # no daemon at all: the same error as the plain `top`, before taking the screen
    app = TopApp(source, interval)
    app.run()
    return EXIT_OK if not app.return_code else EXIT_FAILED


class ConfirmRestart(ModalScreen[bool]):
    """`Restart default/api?` answered with y, or n / Esc."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Restart"),
        Binding("n,escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, row: Row) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        count = len(self.row.replicas)
        which = "Its replica is" if count == 1 else f"Each of its {count} replicas is"
        with Vertical(id="dialog"):
            yield Static(f"Restart {self.row.key}?", markup=False, id="question")
            yield Static(f"{which} stopped and started again.", markup=False)
            yield Static("y: restart    n or Esc: cancel", markup=False, id="answers")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class TopApp(App[int]):
    """The table, the log pane, the filter line and the footer, over a TopSource."""

    TITLE = "orchestrator top"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #status { height: 1; padding: 0 1; background: $boost; }
    #status.down { background: $error; color: $text; text-style: bold; }
    #objects { height: 1fr; }
    #objects.stale { text-opacity: 50%; }
    #logpane { height: 45%; display: none; }
    #logpane.open { display: block; }
    #logtitle { height: 1; padding: 0 1; background: $panel; }
    #log { height: 1fr; }
    #filter { display: none; }
    #filter.open { display: block; }
    ConfirmRestart { align: center middle; }
    #dialog { width: 64; height: auto; padding: 1 2; border: thick $warning; background: $surface; }
    #question { text-style: bold; }
    #answers { margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("l", "toggle_log", "Log", key_display="l/⏎"),
        Binding("r", "restart", "Restart"),
        Binding("slash", "open_filter", "Filter", key_display="/"),
        Binding("escape", "close", "Close log / clear filter", key_display="Esc"),
    ]

    def __init__(self, source: TopSource, interval: float) -> None:
        super().__init__()
        self.source = source
        self.interval = max(interval, _MIN_INTERVAL)
        self.snapshot: Snapshot | None = None
        self.shown: tuple[Row, ...] = ()
        self.filter_text = ""
        self.down_since: float | None = None  # wall seconds: when the daemon stopped answering
        self.following: str | None = None  # the key whose log the pane shows
        self._follower: LogFollower | None = None
        self._fetching = False

    def compose(self) -> ComposeResult:
        # Kept, not queried: a query of the app looks in the screen on top, which is the restart's question
        # while it is asked (and the table goes on being refreshed underneath).
        self.status = Static(status_line(None, 0, self.interval, ""), markup=False, id="status")
        self.table: DataTable[Text] = DataTable(id="objects", cursor_type="row", zebra_stripes=True)
        self.log_pane = Vertical(id="logpane")
        self.log_title = Static("", markup=False, id="logtitle")
        self.log_view = Log(id="log", max_lines=_LOG_LINES)
        self.filter_field = Input(placeholder="filter: part of namespace/name or state, label=value, label!=value",
                                  id="filter")
        yield self.status
        yield self.table
        with self.log_pane:
            yield self.log_title
            yield self.log_view
        yield self.filter_field
        yield Footer()

    def on_mount(self) -> None:
        for title in COLUMNS:
            self.table.add_column(title, key=title)
        self.table.focus()
        self.set_interval(self.interval, self.refresh_objects)
        self._follow_timer = self.set_interval(_FOLLOW_EVERY, self._follow, pause=True)
        self.refresh_objects()

    # -- the table ------------------------------------------------------------------------------------

    def refresh_objects(self) -> None:
        if not self._fetching:  # a slow answer is waited for, not piled up behind
            self._fetching = True
            self.run_worker(self._fetch(), group="fetch")

    async def _fetch(self) -> None:
        now = time.time()
        try:
            snapshot = await asyncio.to_thread(self.source.snapshot, now)
        except UserError as error:
            self._daemon_down(str(error), now)
        else:
            self._daemon_up(snapshot)
        finally:
            self._fetching = False

    def _daemon_down(self, message: str, now: float) -> None:
        if self.down_since is None:
            self.down_since = now
            self.notify(message, title="The daemon does not answer", severity="error", timeout=10, markup=False)
        self.status.update(down_line(message, self.down_since, now))
        self.status.add_class("down")
        self.table.add_class("stale")

    def _daemon_up(self, snapshot: Snapshot) -> None:
        if self.down_since is not None:
            self.down_since = None
            self.notify("The daemon answers again", title="Daemon back", markup=False)
            self.status.remove_class("down")
            self.table.remove_class("stale")
        self.snapshot = snapshot
        self._fill()

    def _fill(self) -> None:
        """Show the snapshot's rows that pass the filter, the selection staying on its object."""
        table = self.table
        rows = tuple(r for r in self.snapshot.rows if matches(r, self.filter_text)) if self.snapshot else ()
        if [r.key for r in rows] == [r.key for r in self.shown]:
            for row in rows:
                for title, cell in zip(COLUMNS, _cells(row)):
                    table.update_cell(row.key, title, cell, update_width=True)
        else:
            selected = self.selected()
            table.clear()
            for row in rows:
                table.add_row(*_cells(row), key=row.key)
            keys = [r.key for r in rows]
            if selected is not None and selected.key in keys:
                table.move_cursor(row=keys.index(selected.key))
        self.shown = rows
        if self.down_since is None:
            self.status.update(status_line(self.snapshot, len(rows), self.interval, self.filter_text))

    def selected(self) -> Row | None:
        index = self.table.cursor_row
        return self.shown[index] if 0 <= index < len(self.shown) else None

    # -- the log pane ---------------------------------------------------------------------------------

    def action_toggle_log(self) -> None:
        row = self.selected()
        if self.following is not None and (row is None or row.key == self.following):
            self._close_log()
        elif row is None:
            self.notify("No object is selected", severity="warning", markup=False)
        else:
            self._open_log(row)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:  # Enter on a row
        row = self.selected()
        if row is not None:
            self._open_log(row)

    def _open_log(self, row: Row) -> None:
        self.following = row.key
        self._follower = self.source.follower(row)
        self.log_view.clear()
        none = "" if row.replicas else " (it has no replica)"
        self.log_title.update(f"log of {row.key}{none}, following (l or Esc closes)")
        self.log_pane.add_class("open")
        self._follow()
        self._follow_timer.resume()

    def _close_log(self) -> None:
        self._follow_timer.pause()
        self.following = None
        self._follower = None
        self.log_pane.remove_class("open")

    def _follow(self) -> None:
        if self._follower is not None:
            lines = self._follower.read()  # at most a bounded read of each file: fine on the event loop
            if lines:
                self.log_view.write_lines(lines)

    # -- restart --------------------------------------------------------------------------------------

    def action_restart(self) -> None:
        row = self.selected()
        if row is None:
            self.notify("No object is selected", severity="warning", markup=False)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._restart(row.key), group="restart")

        self.push_screen(ConfirmRestart(row), answered)

    async def _restart(self, key: str) -> None:
        try:
            said = await asyncio.to_thread(self.source.restart, key)
        except UserError as error:
            self.notify(str(error), title=f"{key} not restarted", severity="error", timeout=10, markup=False)
            return
        self.notify(said, title="Restart", markup=False)
        self.refresh_objects()

    # -- the filter -----------------------------------------------------------------------------------

    def action_open_filter(self) -> None:
        self.filter_field.add_class("open")
        self.filter_field.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._fill()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not self.filter_field.value.strip():
            self.filter_field.remove_class("open")
        self.table.focus()

    def action_close(self) -> None:
        """Esc: leave the filter (clearing it) when typing one, else close the log pane."""
        field = self.filter_field
        if field.has_focus or (self.following is None and field.value):
            field.value = ""  # Input.Changed clears the filter
            field.remove_class("open")
            self.table.focus()
        elif self.following is not None:
            self._close_log()


def _cells(row: Row) -> list[Text]:
    """The row's cells as plain text (a process's command is never read as markup), its state coloured."""
    cells = [Text(cell) for cell in row.cells]
    cells[STATE_COLUMN] = Text(row.state, style=_STATE_STYLES.get(row.state, ""))
    return cells
