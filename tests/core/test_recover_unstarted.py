"""A run claimed by a worker that died before starting its process goes back to the
queue as the same attempt; one whose process was started and is gone ends `lost`."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import psutil
import pytest

from qqtui.core.intents import submit_run
from qqtui.core.procs.pids import boot_id
from qqtui.core.records import Status
from qqtui.core.runspec import RunSpec
from qqtui.core.store import Store
from qqtui.core.supervisor import Supervisor, SupervisorConfig

from ..conftest import wait_for


@pytest.fixture
def db_url(backend_db_url: str) -> str:
    """Overrides the top conftest's: every store test here runs once per backend."""
    return backend_db_url


def dead_worker(store: Store) -> str:
    """Register a worker whose process (a real one, on this boot) has exited."""
    proc = subprocess.Popen(["true"])
    created = psutil.Process(proc.pid).create_time()
    proc.wait()
    worker_id = f"dead-{proc.pid}"
    store.register_worker(
        worker_id=worker_id, pid=proc.pid, pid_create_time=created, boot_id=boot_id()
    )
    return worker_id


def run_until_final(sup: Supervisor, store: Store, run_id: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not store.get_run(run_id).status.is_final:
        assert time.monotonic() < deadline, store.get_run(run_id)
        sup.tick()


def test_unstarted_claim_of_a_dead_worker_is_requeued_and_then_runs(
    tmp_path: Path, home: Path, store: Store
) -> None:
    marker = tmp_path / "ran"
    run = submit_run(store, home, RunSpec(["sh", "-c", f"echo x >> {marker}"], retries=0))
    [claimed] = store.claim_runs(dead_worker(store))
    assert claimed.id == run.id and claimed.pid is None

    sup = Supervisor(store, home, SupervisorConfig(concurrency=1, poll_s=0.05))
    sup.start()  # recovery runs at start
    # A run shim that no run has recorded yet (another home's, starting right now)
    # might be this run's, so recovery waits it out: ask again until it decides.
    wait_for(
        lambda: sup.recover() or store.get_run(run.id).status is not Status.RUNNING,
        timeout=20,
        interval=0.2,
        what="recovery to decide",
    )
    requeued = store.get_run(run.id)
    try:
        assert requeued.status is Status.QUEUED
        assert requeued.attempt == 1 and requeued.max_retries == 0
        assert requeued.claim_token is None and requeued.worker_id is None
        last = store.events(run.id)[-1]
        assert (last.from_status, last.to_status) == ("running", "queued")
        assert "died before starting it; requeued" in (last.reason or "")

        run_until_final(sup, store, run.id)
    finally:
        sup.stopping = True
    done = store.get_run(run.id)
    assert done.status is Status.SUCCEEDED, done.reason
    assert done.attempt == 1
    assert marker.read_text() == "x\n"


def test_claim_with_a_recorded_pid_whose_process_is_gone_still_ends_lost(
    home: Path, store: Store
) -> None:
    run = submit_run(store, home, RunSpec(["true"], retries=0))
    [claimed] = store.claim_runs(dead_worker(store))
    assert claimed.claim_token is not None
    gone = subprocess.Popen(["true"])
    created = psutil.Process(gone.pid).create_time()
    gone.wait()
    store.record_spawn(
        run.id,
        claimed.claim_token,
        pid=gone.pid,
        pid_create_time=created,
        pgid=gone.pid,
        shim_pid=gone.pid,
        shim_create_time=created,
    )

    sup = Supervisor(store, home, SupervisorConfig(concurrency=1, poll_s=0.05))
    sup.start()
    lost = store.get_run(run.id)
    assert lost.status is Status.LOST
    assert "exit status is unknown" in (lost.reason or "")
    assert lost.attempt == 1
