"""TerminalView: a tty run's emulated screen (core/ttyscreen.py) and its scrollback,
drawn from cells, never from the run's bytes.

Only cells reach the user's terminal, and each cell's text goes through the project's
sanitiser (`termtext.plain_field`) and then loses any remaining control or format
character: pyte keeps titles, OSC 52 and hyperlinks to itself, so what a run wrote can
at most colour a cell. Lines are rendered once into cached strips (screen rows until
pyte marks them dirty, scrollback lines for good) and repaints are throttled to
REPAINT_S, so a run redrawing its screen 60 times a second costs at most 30 repaints
of the rows that changed.

Fed two ways: `feed` (the attached view, from the run's socket) or `follow_log` (the
output pane: the bounded replay of the log's tail, then the log's new bytes as it grows).
A pane smaller than the terminal shows, while following, the part that ends at the
cursor or the last row with something on it, whichever is lower: a full-screen program
(alternate screen) is shown to its bottom rows, where prompts are; a program that wrote
a few lines at the top of its main screen shows them, not the blank rows below.
Scrolling shows the rest. A larger pane leaves the rest blank.
"""

from __future__ import annotations

import os
import time
import unicodedata
from collections.abc import Callable, Mapping
from itertools import groupby
from operator import itemgetter
from pathlib import Path

import pyte
from pyte.screens import Char
from rich.cells import cell_len
from rich.color import Color, ColorParseError
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer
from textual.widgets import Input

from qqtui.core.termtext import plain_field
from qqtui.core.ttyreplay import LOG_WINDOW, replay_log_tail
from qqtui.core.ttyscreen import TerminalScreen
from qqtui.tui.perf import content_keyed_lines
from qqtui.tui.perf.scroll_only_growth import ScrollOnlyGrowth
from qqtui.tui.widgets.following import FollowsBottom

REPAINT_S = 1 / 30
"""At most one repaint per this long, however often the run redraws."""
LOG_POLL_S = 0.05
LOG_READ_MAX = 1 << 20
"""New log bytes fed per poll; a log that grew more than LOG_WINDOW is replayed again."""
_HISTORY_CACHE = 2000
# A pyte Char's style: fg, bg, bold, italics, underscore, strikethrough, reverse.
_STYLE_FIELDS = itemgetter(1, 2, 3, 4, 5, 6, 7)

# pyte's colour names to Rich's (pyte says "brown" for SGR 33, as the VT100 manual did).
_COLOUR_NAMES = {
    "black": "black",
    "red": "red",
    "green": "green",
    "brown": "yellow",
    "yellow": "yellow",
    "blue": "blue",
    "magenta": "magenta",
    "cyan": "cyan",
    "white": "white",
}
_COLOURS: dict[str, Color | None] = {"default": None}


def _used_rows(screen: TerminalScreen) -> int:
    """How many screen rows are in use: all on the alternate screen (a full-screen
    program owns them), else up to the cursor or the lowest row with a drawn cell."""
    if screen.alternate:
        return screen.lines
    lowest = screen.cursor.y
    blank = screen.default_char
    for y in sorted(screen.buffer, reverse=True):
        if y <= lowest:
            break
        if any(char != blank for char in screen.buffer[y].values()):
            lowest = y
            break
    return max(1, min(screen.lines, lowest + 1))


def cell_colour(name: str) -> Color | None:
    """A pyte colour (a name, "brightred", or 6 hex digits from 256/truecolour SGR)."""
    try:
        return _COLOURS[name]
    except KeyError:
        pass
    colour: Color | None = None
    bright = name.startswith("bright")
    base = _COLOUR_NAMES.get(name[6:] if bright else name)
    try:
        if base is not None:
            colour = Color.parse(f"bright_{base}" if bright else base)
        elif len(name) == 6:
            colour = Color.parse(f"#{name}")
    except ColorParseError:
        colour = None
    if len(_COLOURS) < 4096:
        _COLOURS[name] = colour
    return colour


