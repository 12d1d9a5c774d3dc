"""OutputView: live, searchable view of one run's output log, however large.

The file is never loaded: `LogIndex` keeps line offsets and reads the visible
lines with `pread`; `sanitize_line` makes each one inert; rendered strips are
cached per line. File growth is noticed by one `os.stat` every 0.1 s; a small
growth is indexed there and then, and larger indexing and all searching happen in
thread workers that post messages back.
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_left
from pathlib import Path

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.events import Resize
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer
from textual.widgets import Input, Label
from textual.worker import Worker, WorkerState, get_current_worker

from qqtui.core.logindex import LogIndex, RefreshResult
from qqtui.tui.output_text import sanitize_line
from qqtui.tui.perf import content_keyed_lines
from qqtui.tui.perf.scroll_only_growth import ScrollOnlyGrowth
from qqtui.tui.widgets.following import FollowsBottom

POLL_SECONDS = 0.1
# Growth up to this much is indexed on the app's thread as the poll sees it: a thread
# worker (a thread, a Worker, its state messages) per appended line cost more than the
# indexing, with a run printing five lines a second followed. More goes to a worker.
_INLINE_REFRESH_BYTES = 64 * 1024
# Bytes indexed per worker step: each step posts a message, so a file that grows
# by gigabytes at once still shows progress instead of one long silence.
_REFRESH_BUDGET = 64 * 1024 * 1024
_SEARCH_MAX_MATCHES = 1_000_000
_CACHE_LINES = 2000


class OutputView(FollowsBottom, ScrollOnlyGrowth, ScrollView, can_focus=True):
    """Shows one log file: live tail with follow mode, inert colours, search."""

    DEFAULT_CSS = """
    OutputView { background: $surface; }
    OutputView > .output-view--match { background: $warning 35%; }
    OutputView > .output-view--current-match { background: $warning; color: $text; }
    OutputView > .output-view--placeholder { color: $text-muted; text-style: italic; }
    OutputView #output-view-search {
        dock: bottom; height: 1; border: none; padding: 0 1; display: none;
    }
    OutputView #output-view-search.-open { display: block; }
    OutputView #output-view-new-lines {
        dock: bottom; width: 100%; height: 1; padding: 0 1;
        background: $accent; color: $text; display: none;
    }
    OutputView #output-view-new-lines.-visible { display: block; }
    """

    COMPONENT_CLASSES = {
        "output-view--match",
        "output-view--current-match",
        "output-view--placeholder",
    }

    BINDINGS: list[BindingType] = [
        Binding(
            "ctrl+f",
            "open_search",
            "Search",
            tooltip="Search the output",
            id="output_view.search",
        ),
        Binding(
            "n",
            "next_match",
            "Next match",
            tooltip="Go to the next search match",
            id="output_view.next_match",
        ),
        Binding(
            "N",
            "previous_match",
            "Previous match",
            key_display="N",
            tooltip="Go to the previous search match",
            id="output_view.previous_match",
        ),
        Binding(
            "escape",
            "close_search",
            "Close search",
            show=False,
            tooltip="Close the search bar",
            id="output_view.close_search",
        ),
        Binding(
            "f",
            "toggle_follow",
            "Follow",
            tooltip="Keep the newest output in view",
            id="output_view.toggle_follow",
        ),
    ]

    follow: reactive[bool] = reactive(True, init=False)
    """Keep the last line in view as output arrives; off when scrolled up."""
    new_lines: reactive[int] = reactive(0, init=False)
    """Lines that arrived while follow was off."""
    # Sized by the stylesheet in every screen, never by the log (see ScrollOnlyGrowth).
    SIZE_FROM_STYLESHEET = True

    class FollowChanged(Message):
        """Follow mode was turned on or off (by scrolling, a key or code)."""

        def __init__(self, output_view: OutputView, follow: bool) -> None:
            super().__init__()
            self.output_view = output_view
            self.follow = follow

        @property
        def control(self) -> OutputView:
            return self.output_view

    class SearchUpdated(Message):
        """Search progress: matching lines found so far for `query`."""

        def __init__(self, output_view: OutputView, query: str, matches: int, done: bool) -> None:
            super().__init__()
            self.output_view = output_view
            self.query = query
            self.matches = matches
            self.done = done

        @property
        def control(self) -> OutputView:
            return self.output_view

    # Private messages from the thread workers; `index` lets a late message from a
    # previous file be recognised and dropped.
    class _Refreshed(Message):
        def __init__(self, index: LogIndex, result: RefreshResult) -> None:
            super().__init__()
            self.index = index
            self.result = result

    class _HeadScanned(Message):
        def __init__(self, index: LogIndex) -> None:
            super().__init__()
            self.index = index

    class _SearchProgress(Message):
        def __init__(self, matches: array[int], query: str, upto: int, done: bool) -> None:
            super().__init__()
            self.matches = matches  # identifies the search run this belongs to
            self.query = query
            self.upto = upto
            self.done = done

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        follow: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        # A scroll moves the same cached line strips to other rows: style each once.
        content_keyed_lines.use_for(self)
        self.set_reactive(OutputView.follow, follow)
        self._path: Path | None = Path(path) if path is not None else None
        self._index: LogIndex | None = None
        self._stat_key: tuple[int, int, int, int] | None = None
        self._refresh_worker: Worker[None] | None = None
        self._refresh_again = False
        self._head_worker_generation = -1
        self._line_count = 0
        self._max_width = 0
        self._size_pending = False  # keep the last log's size until the new one's refresh
        self._strips: LRUCache[tuple[int, int], Strip] = LRUCache(_CACHE_LINES)
        self._poll_timer: Timer | None = None
        # Search state: match byte offsets are stable when the head is merged in
        # front of the tail, line numbers are not, so offsets are what is kept.
        self._query = ""
        self._match_offsets: array[int] = array("Q")
        self._searched_upto = 0
        self._search_done = True
        self._search_worker: Worker[None] | None = None
        self._current_match: int | None = None  # byte offset of the current match

    # -- public API --------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        """The log file shown, if any."""
        return self._path

    @property
    def line_count(self) -> int:
        """Display lines known (long lines count once per 64 KiB piece)."""
        return self._line_count

    @property
    def search_query(self) -> str:
        """The active search, or "" when none."""
        return self._query

    @property
    def match_count(self) -> int:
        """Matches found so far for the active search."""
        return len(self._match_offsets)

    @property
    def current_match_line(self) -> int | None:
        """Line number of the current search match, if any."""
        if self._current_match is None or self._index is None:
            return None
        return self._index.line_at_offset(self._current_match)

    def set_path(self, path: str | os.PathLike[str] | None) -> None:
        """Show another file (or nothing); starts at its end, following."""
        new_path = Path(path) if path is not None else None
        if new_path == self._path and self._index is not None:
            return
        self._path = new_path
        self._open_index()

    def search(self, query: str) -> None:
        """Highlight `query` (case-insensitive) and jump to its first match below the top."""
        query = query.strip("\n")
        if query == self._query:
            self.action_next_match()
            return
        self._query = query
        self._match_offsets = array("Q")
        self._searched_upto = 0
        self._current_match = None
        self._search_done = not query
        self._strips.clear()
        self.refresh()
        if query:
            self._start_search()
        self.post_message(self.SearchUpdated(self, query, 0, not query))

    # -- composition and lifecycle ---------------------------------------------

    @property
    def is_container(self) -> bool:
        # The lines are drawn by render_line, but the search bar and the "new
        # lines" bar are real docked widgets, so the compositor must arrange them.
        return True

    def compose(self) -> ComposeResult:
        yield Label(id="output-view-new-lines")
        yield Input(placeholder="search  (enter: next, esc: close)", id="output-view-search")

    def on_mount(self) -> None:
        self._poll_timer = self.set_interval(POLL_SECONDS, self._poll)
        self._open_index()

    def on_unmount(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    def on_resize(self, event: Resize) -> None:
        self._update_virtual_size()
        if self.follow:
            self.jump_to_end()

    # -- polling and indexing ----------------------------------------------------

    def _open_index(self) -> None:
        if self._poll_timer is None:
            return  # not mounted yet: on_mount opens the path
        if self._index is not None:
            self._index.close()
        self.workers.cancel_group(self, "output-view-index")
        self.workers.cancel_group(self, "output-view-head")
        self.workers.cancel_group(self, "output-view-search")
        self._index = LogIndex(self._path) if self._path is not None else None
        self._stat_key = None
        self._refresh_worker = None
        self._search_worker = None
        self._refresh_again = False
        self._head_worker_generation = -1
        self._line_count = 0
        self._max_width = 0
        self._strips.clear()
        self._query = ""
        self._match_offsets = array("Q")
        self._current_match = None
        self._search_done = True
        self.new_lines = 0
        self.follow = True
        # A log's old virtual size stays until the new log's first refresh, a few ms
        # away: dropping to zero lines first hid the scrollbar and showed it again, two
        # layouts of the whole screen (20-100 ms each) for every run selected.
        self.scroll_to(x=0, animate=False, immediate=True, force=True)
        self.refresh()
        # Showing nothing, the 10 Hz stat has nothing to watch: an idle app wakes less.
        if self._index is None:
            self._poll_timer.pause()
        else:
            self._poll_timer.resume()
        self._poll(inline=False)
        self._size_pending = self._refresh_worker is not None
        if not self._size_pending:
            # No file (yet), so no refresh is coming: the size of nothing now.
            self._update_virtual_size()
            self.scroll_to(0, 0, animate=False, immediate=True, force=True)

    def pause_watching_log(self) -> None:
        """Stop watching the log while nobody sees this view (a full screen is on top)."""
        if self._poll_timer is not None:
            self._poll_timer.pause()

    def resume_watching_log(self) -> None:
        """Watch the log again, and show what it gained meanwhile at once."""
        if self._poll_timer is not None and self._index is not None:
            self._poll_timer.resume()
            self._poll(inline=False)

    def _poll(self, *, inline: bool = True) -> None:
        """One `os.stat`; index only when the file changed: a small growth of a log
        already indexed here (`inline`), else in a worker."""
        if self._index is None or self._path is None:
            return
        try:
            st = os.stat(self._path)
            key: tuple[int, int, int, int] | None = (
                st.st_dev,
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
            )
        except OSError:
            key = None
        if key == self._stat_key and not self._refresh_again:
            return
        self._stat_key = key
        if self._refresh_worker is not None and not self._refresh_worker.is_finished:
            self._refresh_again = True  # the running worker may have missed this change
            return
        self._refresh_again = False
        index = self._index
        if (
            inline
            and key is not None
            and index.indexed_bytes
            and 0 <= key[2] - index.indexed_bytes <= _INLINE_REFRESH_BYTES
        ):
            try:
                result = index.refresh(_INLINE_REFRESH_BYTES)
            except (OSError, ValueError):
                pass  # the worker below meets it again and says so
            else:
                self._apply_refresh(index, result)
                if not result.more:
                    return
        self._refresh_worker = self._index_worker(index)

    @work(thread=True, exclusive=True, exit_on_error=False, group="output-view-index")
    def _index_worker(self, index: LogIndex) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            result = index.refresh(_REFRESH_BUDGET)
            # Posted even when no line was added: the unfinished last line may
            # have grown, and the poll only starts this worker on a change.
            self.post_message(self._Refreshed(index, result))
            if not result.more:
                return

    @work(thread=True, exclusive=True, exit_on_error=False, group="output-view-head")
    def _head_worker(self, index: LogIndex) -> None:
        worker = get_current_worker()
        if index.scan_head(should_stop=lambda: worker.is_cancelled):
            self.post_message(self._HeadScanned(index))

    @on(_Refreshed)
    def _on_refreshed(self, message: _Refreshed) -> None:
        message.stop()
        self._apply_refresh(message.index, message.result)

    def _apply_refresh(self, index: LogIndex, result: RefreshResult) -> None:
        if index is not self._index:
            return
        self._size_pending = False
        width = self._content_width()
        if result.reset:
            self._strips.clear()
            self._max_width = 0
            self.new_lines = 0
            if self._query:
                self._match_offsets = array("Q")
                self._searched_upto = 0
                self._current_match = None
                self._search_done = False
        else:
            # The last line may have been unfinished and grown since it was drawn.
            self._strips.discard((self._line_count - 1, width))
        self._line_count = index.line_count
        if result.appended and not self.follow:
            self.new_lines += result.appended
        if index.head_pending and self._head_worker_generation != index.generation:
            self._head_worker_generation = index.generation
            self._head_worker(index)
        self._continue_search()
        self._update_virtual_size()
        if self.follow:
            self.jump_to_end()
        self.refresh()

    @on(_HeadScanned)
    def _on_head_scanned(self, message: _HeadScanned) -> None:
        message.stop()
        if message.index is not self._index:
            return
        prepended = self._index.merge_head()
        if not prepended:
            return
        self._strips.clear()
        self._line_count = self._index.line_count
        self._update_virtual_size()
        if self.follow:
            self.jump_to_end()
        else:
            # Keep the same text on screen: every line number moved down.
            self.scroll_to(y=self.scroll_y + prepended, animate=False, immediate=True, force=True)
        if self._current_match is None and self._match_offsets:
            # Matches found in the head had no line number until now.
            self._go_to_match(forward=True)
        self.refresh()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.group.startswith("output-view"):
            event.stop()
            error = event.worker.error
            self.notify(f"Output view: {error}", title="Cannot read output", severity="error")
            if event.worker is self._refresh_worker and self._size_pending:
                self._size_pending = False  # no refresh is coming for this log
                self._update_virtual_size()

    # -- geometry and follow -----------------------------------------------------

    def _overlay_rows(self) -> int:
        """Rows at the bottom covered by the docked bars; the content scrolls past them."""
        # Read from the classes, not `display`: styles update after a refresh.
        rows = 0
        if self.query_one("#output-view-search", Input).has_class("-open"):
            rows += 1
        if self.query_one("#output-view-new-lines", Label).has_class("-visible"):
            rows += 1
        return rows

    def _content_width(self) -> int:
        return self.scrollable_content_region.width

    def _update_virtual_size(self) -> None:
        if self._size_pending:
            return  # also when called later by a render of the last log's lines
        height = self._line_count + self._overlay_rows()
        width = max(self._max_width, self._content_width())
        if Size(width, height) != self.virtual_size:
            self.virtual_size = Size(width, height)
            if self.follow:
                self.jump_to_end()

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.new_lines = 0
            self.jump_to_end()
        self.post_message(self.FollowChanged(self, follow))

    def watch_new_lines(self, count: int) -> None:
        bar = self.query_one("#output-view-new-lines", Label)
        plural = "" if count == 1 else "s"
        bar.update(f"▼ {count} new line{plural}  (f or end: follow)")
        visible = count > 0
        if bar.has_class("-visible") != visible:
            bar.set_class(visible, "-visible")
            self._update_virtual_size()

    def action_scroll_end(self) -> None:
        # "end" always means "show me the newest output", even when already there.
        if self.follow:
            self.jump_to_end()
        self.follow = True

    # -- search ------------------------------------------------------------------

    def action_open_search(self) -> None:
        search = self.query_one("#output-view-search", Input)
        if not search.has_class("-open"):
            search.add_class("-open")
            self._update_virtual_size()
        search.value = self._query
        # At once (see MainScreen.action_filter): the words typed right after the key
        # are already queued, and they are the search's.
        self.screen.set_focus(search)

    def action_close_search(self) -> None:
        search = self.query_one("#output-view-search", Input)
        search.remove_class("-open")
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
            return self.query_one("#output-view-search", Input).has_class("-open")
        return True

    @on(Input.Submitted, "#output-view-search")
    def _on_search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.search(event.value)

    def _continue_search(self) -> None:
        """Search bytes appended since the search last ran, if it is idle."""
        index = self._index
        if index is None or not self._query or self._searched_upto >= index.indexed_bytes:
            return
        if len(self._match_offsets) >= _SEARCH_MAX_MATCHES:
            return  # capped: a search for "e" in 1 GB stops here
        if self._search_worker is None or self._search_worker.is_finished or self._search_done:
            self._start_search()

    def _start_search(self) -> None:
        if self._index is None or not self._query:
            return
        self._search_done = False
        self._search_worker = self._search_worker_run(
            self._index, self._query, self._searched_upto, self._match_offsets
        )

    @work(thread=True, exclusive=True, exit_on_error=False, group="output-view-search")
    def _search_worker_run(
        self, index: LogIndex, query: str, start: int, matches: array[int]
    ) -> None:
        """Append a key per matching line (see `LogIndex.find`) and report progress."""
        worker = get_current_worker()
        after = matches[-1] if matches else -1
        upto = start
        for upto, keys in index.find(
            query, start, after=after, should_stop=lambda: worker.is_cancelled
        ):
            matches.extend(keys[: _SEARCH_MAX_MATCHES - len(matches)])
            if len(matches) >= _SEARCH_MAX_MATCHES:
                break
            self.post_message(self._SearchProgress(matches, query, upto, False))
        if not worker.is_cancelled:
            self.post_message(self._SearchProgress(matches, query, upto, True))

    @on(_SearchProgress)
    def _on_search_progress(self, message: _SearchProgress) -> None:
        message.stop()
        if message.matches is not self._match_offsets:
            return  # from a search that was replaced or reset
        self._searched_upto = message.upto
        self._search_done = message.done
        self.post_message(
            self.SearchUpdated(self, self._query, len(self._match_offsets), message.done)
        )
        if self._current_match is None and self._match_offsets:
            self._go_to_match(forward=True)
        if message.done:
            self._continue_search()

    def _go_to_match(self, *, forward: bool) -> None:
        index = self._index
        matches = self._match_offsets
        if index is None or not self._query or not matches:
            return
        first_numbered = index.offset_of_line(0)
        if first_numbered is None:
            return
        current = self.current_match_line
        if current is None:
            # No match chosen yet: search from the top line of the screen.
            top = int(self.scroll_y)
            current = top - 1 if forward else top
        if forward:
            anchor = index.offset_of_line(current + 1)
            i = bisect_left(matches, anchor) if anchor is not None else len(matches)
            if i >= len(matches):
                i = bisect_left(matches, first_numbered)  # wrap to the first
            if i >= len(matches):
                return
        else:
            anchor = index.offset_of_line(max(current, 0))
            i = (bisect_left(matches, anchor) if anchor is not None else len(matches)) - 1
            if i < 0 or matches[i] < first_numbered:
                i = len(matches) - 1  # wrap to the last
            if matches[i] < first_numbered:
                return
        self._current_match = matches[i]
        line = index.line_at_offset(matches[i])
        if line is None:
            return
        self.follow = False
        self._strips.clear()
        height = self.scrollable_content_region.height - self._overlay_rows()
        self.scroll_to(y=max(0, line - height // 2), animate=False, immediate=True, force=True)
        self.refresh()

    # -- rendering ---------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        line = scroll_y + y
        width = self._content_width()
        base_style = self.visual_style.rich_style
        if self._line_count == 0 and y == 0:
            return self._placeholder(width, base_style)
        if self._index is None or line >= self._line_count:
            return Strip.blank(width, base_style)
        strip = self._strips.get((line, width))
        if strip is None:
            strip = self._render_lines(line, scroll_y + self.size.height, width)
        return strip.crop_extend(scroll_x, scroll_x + width, base_style)

    def _placeholder(self, width: int, base_style: Style) -> Strip:
        if self._path is None:
            message = "no run selected"
        elif self._stat_key is None:
            message = "waiting for output…"
        else:
            message = "no output yet"
        style = base_style + self.get_component_rich_style("output-view--placeholder")
        return Strip([Segment(f" {message}", style)]).crop_extend(0, width, base_style)

    def _render_lines(self, first: int, stop: int, width: int) -> Strip:
        """Render lines `[first, stop)` into the cache with one read; return the first."""
        assert self._index is not None
        raw_lines = self._index.read_raw_lines(first, max(1, stop - first))
        console = self.app.console
        base_style = self.visual_style.rich_style
        current_line = self.current_match_line
        result: Strip | None = None
        for number, raw in enumerate(raw_lines, start=first):
            key = (number, width)
            strip = self._strips.get(key)
            if strip is None:
                text = sanitize_line(raw)
                if self._query:
                    self._highlight(text, current=number == current_line)
                strip = Strip(text.render(console), text.cell_len).apply_style(base_style)
                self._strips.set(key, strip)
                if text.cell_len > self._max_width:
                    self._max_width = text.cell_len
                    self.call_later(self._update_virtual_size)
            if result is None:
                result = strip
        return result if result is not None else Strip.blank(width, base_style)

    def _highlight(self, text: Text, *, current: bool) -> None:
        name = "output-view--current-match" if current else "output-view--match"
        text.highlight_words(
            [self._query], self.get_component_rich_style(name), case_sensitive=False
        )
