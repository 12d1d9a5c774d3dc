"""Spawning a run: its shim started with posix_spawn, the environment it gets, and
the shim's reports (the command's pids, a start error, the exit)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qqtui.core import runshim
from qqtui.core.procs.pids import create_time_from_ticks

SHIM_PATH = Path(runshim.__file__)
DEFAULT_LOG_CAP = 64 * 1024 * 1024


class SpawnError(Exception):
    """The command could not be started; the message is the reason to record."""


@dataclass(frozen=True, slots=True)
class RunEnvironment:
    run_id: int
    home: Path
    session_id: str
    session_dir: Path
    heartbeat_file: Path
    attempt: int = 1
    artifacts_dir: Path | None = None  # run-scoped outputs (reports, patches, logs)

    def variables(self) -> dict[str, str]:
        variables = {
            "QQ_HOME": str(self.home),
            "QQ_SESSION_ID": self.session_id,
            "QQ_SESSION_DIR": str(self.session_dir),
            "QQ_RUN_ID": str(self.run_id),
            "QQ_HEARTBEAT_FILE": str(self.heartbeat_file),
            "QQ_ATTEMPT": str(self.attempt),
        }
        if self.artifacts_dir is not None:
            variables["QQ_ARTIFACTS_DIR"] = str(self.artifacts_dir)
        return variables


@dataclass(slots=True)
class Spawned:
    """A run this process started: the shim is our child, the command its child.

    Starting does not block: the shim's first report line (pids, or the reason the
    command could not start) arrives on `report_fd` like its later exit report.
    """

    run_id: int
    shim: ShimProcess
    pid: int | None = None
    pgid: int | None = None
    pid_create_time: float | None = None
    shim_create_time: float | None = None
    start_error: str | None = None
    exit_report: dict[str, int | bool | None] | None = None
    report_buffer: bytes = b""
    closed: bool = False

    @property
    def report_fd(self) -> int:
        assert self.shim.stdout is not None
        return self.shim.stdout.fileno()

    @property
    def started(self) -> bool:
        return self.pid is not None

    @property
    def answered(self) -> bool:
        """The shim said whether the command started (or died trying)."""
        return self.started or self.start_error is not None

    def read_reports(self) -> bool:
        """Read what the shim said so far; True once its report pipe is closed."""
        if self.closed:
            return True
        try:
            data = os.read(self.report_fd, 4096)
        except BlockingIOError:
            return False
        except OSError:
            data = b""
        if not data:
            self.closed = True
            if not self.answered:
                self.shim.wait()
                self.start_error = f"the run shim died at start (exit {self.shim.returncode})"
            return True
        self.report_buffer += data
        while b"\n" in self.report_buffer:
            line, self.report_buffer = self.report_buffer.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "error" in msg:
                self.start_error = str(msg["error"])
            elif "pid" in msg:
                self.pid = int(msg["pid"])
                self.pgid = int(msg["pgid"])
                self.pid_create_time = create_time_from_ticks(int(msg["starttime"]))
                self.shim_create_time = create_time_from_ticks(int(msg["shim_starttime"]))
            elif "exit_code" in msg or "signal" in msg:
                self.exit_report = msg
        return False

    def wait_started(self, timeout_s: float = 30.0) -> None:
        """Block until the shim answers; raises SpawnError if the command did not start."""
        deadline = time.monotonic() + timeout_s
        while not self.answered:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.shim.kill()
                self.close()
                self.shim.wait()
                raise SpawnError(f"the run shim did not start within {timeout_s:g}s")
            select.select([self.report_fd], [], [], remaining)
            self.read_reports()
        if self.start_error is not None:
            self.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.shim.wait(timeout=5)  # it exits right after saying why: reap it
            raise SpawnError(self.start_error)

    def close(self) -> None:
        if self.shim.stdout is not None and not self.shim.stdout.closed:
            self.shim.stdout.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.shim.wait(timeout=0)


def build_env(overrides: Mapping[str, str], run_env: RunEnvironment) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    env.update(run_env.variables())
    return env


def start_run(
    *,
    run_env: RunEnvironment,
    argv: Sequence[str],
    cwd: str,
    env_overrides: Mapping[str, str],
    log_path: Path,
    status_path: Path,
    log_cap: int = DEFAULT_LOG_CAP,
    tty_size: tuple[int, int] | None = None,
    socket_path: Path | None = None,
) -> Spawned:
    """Start `argv` under a fresh shim in a new session, without waiting for it.

    With `tty_size` (columns, rows) the command runs on a pseudo-terminal the shim
    keeps and serves on the Unix socket `socket_path`.

    Raises SpawnError at once for what can be known here (a bad cwd, no shim).
    """
    if not os.path.isdir(cwd):
        raise SpawnError(f"working directory {cwd} does not exist or is not a directory")
    config = {
        "argv": list(argv),
        "cwd": cwd,
        # The shim itself carries no QQ_RUN_ID, so a kill of the run's tree (which
        # also hunts processes by that variable) spares it and it can record the end.
        "env": build_env(env_overrides, run_env),
        "log": str(log_path),
        "status": str(status_path),
        "cap": log_cap,
        "attempt": run_env.attempt,
    }
    if tty_size is not None:
        if socket_path is None:
            raise SpawnError("a tty run needs a socket path")
        config["tty"] = {"cols": tty_size[0], "rows": tty_size[1]}
        config["socket"] = str(socket_path)
    shim_env = {k: v for k, v in os.environ.items() if not k.startswith("QQ_")}
    try:
        shim = ShimProcess.spawn(shim_env)
    except OSError as exc:
        raise SpawnError(f"cannot start the run shim: {exc.strerror or exc}") from exc
    try:
        # Far below the pipe buffer for any sane environment, so this never blocks long.
        with open(shim.stdin_fd, "wb", closefd=True) as stdin:
            stdin.write(json.dumps(config).encode())
    except BrokenPipeError as exc:
        shim.wait()
        raise SpawnError(f"the run shim died at start (exit {shim.returncode})") from exc
    os.set_blocking(shim.stdout.fileno(), False)
    return Spawned(run_id=run_env.run_id, shim=shim)


class ShimProcess:
    """The shim as our child, started with posix_spawn: a worker is a large process,
    and fork() copying its page tables cost ~10 ms a run; posix_spawn does not."""

    def __init__(self, pid: int, stdin_fd: int, stdout_fd: int) -> None:
        self.pid = pid
        self.stdin_fd = stdin_fd
        self.stdout = open(stdout_fd, "rb", buffering=0)  # noqa: SIM115 - owned by Spawned
        self.returncode: int | None = None

    @classmethod
    def spawn(cls, env: Mapping[str, str]) -> ShimProcess:
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-I", "-S", str(SHIM_PATH)],
                dict(env),
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, in_r, 0),
                    (os.POSIX_SPAWN_DUP2, out_w, 1),
                    (os.POSIX_SPAWN_DUP2, devnull, 2),
                ],
                setsid=True,  # its own session: a signal for our group never reaches it
            )
        except OSError:
            os.close(in_w)
            os.close(out_r)
            raise
        finally:
            # Our copies of the child's ends (all close-on-exec, so nothing else inherits them).
            for fd in (in_r, out_w, devnull):
                os.close(fd)
        return cls(pid, in_w, out_r)

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = 0  # reaped elsewhere; nothing more to learn
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(str(SHIM_PATH), timeout or 0)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        assert self.returncode is not None
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


def spawn_run(*, start_timeout_s: float = 30.0, **kwargs: Any) -> Spawned:
    """`start_run`, then wait until the command is running (or raise SpawnError)."""
    spawned = start_run(**kwargs)
    spawned.wait_started(start_timeout_s)
    return spawned
