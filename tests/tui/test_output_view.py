"""OutputView in a tiny app: live tail, follow, search, hostile output, huge lines."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from rich.style import Style
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import Input, Label

from qqtui.core.logindex import LogIndex
from qqtui.tui.widgets.output_view import OutputView

SIZE = (100, 30)


class OutputApp(App[None]):
    """Hosts one OutputView and records the messages it sends."""

    def __init__(self, path: Path | None) -> None:
        super().__init__()
        self.path = path
        self.follow_events: list[bool] = []
        self.search_events: list[tuple[str, int, bool]] = []

    def compose(self) -> ComposeResult:
        yield OutputView(self.path, id="out")

    def on_mount(self) -> None:
        self.query_one(OutputView).focus()

    def on_output_view_follow_changed(self, event: OutputView.FollowChanged) -> None:
        assert event.control is self.query_one(OutputView)
        self.follow_events.append(event.follow)

    def on_output_view_search_updated(self, event: OutputView.SearchUpdated) -> None:
        self.search_events.append((event.query, event.matches, event.done))


async def wait_until(
    pilot: Pilot[None], condition: Callable[[], bool], timeout: float = 5.0
) -> float:
    """Let the app run until `condition` holds; returns the seconds it took."""
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.01)
    return time.perf_counter() - started


def screen_lines(view: OutputView) -> list[str]:
    """The text the view draws, row by row, through its Line API."""
    return [view.render_line(y).text.strip() for y in range(view.scrollable_content_region.height)]


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def numbered(path: Path, count: int, start: int = 0) -> None:
    append(path, b"".join(b"line %d\n" % i for i in range(start, start + count)))


@asynccontextmanager
async def numbered_log_shown(
    tmp_path: Path, lines: int
) -> AsyncIterator[tuple[OutputApp, Pilot[None], OutputView, Path]]:
    """An app showing a log of `lines` numbered lines, once they are all indexed."""
    log = tmp_path / "run.log"
    numbered(log, lines)
    app = OutputApp(log)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(OutputView)
        await wait_until(pilot, lambda: view.line_count == lines)
        yield app, pilot, view, log


@pytest.fixture
def head_scan_release(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Holds every head scan of a LogIndex (up to 10 s) until the test sets this event:
    till then only the tail of a big log is numbered."""
    release = threading.Event()
    original = LogIndex.scan_head

    def gated_scan_head(self: LogIndex, should_stop: Callable[[], bool] | None = None) -> bool:
        release.wait(10)
        return original(self, should_stop)

    monkeypatch.setattr(LogIndex, "scan_head", gated_scan_head)
    return release


@pytest.mark.asyncio
async def test_starts_at_the_end_and_appended_line_appears(tmp_path: Path) -> None:
    async with numbered_log_shown(tmp_path, 100) as (_app, pilot, view, log):
        await pilot.pause()
        assert view.follow
        assert screen_lines(view)[-1] == "line 99"
        append(log, b"fresh output\n")
        took = await wait_until(pilot, lambda: "fresh output" in screen_lines(view))
        # The contract is ~100 ms (one 0.1 s poll); leave room for a loaded CI box.
        assert took < 1.0
        assert screen_lines(view)[-1] == "fresh output"


