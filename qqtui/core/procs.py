"""Process control: spawn a run through its shim, find a run's whole tree, signal safely.

A process is named by (pid, create time), never by pid alone: every signal goes
through a `psutil.Process` whose create time was checked, so a recycled pid is
never hit.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from qqtui.core import runshim
from qqtui.core.records import RunRecord

SHIM_PATH = Path(runshim.__file__)
CREATE_TIME_TOLERANCE_S = 0.05
DEFAULT_LOG_CAP = 64 * 1024 * 1024

_CLK_TCK = os.sysconf("SC_CLK_TCK")


class SpawnError(Exception):
    """The command could not be started; the message is the reason to record."""


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"boot-{psutil.boot_time():.0f}"


def create_time_from_ticks(ticks: int) -> float:
    """The create time psutil reports for a process that started `ticks` after boot."""
    return psutil.boot_time() + ticks / _CLK_TCK


def verified_process(pid: int | None, create_time: float | None) -> psutil.Process | None:
    """The live process `pid` if and only if it is the one created at `create_time`."""
    if not pid or create_time is None:
        return None
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > CREATE_TIME_TOLERANCE_S:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return None
    return proc


def is_alive(pid: int | None, create_time: float | None) -> bool:
    return verified_process(pid, create_time) is not None


def signal_verified(pid: int | None, create_time: float | None, sig: int) -> bool:
    """Send `sig` only if `pid` is still the process created at `create_time`."""
    proc = verified_process(pid, create_time)
    if proc is None:
        return False
    try:
        proc.send_signal(sig)  # psutil re-checks identity right before kill()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return True


# --- spawning ----------------------------------------------------------------------------


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
) -> Spawned:
    """Start `argv` under a fresh shim in a new session, without waiting for it.

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


# --- finding a run's processes -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunTarget:
    """What identifies one run's processes."""

    run_id: int
    home: Path
    attempt: int
    pid: int | None
    pid_create_time: float | None
    pgid: int | None
    shim_pid: int | None
    shim_create_time: float | None

    @classmethod
    def of(cls, run: RunRecord, home: Path) -> RunTarget:
        """The processes of `run`'s current attempt, as recorded in the store."""
        return cls(
            run_id=run.id,
            home=home,
            attempt=run.attempt,
            pid=run.pid,
            pid_create_time=run.pid_create_time,
            pgid=run.pgid,
            shim_pid=run.shim_pid,
            shim_create_time=run.shim_create_time,
        )


def _children_map(procs: Iterable[psutil.Process]) -> dict[int, list[psutil.Process]]:
    children: dict[int, list[psutil.Process]] = {}
    for proc in procs:
        ppid = proc.info.get("ppid")
        if ppid is not None:
            children.setdefault(ppid, []).append(proc)
    return children


def _descendants(root: int, children: Mapping[int, list[psutil.Process]]) -> list[psutil.Process]:
    out: list[psutil.Process] = []
    stack = [root]
    seen = {root}
    while stack:
        for child in children.get(stack.pop(), ()):
            if child.pid not in seen:
                seen.add(child.pid)
                out.append(child)
                stack.append(child.pid)
    return out


def _env_matches(proc: psutil.Process, run_id: str, home: str, attempt: str) -> bool:
    """Tagged with this attempt of this run of this home (run ids repeat across homes,
    and a retried run's next attempt must survive the last one's cleanup)."""
    try:
        env = proc.environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
        return False
    return (
        env.get("QQ_RUN_ID") == run_id
        and env.get("QQ_HOME") == home
        and env.get("QQ_ATTEMPT", "1") == attempt
    )


def find_run_processes(target: RunTarget) -> list[psutil.Process]:
    """Every live process of the run: its process group, everything carrying its
    QQ_RUN_ID (and home) in the environment (setsid escapees, double forks), and all
    their descendants and the shim's. The shim itself is not included."""
    me = os.getpid()
    uid = os.getuid()
    all_procs = list(psutil.process_iter(["ppid", "uids", "create_time"]))
    children = _children_map(all_procs)
    victims: dict[int, psutil.Process] = {}
    run_id = str(target.run_id)
    home = str(target.home)
    floor = target.pid_create_time or target.shim_create_time or 0.0
    group_is_ours = _group_is_ours(target)
    for proc in all_procs:
        if proc.pid in (me, target.shim_pid) or proc.pid <= 1:
            continue
        info = proc.info
        uids = info.get("uids")
        if uids is not None and uids.real != uid and uid != 0:
            continue
        created = info.get("create_time") or 0.0
        if created + CREATE_TIME_TOLERANCE_S < floor:
            continue  # older than the run: cannot be one of its processes
        in_group = False
        if group_is_ours:
            with contextlib.suppress(OSError):
                in_group = os.getpgid(proc.pid) == target.pgid
        if in_group or _env_matches(proc, run_id, home, str(target.attempt)):
            victims[proc.pid] = proc
    roots = list(victims)
    if verified_process(target.shim_pid, target.shim_create_time) is not None:
        roots.append(target.shim_pid)  # type: ignore[arg-type]
    for root in roots:
        for proc in _descendants(root, children):
            if proc.pid != me:
                victims.setdefault(proc.pid, proc)
    return list(victims.values())


