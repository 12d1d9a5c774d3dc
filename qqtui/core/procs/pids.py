"""Process identity: a process is named by (pid, create time), never by pid alone.

Every signal a run's process gets goes through a `psutil.Process` whose create time
was checked here, or that psutil re-checks right before the kill (the tree members
`kill.py` finds), so a recycled pid is never hit. The one plain `os.kill` is the
shim's, in `spawn.py`: an unreaped child of ours, whose pid cannot be reused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

from qqtui.core.records import RunRecord

CREATE_TIME_TOLERANCE_S = 0.05
CLK_TCK = os.sysconf("SC_CLK_TCK")


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"boot-{psutil.boot_time():.0f}"


def create_time_from_ticks(ticks: int) -> float:
    """The create time psutil reports for a process that started `ticks` after boot."""
    return psutil.boot_time() + ticks / CLK_TCK


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
