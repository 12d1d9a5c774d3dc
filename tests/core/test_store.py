"""The store contract: the same tests against a real SQLite file and a real PostgreSQL
server (a fresh schema per test): claim, transitions, fencing, races, rescue, tails."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from qqtui.core.leases import LeaseSet
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
from qqtui.core.runspec import RunSpec
from qqtui.core.snapshot import RunLine, Snapshot
from qqtui.core.store import Store, StoreError

SID = "20260101_000000_abcdef12"


@pytest.fixture
def db_url(backend_db_url: str) -> str:
    """Overrides the top conftest's: every store test here runs once per backend."""
    return backend_db_url


def sqlite_only(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("about the SQLite file itself")


def add(store: Store, leases: LeaseSet | None = None, **kw: object) -> RunRecord:
    spec = RunSpec(argv=("true",), cwd="/", **kw)  # type: ignore[arg-type]
    return store.add_run(spec, session_id=SID, leases=leases)


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
    # The claim's event is written by the claim statement itself on PostgreSQL and by
    # the store on SQLite: the same row either way.
    claim_event = store.events(run.id)[1]
    assert claim_event.kind == "transition"
    assert claim_event.reason == "claimed by worker w1 (attempt 1)"
    assert claim_event.actor == "worker:w1" and claim_event.host == store.host
    assert claim_event.at == claimed.started_at


def test_claim_leaves_runs_behind_a_due_leased_run_to_the_lease_aware_path(
    store: Store,
) -> None:
    """While a run with leases is due, the one-statement claim takes nothing; the
    lease-aware path then claims in queue order, leased or not."""
    leased = add(store, leases=LeaseSet(locks=frozenset({"db"})))
    plain = add(store)
    first = store.claim_runs("w1", 1)
    assert [r.id for r in first] == [leased.id]
    assert "holds lock db" in (store.events(leased.id)[1].reason or "")
    assert [r.id for r in store.claim_runs("w1", 1)] == [plain.id]


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
    run = add(timed, retries=2)
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


def test_database_files_are_private(store: Store, home: Path, backend: str) -> None:
    sqlite_only(backend)
    add(store)
    for name in ("qqtui.db", "qqtui.db-wal", "qqtui.db-shm"):
        path = home / name
        assert path.exists(), name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_existing_world_readable_db_is_tightened(home: Path, backend: str) -> None:
    sqlite_only(backend)
    path = home / "loose.db"
    path.touch()
    os.chmod(path, 0o644)
    Store.open(f"sqlite:///{path}").close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_corrupt_database_file_gives_one_clear_error(home: Path, backend: str) -> None:
    sqlite_only(backend)
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
    # `ls` reads narrow lines and `ls --json` plain dicts, not records: the same data.
    other = add(store, name="y", leases=LeaseSet(locks=frozenset({"db"})))
    store.request_cancel(other.id)
    records = store.list_runs()
    assert snap.run_lines() == [RunLine.of(r) for r in records]
    assert snap.run_lines([Status.CANCELLED]) == [RunLine.of(store.get_run(other.id))]
    assert snap.run_lines(hosts=[store.host]) == [RunLine.of(store.get_run(run.id))]
    assert snap.runs_json() == [r.to_json() for r in records]
    assert snap.runs_json([Status.RUNNING]) == [store.get_run(run.id).to_json()]


def test_record_fields_match_the_table_columns(backend: str) -> None:
    sqlite_only(backend)  # about the Python classes; once is enough
    import dataclasses

    from qqtui.core.models import runs_table

    fields = {f.name for f in dataclasses.fields(RunRecord)}
    assert fields == {c.name for c in runs_table.columns}


def test_claim_never_takes_more_than_the_limit(store: Store) -> None:
    for _ in range(10):
        add(store)
    assert len(store.claim_runs("w1", 3)) == 3
    assert len(store.claim_runs("w2", 4)) == 4
    assert len(store.claim_runs("w3", 100)) == 3
    assert store.count_by_status() == {Status.RUNNING: 10}


def _fake_clock_store(store: Store, host: str, clock: list[float]) -> Store:
    return Store(store.engine, clock=lambda: clock[0], host=host, actor="test")


def test_rescue_ends_a_dead_workers_runs_and_never_a_heartbeating_ones(store: Store) -> None:
    clock = [1000.0]
    host_a = _fake_clock_store(store, "host-a", clock)
    host_b = _fake_clock_store(store, "host-b", clock)
    host_a.register_worker(worker_id="wa", pid=1, pid_create_time=1.0, boot_id="boot-a")
    host_b.register_worker(worker_id="wb", pid=2, pid_create_time=2.0, boot_id="boot-b")
    plain = add(host_a)
    retried = add(host_a, retries=1, retry_on_lost=True)
    long_runner = add(host_b)
    assert len(host_a.claim_runs("wa", 2)) == 2
    assert len(host_b.claim_runs("wb", 1)) == 1
    clock[0] = 1059.0  # just inside the horizon: nobody is dead yet
    assert host_b.rescue_dead_workers(60, rescuer="worker:wb", skip_host="host-b") == []
    clock[0] = 1200.0  # wa went silent; wb keeps heartbeating, however long its run takes
    host_b.heartbeat_worker("wb")
    rescued = host_b.rescue_dead_workers(60, rescuer="worker:wb", skip_host="host-b")
    assert sorted(r.id for r in rescued) == [plain.id, retried.id]
    lost = host_b.get_run(plain.id)
    assert lost.status is Status.LOST and lost.finished_at == 1200.0
    assert "worker wa on host host-a" in (lost.reason or "") and "200s ago" in (lost.reason or "")
    again = host_b.get_run(retried.id)
    assert again.status is Status.QUEUED and again.attempt == 2 and again.claim_token is None
    moves = [(e.from_status, e.to_status) for e in host_b.events(retried.id)]
    assert moves[-2:] == [("running", "lost"), ("lost", "queued")]
    assert host_b.get_run(long_runner.id).status is Status.RUNNING
    # Its retry is spent: the next loss is final.
    [claimed] = host_a.claim_runs("wa2", 1)
    assert claimed.id == retried.id
    clock[0] = 1400.0
    host_b.heartbeat_worker("wb")
    assert [r.status for r in host_b.rescue_dead_workers(60, rescuer="x")] == [Status.LOST]


def test_rescue_leaves_its_own_host_to_local_recovery(store: Store) -> None:
    clock = [1000.0]
    host_a = _fake_clock_store(store, "host-a", clock)
    add(host_a)
    host_a.claim_runs("wa", 1)  # no worker row at all: the run's own heartbeat counts
    clock[0] = 2000.0
    assert host_a.rescue_dead_workers(60, rescuer="x", skip_host="host-a") == []
    assert len(host_a.rescue_dead_workers(60, rescuer="x", skip_host="host-b")) == 1


def test_rescue_loses_to_a_heartbeat_that_lands_after_its_read(store: Store) -> None:
    clock = [1000.0]
    host_a = _fake_clock_store(store, "host-a", clock)
    host_a.register_worker(worker_id="wa", pid=1, pid_create_time=1.0, boot_id="boot-a")
    run = add(host_a)
    host_a.claim_runs("wa", 1)
    clock[0] = 1100.0
    real_rescue_one = host_a._rescue_one

    def heartbeat_first(*args: object) -> RunRecord | None:
        host_a.heartbeat_worker("wa")  # the worker was only slow, not dead
        return real_rescue_one(*args)  # type: ignore[arg-type]

    host_a._rescue_one = heartbeat_first  # type: ignore[method-assign]
    assert host_a.rescue_dead_workers(60, rescuer="x") == []
    assert host_a.get_run(run.id).status is Status.RUNNING


def test_output_tail_is_kept_capped_and_fenced(store: Store) -> None:
    from qqtui.core.store import OUTPUT_TAIL_BYTES

    run = add(store)
    [claimed] = store.claim_runs("w1")
    token = claimed.claim_token or ""
    assert store.output_tail(run.id) is None
    data = bytes(range(256)) * 1024  # 256 KiB, not text: stored as bytes
    assert store.record_output_tail(
        run.id, token, attempt=1, log_path="/x/output.log", size=len(data), tail=data
    )
    tail = store.output_tail(run.id)
    assert tail is not None and tail.tail == data[-OUTPUT_TAIL_BYTES:]
    assert (tail.host, tail.log_path, tail.size) == (store.host, "/x/output.log", len(data))
    assert store.record_output_tail(run.id, token, attempt=1, log_path="/x", size=3, tail=b"abc")
    assert store.output_tail(run.id).tail == b"abc"  # type: ignore[union-attr]
    assert not store.record_output_tail(
        run.id, "stale", attempt=1, log_path="/x", size=1, tail=b"z"
    )
    assert store.output_tail(run.id).tail == b"abc"  # type: ignore[union-attr]


def test_output_tails_of_runs_that_ended_long_ago_are_pruned(store: Store) -> None:
    clock = [1_000_000.0]
    timed = _fake_clock_store(store, store.host, clock)
    old, recent, running, deleted = (add(timed) for _ in range(4))
    tokens = {r.id: r.claim_token or "" for r in timed.claim_runs("w1", 4)}
    for run_id, token in tokens.items():
        assert timed.record_output_tail(run_id, token, attempt=1, log_path="/x", size=1, tail=b"t")
    timed.finish_run(old.id, tokens[old.id], Status.SUCCEEDED, reason="exit 0")
    clock[0] += 3600
    timed.finish_run(recent.id, tokens[recent.id], Status.FAILED, reason="exit 1")
    timed.finish_run(deleted.id, tokens[deleted.id], Status.FAILED, reason="exit 1")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"DELETE FROM runs WHERE id = {deleted.id}")
    clock[0] += 60
    assert timed.prune_output_tails(keep_s=600) == 2  # the old one, and the vanished one
    assert timed.output_tail(old.id) is None and timed.output_tail(deleted.id) is None
    assert timed.output_tail(recent.id) is not None
    assert timed.output_tail(running.id) is not None
    assert timed.prune_output_tails(keep_s=600) == 0


