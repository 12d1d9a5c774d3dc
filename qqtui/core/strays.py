"""Processes on this host that outlived the attempt they were started for.

A worker that is down longer than the rescue horizon is declared dead by another
host, which ends its runs as `lost` (and may requeue them as a next attempt) without
touching their processes: they are on a host it may not signal. The shims and
commands live on. When a worker starts on that host again, it finds them by the
tags every run process carries (QQ_HOME, QQ_RUN_ID, QQ_ATTEMPT) and ends them: this
host launched them, so this host alone may, and their attempt is over in the table.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from qqtui.core.records import RunRecord, Status

STRAY_GRACE_S = 2.0  # TERM, then this long, then KILL


@dataclass(frozen=True, slots=True)
class Strays:
    """The live processes of one ended attempt of one run, found on this host."""

    run_id: int
    attempt: int
    processes: tuple[psutil.Process, ...]
    run: RunRecord | None  # as read after the scan (None: the run is gone)


def tagged_processes(home: Path) -> dict[tuple[int, int], list[psutil.Process]]:
    """This user's live processes tagged with `home`, by (run id, attempt)."""
    me = os.getpid()
    uid = os.getuid()
    home_text = str(home)
    found: dict[tuple[int, int], list[psutil.Process]] = {}
    for proc in psutil.process_iter(["uids", "environ"]):
        if proc.pid in (me, 0, 1):
            continue
        uids = proc.info.get("uids")
        if uids is not None and uids.real != uid and uid != 0:
            continue
        env = proc.info.get("environ") or {}
        if env.get("QQ_HOME") != home_text:
            continue
        try:
            key = (int(env["QQ_RUN_ID"]), int(env.get("QQ_ATTEMPT", "1")))
        except (KeyError, ValueError):
            continue
        found.setdefault(key, []).append(proc)
    return found


def is_over(run: RunRecord | None, attempt: int, host: str) -> bool:
    """Whether processes tagged with `attempt` of `run` may no longer live on `host`.

    Over: the run is gone, has moved on to another attempt, or this attempt ended
    after this host ran it. A run whose attempt still runs is never a stray (its
    worker, or recovery, owns it), on whatever host the table says.
    """
    if run is None or run.attempt != attempt:
        return True
    return run.status is not Status.RUNNING and run.host == host


def find_strays(
    home: Path, host: str, current: Callable[[list[int]], Mapping[int, RunRecord]]
) -> list[Strays]:
    """Ended attempts with processes still alive here. `current` reads the runs by id;
    it is called after the scan, so a run's state is never older than its processes."""
    tagged = tagged_processes(home)
    if not tagged:
        return []
    runs = current(sorted({run_id for run_id, _ in tagged}))
    return [
        Strays(run_id, attempt, tuple(procs), runs.get(run_id))
        for (run_id, attempt), procs in sorted(tagged.items())
        if is_over(runs.get(run_id), attempt, host)
    ]


def end_strays(strays: Strays, grace_s: float = STRAY_GRACE_S) -> list[psutil.Process]:
    """TERM the processes and their descendants, KILL what is left after `grace_s`;
    returns what could not be ended. psutil re-checks each process's create time
    before signalling it, so a reused pid is never hit."""
    victims: dict[int, psutil.Process] = {}
    for proc in strays.processes:
        victims[proc.pid] = proc
        with contextlib.suppress(psutil.Error):
            for child in proc.children(recursive=True):
                victims.setdefault(child.pid, child)
    for proc in victims.values():
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(list(victims.values()), timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _, alive = psutil.wait_procs(alive, timeout=1.0)
    return alive
