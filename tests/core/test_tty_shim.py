"""Tty runs with real ptys, real shims and real sockets: the terminal the command sees,
the socket's viewers and writer, hostile clients, stopping the tree, surviving the worker."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from qqtui.core import sessions, ttyproto
from qqtui.core.intents import run_paths
from qqtui.core.procs.kill import TreeKill
from qqtui.core.procs.pids import RunTarget, is_alive
from qqtui.core.procs.spawn import RunEnvironment, Spawned, SpawnError, spawn_run
from qqtui.core.snapshot import Snapshot
from qqtui.core.ttyclient import TtyClosed, TtyConnection, TtyError, send_to_run

from ..conftest import Workers, wait_for, wait_for_status
from .test_procs import wait_exit

_started: list[tuple[Spawned, RunTarget]] = []


@pytest.fixture(autouse=True)
def _no_run_outlives_its_test() -> Iterator[None]:
    """A failing test leaves no shim or command behind (they would live on forever)."""
    yield
    while _started:
        spawned, target = _started.pop()
        if spawned.shim.poll() is None:
            TreeKill(target, grace_s=0).finish(settle_s=1.0)
            spawned.shim.kill()
        spawned.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            spawned.shim.wait(5)


def run_dir_in(parent: Path, run_id: int) -> Path:
    path = parent / f"run{run_id}"
    path.mkdir(mode=0o700)
    return path


def start_tty(
    tmp_path: Path,
    argv: list[str],
    *,
    run_id: int = 1,
    size: tuple[int, int] = (80, 24),
    run_dir: Path | None = None,
) -> tuple[Spawned, RunTarget, Path]:
    """A tty run under a real shim; returns it, its target and its socket path."""
    run_dir = run_dir or run_dir_in(tmp_path, run_id)
    env = RunEnvironment(run_id, tmp_path, "sid", tmp_path, tmp_path / "hb")
    spawned = spawn_run(
        run_env=env,
        argv=argv,
        cwd=str(tmp_path),
        env_overrides={},
        log_path=run_dir / sessions.OUTPUT_LOG,
        status_path=run_dir / sessions.STATUS_FILE,
        tty_size=size,
        socket_path=run_dir / sessions.TTY_SOCKET,
    )
    target = RunTarget(
        run_id=run_id,
        home=tmp_path,
        attempt=1,
        pid=spawned.pid,
        pid_create_time=spawned.pid_create_time,
        pgid=spawned.pgid,
        shim_pid=spawned.shim.pid,
        shim_create_time=spawned.shim_create_time,
    )
    _started.append((spawned, target))
    return spawned, target, run_dir / sessions.TTY_SOCKET


def read_output(conn: TtyConnection, until: bytes, timeout: float = 15.0) -> bytes:
    """OUTPUT bytes until `until` appears in them (AssertionError if it does not)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while until not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {until!r} in {seen[-500:]!r}"
        for kind, payload in conn.read_frames(remaining):
            if kind == ttyproto.OUTPUT:
                seen += payload
    return seen


def frames_until_closed(conn: TtyConnection, timeout: float = 15.0) -> list[tuple[bytes, bytes]]:
    frames: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "the connection was not closed"
        try:
            frames += conn.read_frames(0.5)
        except TtyClosed:
            return frames