def _group_is_ours(target: RunTarget) -> bool:
    """Whether processes in `target.pgid` belong to this run. True while the leader is
    alive with the recorded create time; also when the leader is gone, since Linux does
    not hand out a pid that is still some group's id. False when the pid now names
    another process: that group is somebody else's."""
    if not target.pgid or target.pgid != target.pid or target.pid_create_time is None:
        return False
    try:
        leader = psutil.Process(target.pgid)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
    try:
        return abs(leader.create_time() - target.pid_create_time) <= CREATE_TIME_TOLERANCE_S
    except psutil.Error:
        return False


def _send(procs: Iterable[psutil.Process], sig: int) -> list[psutil.Process]:
    hit = []
    for proc in procs:
        try:
            proc.send_signal(sig)  # identity (create time) re-checked by psutil
            hit.append(proc)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        except psutil.AccessDenied:
            hit.append(proc)
    return hit


def _signal_group(target: RunTarget, sig: int) -> None:
    """killpg reaches members forked after our scan; only while the group provably
    belongs to this run (its leader is alive with the recorded create time)."""
    if target.pgid and target.pgid == target.pid and is_alive(target.pid, target.pid_create_time):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(target.pgid, sig)


@dataclass(slots=True)
class TreeKill:
    """Stops one run's tree: `start()` sends the first signal, `finish()` SIGKILLs
    whatever is left and returns what could not be killed. Non-blocking, so one
    supervisor can stop many runs at once."""

    target: RunTarget
    grace_s: float
    started_at: float = 0.0
    signalled: list[psutil.Process] = field(default_factory=list)

    def start(self, now: float, sig: int = signal.SIGTERM) -> int:
        """Signal the tree; returns how many processes it had when we looked."""
        self.started_at = now
        victims = find_run_processes(self.target)  # before the group signal thins it out
        _signal_group(self.target, sig)
        self.signalled = _send(victims, sig)
        return len(victims)

    def due(self, now: float) -> bool:
        return now - self.started_at >= self.grace_s

    def alive(self) -> list[psutil.Process]:
        return [p for p in find_run_processes(self.target) if _is_running(p)]

    def finish(self, settle_s: float = 2.0) -> list[psutil.Process]:
        deadline = time.monotonic() + settle_s
        survivors: list[psutil.Process] = []
        while True:
            _signal_group(self.target, signal.SIGKILL)
            survivors = [p for p in find_run_processes(self.target) if _is_running(p)]
            if not survivors:
                return []
            _send(survivors, signal.SIGKILL)
            _, survivors = psutil.wait_procs(survivors, timeout=0.2)
            if not survivors or time.monotonic() >= deadline:
                return [p for p in survivors if _is_running(p)]


def _is_running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


def kill_tree(target: RunTarget, grace_s: float) -> list[psutil.Process]:
    """Blocking: TERM the tree, wait up to `grace_s` for it to go, then KILL the rest."""
    killer = TreeKill(target, grace_s)
    if grace_s <= 0:
        return killer.finish()
    killer.start(time.monotonic())
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not killer.alive():
            return []
        time.sleep(0.05)
    return killer.finish()


# --- PID trees for display ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcInfo:
    pid: int
    ppid: int
    depth: int
    name: str
    cmdline: tuple[str, ...]
    status: str
    cpu_percent: float
    rss: int
    create_time: float


@dataclass(frozen=True, slots=True)
class RunTree:
    run_id: int
    procs: tuple[ProcInfo, ...]

    @property
    def cpu_percent(self) -> float:
        return sum(p.cpu_percent for p in self.procs)

    @property
    def rss(self) -> int:
        return sum(p.rss for p in self.procs)

    @property
    def count(self) -> int:
        return len(self.procs)