def cell_text(data: str) -> str:
    """What of a cell's text may reach the terminal: one printable character (with any
    combining marks), else a space. Controls, C1, DEL and format characters go."""
    if len(data) == 1 and " " <= data <= "~":
        return data
    text = plain_field(data)
    if any(unicodedata.category(ch)[0] == "C" for ch in text):
        text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    return text if text and cell_len(text) > 0 else " "


class TerminalView(FollowsBottom, ScrollOnlyGrowth, ScrollView, can_focus=True):
    """An emulated terminal's screen and scrollback, in colour, with search."""

    DEFAULT_CSS = """
    TerminalView { background: $surface; }
    TerminalView > .terminal-view--match { background: $warning 35%; }
    TerminalView > .terminal-view--current-match { background: $warning; color: $text; }
    TerminalView #terminal-view-search {
        dock: bottom; height: 1; border: none; padding: 0 1; display: none;
    }
    TerminalView #terminal-view-search.-open { display: block; }
    """

    COMPONENT_CLASSES = {"terminal-view--match", "terminal-view--current-match"}

    BINDINGS: list[BindingType] = [
        Binding(
            "ctrl+f",
            "open_search",
            "Search",
            tooltip="Search the screen and its scrollback",
            id="terminal_view.search",
        ),
        Binding(
            "n",
            "next_match",
            "Next match",
            tooltip="Go to the next search match",
            id="terminal_view.next_match",
        ),
        Binding(
            "N",
            "previous_match",
            "Previous match",
            key_display="N",
            tooltip="Go to the previous search match",
            id="terminal_view.previous_match",
        ),
        Binding(
            "escape",
            "close_search",
            "Close search",
            show=False,
            tooltip="Close the search bar",
            id="terminal_view.close_search",
        ),
        Binding(
            "f",
            "toggle_follow",
            "Follow",
            tooltip="Keep the terminal's screen in view",
            id="terminal_view.toggle_follow",
        ),
    ]

    follow: reactive[bool] = reactive(True, init=False)
    SIZE_FROM_STYLESHEET = True

    class Loaded(Message):
        """A log's screen was replayed (the pane shows the run's current screen)."""

        def __init__(self, view: TerminalView, path: Path) -> None:
            super().__init__()
            self.view = view
            self.path = path

        @property
        def control(self) -> TerminalView:
            return self.view

    class _Replayed(Message):
        def __init__(
            self, generation: int, data: bytes, offset: int, size: tuple[int, int] | None
        ) -> None:
            super().__init__()
            self.generation = generation
            self.data = data
            self.offset = offset
            self.size = size

    def __init__(
        self,
        columns: int = 80,
        rows: int = 24,
        *,
        show_cursor: bool = True,
        searchable: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        content_keyed_lines.use_for(self)
        self.show_cursor = show_cursor
        self.searchable = searchable
        self.screen_: TerminalScreen = TerminalScreen(columns, rows)
        self._stream = pyte.ByteStream(self.screen_)
        self._rows: dict[int, tuple[int, Strip]] = {}  # screen row -> (cursor x, strip)
        self._history: LRUCache[int, Strip] = LRUCache(_HISTORY_CACHE)
        self._styles: dict[tuple[object, ...], Style] = {}
        self._crops: dict[int, tuple[Strip, tuple[int, int, Style], Strip]] = {}
        self._cursor_at: tuple[int, int] | None = None  # the cursor as last drawn
        self._repaint_timer: Timer | None = None
        self._last_repaint = 0.0
        self._echo_due = False  # input was sent: its echo is painted without the throttle
        self._shown_history = 0
        self._shown_pushed = 0
        self._used_rows = rows  # screen rows up to the cursor or the last drawn one
        # Following a log (the output pane).
        self._log: Path | None = None
        self._asked: tuple[Path | None, int, int] | None = None
        self._live_size: Callable[[], tuple[int, int] | None] | None = None
        self._log_offset = 0
        self._log_generation = 0
        self._log_key: tuple[int, int] | None = None
        self._log_timer: Timer | None = None
        self._loading = False
        # Search: the query, and the virtual line of the current match.
        self._query = ""
        self._current_match: int | None = None
        self.match_count = 0

    # -- feeding -------------------------------------------------------------------

    @property
    def terminal(self) -> TerminalScreen:
        """The emulated screen (modes such as app cursor keys and bracketed paste)."""
        return self.screen_

    @property
    def log_path(self) -> Path | None:
        return self._log

    def reset_terminal(self, columns: int, rows: int, data: bytes = b"") -> None:
        """Start again on a blank terminal of this size, then draw `data` on it."""
        self.screen_ = TerminalScreen(max(1, columns), max(1, rows))
        self._stream = pyte.ByteStream(self.screen_)
        self._rows.clear()
        self._history.clear()
        self._cursor_at = None
        self._shown_history = self._shown_pushed = 0
        self._current_match = None
        if data:
            self._stream.feed(data)
        self._repaint(full=True)

    def resize_terminal(self, columns: int, rows: int) -> None:
        """The run's terminal changed size (as its program sees it after SIGWINCH)."""
        if (columns, rows) == (self.screen_.columns, self.screen_.lines):
            return
        self.screen_.resize(lines=max(1, rows), columns=max(1, columns))
        self._rows.clear()
        self._history.clear()
        self._repaint(full=True)

    def feed(self, data: bytes) -> None:
        """The run's output: emulate it now, repaint within REPAINT_S."""
        if not data:
            return
        self._stream.feed(data)
        if self._echo_due:
            # The first output after a key is most likely its echo: the user is waiting
            # for it. One repaint per key, at typing rates, cannot flood the terminal.
            self._echo_due = False
            if self._repaint_timer is not None:
                self._repaint_timer.stop()
                self._repaint_timer = None
            self._repaint()
            return
        self._schedule_repaint()

    def expect_echo(self) -> None:
        """Input was just sent to the run: paint the next output at once, not within
        REPAINT_S (the throttle added up to a frame of latency to every keystroke)."""
        self._echo_due = True

    def _schedule_repaint(self) -> None:
        if self._repaint_timer is not None:
            return
        wait = self._last_repaint + REPAINT_S - time.monotonic()
        if wait <= 0:
            self._repaint()
        else:
            self._repaint_timer = self.set_timer(wait, self._repaint_from_timer)

    def _repaint_from_timer(self) -> None:
        self._repaint_timer = None
        self._repaint()

    def _repaint(self, *, full: bool = False) -> None:
        """Drop what changed from the caches and refresh only those rows, unless the
        scrollback moved (then every row shows other content)."""
        self._last_repaint = time.monotonic()
        screen = self.screen_
        dirty = set(screen.dirty)
        screen.dirty.clear()
        used = _used_rows(screen)
        if used != self._used_rows:
            self._used_rows, full = used, True
        cursor = (screen.cursor.y, screen.cursor.x)
        if self._cursor_at != cursor:
            if self._cursor_at is not None:
                dirty.add(self._cursor_at[0])
            dirty.add(cursor[0])
            self._cursor_at = cursor
        for row in dirty:
            self._rows.pop(row, None)
        history = len(screen.history.top)
        moved = (history, screen.history_pushed) != (self._shown_history, self._shown_pushed)
        self._shown_history, self._shown_pushed = history, screen.history_pushed
        if moved:
            self._rows.clear()  # every row moved up: cached rows are other lines now
        if full or moved:
            self._update_virtual_size()
        if self.follow and self.scroll_y != self.max_scroll_y:
            self.jump_to_end()
        if full or moved or self._query:
            self.refresh()
            return
        # Only the rows that changed and show, each run of them one region, and no wider
        # than the pane: ScrollView.refresh_lines spans the terminal's width, and for a
        # terminal wider than the pane that reached into the process pane beside it,
        # which the compositor then painted again with every frame.
        top, height, width = int(self.scroll_y), self.size.height, self.size.width
        shown = sorted(y for y in (history + row for row in dirty) if top <= y < top + height)
        start = previous = None
        for y in [*shown, None]:
            if y is not None and previous is not None and y == previous + 1:
                previous = y
                continue
            if start is not None and previous is not None:
                self.refresh(Region(0, start - top, width, previous - start + 1))
            start = previous = y

    # -- following a log (the output pane) -------------------------------------------

    def follow_log(
        self,
        path: str | os.PathLike[str] | None,
        columns: int,
        rows: int,
        *,
        live_size: Callable[[], tuple[int, int] | None] | None = None,
        reload: bool = False,
    ) -> None:
        """Show the screen `path` (a tty run's output.log) draws at this size, and keep
        following it; None shows a blank terminal. `live_size`, called in a thread, may
        tell the terminal's size now (a viewer may have resized it since it started)."""
        new = Path(path) if path is not None else None
        asked = (new, columns, rows)
        if asked == self._asked and not reload:
            return
        self._asked = asked
        self._live_size = live_size
        self._log = new
        self._log_generation += 1
        self._log_key = None
        self._log_offset = 0
        self.follow = True
        self.reset_terminal(columns, rows)
        if self._log_timer is not None:
            self._log_timer.pause()
        if new is not None:
            self._start_replay()

    def _start_replay(self) -> None:
        self._loading = True
        self._replay_worker(self._log, self._log_generation, self._live_size)

    @work(thread=True, exclusive=True, exit_on_error=False, group="terminal-view-replay")
    def _replay_worker(
        self,
        path: Path | None,
        generation: int,
        live_size: Callable[[], tuple[int, int] | None] | None,
    ) -> None:
        if path is None:
            return
        size = live_size() if live_size is not None else None
        try:
            data, offset = replay_log_tail(path)
        except FileNotFoundError:
            data, offset = b"", 0
        self.post_message(self._Replayed(generation, data, offset, size))

    @on(_Replayed)
    def _on_replayed(self, message: _Replayed) -> None:
        message.stop()
        if message.generation != self._log_generation or self._log is None:
            return
        self._loading = False
        columns, rows = message.size or (self.screen_.columns, self.screen_.lines)
        self.reset_terminal(columns, rows, message.data)
        self._log_offset = message.offset
        if self._log_timer is None:
            self._log_timer = self.set_interval(LOG_POLL_S, self._poll_log)
        else:
            self._log_timer.resume()
        self.post_message(self.Loaded(self, self._log))

    def pause_watching_log(self) -> None:
        """Stop reading the log while nobody sees this view (a full screen is on top)."""
        if self._log_timer is not None:
            self._log_timer.pause()

    def resume_watching_log(self) -> None:
        """Read the log again from where it was left, at once."""
        if self._log_timer is not None and self._log is not None and not self._loading:
            self._log_timer.resume()
            self._poll_log()

    def _poll_log(self) -> None:
        """One stat; new bytes are fed at once, a lot of them replayed again."""
        if self._log is None or self._loading:
            return
        try:
            st = os.stat(self._log)
        except OSError:
            return
        key = (st.st_ino, st.st_size)
        if key == self._log_key:
            return
        self._log_key = key
        if st.st_size < self._log_offset or st.st_size - self._log_offset > LOG_WINDOW:
            # Truncated, replaced, or far ahead: what is on screen is the tail's replay.
            self._log_generation += 1
            self._start_replay()
            return
        try:
            with open(self._log, "rb") as fh:
                fh.seek(self._log_offset)
                data = fh.read(min(st.st_size - self._log_offset, LOG_READ_MAX))
        except OSError:
            return
        self._log_offset += len(data)
        if self._log_offset < st.st_size:
            self._log_key = None  # more to read on the next poll
        self.feed(data)

    # -- composition -----------------------------------------------------------------

    @property
    def is_container(self) -> bool:
        return True  # the docked search bar is a real widget

    def compose(self) -> ComposeResult:
        if self.searchable:
            yield Input(placeholder="search  (enter: next, esc: close)", id="terminal-view-search")

    def on_mount(self) -> None:
        self._repaint(full=True)

    def on_resize(self) -> None:
        self._update_virtual_size()
        if self.follow:
            self.jump_to_end()

    def _line_count(self) -> int:
        return len(self.screen_.history.top) + self._used_rows

    def _update_virtual_size(self) -> None:
        search_open = len(self.query("#terminal-view-search.-open")) > 0
        size = Size(self.screen_.columns, self._line_count() + (1 if search_open else 0))
        if size != self.virtual_size:
            self.virtual_size = size

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.jump_to_end()

    # -- search ----------------------------------------------------------------------

    @property
    def search_query(self) -> str:
        return self._query

    @property
    def current_match_line(self) -> int | None:
        """The virtual line (scrollback first, then the screen) of the current match."""
        return self._current_match

    def line_text(self, line: int) -> str:
        """The sanitised text of virtual line `line` (scrollback, then the screen)."""
        return "".join(seg.text for seg in self._line_strip(line, cursor=False))

    def search(self, query: str) -> None:
        """Highlight `query` (case-insensitive) and go to its first match from the top."""
        self._query = query.strip("\n")
        self._current_match = None
        self._rows.clear()
        self._history.clear()
        needle = self._query.lower()
        self.match_count = (
            sum(needle in self.line_text(i).lower() for i in range(self._line_count()))
            if needle
            else 0
        )
        if needle:
            self._go_to_match(forward=True)
        self.refresh()

    def _go_to_match(self, *, forward: bool) -> None:
        needle = self._query.lower()
        total = self._line_count()
        if not needle or not total:
            return
        start = self._current_match
        if start is None:
            start = int(self.scroll_y) - 1 if forward else int(self.scroll_y)
        step = 1 if forward else -1
        for i in range(1, total + 1):
            line = (start + step * i) % total
            if needle in self.line_text(line).lower():
                self._current_match = line
                self.follow = False
                height = self.scrollable_content_region.height
                self.scroll_to(
                    y=max(0, line - height // 2), animate=False, immediate=True, force=True
                )
                self._rows.clear()
                self._history.clear()
                self.refresh()
                return

    def action_open_search(self) -> None:
        if not self.searchable:
            return
        box = self.query_one("#terminal-view-search", Input)
        box.add_class("-open")
        box.value = self._query
        self._update_virtual_size()
        self.screen.set_focus(box)

    def action_close_search(self) -> None:
        for box in self.query("#terminal-view-search"):
            box.remove_class("-open")
        self._update_virtual_size()
        self.focus()

    def action_next_match(self) -> None:
        self._go_to_match(forward=True)

    def action_previous_match(self) -> None:
        self._go_to_match(forward=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("next_match", "previous_match"):
            return True if self._query else None
        if action == "close_search":
            return len(self.query("#terminal-view-search.-open")) > 0 or None
        return True

    @on(Input.Submitted, "#terminal-view-search")
    def _on_search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip("\n") == self._query and self._query:
            self._go_to_match(forward=True)
        else:
            self.search(event.value)

    # -- rendering -------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self.visual_style.rich_style
        line = scroll_y + y
        if line >= self._line_count():
            return Strip.blank(width, base)
        strip = self._line_strip(line, cursor=self.show_cursor)
        # The same cropped strip for the same line: the styles cache then styles it once.
        view = (scroll_x, width, base)
        cropped = self._crops.get(id(strip))
        if cropped is not None and cropped[0] is strip and cropped[1] == view:
            return cropped[2]
        if len(self._crops) > 4 * _HISTORY_CACHE:
            self._crops.clear()
        out = strip.crop_extend(scroll_x, scroll_x + width, base)
        self._crops[id(strip)] = (strip, view, out)
        return out

    def _line_strip(self, line: int, *, cursor: bool) -> Strip:
        screen = self.screen_
        history = screen.history.top
        if line < len(history):
            key = screen.history_pushed - len(history) + line
            strip = self._history.get(key)
            if strip is None:
                strip = self._render_cells(history[line], line)
                self._history.set(key, strip)
            return strip
        row = line - len(history)
        cursor_x = -1
        if cursor and not screen.cursor.hidden and row == screen.cursor.y:
            cursor_x = min(screen.cursor.x, screen.columns - 1)
        cached = self._rows.get(row)
        if cached is not None and cached[0] == cursor_x:
            return cached[1]
        strip = self._render_cells(screen.buffer[row], line, cursor_x)
        self._rows[row] = (cursor_x, strip)
        return strip

    def _render_cells(self, cells: Mapping[int, Char], line: int, cursor_x: int = -1) -> Strip:
        """One terminal line as segments of sanitised cell text, exactly `columns` wide."""
        columns = self.screen_.columns
        default = self.screen_.default_char
        chars = [cells.get(x, default) for x in range(columns)]
        keys = list(map(_STYLE_FIELDS, chars))
        if 0 <= cursor_x < columns:
            fg, bg, bold, italic, underline, strike, reverse = keys[cursor_x]
            keys[cursor_x] = (fg, bg, bold, italic, underline, strike, not reverse)
        text = "".join([char.data for char in chars])
        if len(text) == columns and text.isascii() and text.isprintable():
            # One cell per character, none to clean: runs of a style at C speed.
            segments: list[Segment] = []
            at = 0
            for key, run in groupby(keys):
                size = len(list(run))
                segments.append(Segment(text[at : at + size], self._style(key)))
                at += size
        else:
            segments = self._render_cells_one_by_one(chars, keys)
        strip = Strip(segments, columns)
        if self._query:
            strip = self._highlight(strip, line)
        return strip.apply_style(self.visual_style.rich_style)

    def _render_cells_one_by_one(
        self, chars: list[Char], keys: list[tuple[object, ...]]
    ) -> list[Segment]:
        """Cells that are wide, empty or not ASCII: each cleaned (cell_text) and measured."""
        columns = len(chars)
        segments: list[Segment] = []
        text: list[str] = []
        style: Style | None = None
        x = 0
        while x < columns:
            data = cell_text(chars[x].data) if chars[x].data else " "
            width = cell_len(data)
            if width > 1 and x + width > columns:
                data, width = " ", 1  # a wide character cut by the right edge
            cell_style = self._style(keys[x])
            if cell_style is not style and text:
                segments.append(Segment("".join(text), style))
                text = []
            style = cell_style
            text.append(data)
            x += max(1, width)
        if text:
            segments.append(Segment("".join(text), style))
        return segments

    def _style(self, key: tuple[object, ...]) -> Style:
        """The Rich style of a cell's (fg, bg, bold, italics, underscore, strike, reverse)."""
        style = self._styles.get(key)
        if style is None:
            fg, bg, bold, italic, underline, strike, reverse = key
            style = Style(
                color=cell_colour(str(fg)),
                bgcolor=cell_colour(str(bg)),
                bold=bool(bold) or None,
                italic=bool(italic) or None,
                underline=bool(underline) or None,
                strike=bool(strike) or None,
                reverse=bool(reverse) or None,
            )
            if len(self._styles) > 4096:
                self._styles.clear()
            self._styles[key] = style
        return style

    def _highlight(self, strip: Strip, line: int) -> Strip:
        text = Text.assemble(*((seg.text, seg.style) for seg in strip))
        name = (
            "terminal-view--current-match"
            if line == self._current_match
            else "terminal-view--match"
        )
        text.highlight_words(
            [self._query], self.get_component_rich_style(name), case_sensitive=False
        )
        return Strip(text.render(self.app.console), strip.cell_length)