def test_schema_version_1_is_migrated(store: Store, db_url: str) -> None:
    from sqlalchemy import text, update

    from qqtui.core.models import meta_table

    run = add(store)
    with store.engine.begin() as conn:
        _drop_v3_columns(conn)
        conn.execute(text("ALTER TABLE runs DROP COLUMN retry_on_lost"))
        conn.execute(text("ALTER TABLE workers DROP COLUMN clock_skew_s"))
        conn.execute(text("DROP TABLE run_outputs"))
        conn.execute(update(meta_table).values(value="1"))
    store.close()
    again = Store.open(db_url)
    assert again.get_run(run.id).retry_on_lost is False
    assert add(again, retry_on_lost=True).retry_on_lost is True
    assert again.output_tail(run.id) is None


V3_COLUMNS = (
    "workspace",
    "locks",
    "paths",
    "leased",
    "worktree",
    "worktree_repo",
    "worktree_branch",
    "keep_worktree",
)


V4_COLUMNS = ("tty", "tty_cols", "tty_rows", "waiting", "waiting_reason", "waiting_since")


def _drop_v4_columns(conn) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    for column in V4_COLUMNS:
        conn.execute(text(f"ALTER TABLE runs DROP COLUMN {column}"))


def _drop_v3_columns(conn) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    _drop_v4_columns(conn)
    # Indexes added later than v2 (one covers `leased`) did not exist in old files.
    for index in ("ix_runs_queue_order", "ix_runs_queue_leased"):
        conn.execute(text(f"DROP INDEX IF EXISTS {index}"))
    for column in V3_COLUMNS:
        conn.execute(text(f"ALTER TABLE runs DROP COLUMN {column}"))


