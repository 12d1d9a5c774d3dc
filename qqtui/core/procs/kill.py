"""Stopping a run's process tree: find every process of the run (its group, its
tagged escapees, their descendants), TERM it, KILL what is left after a grace."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import psutil

from qqtui.core.procs.pids import (
    CREATE_TIME_TOLERANCE_S,
    RunTarget,
    is_alive,
    verified_process,
)

# After the KILL, how long `TreeKill.finish` waits by default for the tree to go
# before it returns the survivors.
SETTLE_S = 2.0


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

    def finish(self, settle_s: float = SETTLE_S) -> list[psutil.Process]:
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
