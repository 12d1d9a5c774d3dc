"""Following a run's output (qqtui.core.logfollow) with a fake clock: no real waits."""

from __future__ import annotations

from pathlib import Path

from qqtui.core.logfollow import follow_file, follow_stored_tail, last_lines, tail_offset
from qqtui.core.records import OutputTail


class FakeTime:
    """A clock that moves only when the follower sleeps, and runs `on_sleep` each time."""

    def __init__(self, on_sleep: list[bytes], log: Path) -> None:
        self.now = 0.0
        self.writes = on_sleep
        self.log = log

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.writes:
            with self.log.open("ab") as fh:
                fh.write(self.writes.pop(0))


def test_tail_offset_and_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"one\ntwo\nthree\n")
    assert tail_offset(str(log), 2) == len(b"one\n")
    assert tail_offset(str(log), 0) == log.stat().st_size
    assert tail_offset(str(log), 9) == 0
    assert last_lines(b"one\ntwo\nthree\n", 2) == b"two\nthree\n"
    assert last_lines(b"one\ntwo\nthree", 1) == b"three"
    assert last_lines(b"one\ntwo", None) == b"one\ntwo"


def test_follow_reads_what_is_written_until_the_run_ends(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"first\n")
    fake = FakeTime([b"second\n", b"", b"more\n"], log)

    def run_ended() -> bool:
        if fake.now < 1.0:
            return False
        # The run's last line lands after the follower's last read: it must still come.
        with log.open("ab") as fh:
            fh.write(b"the last\n")
        return True

    chunks = follow_file(
        str(log), offset=0, follow=True, run_ended=run_ended, sleep=fake.sleep, clock=fake.clock
    )
    assert b"".join(chunks) == b"first\nsecond\nmore\nthe last\n"
    assert 1.0 <= fake.now < 2.0


def test_without_follow_one_read_and_a_missing_log_is_empty(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    assert list(follow_file(str(log), offset=0, follow=False, run_ended=lambda: True)) == []
    log.write_bytes(b"a\nb\n")
    assert b"".join(follow_file(str(log), offset=2, follow=False, run_ended=lambda: True)) == b"b\n"


def test_whole_lines_holds_a_partial_line_back_until_the_end(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"done\npart")
    chunks = list(
        follow_file(str(log), offset=0, follow=False, run_ended=lambda: True, whole_lines=True)
    )
    assert chunks == [b"done\n", b"part"]


def _tail(data: bytes, size: int) -> OutputTail:
    return OutputTail(
        run_id=1, attempt=1, host="h2", log_path="/x", size=size, tail=data, updated_at=0.0
    )


def test_stored_tail_follow_says_what_scrolled_out_of_the_window() -> None:
    tails = [_tail(b"b\nc\n", 6), _tail(b"XYZW", 20)]
    ended = iter([False, True])
    chunks = follow_stored_tail(
        _tail(b"a\nb\n", 4),
        lines=1,
        follow=True,
        read_tail=lambda: tails.pop(0),
        run_ended=lambda: next(ended),
        sleep=lambda _s: None,
    )
    assert list(chunks) == [b"b\n", b"c\n", b"\n[qqtui: 10 bytes not shown]\n", b"XYZW"]