def test_schema_version_2_is_migrated_and_old_files_stay_readable(
    store: Store, db_url: str, backend: str
) -> None:
    from sqlalchemy import update

    from qqtui.core.leases import LeaseSet
    from qqtui.core.models import meta_table

    run = add(store)
    with store.engine.begin() as conn:
        _drop_v3_columns(conn)
        conn.execute(update(meta_table).values(value="2"))
    if backend == "sqlite":
        # `qqtui ls` reads without migrating: a v2 file must still list.
        old = Snapshot(db_url).run(run.id)
        assert old is not None and old.locks == () and old.leased is False
    store.close()
    again = Store.open(db_url)
    migrated = again.get_run(run.id)
    assert (migrated.workspace, migrated.locks, migrated.worktree) == (None, (), None)
    assert not migrated.leased and not migrated.keep_worktree
    locked = add(again, leases=LeaseSet(locks=frozenset({"db"})))
    assert locked.locks == ("db",) and locked.leased


def test_schema_version_3_is_migrated_and_old_files_stay_readable(
    store: Store, db_url: str, backend: str
) -> None:
    from sqlalchemy import update

    from qqtui.core.models import meta_table

    run = add(store)
    with store.engine.begin() as conn:
        _drop_v4_columns(conn)
        conn.execute(update(meta_table).values(value="3"))
    if backend == "sqlite":
        old = Snapshot(db_url).run(run.id)
        assert old is not None and old.tty is False and old.waiting is False
    store.close()
    again = Store.open(db_url)
    migrated = again.get_run(run.id)
    assert (migrated.tty, migrated.tty_cols, migrated.waiting, migrated.waiting_reason) == (
        False,
        None,
        False,
        None,
    )
    on_tty = add(again, tty=True, tty_size=(100, 30))
    assert (on_tty.tty, on_tty.tty_cols, on_tty.tty_rows) == (True, 100, 30)


