"""The "needs you" flag (#15 item 5): the store's flips, the agent kit and CLI that
report it, the detectors (a screen prompt in a real log, a real program blocked
reading a real pty), the worker's watcher over a real tty-less run dir, and real
workers running real agents that say they wait."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from qqtui import agent
from qqtui.core import sessions
from qqtui.core.activity import ActivityWatcher
from qqtui.core.intents import run_paths
from qqtui.core.profiles import DEFAULT_WAITING_PATTERNS
from qqtui.core.runspec import RunSpec
from qqtui.core.snapshot import Snapshot
from qqtui.core.store import Store
from qqtui.core.tracked import Tracked
from qqtui.core.waitdetect import (
    blocked_reader,
    compile_patterns,
    read_agent_report,
    screen_prompt,
)

from ..conftest import Workers, wait_for, wait_for_status

PATTERNS = compile_patterns(DEFAULT_WAITING_PATTERNS)


def kinds(db_url: str, run_id: int) -> list[str]:
    return [e.kind for e in Snapshot(db_url).events(run_id)]


def reasons(db_url: str, run_id: int, kind: str) -> list[str]:
    return [e.reason or "" for e in Snapshot(db_url).events(run_id) if e.kind == kind]


def add(qq, *args: str) -> int:  # type: ignore[no-untyped-def]
    return int(qq("add", *args, check=True).stdout.strip())


def claimed(store: Store, home: Path, **spec: object) -> tuple[int, str, Path]:
    """A run claimed by worker "w", with its session and run directories made."""
    argv = spec.pop("argv", ("sleep", "60"))
    run = store.add_run(
        RunSpec(argv=argv, cwd=str(home), **spec),  # type: ignore[arg-type]
        session_id=sessions.new_session_id(),
    )
    (mine,) = store.claim_runs("w", limit=1)
    assert mine.id == run.id and mine.claim_token is not None
    session_path, run_dir = run_paths(home, mine)
    sessions.create_session_dir(home, mine.agent, mine.session_id)
    sessions.create_run_dir(session_path, mine.id)
    return mine.id, mine.claim_token, run_dir


# -- the agent kit and the CLI -------------------------------------------------------


@pytest.fixture
def no_qq_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in list(os.environ):
        if key.startswith("QQ_"):
            monkeypatch.delenv(key)
    home = tmp_path / "elsewhere"
    monkeypatch.setenv("QQ_HOME", str(home))
    monkeypatch.setattr(agent, "_current", None)
    return home


def test_agent_waiting_outside_qqtui_is_a_no_op(no_qq_env: Path) -> None:
    assert agent.waiting("anyone?") is False
    assert agent.working() is False
    assert not no_qq_env.exists(), "no session is made for a report nobody reads"


def test_agent_waiting_writes_the_run_dir_report_0600_and_working_removes_it(
    no_qq_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions.ensure_home(no_qq_env)
    sid = sessions.new_session_id()
    session_dir = sessions.create_session_dir(no_qq_env, "coder", sid)
    monkeypatch.setenv("QQ_SESSION_ID", sid)
    monkeypatch.setenv("QQ_SESSION_DIR", str(session_dir))
    monkeypatch.setenv("QQ_RUN_ID", "7")
    assert agent.waiting("approve edit to x.py?") is True
    path = session_dir / "runs" / "7" / sessions.WAITING_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["message"] == "approve edit to x.py?" and data["at"] > 0
    report = read_agent_report(path)
    assert report is not None and report.message == "approve edit to x.py?"
    assert agent.working() is True
    assert not path.exists()
    assert agent.working() is True, "working twice is fine"


def test_cli_waiting_outside_a_run_is_one_error_line(qq) -> None:  # type: ignore[no-untyped-def]
    proc = qq("waiting", "--message", "hi")
    assert proc.returncode != 0
    assert proc.stderr.startswith("qqtui: error: not inside a qqtui run")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_waiting_for_a_run_of_this_home(
    qq,
    store: Store,
    home: Path,  # type: ignore[no-untyped-def]
) -> None:
    run_id, _, run_dir = claimed(store, home)
    proc = qq("waiting", "--run", str(run_id), "--message", "deploy to prod?")
    assert proc.returncode == 0, proc.stderr
    report = read_agent_report(run_dir / sessions.WAITING_FILE)
    assert report is not None and report.message == "deploy to prod?"
    assert qq("waiting", "--run", str(run_id), "--done").returncode == 0
    assert not (run_dir / sessions.WAITING_FILE).exists()
    queued = store.add_run(
        RunSpec(argv=("true",), cwd=str(home)), session_id=sessions.new_session_id()
    )
    proc = qq("waiting", "--run", str(queued.id))
    assert proc.returncode != 0 and "not running" in proc.stderr


# -- the detectors -------------------------------------------------------------------


def test_screen_prompt_reads_the_screen_a_log_draws(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    frame = b"\x1b[?1049h\x1b[2J\x1b[H\x1b[1mEditing x.py\x1b[0m\r\n+ new line\r\n"
    log.write_bytes(b"old scrollback " * 5000 + b"\r\n" + frame)
    assert screen_prompt(log, 80, 24, PATTERNS) is None, "no prompt yet"
    with open(log, "ab") as fh:
        fh.write(b"\x1b[20;1HApply this change? [y/n] \x1b]0;title\x07")
    assert screen_prompt(log, 80, 24, PATTERNS) == "Apply this change? [y/n]"
    with open(log, "ab") as fh:
        fh.write(b"\x1b[2J\x1b[Hworking on it\r\n")  # answered: the screen moved on
    assert screen_prompt(log, 80, 24, PATTERNS) is None
    with open(log, "ab") as fh:
        # A prompt far above the last lines is history, not a question.
        fh.write(b"Do you want to go on?\r\n" + b"".join(b"line %d\r\n" % i for i in range(5)))
    assert screen_prompt(log, 80, 24, PATTERNS) is None


def _on_a_pty(argv: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    """`argv` as a session leader with a new pty as its controlling terminal."""
    master, slave = os.openpty()

    def become_leader() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, preexec_fn=become_leader)
    os.close(slave)
    return proc, master


@pytest.fixture
def pty_procs() -> Iterator[list[tuple[subprocess.Popen[bytes], int]]]:
    procs: list[tuple[subprocess.Popen[bytes], int]] = []
    yield procs
    for proc, master in procs:
        proc.kill()
        proc.wait()
        os.close(master)


def _create_time(pid: int) -> float:
    return psutil.Process(pid).create_time()


def test_blocked_reader_finds_a_program_reading_its_terminal(
    pty_procs: list[tuple[subprocess.Popen[bytes], int]],
) -> None:
    cat = _on_a_pty(["cat"])
    pty_procs.append(cat)
    sleeper = _on_a_pty(["sleep", "60"])
    pty_procs.append(sleeper)
    pid = cat[0].pid
    found = wait_for(lambda: blocked_reader(pid, _create_time(pid)), 10, what="cat to block")
    assert found.pid == pid and found.name == "cat"  # type: ignore[attr-defined]
    # Not our process (another create time), or not reading: nothing.
    assert blocked_reader(pid, _create_time(pid) - 100) is None
    sleeper_pid = sleeper[0].pid
    time.sleep(0.3)
    assert blocked_reader(sleeper_pid, _create_time(sleeper_pid)) is None


def test_blocked_reader_does_not_see_a_reader_that_polls(
    pty_procs: list[tuple[subprocess.Popen[bytes], int]],
) -> None:
    """The documented limit: select/poll/epoll waits are left to the patterns and hooks."""
    poller = _on_a_pty(
        [sys.executable, "-c", "import select, sys; select.select([sys.stdin], [], [])"]
    )
    pty_procs.append(poller)
    pid = poller[0].pid
    wait_for(
        lambda: "poll" in Path(f"/proc/{pid}/wchan").read_text(), 10, what="it to sleep in poll"
    )
    assert blocked_reader(pid, _create_time(pid)) is None


# -- the worker's watcher, on a real run dir -----------------------------------------


def _quiet(path: Path, seconds: float = 10.0) -> None:
    """Make `path` look untouched for `seconds` (the watcher reads its mtime)."""
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_watcher_flags_a_tty_prompt_once_and_clears_it_on_output_and_input(
    store: Store, home: Path, db_url: str, pty_procs: list[tuple[subprocess.Popen[bytes], int]]
) -> None:
    run_id, token, run_dir = claimed(store, home, tty=True, tty_size=(80, 24), hung_after_s=1)
    watcher = ActivityWatcher(store, "w", log_cap=1 << 30, output_tail_s=1.0, home=home)
    tracked = Tracked(run=store.get_run(run_id), token=token, run_dir=run_dir)
    log = run_dir / sessions.OUTPUT_LOG
    log.write_bytes(b"\x1b[2J\x1b[HApply this change? [y/n] ")
    _quiet(log)
    watcher.watch([tracked], store.clock())
    run = store.get_run(run_id)
    assert run.waiting and run.waiting_reason == "prompt on screen: Apply this change? [y/n]"
    watcher.watch([tracked], store.clock() + 30)
    assert kinds(db_url, run_id).count("waiting") == 1
    assert not store.get_run(run_id).hung, "silent past hung_after_s, but waiting: not hung"
    with open(log, "ab") as fh:
        fh.write(b"y\r\napplying\r\n")
    watcher.watch([tracked], store.clock())
    assert not store.get_run(run_id).waiting
    assert reasons(db_url, run_id, "ready") == ["output: new output"]
    # The same prompt again, answered by input this time.
    with open(log, "ab") as fh:
        fh.write(b"\x1b[2J\x1b[HDo you want to continue? ")
    _quiet(log)
    watcher.watch([tracked], store.clock())
    assert store.get_run(run_id).waiting
    (run_dir / sessions.TTY_INPUT_FILE).touch()
    watcher.watch([tracked], store.clock())
    assert not store.get_run(run_id).waiting
    assert reasons(db_url, run_id, "ready")[-1] == "input: input reached its terminal"
    # Still the same quiet screen: not matched again until it changes.
    _quiet(log)
    _quiet(run_dir / sessions.TTY_INPUT_FILE)
    watcher.watch([tracked], store.clock())
    assert kinds(db_url, run_id).count("waiting") == 2


def test_watcher_flags_a_foreground_process_blocked_reading_its_terminal(
    store: Store, home: Path, db_url: str, pty_procs: list[tuple[subprocess.Popen[bytes], int]]
) -> None:
    cat = _on_a_pty(["cat"])
    pty_procs.append(cat)
    pid = cat[0].pid
    wait_for(lambda: blocked_reader(pid, _create_time(pid)), 10, what="cat to block")
    run_id, token, run_dir = claimed(store, home, tty=True, hung_after_s=1)
    store.record_spawn(
        run_id,
        token,
        pid=pid,
        pid_create_time=_create_time(pid),
        pgid=pid,
        shim_pid=os.getpid(),
        shim_create_time=_create_time(os.getpid()),
    )
    watcher = ActivityWatcher(store, "w", log_cap=1 << 30, output_tail_s=1.0, home=home)
    tracked = Tracked(run=store.get_run(run_id), token=token, run_dir=run_dir)
    log = run_dir / sessions.OUTPUT_LOG
    log.write_bytes(b"$ ")  # no prompt pattern matches this
    _quiet(log)
    watcher.watch([tracked], store.clock() + 60)
    run = store.get_run(run_id)
    assert run.waiting and not run.hung
    assert run.waiting_reason == f"cat (pid {pid}) is waiting for input on its terminal"
    assert reasons(db_url, run_id, "waiting") == [f"terminal: {run.waiting_reason}"]


def test_watcher_agent_report_on_a_tty_run_outlives_redraws(
    store: Store, home: Path, db_url: str
) -> None:
    run_id, token, run_dir = claimed(store, home, tty=True)
    watcher = ActivityWatcher(store, "w", log_cap=1 << 30, output_tail_s=1.0, home=home)
    tracked = Tracked(run=store.get_run(run_id), token=token, run_dir=run_dir)
    log = run_dir / sessions.OUTPUT_LOG
    log.write_bytes(b"spinner |")
    session = agent.Session(run_dir.parent.parent, run_id=str(run_id))
    session.waiting("approve edit to x.py?")
    watcher.watch([tracked], store.clock())
    assert store.get_run(run_id).waiting_reason == "approve edit to x.py?"
    with open(log, "ab") as fh:
        fh.write(b"\r/\r-\r\\")  # a spinner redraws while it waits
    watcher.watch([tracked], store.clock())
    assert store.get_run(run_id).waiting, "a redraw is no answer"
    session.working()
    watcher.watch([tracked], store.clock())
    assert not store.get_run(run_id).waiting
    assert reasons(db_url, run_id, "ready") == ["agent: the agent works again"]


# -- real workers, real agents -------------------------------------------------------


def _agent_script(go: Path, after: str) -> str:
    return (
        "import pathlib, time\n"
        "from qqtui import agent\n"
        "assert agent.waiting('approve edit to x.py?')\n"
        f"go = pathlib.Path({str(go)!r})\n"
        "while not go.exists():\n"
        "    time.sleep(0.05)\n"
        f"{after}\n"
        "time.sleep(1.5)\n"
    )


@pytest.mark.parametrize(
    ("after", "ready_reason"),
    [
        ("agent.working()", "agent: the agent works again"),
        ("print('moving on', flush=True)", "output: new output"),
    ],
)
def test_a_worker_flags_an_agent_that_waits_and_clears_it(
    tmp_path: Path,
    db_url: str,
    qq,
    workers: Workers,
    after: str,
    ready_reason: str,  # type: ignore[no-untyped-def]
) -> None:
    go = tmp_path / "go"
    run_id = add(qq, "--hung-after", "1", "--", sys.executable, "-c", _agent_script(go, after))
    workers.start()
    snap = Snapshot(db_url)
    wait_for(lambda: snap.run(run_id).waiting, 20, what="the waiting flag")  # type: ignore[union-attr]
    run = snap.run(run_id)
    assert run is not None and run.waiting_reason == "approve edit to x.py?"
    assert reasons(db_url, run_id, "waiting") == ["agent: approve edit to x.py?"]
    listing = qq("ls", check=True).stdout
    assert "? waiting" in listing
    assert json.loads(qq("ls", "--json", check=True).stdout)[0]["waiting"] is True
    # Silent for longer than its hung threshold while it waits: never hung.
    wait_for(lambda: time.time() - (run.waiting_since or 0) > 2.5, 10)
    assert not snap.run(run_id).hung and "hung" not in kinds(db_url, run_id)  # type: ignore[union-attr]
    go.touch()
    wait_for(lambda: not snap.run(run_id).waiting, 20, what="the flag to clear")  # type: ignore[union-attr]
    assert reasons(db_url, run_id, "ready") == [ready_reason]
    done = wait_for_status(db_url, run_id, {"succeeded"}, 30)
    assert not done.waiting and done.waiting_reason is None


def test_the_ls_of_a_waiting_run_without_a_worker(qq, store: Store, home: Path) -> None:  # type: ignore[no-untyped-def]
    run_id, token, _ = claimed(store, home)
    store.set_waiting(run_id, token, True, "approve?", "agent")
    assert "? waiting" in qq("ls", check=True).stdout
    shown = qq("show", str(run_id), check=True).stdout
    assert "waiting: since" in shown and "approve?" in shown


def test_watcher_pipe_run_question_printed_with_the_report_does_not_answer_it(
    store: Store, home: Path, db_url: str
) -> None:
    run_id, token, run_dir = claimed(store, home)
    watcher = ActivityWatcher(store, "w", log_cap=1 << 30, output_tail_s=1.0, home=home)
    tracked = Tracked(run=store.get_run(run_id), token=token, run_dir=run_dir)
    log = run_dir / sessions.OUTPUT_LOG
    log.write_bytes(b"working\n")
    watcher.watch([tracked], store.clock())
    session = agent.Session(run_dir.parent.parent, run_id=str(run_id))
    session.waiting("approve?")
    watcher.watch([tracked], store.clock())
    assert store.get_run(run_id).waiting
    report_at = (run_dir / sessions.WAITING_FILE).stat().st_mtime
    with open(log, "ab") as fh:
        fh.write(b"Approve the deploy? (waiting for a human)\n")
    os.utime(log, (report_at + 0.2, report_at + 0.2))
    watcher.watch([tracked], store.clock())
    assert store.get_run(run_id).waiting, "the question it printed with its report"
    with open(log, "ab") as fh:
        fh.write(b"approved, deploying\n")
    os.utime(log, (report_at + 5, report_at + 5))
    watcher.watch([tracked], store.clock())
    assert not store.get_run(run_id).waiting
    assert reasons(db_url, run_id, "ready") == ["output: new output"]
    assert (run_dir / sessions.WAITING_FILE).exists()
    watcher.watch([tracked], store.clock())
    assert not store.get_run(run_id).waiting, "an answered report does not flag again"
    session.waiting("and now?")
    watcher.watch([tracked], store.clock())
    assert store.get_run(run_id).waiting_reason == "and now?"
