"""Keep a worker alive for a home: the app starts a detached `qqtui worker` when none
runs, so launching works out of the box and runs outlive the app."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from qqtui.config import Settings
from qqtui.core.errors import QqError
from qqtui.core.procs.pids import boot_id, is_alive, signal_verified
from qqtui.core.records import DEFAULT_GRACE_S, Status, WorkerRecord
from qqtui.core.store import Store

WORKER_LOG = "worker.log"


def live_local_workers(store: Store) -> list[str]:
    """Ids of workers on this host whose process is alive (pid and create time)."""
    return [w.id for w in local_worker_records(store)]


def start_detached_worker(settings: Settings, jobs: int = 8) -> int:
    """Start `qqtui worker` in its own session (it survives the caller); returns its pid."""
    log_path = Path(settings.home) / WORKER_LOG
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qqtui",
                "--home",
                str(settings.home),
                "--db",
                settings.db_url,
                "worker",
                "-j",
                str(jobs),
                "--exit-when-idle",
                str(auto_idle_exit_s()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(fd)
    return proc.pid


def ensure_worker(store: Store, settings: Settings, jobs: int = 8) -> int | None:
    """Start a detached worker unless one is alive; returns the new pid or None."""
    if live_local_workers(store):
        return None
    return start_detached_worker(settings, jobs)


# -- the app's presence: an auto-started worker exits when idle and no app is open

APPS_DIR = "apps"
IDLE_EXIT_ENV = "QQTUI_WORKER_IDLE_EXIT"
DEFAULT_IDLE_EXIT_S = 600.0


def auto_idle_exit_s() -> float:
    """Idle seconds after which an auto-started worker exits (env QQTUI_WORKER_IDLE_EXIT;
    0 or less: never)."""
    raw = os.environ.get(IDLE_EXIT_ENV, "").strip()
    try:
        return float(raw) if raw else DEFAULT_IDLE_EXIT_S
    except ValueError:
        return DEFAULT_IDLE_EXIT_S


def register_app(home: Path) -> Path:
    """Mark this process as an open app of `home` (a file `apps/<pid>` holding its create
    time); returns the marker to pass to `unregister_app`."""
    me = psutil.Process()
    folder = Path(home) / APPS_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    marker = folder / str(me.pid)
    tmp = folder / f".{me.pid}.tmp"
    tmp.write_text(f"{me.create_time()!r}\n")
    os.replace(tmp, marker)
    return marker


def unregister_app(marker: Path) -> None:
    with contextlib.suppress(OSError):
        marker.unlink()


def app_open(home: Path) -> bool:
    """Whether an app of `home` is open: a marker whose process is still the one that
    wrote it. Stale markers (the app crashed) are removed."""
    folder = Path(home) / APPS_DIR
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    found = False
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            create_time = float(entry.read_text().strip())
        except (OSError, ValueError):
            continue
        if is_alive(int(entry.name), create_time):
            found = True
        else:
            unregister_app(entry)
    return found


# -- `qqtui worker stop`


@dataclass(slots=True)
class StopResult:
    worker: WorkerRecord
    stopped: bool  # gone within the wait
    cancelled: list[int] = field(default_factory=list)


def local_worker_records(store: Store) -> list[WorkerRecord]:
    boot = boot_id()
    return [
        w
        for w in store.workers(host=store.host, live_only=True)
        if w.boot_id == boot and is_alive(w.pid, w.pid_create_time)
    ]


def stop_workers(
    store: Store, *, stop_runs: bool = False, timeout_s: float = 15.0, actor: str = "cli"
) -> list[StopResult]:
    """Stop this host's live workers of this store with SIGTERM (create time verified).

    A worker on SIGTERM stops claiming, records what it can and exits, leaving its
    running runs alive for the next worker to adopt. With `stop_runs` the runs it owns
    are cancelled first (TERM, grace, KILL) and waited for, within `timeout_s`."""
    results = [StopResult(w, stopped=False) for w in local_worker_records(store)]
    if not results:
        return []
    deadline = time.monotonic() + timeout_s
    if stop_runs:
        for result in results:
            for run in store.list_runs([Status.RUNNING], worker_id=result.worker.id):
                with contextlib.suppress(QqError):
                    store.request_cancel(
                        run.id, grace_s=min(DEFAULT_GRACE_S, timeout_s / 2), actor=actor
                    )
                    result.cancelled.append(run.id)
        pending = {run_id for r in results for run_id in r.cancelled}
        while pending and time.monotonic() < deadline:
            pending = {i for i in pending if store.get_run(i).status is Status.RUNNING}
            if pending:
                time.sleep(0.1)
    for result in results:
        signal_verified(result.worker.pid, result.worker.pid_create_time, signal.SIGTERM)
    while time.monotonic() < deadline:
        for result in results:
            w = result.worker
            result.stopped = not is_alive(w.pid, w.pid_create_time)
        if all(r.stopped for r in results):
            break
        time.sleep(0.1)
    for result in results:
        w = result.worker
        result.stopped = not is_alive(w.pid, w.pid_create_time)
    return results