def wait_state(conn: TtyConnection, check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check(conn):
        assert time.monotonic() < deadline, f"state never matched: {conn.writer}, {conn.you_write}"
        conn.read_frames(0.2)


# A line-echoing program: says "ready", then answers each line it reads until "quit".
ECHO = (
    "import sys\n"
    "print('ready', flush=True)\n"
    "for line in sys.stdin:\n"
    "    if line.strip() == 'quit': break\n"
    "    print('echo:' + line.strip(), flush=True)\n"
)


def test_the_command_gets_a_terminal_of_its_own(tmp_path: Path) -> None:
    probe = (
        "import os, shutil, json\n"
        "print(json.dumps({'tty': [os.isatty(i) for i in range(3)], 'term': os.environ['TERM'],"
        " 'size': list(shutil.get_terminal_size((1, 1))), 'pgid': os.getpgrp(), 'pid': os.getpid(),"
        " 'sid': os.getsid(0), 'fg': os.tcgetpgrp(0), 'ctty': os.ttyname(0) == os.ttyname(1),"
        " 'fds': sorted(int(fd) for fd in os.listdir('/proc/self/fd'))}), flush=True)\n"
    )
    spawned, _, sock = start_tty(tmp_path, [sys.executable, "-c", probe], size=(123, 45))
    assert wait_exit(spawned)["exit_code"] == 0
    log = (sock.parent / sessions.OUTPUT_LOG).read_text()
    seen = json.loads(log.strip().splitlines()[-1])
    assert seen["tty"] == [True, True, True]
    assert seen["term"] == "xterm-256color"
    assert seen["size"] == [123, 45]
    # A session leader with its own group, and the pty's foreground group: cancel and
    # kill find it as they find a pipe run's command.
    assert seen["pgid"] == seen["pid"] == seen["sid"] == spawned.pid == spawned.pgid
    assert seen["fg"] == seen["pgid"] and seen["ctty"]
    # Nothing of the shim's leaks into the command: not the master, not the socket.
    assert seen["fds"] == [0, 1, 2, 3]  # 3: the listing's own
    assert not sock.exists()  # removed when the shim exited


def test_a_viewer_gets_the_screen_then_the_output_and_input_echoes(tmp_path: Path) -> None:
    spawned, _, sock = start_tty(tmp_path, [sys.executable, "-c", ECHO])
    with TtyConnection.open(sock, want="write", name="alice") as alice:
        assert alice.you_write and alice.writer == "alice"
        assert (alice.cols, alice.rows) == (80, 24)
        assert alice.welcome["pid"] == spawned.pid
        if b"ready" not in alice.screen:
            read_output(alice, b"ready")
        alice.send_input(b"hello\r")
        out = read_output(alice, b"echo:hello")
        assert b"hello\r\n" in out  # the terminal's own echo, then the program's answer
        # A viewer that comes later sees the screen so far in its SCREEN.
        with TtyConnection.open(sock, want="read", name="bob") as bob:
            assert b"echo:hello" in bob.screen and not bob.you_write and bob.writer == "alice"
            alice.send_input(b"again\r")
            assert b"echo:again" in read_output(bob, b"echo:again")
            alice.send_input(b"quit\r")
            frames = frames_until_closed(bob)
            assert frames[-1][0] == ttyproto.EXIT
            assert json.loads(frames[-1][1]) == {"exit_code": 0, "signal": None}
    assert wait_exit(spawned)["exit_code"] == 0
    log = (sock.parent / sessions.OUTPUT_LOG).read_bytes()
    assert b"echo:hello" in log and b"echo:again" in log  # the log stays the record
    input_mark = sock.parent / sessions.TTY_INPUT_FILE
    assert stat.S_IMODE(input_mark.stat().st_mode) == 0o600


def test_resize_reaches_the_program_as_sigwinch(tmp_path: Path) -> None:
    program = (
        "import os, signal, sys, time\n"
        "def winch(*_):\n"
        "    c, r = os.get_terminal_size(0)\n"
        "    print(f'winch {c}x{r}', flush=True)\n"
        "signal.signal(signal.SIGWINCH, winch)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    spawned, _, sock = start_tty(tmp_path, [sys.executable, "-c", program])
    with (
        TtyConnection.open(sock, want="write", name="w") as writer,
        TtyConnection.open(sock, want="read", name="r") as reader,
    ):
        if b"ready" not in writer.screen:
            read_output(writer, b"ready")
        reader.resize(50, 10)  # a viewer's resize is ignored
        writer.resize(120, 40)
        assert b"winch 120x40" in read_output(writer, b"winch")
        wait_state(reader, lambda c: (c.cols, c.rows) == (120, 40))
        assert (writer.cols, writer.rows) == (120, 40)
        writer.send_input(b"\r")
    assert wait_exit(spawned)["exit_code"] == 0
    assert b"winch 50x10" not in (sock.parent / sessions.OUTPUT_LOG).read_bytes()


def test_one_writer_at_a_time_and_take_moves_it(tmp_path: Path) -> None:
    spawned, _, sock = start_tty(tmp_path, [sys.executable, "-c", ECHO])
    first = TtyConnection.open(sock, want="write", name="first")
    second = TtyConnection.open(sock, want="write", name="second")
    assert first.you_write
    assert not second.you_write and second.writer == "first"  # read-only, told who writes
    # A sender types without taking the writer's place.
    with TtyConnection.open(sock, want="send", name="sender") as sender:
        sender.send_input(b"from-sender\r")
        read_output(first, b"echo:from-sender")
    second.take()
    wait_state(second, lambda c: c.you_write and c.writer == "second")
    wait_state(first, lambda c: not c.you_write and c.writer == "second")
    second.send_input(b"from-second\r")
    read_output(first, b"echo:from-second")
    # The old writer is read-only now: its input is refused and it is dropped.
    first.send_input(b"sneaky\r")
    frames = frames_until_closed(first)
    assert (ttyproto.ERROR, b'{"error":"read-only: second holds input"}') in frames
    second.send_input(b"quit\r")
    frames_until_closed(second)
    second.close()
    first.close()
    assert wait_exit(spawned)["exit_code"] == 0
    assert b"sneaky" not in (sock.parent / sessions.OUTPUT_LOG).read_bytes()


def test_the_socket_is_private_and_goes_with_the_shim(tmp_path: Path) -> None:
    spawned, _, sock = start_tty(tmp_path, ["cat"])
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
    with TtyConnection.open(sock, want="write", name="w") as conn:
        conn.send_input(b"\x04")  # ctrl-d: cat reads EOF
        frames_until_closed(conn)
    assert wait_exit(spawned)["exit_code"] == 0
    assert not os.path.lexists(sock)


@pytest.mark.parametrize("plant", ["symlink", "file", "dangling symlink"])
def test_a_planted_path_is_refused_and_the_run_does_not_start(tmp_path: Path, plant: str) -> None:
    run_dir = run_dir_in(tmp_path, 1)
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    sock = run_dir / sessions.TTY_SOCKET
    if plant == "symlink":
        sock.symlink_to(victim)
    elif plant == "dangling symlink":
        sock.symlink_to(tmp_path / "nowhere")
    else:
        sock.write_text("not a socket")
    marker = tmp_path / "ran"
    with pytest.raises(SpawnError, match=r"cannot serve the run.s terminal: .* is not a socket"):
        start_tty(tmp_path, ["touch", str(marker)], run_dir=run_dir)
    assert not marker.exists()  # the command never started
    assert victim.read_text() == "keep me" and os.path.lexists(sock)
    assert not (tmp_path / "nowhere").exists()


def test_a_planted_socket_path_fails_the_run_with_the_reason(
    home: Path,
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    run_id = add(qq, "--tty", "--", "true")
    queued = Snapshot(db_url).run(run_id)
    assert queued is not None
    session, run_dir = run_paths(home, queued)
    sessions.create_run_dir(session, run_id)
    (run_dir / sessions.TTY_SOCKET).symlink_to(home / "elsewhere")
    workers.start()
    failed = wait_for_status(db_url, run_id, {"failed"}, 20)
    assert "cannot serve the run's terminal" in (failed.reason or "")
    assert "is not a socket" in (failed.reason or "")
    assert not (home / "elsewhere").exists()


def test_a_socket_directory_others_can_enter_is_refused(tmp_path: Path) -> None:
    run_dir = run_dir_in(tmp_path, 1)
    run_dir.chmod(0o755)
    with pytest.raises(SpawnError, match="is not a private directory"):
        start_tty(tmp_path, ["true"], run_dir=run_dir)


def test_a_dead_shims_socket_is_replaced(tmp_path: Path) -> None:
    run_dir = run_dir_in(tmp_path, 1)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(run_dir / sessions.TTY_SOCKET))
    stale.close()
    spawned, _, sock = start_tty(tmp_path, ["cat"], run_dir=run_dir)
    with TtyConnection.open(sock, want="write", name="w") as conn:
        conn.send_input(b"\x04")
        frames_until_closed(conn)
    assert wait_exit(spawned)["exit_code"] == 0


def test_a_path_too_long_for_sun_path_binds_through_the_directory_fd(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True, mode=0o700)
    run_dir = run_dir_in(deep, 1)
    assert len(str(run_dir / sessions.TTY_SOCKET)) > 108
    spawned, _, sock = start_tty(tmp_path, [sys.executable, "-c", ECHO], run_dir=run_dir)
    assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    with TtyConnection.open(sock, want="write", name="w") as conn:
        conn.send_input(b"long\r")
        read_output(conn, b"echo:long")
        conn.send_input(b"quit\r")
        frames_until_closed(conn)
    assert wait_exit(spawned)["exit_code"] == 0
    assert not os.path.lexists(sock)


def raw_client(sock_path: Path) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(sock_path))
    conn.settimeout(10)
    return conn


def read_until_closed(conn: socket.socket) -> bytes:
    data = bytearray()
    while True:
        try:
            chunk = conn.recv(1 << 20)
        except ConnectionResetError:
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk


def test_hostile_clients_are_dropped_and_the_run_carries_on(tmp_path: Path) -> None:
    spawned, _, sock = start_tty(tmp_path, [sys.executable, "-c", ECHO])
    hello = ttyproto.frame(ttyproto.HELLO, {"v": 1, "name": "x", "want": "read"})
    cases = {
        "garbage": b"\x00\x01garbage" * 10,
        "unknown kind": ttyproto.HEADER.pack(b"Z", 0),
        "oversized": ttyproto.HEADER.pack(ttyproto.INPUT, ttyproto.MAX_CLIENT_FRAME + 1),
        "input before hello": ttyproto.frame(ttyproto.INPUT, b"rm -rf ~\r"),
        "hello not an object": ttyproto.frame(ttyproto.HELLO, b"[1, 2]"),
        "hello not json": ttyproto.frame(ttyproto.HELLO, b"\xff{"),
        "bad want": ttyproto.frame(ttyproto.HELLO, {"v": 1, "name": "x", "want": "all"}),
        "input when read-only": hello + ttyproto.frame(ttyproto.INPUT, b"rm -rf ~\r"),
        "hello twice": hello + hello,
        "bad resize": hello + ttyproto.frame(ttyproto.RESIZE, {"cols": -1, "rows": 10**9}),
    }
    for name, data in cases.items():
        conn = raw_client(sock)
        conn.sendall(data)
        reply = read_until_closed(conn)  # the shim closed it
        conn.close()
        frames = ttyproto.FrameReader(ttyproto.SHIM_KINDS, ttyproto.MAX_SHIM_FRAME).feed(reply)
        assert frames and frames[-1][0] == ttyproto.ERROR, name
    # Silent for longer than HELLO_TIMEOUT_S: dropped, with a reason.
    silent = raw_client(sock)
    assert b"no HELLO within" in read_until_closed(silent)
    silent.close()
    # A client that goes away mid-frame.
    half = raw_client(sock)
    half.sendall(hello[:3])
    half.close()
    with TtyConnection.open(sock, want="write", name="w") as conn:
        conn.send_input(b"still here\r")
        read_output(conn, b"echo:still here")
        conn.send_input(b"quit\r")
        frames_until_closed(conn)
    assert wait_exit(spawned)["exit_code"] == 0
    assert b"rm -rf" not in (sock.parent / sessions.OUTPUT_LOG).read_bytes()


def test_a_viewer_that_does_not_read_is_not_waited_for(tmp_path: Path) -> None:
    # About 40 MB of output while one viewer reads nothing: its backlog is skipped, not
    # kept, and neither the run nor a viewer that reads is held up by it.
    flood = "import sys\ninput()\nfor _ in range(40):\n    sys.stdout.write('x' * 1_000_000)\n"
    spawned, _, sock = start_tty(tmp_path, [sys.executable, "-c", flood])
    stalled = raw_client(sock)
    stalled.sendall(ttyproto.frame(ttyproto.HELLO, {"v": 1, "name": "slow", "want": "read"}))
    # The reading viewer only receives, into one buffer, and parses afterwards.
    reading = raw_client(sock)
    reading.settimeout(60)
    reading.sendall(ttyproto.frame(ttyproto.HELLO, {"v": 1, "name": "w", "want": "write"}))
    reading.sendall(ttyproto.frame(ttyproto.INPUT, b"\r"))
    got = read_until_closed(reading)
    reading.close()
    assert wait_exit(spawned, timeout=60)["exit_code"] == 0
    frames = shim_frames(got)
    assert frames[-1][0] == ttyproto.EXIT
    received = read_until_closed(stalled)
    stalled.close()
    assert len(received) < 20_000_000  # a frame and a screen at most, not the 40 MB


def shim_frames(data: bytes) -> list[tuple[bytes, bytes]]:
    return list(ttyproto.FrameReader(ttyproto.SHIM_KINDS, ttyproto.MAX_SHIM_FRAME).feed(data))


def test_a_viewer_that_falls_behind_skips_to_a_fresh_screen_and_stays(tmp_path: Path) -> None:
    # A viewer that reads nothing while 40 MB go by (a burst under load) is not cut off:
    # what it missed is skipped, and once it reads it gets the screen as it is now.
    burst = (
        "import sys\ninput()\nfor _ in range(40):\n    sys.stdout.write('x' * 1_000_000)\n"
        "sys.stdout.write('\\x1b[2J\\x1b[Hburst done\\r\\n'); sys.stdout.flush()\ninput()\n"
    )
    spawned, _, sock = start_tty(tmp_path, [sys.executable, "-c", burst])
    behind = raw_client(sock)
    behind.sendall(ttyproto.frame(ttyproto.HELLO, {"v": 1, "name": "behind", "want": "read"}))
    log = sock.parent / sessions.OUTPUT_LOG
    with TtyConnection.open(sock, want="send", name="s") as sender:
        sender.send_input(b"\r")
    deadline = time.monotonic() + 60
    while b"burst done" not in log.read_bytes()[-200:]:
        assert time.monotonic() < deadline, "the burst never ended"
        time.sleep(0.05)
    # Now it reads: the start of the stream, then a fresh screen, then what follows.
    behind.settimeout(10)
    data = bytearray()
    while b"burst done" not in data[-65536:]:
        chunk = behind.recv(1 << 20)
        assert chunk, "dropped instead of caught up"
        data += chunk
    with TtyConnection.open(sock, want="send", name="s") as sender:
        sender.send_input(b"\r")
    data += read_until_closed(behind)
    behind.close()
    assert wait_exit(spawned, timeout=60)["exit_code"] == 0
    frames = shim_frames(bytes(data))
    kinds = [kind for kind, _ in frames]
    assert kinds[:2] == [ttyproto.WELCOME, ttyproto.SCREEN] and kinds[-1] == ttyproto.EXIT
    assert kinds.count(ttyproto.SCREEN) >= 2, "a fresh screen after the skip"
    output = sum(len(payload) for kind, payload in frames if kind == ttyproto.OUTPUT)
    assert output < 30_000_000, "the backlog was skipped, not sent"
    last_screen = [payload for kind, payload in frames if kind == ttyproto.SCREEN][-1]
    tail = last_screen + b"".join(
        payload
        for kind, payload in frames[kinds.index(ttyproto.SCREEN, 2) :]
        if kind == ttyproto.OUTPUT
    )
    assert b"burst done" in tail


def test_input_past_the_queue_is_refused_whole_and_the_run_carries_on(tmp_path: Path) -> None:
    # Raw mode and never a read: the kernel's buffers fill, then the shim's queue.
    program = "import sys, time, tty\ntty.setraw(0)\nprint('raw', flush=True)\ntime.sleep(60)\n"
    spawned, target, sock = start_tty(tmp_path, [sys.executable, "-c", program])
    frame = b"z" * ttyproto.MAX_CLIENT_FRAME
    with TtyConnection.open(sock, want="write", name="w") as conn:
        if b"raw" not in conn.screen:
            read_output(conn, b"raw")
        acked = 0
        refused = None
        for _ in range(40):  # 2.5 MiB: more than the kernel and the 1 MiB queue hold
            conn.send_input(frame)
            for kind, payload in conn.read_frames(0.2):
                if kind == ttyproto.ACK:
                    acked += json.loads(payload)["n"]
                elif kind == ttyproto.ERROR:
                    refused = json.loads(payload)["error"]
            if refused:
                break
        assert refused is not None and "input queue is full" in refused
        assert acked % len(frame) == 0  # whole frames only
        assert 1024 * 1024 <= acked <= 2 * 1024 * 1024
    # The shim and the run carry on; a sender is refused the same way.
    with TtyConnection.open(sock, want="send", name="s") as sender:
        sender.send_input(frame)
        errors = [p for k, p in frames_until_closed(sender) if k == ttyproto.ERROR]
        assert errors and b"input queue is full" in errors[0]
    assert spawned.exit_report is None and psutil.pid_exists(spawned.pid or 0)
    TreeKill(target, grace_s=0).finish()
    assert wait_exit(spawned)["signal"] == signal.SIGKILL


# The run hides processes as agents do (see test_procs.TREE); on a tty, the leader's
# death also sends SIGHUP to its group, so the stubborn child ignores that as well.
TTY_TREE = r"""
import json, os, signal, subprocess, sys, time
out = sys.argv[1]
escapee = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
stubborn = subprocess.Popen([sys.executable, "-c",
    "import signal, time, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "signal.signal(signal.SIGHUP, signal.SIG_IGN); "
    "print('armed', flush=True); time.sleep(300)"], stdout=subprocess.PIPE, text=True)
stubborn.stdout.readline()
tmp = out + ".tmp"
with open(tmp, "w") as fh:
    json.dump({"escapee": escapee.pid, "stubborn": stubborn.pid}, fh)
os.replace(tmp, out)
time.sleep(300)
"""


def test_kill_tree_takes_a_tty_runs_escapees_and_term_ignorers(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids.json"
    spawned, target, sock = start_tty(tmp_path, [sys.executable, "-c", TTY_TREE, str(pids_file)])
    wait_for(pids_file.exists, 15, what="the tree to start")
    pids = json.loads(pids_file.read_text())
    victims = [psutil.Process(p) for p in (spawned.pid, *pids.values())]
    assert os.getsid(pids["escapee"]) != os.getsid(spawned.pid)  # really escaped
    viewer = TtyConnection.open(sock, want="read", name="watching")
    killer = TreeKill(target, grace_s=1.0)
    assert killer.start(time.monotonic()) >= 3
    escapee_created = victims[1].create_time()
    wait_for(lambda: not is_alive(pids["escapee"], escapee_created), 10, what="the escapee to die")
    assert psutil.pid_exists(pids["stubborn"])  # ignored TERM (and the HUP), not yet killed
    assert killer.finish() == []
    for proc in victims:
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    report = wait_exit(spawned)
    assert report["signal"] == signal.SIGTERM
    assert spawned.shim.returncode == 0
    assert frames_until_closed(viewer)[-1][0] == ttyproto.EXIT
    viewer.close()


def add(qq, *args: str) -> int:  # type: ignore[no-untyped-def]
    return int(qq("add", *args, check=True).stdout.strip())


def socket_of(home: Path, db_url: str, run_id: int) -> Path:
    run = Snapshot(db_url).run(run_id)
    assert run is not None
    return run_paths(home, run)[1] / sessions.TTY_SOCKET


def test_cancel_and_kill_stop_tty_runs_through_the_worker(
    home: Path,
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    ignorer = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "signal.signal(signal.SIGHUP, signal.SIG_IGN); time.sleep(60)"
    )
    shared = "--shared-workspace"
    cancelled = add(qq, shared, "--tty", "--", sys.executable, "-c", ignorer)
    killed = add(qq, shared, "--tty", "--", "sleep", "60")
    workers.start("-j", "2")
    for run_id in (cancelled, killed):
        wait_for(lambda r=run_id: Snapshot(db_url).run(r).pid, 15)  # type: ignore[union-attr, misc]
    assert "cancel requested" in qq("cancel", str(cancelled), "--grace", "1", check=True).stdout
    assert "kill requested" in qq("kill", str(killed), check=True).stdout
    k = wait_for_status(db_url, killed, {"cancelled"}, 15)
    assert k.signal == signal.SIGKILL
    c = wait_for_status(db_url, cancelled, {"cancelled"}, 15)
    assert c.signal == signal.SIGKILL  # ignored TERM and HUP, so KILL after the grace
    for run in (k, c):
        assert run.pid is not None and not psutil.pid_exists(run.pid)
        wait_for(lambda r=run: not socket_of(home, db_url, r.id).exists(), 10)  # type: ignore[misc]


def test_the_terminal_outlives_a_killed_worker_and_is_attached_again_after_adoption(
    home: Path,
    db_url: str,
    qq,
    workers: Workers,  # type: ignore[no-untyped-def]
) -> None:
    run_id = add(qq, "--tty", "--", sys.executable, "-c", ECHO)
    first = workers.start()
    wait_for(lambda: Snapshot(db_url).run(run_id).pid, 15)  # type: ignore[union-attr]
    sock = socket_of(home, db_url, run_id)
    conn = TtyConnection.open(sock, want="write", name="attached")
    conn.send_input(b"before\r")
    read_output(conn, b"echo:before")
    first.send_signal(signal.SIGKILL)
    first.wait()
    # No worker at all: the run goes on and takes input.
    conn.send_input(b"orphaned\r")
    read_output(conn, b"echo:orphaned")
    workers.start()
    wait_for(
        lambda: "adopted" in [e.kind for e in Snapshot(db_url).events(run_id)],
        30,
        what="the new worker to adopt the run",
    )
    run = Snapshot(db_url).run(run_id)
    assert run is not None and run.status.value == "running"
    assert send_to_run(home, run, b"adopted\r", this_host=None) == 8
    read_output(conn, b"echo:adopted")
    conn.close()
    with TtyConnection.open(sock, want="write", name="again") as again:
        assert again.you_write and b"echo:adopted" in again.screen
        again.send_input(b"quit\r")
        frames_until_closed(again)
    done = wait_for_status(db_url, run_id, {"succeeded"}, 20)
    assert done.exit_code == 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def socket_fds(pid: int) -> int:
    """The shim's sockets: its listener plus one per connected client."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed while we look
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


def test_twenty_runs_attached_and_detached_fifty_times_leak_nothing(tmp_path: Path) -> None:
    runs = [start_tty(tmp_path, ["cat"], run_id=i) for i in range(1, 21)]
    me = psutil.Process()
    baseline: dict[int, int] = {}
    for spawned, _, sock in runs:
        with TtyConnection.open(sock, want="write", name="warm-up") as conn:
            conn.send_input(b"warm\r")
            read_output(conn, b"warm\r\nwarm")
        pid = spawned.shim.pid
        wait_for(lambda p=pid: socket_fds(p) == 1, 10, what="the shim to see the close")  # type: ignore[misc]
        baseline[pid] = fd_count(pid)
    my_fds = me.num_fds()
    for cycle in range(50):
        for _spawned, _, sock in runs:
            want = "write" if cycle % 2 else "read"
            with TtyConnection.open(sock, want=want, name=f"cycle {cycle}") as conn:
                assert b"warm" in conn.screen and conn.cols == 80
    assert me.num_fds() == my_fds
    for spawned, _, _ in runs:
        pid = spawned.shim.pid
        wait_for(lambda p=pid: fd_count(p) == baseline[p], 10, what=f"shim {pid}'s fds")  # type: ignore[misc]
        zombies = [c for c in psutil.Process(pid).children() if c.status() == psutil.STATUS_ZOMBIE]
        assert zombies == []
    for spawned, _, sock in runs:
        with TtyConnection.open(sock, want="write", name="end") as conn:
            conn.send_input(b"\x04")
            frames_until_closed(conn)
        assert wait_exit(spawned)["exit_code"] == 0
    shims = {spawned.shim.pid for spawned, _, _ in runs}
    assert [c for c in me.children(recursive=True) if c.pid in shims] == []


def test_send_to_a_run_whose_shim_died_says_it_ended(home: Path, store) -> None:  # type: ignore[no-untyped-def]
    # The record still says running (nobody has noticed yet) and the socket file is
    # still there, but nobody listens: the input is not half-sent, it is refused.
    from dataclasses import replace

    from qqtui.core.intents import submit_run
    from qqtui.core.records import Status
    from qqtui.core.runspec import RunSpec

    run = submit_run(store, home, RunSpec(["cat"], tty=True))
    session = sessions.create_session_dir(home, run.agent, run.session_id)
    run_dir = sessions.create_run_dir(session, run.id)
    spawned, _target, sock = start_tty(home, ["cat"], run_id=run.id, run_dir=run_dir)
    running = replace(run, status=Status.RUNNING, pid=spawned.pid)
    assert send_to_run(home, running, b"first\r", this_host=None) == 6
    spawned.shim.kill()
    spawned.shim.wait(10)
    os.kill(spawned.pid or 0, signal.SIGKILL)
    assert os.path.lexists(sock)
    with pytest.raises(TtyError, match=rf"^run {run.id} ended before the input reached it$"):
        send_to_run(home, running, b"hello\r", this_host=None)
    assert b"hello" not in (run_dir / sessions.OUTPUT_LOG).read_bytes()


def test_a_run_on_another_host_is_refused_with_its_name(tmp_path: Path, store) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from qqtui.core.intents import submit_run
    from qqtui.core.runspec import RunSpec
    from qqtui.core.ttyclient import check_attachable

    run = submit_run(store, tmp_path, RunSpec(["cat"], tty=True))
    claimed = replace(store.claim_runs("w", 1)[0], host="build-box-7", pid=123)
    with pytest.raises(TtyError, match="runs on host build-box-7; attach or send from build-box-7"):
        check_attachable(tmp_path, claimed, "laptop")
    assert run.tty


def test_the_shims_tty_helpers_stay_stdlib_only() -> None:
    core = Path(sessions.__file__).parent
    for name in ("runshim.py", "ttyserver.py", "ttyproto.py", "ttyreplay.py"):
        text = (core / name).read_text()
        assert not re.search(r"^\s*(from|import)\s+(qqtui|psutil|sqlalchemy|pyte)", text, re.M)
    runshim_text = (core / "runshim.py").read_text()
    assert f'TTY_INPUT_FILE = "{sessions.TTY_INPUT_FILE}"' in runshim_text