# /proc/<pid>/stat state letters, as psutil names them.
_STATES: dict[bytes, str] = {
    b"R": psutil.STATUS_RUNNING,
    b"S": psutil.STATUS_SLEEPING,
    b"D": psutil.STATUS_DISK_SLEEP,
    b"T": psutil.STATUS_STOPPED,
    b"t": psutil.STATUS_TRACING_STOP,
    b"Z": psutil.STATUS_ZOMBIE,
    b"X": psutil.STATUS_DEAD,
    b"x": psutil.STATUS_DEAD,
    b"K": "wake-kill",  # psutil._common.STATUS_WAKE_KILL, not exported
    b"W": psutil.STATUS_WAKING,
    b"I": psutil.STATUS_IDLE,
    b"P": psutil.STATUS_PARKED,
}
# Sleeping (interruptible, or a kernel thread's idle): not running, so not growing.
_IDLE_STATES = frozenset({b"S", b"I"})
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_PROC = "/proc"
FULL_SCAN_EVERY = 10
"""Every this many scans, every process's stat is read again, whatever the pid cursor
says (a cursor that went all the way round between two scans looks like one that
did not move)."""
RSS_REFRESH_S = 5.0
"""A sleeping process with no page fault and no CPU tick since its resident size was
read has it re-read only this often. Resident memory grows only through page faults,
which stat counts; it shrinks through munmap (too quick to cost a tick) or the kernel
reclaiming pages, which is what this bounds. With 100 runs of mostly sleeping processes
this spares ~300 of a scan's ~720 reads of /proc."""
CMDLINE_REFRESH_S = 10.0
"""A known process's command line is re-read at least this often, and at once when it
execs: a command line changes without an exec only by setproctitle-style rewriting."""


