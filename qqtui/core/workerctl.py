"""Keep a worker alive for a home: the app starts a detached `qqtui worker` when none
runs, so launching works out of the box and runs outlive the app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from qqtui.config import Settings
from qqtui.core.procs import boot_id, is_alive
from qqtui.core.store import Store

WORKER_LOG = "worker.log"


def live_local_workers(store: Store) -> list[str]:
    """Ids of workers on this host whose process is alive (pid and create time)."""
    boot = boot_id()
    return [
        w.id
        for w in store.workers(host=store.host, live_only=True)
        if w.boot_id == boot and is_alive(w.pid, w.pid_create_time)
    ]


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
