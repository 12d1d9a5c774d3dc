"""The waiting flag end to end on a real tty run: `qqtui add --tty` of a program that
prints "Apply this change? [y/n]" and reads its terminal; a real worker flags it from
the screen, an answer sent through the run's socket clears it, the run succeeds."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from qqtui.core import sessions, ttyproto
from qqtui.core.intents import run_paths
from qqtui.core.snapshot import Snapshot

from ..conftest import REPO, Workers, wait_for, wait_for_status

SHIM = (REPO / "qqtui" / "core" / "runshim.py").read_text()
pytestmark = pytest.mark.skipif(
    "openpty" not in SHIM and "forkpty" not in SHIM,
    reason="the run shim does not put runs on a pty yet (#15 item 1)",
)

ASKER = (
    "import sys\n"
    "print('\\x1b[2J\\x1b[Hediting x.py')\n"
    "print('Apply this change? [y/n] ', end='', flush=True)\n"
    "answer = sys.stdin.readline().strip()\n"
    "print('applied' if answer == 'y' else 'refused', flush=True)\n"
    "sys.exit(0 if answer == 'y' else 1)\n"
)


def send(sock_path: Path, data: bytes, timeout: float = 10.0) -> None:
    """Send `data` to the run's terminal as a "send" client; wait for the shim's ACK."""
    reader = ttyproto.FrameReader(ttyproto.SHIM_KINDS, ttyproto.MAX_SHIM_FRAME)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        sock.sendall(ttyproto.frame(ttyproto.HELLO, {"v": 1, "name": "test", "want": "send"}))
        sock.sendall(ttyproto.frame(ttyproto.INPUT, data))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            assert chunk, "the shim closed the connection before its ACK"
            for kind, payload in reader.feed(chunk):
                assert kind != ttyproto.ERROR, payload
                if kind == ttyproto.ACK:
                    return
    raise AssertionError("no ACK from the shim")


def test_a_tty_prompt_waits_and_an_answer_ends_the_wait(
    home: Path,
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    run_id = int(qq("add", "--tty", "--", sys.executable, "-c", ASKER, check=True).stdout)
    workers.start()
    snap = Snapshot(db_url)
    wait_for(lambda: snap.run(run_id).waiting, 20, what="the waiting flag")  # type: ignore[union-attr]
    run = snap.run(run_id)
    assert run is not None and run.waiting_reason is not None
    assert run.waiting_reason == "prompt on screen: Apply this change? [y/n]"
    _, run_dir = run_paths(home, run)
    send(run_dir / sessions.TTY_SOCKET, b"y\r")
    done = wait_for_status(db_url, run_id, {"succeeded", "failed"}, 30)
    assert done.status.value == "succeeded" and not done.waiting
    ready = [e.reason for e in snap.events(run_id) if e.kind == "ready"]
    # The input, or the echo and "applied" it caused, whichever the worker saw first;
    # or the run ended first, which clears it too.
    assert ready in ([], ["input: input reached its terminal"], ["output: new output"])