def _read_proc_file(path: str, size: int = 4096) -> bytes | None:
    """The whole of a small /proc file, or None when the process is gone (or hidden)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, size)
        if len(data) < size:
            return data
        chunks = [data]
        while chunk := os.read(fd, 65536):  # a long command line
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _last_pid() -> int | None:
    """The pid the kernel handed out last (/proc/loadavg's last field)."""
    data = _read_proc_file(f"{_PROC}/loadavg")
    try:
        return int(data.rsplit(None, 1)[1]) if data else None
    except (IndexError, ValueError):
        return None


def _always(pid: int) -> bool:
    return True


def _pid_max() -> int:
    try:
        return int(Path(f"{_PROC}/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 1 << 22  # the largest the kernel allows


def _parse_cmdline(data: bytes) -> tuple[str, ...]:
    """/proc/<pid>/cmdline as psutil splits it (setproctitle may use spaces, not NULs)."""
    text = os.fsdecode(data)
    if not text:
        return ()
    sep = "\x00" if text.endswith("\x00") else " "
    if text.endswith(sep):
        text = text[:-1]
    args = text.split(sep)
    if sep == "\x00" and len(args) == 1 and " " in text:
        args = text.split(" ")
    return tuple(args)


@dataclass(slots=True)
class _Seen:
    """What the table keeps about one process between scans."""

    ticks: int  # utime + stime, in clock ticks, at `at`
    at: float  # time.monotonic() of that sample
    exec_mark: tuple[bytes, ...]  # changes when the process execs another program
    cmdline: tuple[str, ...]
    cmdline_at: float
    info: ProcInfo | None = None  # the last one handed out
    rss: int = -1  # bytes, read from statm at `rss_at`, when its stat said `rss_mark`
    rss_mark: int = -1
    rss_at: float = 0.0


# Processes read between two calls of a scan's checkpoint: ~1 ms of work here.
CHECKPOINT_EVERY = 64


def _no_pause() -> None:
    return None


class ProcessTable:
    """One pass over /proc per `scan()`, shared by every run's tree.

    It reads /proc/<pid>/stat directly (one open and read per process) instead of
    through psutil: with 100 runs psutil cost ~65 ms of CPU a scan, mostly re-reading
    the same stat file for each attribute and re-checking pid reuse, on a thread that
    competes with the UI for the GIL. Between scans it keeps, per (pid, start time),
    the CPU ticks (so CPU% means something) and the command line, which is only
    re-read when the process execs or after CMDLINE_REFRESH_S. The numbers are the
    ones psutil gives: CPU% of one core since the last scan rounded to 0.1 (0.0 the
    first time a process is seen), resident set size, psutil's status names.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], _Seen] = {}
        # Processes in no run's tree at the last scan: pid -> (ppid, start ticks).
        self._outside: dict[int, tuple[int, int]] = {}
        self._last_pid: int | None = None  # the kernel's pid cursor at the last scan
        self._scans_since_full = 0
        self._pid_max = _pid_max()

    def _reused(self, last_pid: int | None) -> Callable[[int], bool]:
        """A test "may this pid name another process than at the last scan?", true for
        every pid at the first scan, when a full scan is due, or when the cursor is
        unknown or went round too far. The kernel hands out pids in a cycle, so a pid
        can only have been given to a new process if the cursor passed it since."""
        before = self._last_pid
        self._last_pid = last_pid
        self._scans_since_full += 1
        if before is None or last_pid is None or self._scans_since_full >= FULL_SCAN_EVERY:
            self._scans_since_full = 0
            return _always
        pid_max = self._pid_max
        moved = (last_pid - before) % pid_max
        if moved >= pid_max // 2:
            self._scans_since_full = 0
            return _always
        return lambda pid: 0 < (pid - before) % pid_max <= moved

    def scan(
        self, targets: Sequence[RunTarget], checkpoint: Callable[[], None] | None = None
    ) -> dict[int, RunTree]:
        """Every target's process tree. `checkpoint`, if given, is called between pieces
        of the work (every CHECKPOINT_EVERY processes read, and between runs' trees): a
        caller may block there to let another thread have the interpreter."""
        pause = checkpoint or _no_pause
        now = time.monotonic()
        boot = psutil.boot_time()  # as create_time_from_ticks computes recorded times
        # pid -> its stat file, and its start time in ticks. Only bytes and ints are
        # kept per process, no lists or tuples: ~600 live containers per scan made the
        # interpreter's collector run mid-scan. A file is split whole only for the
        # processes of a run.
        stats: dict[int, bytes] = {}
        starts: dict[int, int] = {}
        parents: dict[int, int] = {}
        try:
            pids = {int(name) for name in os.listdir(_PROC) if name.isdigit()}
        except OSError:
            pids = set()
        # A process outside every run's tree last time is not read again while its pid
        # and its parent's cannot have been reused and its parent is alive: its parent
        # then is the same (only a parent's exit reparents), so it is still outside, and
        # with ~100 runs on a busy machine that spares a third of the reads.
        reused = self._reused(_last_pid())
        outside = self._outside
        for count, pid in enumerate(pids):
            if not count % CHECKPOINT_EVERY:
                pause()
            known = outside.get(pid)
            if known is not None and known[0] in pids and not reused(pid) and not reused(known[0]):
                parents[pid], starts[pid] = known
                continue
            data = _read_proc_file(f"{_PROC}/{pid}/stat")
            if not data:
                continue
            head = data[data.rfind(b")") + 2 :].split(None, 20)
            if len(head) < 20:
                continue
            stats[pid] = data
            starts[pid] = int(head[19])
            parents[pid] = int(head[1])
        children: dict[int, list[int]] = {}
        for pid, ppid in parents.items():
            children.setdefault(ppid, []).append(pid)
        in_trees: set[int] = set()
        live: set[tuple[int, int]] = set()
        trees: dict[int, RunTree] = {}
        for target in targets:
            pause()
            root_pid = None
            for pid, ctime in (
                (target.shim_pid, target.shim_create_time),
                (target.pid, target.pid_create_time),
            ):
                start = starts.get(pid or -1)
                if (
                    start is not None
                    and ctime is not None
                    and abs(boot + start / _CLK_TCK - ctime) <= CREATE_TIME_TOLERANCE_S
                ):
                    root_pid = pid
                    break
            if root_pid is None:
                trees[target.run_id] = RunTree(target.run_id, ())
                continue
            infos: list[ProcInfo] = []
            skip_root = root_pid == target.shim_pid
            # Iterative DFS in display order: a parent, then its children by pid.
            stack: list[tuple[int, int]] = [(root_pid, 0)]
            visited: set[int] = set()
            while stack:
                pid, depth = stack.pop()
                if pid in visited:
                    continue
                visited.add(pid)
                in_trees.add(pid)
                data = stats.get(pid) or _read_proc_file(f"{_PROC}/{pid}/stat")
                if data and not (skip_root and pid == root_pid):
                    info = self._describe(pid, depth - skip_root, data, now, boot, live)
                    if info is not None:
                        infos.append(info)
                kids = children.get(pid)
                if kids:
                    stack.extend((kid, depth + 1) for kid in sorted(kids, reverse=True))
            trees[target.run_id] = RunTree(target.run_id, tuple(infos))
        if len(live) != len(self._seen):
            self._seen = {key: seen for key, seen in self._seen.items() if key in live}
        self._outside = {
            pid: (ppid, starts[pid]) for pid, ppid in parents.items() if pid not in in_trees
        }
        return trees

    def _describe(
        self,
        pid: int,
        depth: int,
        data: bytes,
        now: float,
        boot: float,
        live: set[tuple[int, int]],
    ) -> ProcInfo | None:
        rpar = data.rfind(b")")
        # Field n of proc(5) is fields[n - 3]: pid and name come before.
        fields = data[rpar + 2 :].split()
        state = fields[0]
        if state == b"Z":
            return None  # as before: psutil refused a zombie's command line
        starttime = int(fields[19])
        ticks = int(fields[11]) + int(fields[12])
        comm = data[data.find(b"(") + 1 : rpar]
        # An exec replaces the name and, with address space randomisation, where the
        # stack and arguments live (startcode, endcode, startstack, arg_start, arg_end):
        # a fork caught before its exec must not keep its parent's command line.
        exec_mark = (comm, *fields[23:26], *fields[45:47])
        key = (pid, starttime)
        live.add(key)
        seen = self._seen.get(key)
        cpu = 0.0
        if (
            seen is None
            or seen.exec_mark != exec_mark
            or now - seen.cmdline_at >= CMDLINE_REFRESH_S
        ):
            raw = _read_proc_file(f"{_PROC}/{pid}/cmdline")
            if raw is None:
                return None  # gone since its stat was read
            cmdline = _parse_cmdline(raw)
            cmdline_at = now
        else:
            cmdline, cmdline_at = seen.cmdline, seen.cmdline_at
        if seen is not None:
            elapsed = now - seen.at
            if elapsed > 0:
                cpu = round((ticks - seen.ticks) / _CLK_TCK / elapsed * 100, 1)
            seen.ticks, seen.at = ticks, now
            if seen.cmdline_at != cmdline_at:  # re-read: keep the new mark
                seen.exec_mark, seen.cmdline, seen.cmdline_at = exec_mark, cmdline, cmdline_at
        else:
            seen = self._seen[key] = _Seen(ticks, now, exec_mark, cmdline, cmdline_at)
        # CPU ticks plus minor and major faults (proc(5) fields 10 and 12): all three only
        # grow, so their sum stays the same exactly when none of them moved.
        rss_mark = ticks + int(fields[7]) + int(fields[9])
        if (
            seen.rss_mark == rss_mark
            and state in _IDLE_STATES
            and now - seen.rss_at < RSS_REFRESH_S
        ):
            rss = seen.rss
        else:
            # statm, not stat's rss field: since Linux 6.2 that one is a per-CPU estimate,
            # hundreds of KiB off for a small process; statm (what psutil and htop read)
            # is exact.
            statm = _read_proc_file(f"{_PROC}/{pid}/statm")
            if not statm:
                return None  # gone since its stat was read
            rss = int(statm.split(None, 2)[1]) * _PAGE_SIZE
            seen.rss, seen.rss_mark, seen.rss_at = rss, rss_mark, now
        name = os.fsdecode(comm)
        if len(name) >= 15 and cmdline:
            # The kernel cuts names at 15 bytes; psutil then takes the program's file
            # name when it starts with the cut name, and so does this.
            program = os.path.basename(cmdline[0])
            if program.startswith(name):
                name = program
        ppid = int(fields[1])
        status = _STATES.get(state, "?")
        create_time = boot + starttime / _CLK_TCK
        last = seen.info
        if (
            last is not None
            and last.cpu_percent == cpu
            and last.rss == rss
            and last.status == status
            and last.depth == depth
            and last.ppid == ppid
            and last.name == name
            and last.cmdline is cmdline
            and last.create_time == create_time
        ):
            # Most processes of a run sleep: handing out the same object keeps the
            # objects that outlive a scan (and so the collector's work) few.
            return last
        seen.info = ProcInfo(
            pid=pid,
            ppid=ppid,
            depth=depth,
            name=name,
            cmdline=cmdline,
            status=status,
            cpu_percent=cpu,
            rss=rss,
            create_time=create_time,
        )
        return seen.info
