"""Processes that outlived their attempt are found by their tags and ended; processes of
attempts that still run are never touched."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from qqtui.core.procs.pids import boot_id
from qqtui.core.records import RunRecord, Status
from qqtui.core.runspec import RunSpec
from qqtui.core.store import Store
from qqtui.core.strays import end_strays, find_strays

from ..conftest import Workers, wait_for

SID = "20260101_000000_abcdef12"


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def tagged(
    started: list[subprocess.Popen[bytes]],
    home: Path,
    run_id: int,
    attempt: int,
    argv: tuple[str, ...] = ("sleep", "60"),
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QQ_")}
    env.update(QQ_HOME=str(home), QQ_RUN_ID=str(run_id), QQ_ATTEMPT=str(attempt))
    proc = subprocess.Popen(list(argv), env=env, start_new_session=True)
    started.append(proc)
    return proc


def current(store: Store):  # type: ignore[no-untyped-def]
    def read(run_ids: list[int]) -> dict[int, RunRecord]:
        return {r.id: r for r in store.list_runs() if r.id in run_ids}

    return read


def add(store: Store) -> RunRecord:
    return store.add_run(RunSpec(argv=["sleep", "60"], cwd="/"), session_id=SID)


def test_only_processes_of_ended_attempts_are_strays_and_they_are_ended(
    store: Store, home: Path, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    finished, running, retried = add(store), add(store), add(store)
    claimed = {r.id: r for r in store.claim_runs("w1", 3)}
    store.finish_run(finished.id, claimed[finished.id].claim_token or "", Status.FAILED, reason="x")
    store.requeue_for_retry(
        retried.id, claimed[retried.id].claim_token or "", not_before=0.0, reason="retry"
    )
    # A stray whose child dropped the tags: the child goes with its parent.
    parent = tagged(procs, home, finished.id, 1, ("sh", "-c", "env -i sleep 60 & wait"))
    old_attempt = tagged(procs, home, retried.id, 1)
    alive = tagged(procs, home, running.id, 1)
    other_home = tagged(procs, tmp_path / "elsewhere", finished.id, 1)
    gone_run = tagged(procs, home, 9999, 1)
    wait_for(lambda: len(psutil.Process(parent.pid).children()) == 1, 10, what="the child")
    [child] = psutil.Process(parent.pid).children()

    strays = find_strays(home, store.host, current(store))

    assert {(s.run_id, s.attempt) for s in strays} == {
        (finished.id, 1),
        (retried.id, 1),
        (9999, 1),
    }
    for found in strays:
        assert end_strays(found, grace_s=2.0) == []
    for proc in (parent, old_attempt, gone_run):
        assert proc.wait(timeout=5) is not None
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert alive.poll() is None and other_home.poll() is None


def test_an_ended_attempt_of_another_host_is_left_to_that_host(
    store: Store, home: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    run = add(store)
    [claimed] = Store(store.engine, host="host-b").claim_runs("w1", 1)
    store.finish_run(run.id, claimed.claim_token or "", Status.LOST, reason="rescued")
    proc = tagged(procs, home, run.id, 1)
    assert find_strays(home, "host-a", current(store)) == []
    assert [s.run_id for s in find_strays(home, "host-b", current(store))] == [run.id]
    assert proc.poll() is None


def test_a_starting_worker_stops_processes_of_attempts_that_ended_without_it(
    store: Store, home: Path, workers: Workers, procs: list[subprocess.Popen[bytes]]
) -> None:
    run = add(store)
    [claimed] = store.claim_runs("w-dead", 1)
    store.finish_run(run.id, claimed.claim_token or "", Status.LOST, reason="rescued elsewhere")
    stray = tagged(procs, home, run.id, 1)
    workers.start()
    assert stray.wait(timeout=30) is not None
    event = wait_for(lambda: [e for e in store.events(run.id) if e.kind == "strays_stopped"], 10)[0]  # type: ignore[index]
    assert f"pid {stray.pid}" in (event.reason or "") and "attempt 1 had ended" in (
        event.reason or ""
    )


def test_a_starting_worker_leaves_a_live_workers_just_ended_run_to_that_worker(
    store: Store, home: Path, workers: Workers, procs: list[subprocess.Popen[bytes]]
) -> None:
    """The run's own worker (alive, on this host) is still stopping what the run left
    behind: a second worker starting meanwhile neither kills it nor reports it."""
    me = psutil.Process()
    store.register_worker(
        worker_id="w-alive", pid=me.pid, pid_create_time=me.create_time(), boot_id=boot_id()
    )
    run = add(store)
    [claimed] = store.claim_runs("w-alive", 1)
    store.finish_run(run.id, claimed.claim_token or "", Status.SUCCEEDED, reason="exit 0")
    leftover = tagged(procs, home, run.id, 1)
    workers.start()
    probe = store.add_run(RunSpec(argv=["true"], cwd="/"), session_id=SID)  # done once it ticks
    wait_for(lambda: store.get_run(probe.id).status is Status.SUCCEEDED, 30, what="a tick")
    assert leftover.poll() is None
    assert not [e for e in store.events(run.id) if e.kind == "strays_stopped"]
