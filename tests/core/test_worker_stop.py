"""`qqtui worker stop` and the auto-started worker's idle exit, with real processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from qqtui.core import workerctl
from qqtui.core.records import Status
from qqtui.core.store import Store
from tests.conftest import cli_env


def _wait_for(pred, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


def _running(store: Store, run_id: int) -> bool:
    return store.get_run(run_id).status is Status.RUNNING


def test_no_worker(qq, home: Path) -> None:  # type: ignore[no-untyped-def]
    out = qq("worker", "stop", check=True)
    assert out.stdout.strip() == f"no worker running for {home}"


def test_stop_leaves_runs_running(qq, store: Store, workers) -> None:  # type: ignore[no-untyped-def]
    proc = workers.start()
    run_id = int(qq("add", "--", "sleep", "60", check=True).stdout.strip())
    assert _wait_for(lambda: _running(store, run_id))
    out = qq("worker", "stop", check=True)
    assert "stopped worker" in out.stdout
    assert proc.wait(timeout=5) == 0
    assert _running(store, run_id)  # left for the next worker to adopt
    assert not workerctl.live_local_workers(store)


def test_stop_runs_cancels_first(qq, store: Store, workers) -> None:  # type: ignore[no-untyped-def]
    proc = workers.start()
    run_id = int(qq("add", "--", "sleep", "60", check=True).stdout.strip())
    assert _wait_for(lambda: _running(store, run_id))
    out = qq("worker", "stop", "--stop-runs", check=True)
    assert f"cancelled run(s) {run_id}" in out.stdout
    assert proc.wait(timeout=5) == 0
    assert store.get_run(run_id).status is Status.CANCELLED


def _idle_worker(home: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "qqtui", "worker", "--poll", "0.1", "--exit-when-idle", "1"],
        env=cli_env(home),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_idle_exit(home: Path, workers) -> None:  # type: ignore[no-untyped-def]
    proc = _idle_worker(home)
    workers.procs.append(proc)
    assert proc.wait(timeout=15) == 0


def test_no_idle_exit_while_app_open_or_run_running(  # type: ignore[no-untyped-def]
    qq, home: Path, store: Store, workers
) -> None:
    marker = workerctl.register_app(home)  # this test process stands in for the app
    proc = _idle_worker(home)
    workers.procs.append(proc)
    time.sleep(3)
    assert proc.poll() is None
    run_id = int(qq("add", "--", "sleep", "4", check=True).stdout.strip())
    assert _wait_for(lambda: _running(store, run_id))
    workerctl.unregister_app(marker)
    time.sleep(2)
    assert proc.poll() is None  # the run still runs
    assert proc.wait(timeout=15) == 0  # it ends, then the worker goes after 1 s idle
    assert store.get_run(run_id).status is Status.SUCCEEDED


def test_the_demo_farewell_names_commands_that_work(home: Path, store: Store, workers) -> None:  # type: ignore[no-untyped-def]
    import shlex

    from qqtui.tui.entry import demo_farewell, demo_settings

    proc = workers.start()
    assert _wait_for(lambda: workerctl.live_local_workers(store))
    lines = demo_farewell(demo_settings(home))
    stop_line = next(line for line in lines if "worker stop" in line)
    argv = shlex.split(stop_line.split(": ", 1)[1])
    # The test runner is not `qqtui` on PATH, so this is `<python> -m qqtui --home ...`.
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=cli_env(home))
    assert done.returncode == 0, done.stderr
    assert "stopped worker" in done.stdout
    assert proc.wait(timeout=5) == 0
