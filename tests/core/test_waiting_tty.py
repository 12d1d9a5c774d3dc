"""The waiting flag end to end on a real tty run: `qqtui add --tty` of a program that
prints "Apply this change? [y/n]" and reads its terminal; a real worker flags it from
the screen, `qqtui send ID y` answers it, the run succeeds and waits no more."""

from __future__ import annotations

import sys

import pytest

from qqtui.core.snapshot import Snapshot

from ..conftest import REPO, Workers, wait_for, wait_for_status

SHIM = (REPO / "qqtui" / "core" / "runshim.py").read_text()
pytestmark = pytest.mark.skipif(
    "openpty" not in SHIM and "forkpty" not in SHIM,
    reason="the run shim does not put runs on a pty yet (#15 item 1)",
)

ASKER = (
    "import sys, time\n"
    "print('\\x1b[2J\\x1b[Hediting x.py')\n"
    "print('Apply this change? [y/n] ', end='', flush=True)\n"
    "answer = sys.stdin.readline().strip()\n"
    "print('applied' if answer == 'y' else 'refused', flush=True)\n"
    "time.sleep(1.5)\n"
    "sys.exit(0 if answer == 'y' else 1)\n"
)


def test_a_tty_prompt_waits_and_an_answer_ends_the_wait(
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
    assert qq("send", str(run_id), "y", check=True).returncode == 0
    done = wait_for_status(db_url, run_id, {"succeeded", "failed"}, 30)
    assert done.status.value == "succeeded" and not done.waiting
    ready = [e.reason for e in snap.events(run_id) if e.kind == "ready"]
    # The input, or the echo and "applied" it caused, whichever the worker saw first.
    assert ready in (["input: input reached its terminal"], ["output: new output"])


def test_a_tty_run_blocked_reading_its_terminal_waits_without_a_pattern(
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    # "name: " matches no pattern: only the blocked-read detector can tell.
    asker = 'printf "name: "; read name; echo "hello $name"; sleep 1.5'
    run_id = int(qq("add", "--tty", "--", "sh", "-c", asker, check=True).stdout)
    workers.start()
    snap = Snapshot(db_url)
    wait_for(lambda: snap.run(run_id).waiting, 30, what="the waiting flag")  # type: ignore[union-attr]
    run = snap.run(run_id)
    assert run is not None and run.pid is not None
    assert run.waiting_reason == f"sh (pid {run.pid}) is waiting for input on its terminal"
    qq("send", str(run_id), "qq", check=True)
    done = wait_for_status(db_url, run_id, {"succeeded", "failed"}, 30)
    assert done.status.value == "succeeded" and not done.waiting
    assert [e.kind for e in snap.events(run_id)].count("ready") == 1
