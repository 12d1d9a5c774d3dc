"""Scanning /proc for display: every run's process tree with CPU%, resident size
and status, in one pass per tick shared by all runs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from qqtui.core.procs.pids import CLK_TCK, CREATE_TIME_TOLERANCE_S, RunTarget


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
                    and abs(boot + start / CLK_TCK - ctime) <= CREATE_TIME_TOLERANCE_S
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
                cpu = round((ticks - seen.ticks) / CLK_TCK / elapsed * 100, 1)
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
        create_time = boot + starttime / CLK_TCK
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
