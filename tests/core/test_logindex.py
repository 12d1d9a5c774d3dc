"""LogIndex against real files: growth, tail-first open, long lines, rewrites, memory."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from qqtui.core import logindex
from qqtui.core.logindex import LogIndex


def reference_lines(data: bytes, cap: int) -> list[bytes]:
    """Display lines as the index contract defines them, computed the slow, obvious way."""
    out: list[bytes] = []
    segments = data.split(b"\n")
    for i, line in enumerate(segments):
        has_newline = i < len(segments) - 1
        if not has_newline and line == b"":
            break  # a final newline ends the last line; it does not start one
        pieces: list[bytes] = []
        start = 0
        while len(line) - start > cap:
            cut = start + cap
            back = cut
            while back > max(cut - 3, start + 1) and 0x80 <= line[back] <= 0xBF:
                back -= 1
            if 0x80 <= line[back] <= 0xBF:
                back = cut  # no character boundary within reach: cut anyway
            pieces.append(line[start:back])
            start = back
        pieces.append(line[start:])
        if has_newline and pieces[-1].endswith(b"\r"):
            pieces[-1] = pieces[-1][:-1]
        out.extend(pieces)
    return out


def expected(data: bytes, cap: int) -> list[str]:
    return [line.decode("utf-8", errors="replace") for line in reference_lines(data, cap)]


def read_all(index: LogIndex) -> list[str]:
    return index.read_lines(0, index.line_count)


def test_lines_crlf_and_partial_last_line(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"alpha\r\nbeta\n\ngamma")
    with LogIndex(path) as index:
        result = index.refresh()
        assert result.reset
        assert index.line_count == 4
        assert read_all(index) == ["alpha", "beta", "", "gamma"]
        assert index.read_lines(1, 2) == ["beta", ""]
        assert index.read_lines(3, 100) == ["gamma"]
        assert index.read_lines(10, 5) == []


def test_appends_show_up_and_partial_line_completes(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"one\ntw")
    with LogIndex(path) as index:
        index.refresh()
        assert read_all(index) == ["one", "tw"]
        with path.open("ab") as f:
            f.write(b"o\nthree\n")
        result = index.refresh()
        assert not result.reset
        assert result.appended == 1  # "two" was already counted as a partial line
        assert read_all(index) == ["one", "two", "three"]
        assert index.refresh().appended == 0


def test_missing_file_then_created(tmp_path: Path) -> None:
    path = tmp_path / "later.log"
    with LogIndex(path) as index:
        assert index.refresh().line_count == 0
        path.write_bytes(b"hello\n")
        result = index.refresh()
        assert result.reset and result.line_count == 1
        assert read_all(index) == ["hello"]
        path.unlink()
        assert index.refresh().reset
        assert index.line_count == 0


@pytest.mark.parametrize("read_bytes", [1, 3, 7, 64, 1 << 20])
def test_matches_reference_across_block_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_bytes: int
) -> None:
    monkeypatch.setattr(logindex, "_READ_BYTES", read_bytes)
    rng = random.Random(read_bytes)
    alphabet = [b"a", b"b", b"\n", b"\r", "é".encode(), "日".encode(), "🙂".encode(), b"\xff"]
    data = b"".join(rng.choice(alphabet) for _ in range(3000))
    path = tmp_path / "fuzz.log"
    path.write_bytes(data)
    with LogIndex(path, max_line_bytes=16) as index:
        index.refresh()
        assert read_all(index) == expected(data, 16)


def test_growth_in_random_pieces_matches_reference(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "grow.log"
    path.write_bytes(b"")
    data = b""
    with LogIndex(path, max_line_bytes=10) as index:
        for _ in range(200):
            piece = bytes(rng.choice(b"xyz\n\n\xc3\xa9") for _ in range(rng.randint(0, 30)))
            with path.open("ab") as f:
                f.write(piece)
            data += piece
            index.refresh()
            assert read_all(index) == expected(data, 10)


def test_tail_first_open_then_head_merge(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    lines = [f"line {i:05d}" for i in range(5000)]
    path.write_text("\n".join(lines) + "\n")
    with LogIndex(path, tail_lines=50) as index:
        index.refresh()
        assert index.head_pending
        tail_count = index.line_count
        assert 50 <= tail_count < 100
        # The last screen is readable before the head is scanned.
        assert index.read_lines(tail_count - 2, 2) == ["line 04998", "line 04999"]
        assert not index.head_ready
        assert index.scan_head()
        assert index.head_ready
        # Numbering does not change until the owner merges.
        assert index.line_count == tail_count
        prepended = index.merge_head()
        assert prepended == 5000 - tail_count
        assert not index.head_pending
        assert read_all(index) == lines


def test_appends_during_head_scan_survive_merge(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_text("".join(f"{i}\n" for i in range(3000)))
    with LogIndex(path, tail_lines=10) as index:
        index.refresh()
        with path.open("a") as f:
            f.write("late 1\nlate 2\n")
        index.refresh()
        assert index.read_lines(index.line_count - 1, 1) == ["late 2"]
        assert index.scan_head()
        index.merge_head()
        assert read_all(index) == [str(i) for i in range(3000)] + ["late 1", "late 2"]


def test_stopped_head_scan_does_not_merge(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_text("".join(f"{i}\n" for i in range(3000)))
    with LogIndex(path, tail_lines=10) as index:
        index.refresh()
        assert not index.scan_head(should_stop=lambda: True)
        assert index.merge_head() == 0
        assert index.head_pending


def test_ten_megabyte_line_without_newline_is_cut(tmp_path: Path) -> None:
    path = tmp_path / "one.log"
    path.write_bytes(b"x" * (10 * 1024 * 1024))
    started = time.perf_counter()
    with LogIndex(path) as index:
        index.refresh()
        elapsed = time.perf_counter() - started
        assert elapsed < 5, elapsed
        assert index.line_count == 160  # 10 MiB / 64 KiB pieces
        last = index.read_lines(index.line_count - 1, 1)
        assert last == ["x" * 65536]
        assert index.scan_head() is False  # the whole file is the tail: nothing pending


def test_long_multibyte_line_is_not_cut_inside_a_character(tmp_path: Path) -> None:
    path = tmp_path / "wide.log"
    text = "日本語" * 1000 + "\n" + "é" * 999 + "\n"
    path.write_text(text, encoding="utf-8")
    with LogIndex(path, max_line_bytes=100) as index:
        index.refresh()
        pieces = read_all(index)
        assert all("\ufffd" not in piece for piece in pieces)
        assert all(len(piece.encode()) <= 100 for piece in pieces)
        assert "".join(pieces) == text.replace("\n", "")


def test_truncation_reindexes(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"a\nb\nc\n")
    with LogIndex(path) as index:
        index.refresh()
        with path.open("r+b") as f:
            f.truncate(0)
        path.write_bytes(b"z\n")
        result = index.refresh()
        assert result.reset
        assert read_all(index) == ["z"]


def test_rewrite_longer_than_before_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"first run line\n")
    with LogIndex(path) as index:
        index.refresh()
        with path.open("r+b") as f:  # same inode, truncated and regrown between polls
            f.truncate(0)
            f.write(b"second run, a much longer line\nand more\n")
        result = index.refresh()
        assert result.reset
        assert read_all(index) == ["second run, a much longer line", "and more"]


def test_replaced_file_reindexes(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"old 1\nold 2\nold 3\n")
    with LogIndex(path) as index:
        index.refresh()
        other = tmp_path / "new.log"
        other.write_bytes(b"new 1\nnew 2\nnew 3\nnew 4\n")
        os.replace(other, path)
        result = index.refresh()
        assert result.reset
        assert read_all(index) == ["new 1", "new 2", "new 3", "new 4"]


def test_index_memory_is_at_most_8_5_bytes_per_line(tmp_path: Path) -> None:
    path = tmp_path / "many.log"
    block = b"".join(b"%d\n" % i for i in range(1000))
    with path.open("wb") as f:
        for _ in range(1000):
            f.write(block)
    with LogIndex(path, tail_lines=100) as index:
        index.refresh()
        assert index.scan_head()
        index.merge_head()
        assert index.line_count == 1_000_000
        per_line = index.index_nbytes / index.line_count
        assert per_line <= 8.5, per_line


def test_budget_makes_refresh_incremental(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"0123456789\n" * 1000)
    with LogIndex(path, tail_scan_bytes=0) as index:  # no tail-first: index forwards
        result = index.refresh(budget_bytes=5000)
        assert result.more
        assert 0 < result.line_count < 1000
        while index.refresh(budget_bytes=5000).more:
            pass
        assert index.line_count == 1000


def test_line_at_offset_and_back(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"aa\nbbbb\ncc\n")
    with LogIndex(path) as index:
        index.refresh()
        assert index.line_at_offset(0) == 0
        assert index.line_at_offset(4) == 1
        assert index.line_at_offset(8) == 2
        assert index.line_at_offset(11) is None
        assert index.offset_of_line(2) == 8


def test_concurrent_writer_refresher_and_reader(tmp_path: Path) -> None:
    path = tmp_path / "live.log"
    path.write_bytes(b"")
    total = 20_000
    done = threading.Event()

    def write() -> None:
        with path.open("ab", buffering=0) as f:
            for i in range(total):
                f.write(b"row %06d\n" % i)
        done.set()

    seen_bad: list[str] = []
    with LogIndex(path) as index:
        writer = threading.Thread(target=write)
        writer.start()
        while not done.is_set():
            index.refresh()
            n = index.line_count
            # Complete lines must be whole rows; only the last may still be growing.
            for line in index.read_lines(max(0, n - 5), 4 if n >= 5 else 0):
                if not (len(line) == 10 and line.startswith("row ")):
                    seen_bad.append(line)
        writer.join()
        index.refresh()
        if index.head_pending:
            # The writer got ahead of the first refresh: that open was tail-first.
            assert index.scan_head()
            index.merge_head()
        assert seen_bad == []
        assert index.line_count == total
        assert index.read_lines(0, 1) == ["row 000000"]
        assert index.read_lines(total - 1, 1) == [f"row {total - 1:06d}"]


def test_close_releases_the_descriptor_and_stops_refreshing(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"a\n")
    index = LogIndex(path)
    index.refresh()
    open_fds = len(os.listdir("/proc/self/fd"))
    index.close()
    assert len(os.listdir("/proc/self/fd")) == open_fds - 1
    assert index.refresh().line_count == 0
    assert len(os.listdir("/proc/self/fd")) == open_fds - 1


def test_logindex_imports_neither_textual_nor_rich() -> None:
    code = (
        "import sys, qqtui.core.logindex; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_find_reports_each_matching_line_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny blocks so matches straddle block borders.
    monkeypatch.setattr(logindex, "_FIND_READ_BYTES", 5)
    path = tmp_path / "run.log"
    path.write_bytes(b"no\nerror one ERROR two\nfine\nan Error\nerr\nor\n")
    with LogIndex(path) as index:
        index.refresh()
        keys = [key for _, found in index.find("error") for key in found]
        assert [index.line_at_offset(key) for key in keys] == [1, 3]
        assert keys == [index.offset_of_line(1), index.offset_of_line(3)]
        # Continuing a scan from where it stopped reports only the new lines.
        scanned = index.indexed_bytes
        with path.open("ab") as f:
            f.write(b"late error\n")
        index.refresh()
        more = [k for _, found in index.find("error", scanned, after=keys[-1]) for k in found]
        assert [index.line_at_offset(key) for key in more] == [6]


def test_find_in_unnumbered_head_gives_offsets_that_map_after_merge(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_text("needle first\n" + "".join(f"{i}\n" for i in range(3000)) + "needle last\n")
    with LogIndex(path, tail_lines=10) as index:
        index.refresh()
        keys = [key for _, found in index.find("needle") for key in found]
        assert len(keys) == 2
        assert index.line_at_offset(keys[0]) is None  # head not numbered yet
        assert index.scan_head()
        index.merge_head()
        assert [index.line_at_offset(key) for key in keys] == [0, 3001]


def test_find_stops_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"x\n" * 100)
    with LogIndex(path) as index:
        index.refresh()
        assert list(index.find("x", should_stop=lambda: True)) == []
        assert list(index.find("")) == []
