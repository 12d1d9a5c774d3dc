"""`qqtui send` against real tty runs under a real worker: what reaches the program,
and one clear line for every run that cannot take input."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from qqtui.core.snapshot import Snapshot
from qqtui.core.ttykeys import KEY_BYTES, key_bytes

from .conftest import Workers, wait_for, wait_for_status


def add(qq, *args: str) -> int:  # type: ignore[no-untyped-def]
    return int(qq("add", *args, check=True).stdout.strip())


def wait_socket(home: Path, db_url: str, run_id: int) -> None:
    from qqtui.core.ttyclient import tty_socket

    def served() -> bool:
        run = Snapshot(db_url).run(run_id)
        return run is not None and bool(run.pid) and tty_socket(home, run).exists()

    wait_for(served, 15, what=f"run {run_id}'s terminal")


def one_error_line(proc) -> str:  # type: ignore[no-untyped-def]
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_text_and_enter_reach_the_program(
    tmp_path: Path,
    home: Path,
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    answer = tmp_path / "answer.txt"
    program = f"line = input('Apply this change? [y/n] '); open({str(answer)!r}, 'w').write(line)"
    run_id = add(qq, "--tty", "--", sys.executable, "-c", program)
    workers.start()
    wait_socket(home, db_url, run_id)
    sent = qq("send", str(run_id), "yes please", check=True)
    assert sent.stdout.strip() == f"run {run_id}: sent 11 bytes"
    wait_for_status(db_url, run_id, {"succeeded"}, 20)
    assert answer.read_text() == "yes please"


def test_no_enter_then_keys(
    tmp_path: Path,
    home: Path,
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    answer = tmp_path / "answer.txt"
    program = f"line = input(); open({str(answer)!r}, 'w').write(line)"
    run_id = add(qq, "--tty", "--", sys.executable, "-c", program)
    workers.start()
    wait_socket(home, db_url, run_id)
    qq("send", str(run_id), "ab", "--no-enter", check=True)
    # The terminal's line editing applies: backspace takes the b back.
    qq("send", str(run_id), "--key", "backspace", "--key", "y", "--key", "enter", check=True)
    wait_for_status(db_url, run_id, {"succeeded"}, 20)
    assert answer.read_text() == "ay"


def test_ctrl_c_interrupts_the_foreground_program(
    home: Path,
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    run_id = add(qq, "--tty", "--", "sleep", "60")
    workers.start()
    wait_socket(home, db_url, run_id)
    assert qq("send", str(run_id), "--key", "ctrl-c").returncode == 0
    done = wait_for_status(db_url, run_id, {"failed"}, 20)
    assert done.signal == signal.SIGINT


def test_every_run_that_cannot_take_input_gets_one_clear_line(
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    queued = add(qq, "--tty", "--", "true")
    line = one_error_line(qq("send", str(queued), "hi"))
    assert line == f"qqtui: error: run {queued} is not running yet (queued)"

    workers.start()
    wait_for_status(db_url, queued, {"succeeded"}, 20)
    line = one_error_line(qq("send", str(queued), "hi"))
    assert line == f"qqtui: error: run {queued} has ended (succeeded)"

    plain = add(qq, "--", "sleep", "30")
    wait_for(lambda: Snapshot(db_url).run(plain).pid, 15)  # type: ignore[union-attr]
    line = one_error_line(qq("send", str(plain), "hi"))
    assert line == f"qqtui: error: run {plain} has no terminal (start it with --tty)"

    line = one_error_line(qq("send", str(plain), "--key", "f13"))
    assert line.startswith("qqtui: error: unknown key 'f13': use ctrl-a..ctrl-z")
    line = one_error_line(qq("send", "999", "hi"))
    assert line == "qqtui: error: no run with id 999"
    assert qq("kill", str(plain), check=True).returncode == 0


def test_send_usage_errors(qq) -> None:  # type: ignore[no-untyped-def]
    for args, message in [
        (["1"], "nothing to send: give TEXT or --key NAME"),
        (["1", "x", "--key", "y"], "give TEXT or --key, not both"),
        (["1", "--key", "y", "--no-enter"], "--no-enter applies to TEXT only"),
    ]:
        assert one_error_line(qq("send", *args)) == f"qqtui: error: {message}"


def test_key_names() -> None:
    assert key_bytes("enter") == b"\r" and key_bytes("ctrl-c") == b"\x03"
    assert key_bytes("ctrl-]") == b"\x1d" and key_bytes("Esc") == b"\x1b"
    assert key_bytes("y") == b"y" and key_bytes("1") == b"1" and key_bytes("N") == b"N"
    assert key_bytes("up") == b"\x1b[A" and key_bytes("pgdn") == b"\x1b[6~"
    assert {key_bytes(f"ctrl-{c}") for c in "abcdefghijklmnopqrstuvwxyz"} == {
        bytes([i]) for i in range(1, 27)
    }
    for bad in ["", "ctrl-1", "f13", "\x1b", "enterr"]:
        with pytest.raises(ValueError, match="unknown key"):
            key_bytes(bad)
    assert all(isinstance(v, bytes) and v for v in KEY_BYTES.values())