@pytest.mark.asyncio
async def test_unfinished_last_line_is_redrawn_as_it_grows(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_bytes(b"downloading 10%")
    app = OutputApp(log)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(OutputView)
        await wait_until(pilot, lambda: "downloading 10%" in screen_lines(view))
        append(log, b" 20% done\n")
        await wait_until(pilot, lambda: "downloading 10% 20% done" in screen_lines(view))


@pytest.mark.asyncio
async def test_follow_pauses_on_scroll_up_counts_new_lines_and_resumes(tmp_path: Path) -> None:
    async with numbered_log_shown(tmp_path, 200) as (app, pilot, view, log):
        await pilot.pause()
        await pilot.press("up", "up", "up")
        await wait_until(pilot, lambda: not view.follow)
        assert app.follow_events[-1] is False
        top_before = screen_lines(view)[0]
        numbered(log, 3, start=200)
        await wait_until(pilot, lambda: view.new_lines == 3)
        await pilot.pause()
        bar = view.query_one("#output-view-new-lines", Label)
        assert bar.display
        assert "3 new lines" in str(bar.render())
        # Paused: the screen does not move while output arrives.
        assert screen_lines(view)[0] == top_before
        await pilot.press("end")
        await wait_until(pilot, lambda: view.follow)
        await pilot.pause()
        assert view.new_lines == 0
        assert app.follow_events[-1] is True
        assert "line 202" in screen_lines(view)
        assert not bar.has_class("-visible")


@pytest.mark.asyncio
async def test_follow_key_toggles(tmp_path: Path) -> None:
    async with numbered_log_shown(tmp_path, 200) as (_app, pilot, view, log):
        await pilot.press("f")
        assert not view.follow
        numbered(log, 5, start=200)
        await wait_until(pilot, lambda: view.new_lines == 5)
        assert "line 204" not in screen_lines(view)
        await pilot.press("f")
        await pilot.pause()
        assert view.follow and view.new_lines == 0
        assert screen_lines(view)[-1] == "line 204"


@pytest.mark.asyncio
async def test_search_highlights_and_n_and_shift_n_move(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    lines = [f"row {i}" + (" needle here" if i in (10, 40, 70) else "") for i in range(100)]
    log.write_text("\n".join(lines) + "\n")
    app = OutputApp(log)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(OutputView)
        await wait_until(pilot, lambda: view.line_count == 100)
        await pilot.press("ctrl+f")
        search = view.query_one("#output-view-search", Input)
        assert search.has_focus
        await pilot.press(*"NEEDLE", "enter")
        await wait_until(pilot, lambda: view.current_match_line is not None)
        assert view.match_count == 3
        assert app.search_events[-1] == ("NEEDLE", 3, True)
        # From the bottom of the file the search wraps to the first match.
        assert view.current_match_line == 10
        await pilot.press("enter")
        assert view.current_match_line == 40
        await pilot.press("escape")
        assert view.has_focus and not search.display
        await pilot.press("n")
        assert view.current_match_line == 70
        await pilot.press("n")
        assert view.current_match_line == 10  # wraps
        await pilot.press("N")
        assert view.current_match_line == 70
        await pilot.press("N")
        assert view.current_match_line == 40
        await pilot.pause()

        row = int(view.scroll_y)
        rendered = {40 - row: "current", 10 - row: "other"}
        current_style = view.get_component_rich_style("output-view--current-match")
        match_style = view.get_component_rich_style("output-view--match")
        assert current_style.bgcolor != match_style.bgcolor
        for y, kind in rendered.items():
            if not 0 <= y < view.scrollable_content_region.height:
                continue
            segments = list(view.render_line(y))
            hit = [s for s in segments if s.text.lower() == "needle"]
            assert hit, segments
            expected = current_style if kind == "current" else match_style
            assert isinstance(hit[0].style, Style)
            assert hit[0].style.bgcolor == expected.bgcolor
            plain = [s for s in segments if s.text.startswith("row")]
            assert plain[0].style is None or plain[0].style.bgcolor != expected.bgcolor


@pytest.mark.asyncio
async def test_search_finds_lines_appended_later(tmp_path: Path) -> None:
    async with numbered_log_shown(tmp_path, 50) as (app, pilot, view, log):
        view.search("ERROR")
        await wait_until(pilot, lambda: bool(app.search_events) and app.search_events[-1][2])
        assert view.match_count == 0
        append(log, b"ERROR: disk full\n")
        await wait_until(pilot, lambda: view.match_count == 1)
        await pilot.press("n")
        assert view.current_match_line == 50


@pytest.mark.asyncio
async def test_hostile_output_renders_inert(tmp_path: Path) -> None:
    log = tmp_path / "evil.log"
    log.write_bytes(
        b"\x1b]52;c;ZXZpbA==\x07clipboard\n"
        b"\x1b]0;owned title\x1b\\title\n"
        b"before\x1b[2J\x1b[Hafter\n"
        b"status\x1b[6n?\n"
        b"[bold]x[/bold]\n"
        b"bad \xff\xfe utf8\n"
        b"\x1b[31mred\x1b[0m\n"
    )
    app = OutputApp(log)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(OutputView)
        await wait_until(pilot, lambda: view.line_count == 7)
        await pilot.pause()
        rows = screen_lines(view)[:7]
        assert rows == [
            "clipboard",
            "title",
            "beforeafter",
            "status?",
            "[bold]x[/bold]",
            "bad \ufffd\ufffd utf8",
            "red",
        ]
        for y in range(7):
            for segment in view.render_line(y):
                assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in segment.text)
        markup = [s for s in view.render_line(4) if "[bold]" in s.text]
        assert markup and not (markup[0].style and markup[0].style.bold)
        red = [s for s in view.render_line(6) if s.text == "red"]
        assert red[0].style is not None and red[0].style.color is not None
        assert red[0].style.color.number == 1
        assert app.title != "owned title"


@pytest.mark.asyncio
async def test_ten_megabyte_line_without_newline_does_not_hang(tmp_path: Path) -> None:
    log = tmp_path / "one-line.log"
    log.write_bytes(b"y" * (10 * 1024 * 1024))
    app = OutputApp(log)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(OutputView)
        took = await wait_until(pilot, lambda: view.line_count == 160, timeout=10)
        assert took < 5
        started = time.perf_counter()
        rows = screen_lines(view)
        assert time.perf_counter() - started < 2
        assert rows[-1].startswith("y" * 90)
        await pilot.press("home")
        await pilot.pause()
        assert screen_lines(view)[0].startswith("y")


@pytest.mark.asyncio
async def test_set_path_switches_files_and_none_shows_placeholder(tmp_path: Path) -> None:
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text("from a\n")
    second.write_text("from b\n")
    app = OutputApp(first)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(OutputView)
        await wait_until(pilot, lambda: screen_lines(view)[0] == "from a")
        view.set_path(second)
        await wait_until(pilot, lambda: screen_lines(view)[0] == "from b")
        view.set_path(None)
        await pilot.pause()
        assert view.line_count == 0
        assert screen_lines(view)[0] == "no run selected"
        view.set_path(tmp_path / "not-yet.log")
        await pilot.pause(0.2)
        assert screen_lines(view)[0] == "waiting for output…"
        (tmp_path / "not-yet.log").write_text("started\n")
        await wait_until(pilot, lambda: screen_lines(view)[0] == "started")


@pytest.mark.asyncio
async def test_truncated_log_is_shown_from_scratch(tmp_path: Path) -> None:
    async with numbered_log_shown(tmp_path, 100) as (_app, pilot, view, log):
        log.write_text("second attempt\n")
        await wait_until(pilot, lambda: view.line_count == 1)
        assert screen_lines(view)[0] == "second attempt"


@pytest.mark.asyncio
async def test_head_merge_keeps_a_paused_view_on_the_same_text(
    tmp_path: Path, head_scan_release: threading.Event
) -> None:
    log = tmp_path / "big.log"
    numbered(log, 20_000)
    app = OutputApp(log)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(OutputView)
        await wait_until(pilot, lambda: view.line_count > 0)
        tail_count = view.line_count
        assert tail_count < 20_000  # only the tail is numbered so far
        await pilot.pause()
        assert view.scroll_y > 0
        await pilot.press("pageup")
        await wait_until(pilot, lambda: not view.follow)
        await pilot.pause()
        before = screen_lines(view)
        head_scan_release.set()
        await wait_until(pilot, lambda: view.line_count == 20_000)
        await pilot.pause()
        assert screen_lines(view) == before
        await pilot.press("home")
        await pilot.pause()
        assert screen_lines(view)[0] == "line 0"


def test_every_binding_has_an_id_and_a_description() -> None:
    bindings = [b for b in OutputView.BINDINGS if isinstance(b, Binding)]
    assert len(bindings) == len(OutputView.BINDINGS)
    assert {b.key for b in bindings} >= {"ctrl+f", "n", "N", "f", "escape"}
    for binding in bindings:
        assert binding.id and binding.id.startswith("output_view.")
        assert binding.description


@pytest.mark.asyncio
async def test_match_in_the_unnumbered_head_is_reached_after_merge(
    tmp_path: Path, head_scan_release: threading.Event
) -> None:
    log = tmp_path / "big.log"
    append(log, b"the needle is near the top\n")
    numbered(log, 20_000)
    app = OutputApp(log)
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(OutputView)
        await wait_until(pilot, lambda: view.line_count > 0)
        view.search("needle")
        await wait_until(pilot, lambda: bool(app.search_events) and app.search_events[-1][2])
        assert view.match_count == 1
        assert view.current_match_line is None  # its line has no number yet
        head_scan_release.set()
        await wait_until(pilot, lambda: view.current_match_line == 0)
        await pilot.pause()
        assert "the needle is near the top" in screen_lines(view)


@pytest.mark.asyncio
async def test_layout_clamping_the_scroll_does_not_resume_follow(tmp_path: Path) -> None:
    async with numbered_log_shown(tmp_path, 200) as (_app, pilot, view, _log):
        await pilot.pause()
        await pilot.press("f")
        assert not view.follow
        before = view.scroll_y
        await pilot.resize_terminal(100, 40)  # taller: the bottom position moves up
        await wait_until(pilot, lambda: view.scroll_y < before)
        await pilot.pause()
        assert not view.follow
        await pilot.press("end")
        assert view.follow
