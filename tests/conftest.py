"""Shared fixtures: a temp home with a real SQLite store, the real CLI, real workers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from qqtui.core.records import RunRecord
from qqtui.core.snapshot import Snapshot
from qqtui.core.store import Store

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def db_url(home: Path) -> str:
    return f"sqlite:///{home / 'qqtui.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url, actor="test")
    yield s
    s.close()


def cli_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QQ_", "QQTUI_"))}
    env["QQ_HOME"] = str(home)
    return env


@pytest.fixture
def qq(home: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real `qqtui` CLI against the temp home."""

    def run(
        *args: str, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "qqtui", *args],
            env=cli_env(home),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"qqtui {' '.join(args)} failed: {proc.stderr}")
        return proc

    return run


class Workers:
    """Real `qqtui worker` processes, stopped (and their runs' trees reaped) at teardown."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        with open(self.home / f"worker-{len(self.procs)}.err", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "qqtui", "worker", "--poll", "0.1", *args],
                env=cli_env(self.home),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def workers(home: Path) -> Iterator[Workers]:
    w = Workers(home)
    yield w
    w.stop_all()
    kill_home_processes(home)


def kill_home_processes(home: Path) -> None:
    """Leave no process of this test's runs behind, whatever the test did."""
    import psutil

    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and proc.environ().get("QQ_HOME") == str(home):
                proc.kill()


def wait_for(
    predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def wait_for_status(
    db_url: str, run_id: int, statuses: set[str], timeout: float = 30.0
) -> RunRecord:
    snap = Snapshot(db_url)

    def check() -> RunRecord | None:
        run = snap.run(run_id)
        return run if run is not None and run.status.value in statuses else None

    return wait_for(check, timeout, what=f"run {run_id} to be {statuses}")  # type: ignore[return-value]


def read_json(path: Path) -> object:
    return json.loads(path.read_text())
