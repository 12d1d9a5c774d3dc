"""The job store on a real SQLite file: claim, transitions, fencing, races, files."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from qqtui.core.records import (
    TRANSITIONS,
    IllegalTransitionError,
    NotFoundError,
    RunRecord,
    StaleClaimError,
    Status,
    UpdateConflictError,
    transition_allowed,
)
from qqtui.core.snapshot import Snapshot
from qqtui.core.store import Store, StoreError

SID = "20260101_000000_abcdef12"


def add(store: Store, **kw: object) -> RunRecord:
    return store.add_run(argv=["true"], cwd="/", session_id=SID, **kw)  # type: ignore[arg-type]


def test_add_claim_finish_records_every_transition_with_its_event(store: Store) -> None:
    run = add(store, name="a")
    assert run.status is Status.QUEUED and run.attempt == 1
    [claimed] = store.claim_runs("w1", 5)
    assert claimed.id == run.id and claimed.status is Status.RUNNING
    assert claimed.worker_id == "w1" and claimed.claim_token
    assert store.claim_runs("w2", 5) == []
    done = store.finish_run(
        run.id, claimed.claim_token, Status.SUCCEEDED, reason="exit 0", exit_code=0
    )
    assert done.status is Status.SUCCEEDED and done.exit_code == 0 and done.finished_at
    moves = [(e.from_status, e.to_status) for e in store.events(run.id)]
    assert moves == [(None, "queued"), ("queued", "running"), ("running", "succeeded")]


def test_transitions_are_written_down_once_and_enforced(store: Store) -> None:
    assert transition_allowed(None, Status.QUEUED)
    assert not transition_allowed(Status.SUCCEEDED, Status.RUNNING)
    assert all(not s.is_final or TRANSITIONS[s] == {Status.QUEUED} for s in Status)
    run = add(store)
    with pytest.raises(IllegalTransitionError):
        store.finish_run(run.id, "nope", Status.RUNNING, reason="x")
    with pytest.raises(IllegalTransitionError, match="only finished runs"):
        store.retry_run(run.id)
    store.request_cancel(run.id)
    with pytest.raises(IllegalTransitionError, match="already cancelled"):
        store.request_kill(run.id)
    with pytest.raises(NotFoundError):
        store.get_run(999)


def test_stale_owner_cannot_finish_after_being_fenced_out(store: Store) -> None:
    run = add(store)
    [claimed] = store.claim_runs("w1")
    new_token = store.adopt_run(run.id, claimed.claim_token, "w2", "test takeover")
    with pytest.raises(StaleClaimError):
        store.finish_run(run.id, claimed.claim_token or "", Status.FAILED, reason="late")
    assert not store.record_activity(
        run.id, claimed.claim_token or "", activity_at=1.0, output_bytes=1
    )
    assert store.get_run(run.id).status is Status.RUNNING
    store.finish_run(run.id, new_token, Status.SUCCEEDED, reason="exit 0")
    assert store.get_run(run.id).status is Status.SUCCEEDED


def test_lost_race_is_retried_then_applied(store: Store, db_url: str) -> None:
    run = add(store)
    [claimed] = store.claim_runs("w1")
    other = Store.open(db_url)
    raced = []

    def competing_write(run_id: int) -> None:
        if not raced:  # one real concurrent update between our read and our write
            raced.append(run_id)
            other.request_cancel(run_id, grace_s=3)

    store._between_read_and_write = competing_write
    done = store.finish_run(run.id, claimed.claim_token or "", Status.FAILED, reason="exit 1")
    assert raced == [run.id]
    assert done.status is Status.FAILED and done.cancel_requested  # nothing of the other write lost


def test_race_lost_every_time_raises_a_clear_conflict(store: Store, db_url: str) -> None:
    run = add(store)
    store.claim_runs("w1")
    other = Store.open(db_url)
    store._between_read_and_write = lambda run_id: other.request_cancel(run_id, grace_s=1)
    with pytest.raises(UpdateConflictError, match="gave up after 3 retries"):
        store.request_kill(run.id)
    assert store.get_run(run.id).status is Status.RUNNING


def test_cancel_of_queued_run_ends_it_and_of_running_run_requests_it(store: Store) -> None:
    queued = add(store)
    assert store.request_cancel(queued.id).status is Status.CANCELLED
    running = add(store)
    store.claim_runs("w1")
    after = store.request_cancel(running.id, grace_s=4)
    assert after.status is Status.RUNNING and after.cancel_requested and after.cancel_grace_s == 4
    assert store.request_kill(running.id).kill_requested
    kinds = [e.kind for e in store.events(running.id)]
    assert "cancel_requested" in kinds and "kill_requested" in kinds


def test_retry_requeues_as_next_attempt_and_not_before_is_respected(store: Store) -> None:
    clock = [1000.0]
    timed = Store(store.engine, clock=lambda: clock[0])
    run = add(timed, max_retries=2)
    [claimed] = timed.claim_runs("w1")
    timed.requeue_for_retry(run.id, claimed.claim_token or "", not_before=1010.0, reason="exit 1")
    again = timed.get_run(run.id)
    assert again.status is Status.QUEUED and again.attempt == 2 and again.claim_token is None
    assert timed.claim_runs("w1") == []  # not due yet
    clock[0] = 1010.0
    assert [r.attempt for r in timed.claim_runs("w1")] == [2]


def _claim_loop(url: str, worker: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    s = Store.open(url)
    got: list[int] = []
    while True:
        claimed = s.claim_runs(worker, 3)
        if not claimed:
            break
        got.extend(r.id for r in claimed)
    out.put(got)


def test_concurrent_claims_from_many_processes_claim_each_run_exactly_once(
    store: Store, db_url: str
) -> None:
    ids = {add(store).id for _ in range(600)}
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_loop, args=(db_url, f"w{i}", out)) for i in range(6)]
    for p in procs:
        p.start()
    claimed = [rid for _ in procs for rid in out.get(timeout=120)]
    for p in procs:
        p.join(30)
    assert sorted(claimed) == sorted(ids)  # all claimed, none twice
    claim_events = [e for rid in ids for e in store.events(rid) if e.to_status == "running"]
    assert len(claim_events) == len(ids)


def test_database_files_are_private(store: Store, home: Path) -> None:
    add(store)
    for name in ("qqtui.db", "qqtui.db-wal", "qqtui.db-shm"):
        path = home / name
        assert path.exists(), name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_existing_world_readable_db_is_tightened(home: Path) -> None:
    path = home / "loose.db"
    path.touch()
    os.chmod(path, 0o644)
    Store.open(f"sqlite:///{path}").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_corrupt_database_file_gives_one_clear_error(home: Path) -> None:
    path = home / "bad.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a qqtui database or is corrupt"):
        Store.open(f"sqlite:///{path}")
    assert path.read_bytes() == b"this is not sqlite" * 100  # untouched


def test_schema_version_mismatch_is_refused(store: Store, db_url: str) -> None:
    from sqlalchemy import update

    from qqtui.core.models import meta_table

    with store.engine.begin() as conn:
        conn.execute(update(meta_table).values(value="999"))
    with pytest.raises(StoreError, match="schema version 999"):
        Store.open(db_url)


def test_snapshot_reads_the_same_records_as_the_store(store: Store, db_url: str) -> None:
    run = add(store, name="x", env={"A": "1"}, timeout_s=5.0)
    store.claim_runs("w1")
    snap = Snapshot(db_url)
    assert snap.run(run.id) == store.get_run(run.id)
    assert snap.events(run.id) == store.events(run.id)
    assert [r.id for r in snap.runs([Status.RUNNING])] == [run.id]


def test_record_fields_match_the_table_columns() -> None:
    import dataclasses

    from qqtui.core.models import runs_table

    fields = {f.name for f in dataclasses.fields(RunRecord)}
    assert fields == {c.name for c in runs_table.columns}
