"""Each demo agent, run for real as a subprocess with qqtui's environment contract, does
what it claims. Every process a test starts is killed afterwards by process group, by
session id and by an inherited tag, so an escaped child cannot outlive the test."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from qqtui.core.sessions import create_run_dir, create_session_dir, new_session_id
from qqtui.demo.catalog import AGENTS, demo_runs

RUN_ID = "3"
TAG_ENV = "QQTUI_TEST_TAG"


def _proc_ids(pid: int) -> tuple[str, int, int] | None:
    """(state, pgid, sid) of a live pid from /proc, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[2]), int(fields[3])


def _alive(pid: int) -> bool:
    ids = _proc_ids(pid)
    return ids is not None and ids[0] not in ("Z", "X")  # a zombie has already exited


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _has_tag(pid: int, tag: str) -> bool:
    try:
        return f"{TAG_ENV}={tag}".encode() in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


@dataclass
class Runner:
    """Starts demo agents in a temp session and cleans up every process they made."""

    home: Path
    session: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex)
    groups: set[int] = field(default_factory=set)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.session / "runs" / RUN_ID

    @property
    def heartbeat(self) -> Path:
        return self.run_dir / "heartbeat"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QQ_")}
        env.update(
            QQ_HOME=str(self.home),
            QQ_SESSION_ID=self.session.name,
            QQ_SESSION_DIR=str(self.session),
            QQ_RUN_ID=RUN_ID,
            QQ_HEARTBEAT_FILE=str(self.heartbeat),
        )
        env[TAG_ENV] = self.tag
        return env

    def start(self, agent: str, *args: str) -> subprocess.Popen[bytes]:
        # Its own session and group, as the supervisor starts runs.
        proc = subprocess.Popen(
            [sys.executable, "-m", f"qqtui.demo.agents.{agent}", *args],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.groups.add(proc.pid)
        self.procs.append(proc)
        return proc

    def run(self, agent: str, *args: str, timeout: float = 60) -> tuple[int, bytes, bytes]:
        proc = self.start(agent, *args)
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err

    def history(self) -> list[dict[str, object]]:
        return json.loads((self.session / "history.json").read_text())["messages"]

    def progress(self) -> dict[str, object]:
        return json.loads((self.run_dir / "progress.json").read_text())

    def leftovers(self) -> list[int]:
        out = []
        for pid in _all_pids():
            ids = _proc_ids(pid)
            if ids is None or ids[0] in ("Z", "X") or pid == os.getpid():
                continue
            if ids[1] in self.groups or ids[2] in self.groups or _has_tag(pid, self.tag):
                out.append(pid)
        return out

    def kill_all(self) -> None:
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
        for pid in self.leftovers():  # escaped: other group and session, same tag
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            proc.communicate(timeout=30)  # reap it and close its pipes


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[Runner]:
    home = tmp_path / "home"
    session = create_session_dir(home, "demo", new_session_id())
    create_run_dir(session, int(RUN_ID))
    r = Runner(home, session)
    try:
        yield r
    finally:
        r.kill_all()


def wait_until(predicate: object, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(predicate())  # type: ignore[operator]


def read_until(proc: subprocess.Popen[bytes], pattern: bytes, timeout: float = 30.0) -> bytes:
    """Read the agent's stdout until a whole line with `pattern` arrived (or fail)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while pattern not in data or b"\n" not in data[data.index(pattern) :]:
        left = deadline - time.monotonic()
        assert left > 0, f"{pattern!r} not printed; got {data[-500:]!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"stdout closed before {pattern!r}; got {data[-500:]!r}"
            data += chunk
    return data


def test_coder_prints_colours_and_keeps_history_progress_notes(runner: Runner) -> None:
    code, out, err = runner.run("coder", "--seconds", "0.5", "--task", "fix it")
    assert code == 0, err
    assert b"\x1b[32m+ " in out and b"\x1b[31m- " in out  # coloured diff lines
    messages = runner.history()
    assert messages[0] == {"role": "user", "content": "fix it"}
    assert messages[-1]["role"] == "assistant"
    assert len(messages) == 10
    assert runner.progress()["fraction"] == 1.0
    assert runner.heartbeat.exists()
    assert "conditional updates" in (runner.session / "notes.md").read_text()


def test_fail_exits_non_zero_after_work(runner: Runner) -> None:
    code, out, err = runner.run("fail", "--seconds", "0.3", "--exit-code", "7")
    assert code == 7
    assert b"already exists" in err and b"dump schema" in out
    assert runner.history()[-1]["error"] is True
    assert runner.heartbeat.exists()
    code, _, err = runner.run("fail", "--exit-code", "0")
    assert code == 2 and b"must be 1-255" in err


def test_hostile_emits_the_escape_sequences_and_markup(runner: Runner) -> None:
    code, out, err = runner.run("hostile", "--seconds", "0.2")
    assert code == 0, err
    for seq in (
        b"\x1b]52;c;aGVsbG8=\x07",
        b"\x1b]0;pwned\x07",
        b"\x1b[2J\x1b[H",
        b"\x1b[6n",
        b"\x1bc",
        b"\xc2\x9b2J",
        b"\xff\xfe",
        b"[bold red]not markup[/]",
    ):
        assert seq in out, seq
    assert runner.heartbeat.exists()
    assert runner.history()[0]["content"].startswith("[bold]summarise[/]")


def test_flood_prints_megabytes_and_a_long_line_then_exits(runner: Runner) -> None:
    code, out, err = runner.run("flood", "--megabytes", "3", "--long-line-kb", "256")
    assert code == 0, err
    assert len(out) >= 3 * 1024 * 1024
    assert b"\n" + b"L" * (256 * 1024) + b"\n" in out
    assert runner.progress()["fraction"] == 1.0
    assert runner.history()[-1]["role"] == "assistant"


def test_hang_goes_silent_but_stays_alive(runner: Runner) -> None:
    proc = runner.start("hang", "--active-seconds", "0.6", "--hang-seconds", "60")
    read_until(proc, b"going quiet")
    assert runner.heartbeat.exists()  # it did heartbeat while working
    beat = runner.heartbeat.stat().st_mtime_ns
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout.fileno()], [], [], 1.5)
    assert ready == []  # no output...
    assert runner.heartbeat.stat().st_mtime_ns == beat  # ...no heartbeat...
    assert proc.poll() is None  # ...and still running: hung


def test_tree_spawns_a_setsid_child_and_children_die_with_the_agent(runner: Runner) -> None:
    proc = runner.start("tree", "--seconds", "60")
    out = read_until(proc, b"role=escaped")
    out += read_until(proc, b"role=grandchild") if b"role=grandchild" not in out else b""
    children = {
        m[0].decode(): (int(m[1]), int(m[2]), int(m[3]))
        for m in re.findall(rb"role=(\w+) pid=(\d+) pgid=(\d+) sid=(\d+)", out)
    }
    assert set(children) == {"worker", "escaped", "grandchild"}
    escaped_pid, escaped_pgid, escaped_sid = children["escaped"]
    runner.groups.add(escaped_sid)  # so cleanup reaches it by session id too
    assert escaped_sid == escaped_pid == escaped_pgid != proc.pid  # left the run's session
    for role in ("worker", "grandchild"):
        assert children[role][1] == proc.pid  # still in the run's process group
    assert runner.heartbeat.exists()

    os.kill(proc.pid, signal.SIGKILL)  # the agent dies without cleaning up
    proc.wait(timeout=10)
    pids = [pid for pid, _, _ in children.values()]
    assert wait_until(lambda: not any(_alive(pid) for pid in pids)), "children outlived the agent"


def test_tree_stops_its_children_when_done(runner: Runner) -> None:
    code, out, err = runner.run("tree", "--seconds", "1")
    assert code == 0, err
    assert b"children stopped; done" in out
    pids = [int(p) for p in re.findall(rb"role=\w+ pid=(\d+)", out)]
    assert len(pids) in (2, 3)  # the grandchild may not have printed before it was stopped
    assert wait_until(lambda: not any(_alive(pid) for pid in pids))
    assert wait_until(lambda: runner.leftovers() == [])


def test_tree_child_lifetime_is_capped(runner: Runner) -> None:
    # Even with a living parent (this test) a child exits at its cap.
    code, out, _ = runner.run("tree", "--child", "escaped", "--max-lifetime", "0.5", timeout=30)
    assert code == 0 and b"role=escaped" in out


def test_catalog_runs_name_real_agents_with_this_interpreter() -> None:
    runs = demo_runs()
    assert {run.agent for run in runs} == set(AGENTS)
    for run in runs:
        assert run.argv[0] == sys.executable and run.argv[1] == "-m"
        assert importlib.util.find_spec(run.argv[2]) is not None
        assert run.timeout_s and run.hung_after_s
    hang = next(run for run in runs if run.agent == "hang")
    active = float(hang.argv[hang.argv.index("--active-seconds") + 1])
    assert hang.hung_after_s is not None and active + hang.hung_after_s < 60  # hung in a minute
    assert hang.timeout_s is not None and hang.timeout_s > active + hang.hung_after_s


@pytest.mark.parametrize("agent", AGENTS)
def test_every_agent_has_help(agent: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", f"qqtui.demo.agents.{agent}", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "usage:" in out.stdout


def _start_on_pty(runner: Runner, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """The review agent on a real pseudo-terminal of 80x24, as a --tty run gets one."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "qqtui.demo.agents.review", *args],
        env=runner.env(),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    runner.groups.add(proc.pid)
    runner.procs.append(proc)
    return proc, master


def _read_until(master: int, screen: object, wanted: str, timeout: float = 30) -> bool:
    import pyte

    stream = pyte.ByteStream(screen)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(wanted in line for line in screen.display):  # type: ignore[attr-defined]
            return True
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                stream.feed(os.read(master, 65536))
            except OSError:  # EIO: the program closed the terminal
                return any(wanted in line for line in screen.display)  # type: ignore[attr-defined]
    return False


@pytest.mark.parametrize(("answer", "code", "said"), [("y", 0, "applied"), ("n", 1, "rejected")])
def test_review_asks_on_its_full_screen_waits_and_obeys_the_answer(
    runner: Runner, answer: str, code: int, said: str
) -> None:
    from qqtui.core.sessions import WAITING_FILE
    from qqtui.core.ttyscreen import TerminalScreen

    proc, master = _start_on_pty(runner, "--seconds", "0.5")
    try:
        screen = TerminalScreen(80, 24)
        assert _read_until(master, screen, "Apply this change? [y/n]")
        assert screen.alternate  # drawn on the alternate screen, as full-screen agents are
        assert any("review agent" in line for line in screen.display)
        # It told qqtui that it waits for its user.
        waiting = runner.run_dir / WAITING_FILE
        assert wait_until(waiting.exists)
        os.write(master, b"x")  # not an answer: ignored
        time.sleep(0.2)
        assert proc.poll() is None
        os.write(master, answer.encode())
        assert proc.wait(timeout=30) == code
        assert _read_until(master, screen, said)
        assert not screen.alternate  # the main screen is back, as it was
        assert not waiting.exists()
    finally:
        os.close(master)


def test_review_on_a_pipe_says_it_needs_a_terminal(runner: Runner) -> None:
    code, _, err = runner.run("review", "--seconds", "0")
    assert code == 2 and b"needs a terminal" in err and b"--tty" in err
