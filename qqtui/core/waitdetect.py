"""Telling that a run waits for its user, from what it leaves behind: the agent's own
report (`waiting.json`), the prompt on a tty run's emulated screen, or its terminal's
foreground process blocked reading the terminal.

Everything here reads files a run writes or /proc entries of a run's processes, so
every answer is untrusted text, capped and stripped of control characters; callers
sanitise again where it meets a terminal.

The blocked-read heuristic (`blocked_reader`), and its limits:

- The pty's foreground process group is field 8 (tpgid) of the command's
  /proc/<pid>/stat; the command (the session leader, its identity checked by pid and
  create time) and that group's leader are the candidates.
- A candidate counts when one of its threads sleeps (state S) in the terminal's read:
  /proc/<tid>/wchan is `n_tty_read` or `wait_woken` (what this kernel, 6.x, shows for
  a plain `read()` of a pty: `cat` sleeps in wait_woken, Python's readline in
  n_tty_read). wait_woken is also where socket waits sleep, so when
  /proc/<tid>/syscall is readable its fd argument must be a terminal.
- It only sees blocking reads. Programs that wait in poll/select/epoll (node-based
  agents such as Claude Code or Gemini CLI show do_epoll_wait, Python's select shows
  poll_schedule_timeout) are caught only by the screen patterns or their own hook.
  A canonical-mode reader that got half a line (no Enter yet) still counts as waiting.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from qqtui.core.procs.pids import CREATE_TIME_TOLERANCE_S, create_time_from_ticks
from qqtui.core.termtext import plain_field
from qqtui.core.ttyreplay import replay_log_tail
from qqtui.core.ttyscreen import screen_text

REASON_MAX_CHARS = 300
"""An agent's or a screen's words are kept to this many characters."""
REPORT_MAX_BYTES = 16 * 1024
"""A waiting.json bigger than this is not read past here (it is an agent's file)."""
PROMPT_LINES = 3
"""How many of the screen's last non-blank lines are matched against the patterns."""
PROMPT_LOG_WINDOW = 1024 * 1024
"""How far back from the log's end the screen's replay is looked for."""
PROMPT_SCREEN_BYTES = 8 * 1024
"""At most this much of the replay is emulated: pyte draws ~150-400 KB/s, and the
worker's tick waits for it, so a check costs tens of ms, not a second. A prompt is
in the last lines, which the tail of the stream draws."""
READ_WCHANS = frozenset({"n_tty_read", "wait_woken"})
"""Where a thread blocked in read() of a pty sleeps (see the module docstring)."""


def clean_reason(text: object) -> str:
    """One line of at most REASON_MAX_CHARS, with no control characters."""
    return plain_field(str(text))[:REASON_MAX_CHARS].strip()


# -- the agent's own report -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentReport:
    """What `qqtui.agent.waiting()` / `qqtui waiting` wrote."""

    message: str
    identity: tuple[int, int]
    """(inode, mtime_ns) of the file: each atomic write makes a new one."""
    mtime: float


def report_identity(path: Path) -> tuple[int, int] | None:
    """The identity of the report at `path`, or None when there is none."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_ino, st.st_mtime_ns)


def read_agent_report(path: Path) -> AgentReport | None:
    """The report at `path`, or None when there is none. A report that is not the JSON
    the kit writes still says "waiting", with a message saying it could not be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        raw = os.read(fd, REPORT_MAX_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    message = "the agent says it waits for you"
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        data = json.loads(raw)
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            message = clean_reason(data["message"]) or message
    return AgentReport(message, (st.st_ino, st.st_mtime_ns), st.st_mtime)


# -- the prompt on the screen -----------------------------------------------------


def compile_patterns(patterns: Iterable[str]) -> tuple[re.Pattern[str], ...]:
    """The profile's waiting_patterns, compiled (profiles.py has checked them)."""
    compiled = []
    for pattern in patterns:
        with contextlib.suppress(re.error):
            compiled.append(re.compile(pattern))
    return tuple(compiled)


def prompt_in_lines(lines: Sequence[str], patterns: Sequence[re.Pattern[str]]) -> str | None:
    """The last of the last PROMPT_LINES non-blank lines that a pattern matches."""
    tail = [line.rstrip() for line in lines if line.strip()][-PROMPT_LINES:]
    for line in reversed(tail):
        if any(p.search(line) for p in patterns):
            return clean_reason(line)
    return None


def screen_prompt(
    log_path: Path, columns: int, rows: int, patterns: Sequence[re.Pattern[str]]
) -> str | None:
    """The prompt line on the screen a tty run's log draws now, or None. Bounded: the
    replay since the screen was last cleared (see ttyreplay), of which the last
    PROMPT_SCREEN_BYTES are emulated."""
    if not patterns:
        return None
    try:
        data, _ = replay_log_tail(log_path, PROMPT_LOG_WINDOW)
    except OSError:
        return None
    return prompt_in_lines(screen_text(_screen_tail(data), columns, rows), patterns)


def _screen_tail(data: bytes, size: int = PROMPT_SCREEN_BYTES) -> bytes:
    """The last `size` bytes or fewer, starting at a line or an escape sequence so that
    no sequence is cut in two (full-screen programs position the cursor, newline-free)."""
    if len(data) <= size:
        return data
    cut = len(data) - size
    starts = [i for i in (data.find(b"\n", cut), data.find(b"\x1b", cut)) if i != -1]
    if not starts:
        return data[cut:]
    start = min(starts)
    return data[start + 1 :] if data[start] == 0x0A else data[start:]


# -- the foreground process blocked reading the terminal --------------------------


@dataclass(frozen=True, slots=True)
class BlockedReader:
    pid: int
    name: str
    wchan: str


@dataclass(frozen=True, slots=True)
class _Stat:
    name: str
    state: str
    pgrp: int
    session: int
    tpgid: int
    starttime: int


def _read_stat(path: str) -> _Stat | None:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(4096).decode("utf-8", "replace")
    except OSError:
        return None
    # The name is in parentheses and may itself hold ") ": split at the last one.
    head, sep, rest = raw.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 20:
        return None
    try:
        return _Stat(
            name=head.partition("(")[2],
            state=fields[0],
            pgrp=int(fields[2]),
            session=int(fields[3]),
            tpgid=int(fields[5]),
            starttime=int(fields[19]),
        )
    except ValueError:
        return None


def _read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(256).decode("ascii", "replace").strip()
    except OSError:
        return None


def _reads_a_terminal(pid: int, tid: int) -> bool:
    """False only when the thread's current syscall provably reads something other
    than a terminal (its fd argument); unreadable syscall info gives the benefit of
    the doubt to the wchan test."""
    syscall = _read_text(f"/proc/{pid}/task/{tid}/syscall")
    if not syscall:
        return True
    fields = syscall.split()
    if len(fields) < 2 or not fields[0].isdigit():
        return True  # "running" or "-1 ...": no syscall to look at
    try:
        fd = int(fields[1], 16)
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except (ValueError, OSError):
        return True
    return target.startswith(("/dev/pts/", "/dev/tty", "/dev/ptmx"))


def _blocked_thread(pid: int) -> str | None:
    """The wchan of a thread of `pid` asleep in a terminal read, or None."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return None
    for tid in sorted(tids)[:64]:  # a program with more threads is checked in part
        task = _read_stat(f"/proc/{pid}/task/{tid}/stat")
        if task is None or task.state != "S":
            continue
        wchan = _read_text(f"/proc/{pid}/task/{tid}/wchan")
        if wchan in READ_WCHANS and _reads_a_terminal(pid, tid):
            return wchan
    return None


def blocked_reader(pid: int | None, create_time: float | None) -> BlockedReader | None:
    """The process in the foreground of the run's terminal, when it is asleep reading
    that terminal; None otherwise (or when `pid` is not the run's command any more)."""
    if not pid or create_time is None:
        return None
    command = _read_stat(f"/proc/{pid}/stat")
    if command is None:
        return None
    if abs(create_time_from_ticks(command.starttime) - create_time) > CREATE_TIME_TOLERANCE_S:
        return None  # a recycled pid: not our run's command
    if command.tpgid <= 0:
        return None  # no controlling terminal
    candidates = [pid] if command.pgrp == command.tpgid else []
    if command.tpgid != pid:
        candidates.append(command.tpgid)
    for candidate in candidates:
        before = _read_stat(f"/proc/{candidate}/stat")
        # The group must be in the command's session: a pid of another session that
        # happens to carry the number is none of ours.
        if before is None or before.session != command.session:
            continue
        wchan = _blocked_thread(candidate)
        if wchan is None:
            continue
        after = _read_stat(f"/proc/{candidate}/stat")
        if after is None or after.starttime != before.starttime:
            continue  # it exited and the pid was reused while we looked
        return BlockedReader(candidate, clean_reason(before.name), wchan)
    return None