def _open_store(url: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        Store.open(url).close()
        out.put("ok")
    except Exception as exc:  # the parent asserts on what went wrong
        out.put(repr(exc))


def test_first_use_by_many_processes_at_once_creates_the_schema_once(db_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_open_store, args=(db_url, out)) for _ in range(6)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == ["ok"] * 6


def test_postgres_urls_are_normalised_and_unknown_ones_refused() -> None:
    from qqtui.core.dialects import normalize_db_url

    assert normalize_db_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_db_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_db_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(StoreError, match="psycopg 3"):
        normalize_db_url("postgresql+psycopg2://u@h/db")
    with pytest.raises(StoreError, match="unsupported database URL"):
        Store.open("mysql://u@h/db")


def test_postgres_store_decides_by_the_servers_clock(
    backend: str, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    if backend != "postgresql":
        pytest.skip("SQLite has one host: its clock is the clock")
    import time

    from qqtui.core.clock import ServerClock
    from qqtui.core.dialects import server_epoch

    store = Store.open(db_url.replace("postgresql://", "postgres://", 1))
    server = server_epoch(store.engine)
    assert abs(store.clock() - server) < 1.0
    # A worker whose wall clock is 2 minutes fast still claims by the server's clock...
    fast = Store(store.engine, host="fast-host")
    fast.server_clock = ServerClock(
        lambda: server_epoch(store.engine), wall=lambda: time.time() + 120
    )
    fast.clock = fast.server_clock
    assert abs(fast.clock() - server_epoch(store.engine)) < 1.0
    assert fast.clock_skew_s is not None and 119 < fast.clock_skew_s < 121
    assert "clock is +120s off the database server's" in caplog.text  # the worker's log
    # ...and says so on its worker row, where the TUI can show it.
    record = fast.register_worker(worker_id="wf", pid=1, pid_create_time=1.0, boot_id="b")
    assert record.clock_skewed and 119 < (record.clock_skew_s or 0) < 121
    run = add(store)
    [claimed] = fast.claim_runs("wf")
    assert claimed.id == run.id and abs((claimed.started_at or 0) - server) < 5
