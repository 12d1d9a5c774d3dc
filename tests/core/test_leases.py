"""Leases: the conflict rule (pure), and the lease-aware claim as a store contract
over SQLite and PostgreSQL (including racing claimer processes)."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from qqtui.core.leases import LeaseSet, admit, conflict, globs_may_overlap, lease_set_for
from qqtui.core.records import QqError, RunRecord, Status
from qqtui.core.runspec import RunSpec
from qqtui.core.store import Store

SID = "20260101_000000_abcdef12"


# --- the rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("/r/src/a.py", "/r/src/a.py", True),
        ("/r/src/a.py", "/r/src/b.py", False),
        ("/r/src/*", "/r/src/pkg/mod.py", True),  # a pattern covers the tree beneath
        ("/r/src", "/r/src/pkg/mod.py", True),
        ("/r/src/*.py", "/r/src/*.md", False),
        ("/r/src/*.py", "/r/src/a*", True),
        ("/r/src/a*", "/r/src/b*", False),
        ("/r/docs/**", "/r/src/**", False),
        ("/r/**/x.py", "/r/src/y.py", True),  # ** spans anything: cannot prove disjoint
        ("/r/src/[ab].py", "/r/src/c.py", False),
        ("/r/src/[ab].py", "/r/src/b.py", True),
        ("/r/a/*/c", "/r/a/b/d", False),
        ("/r/?", "/r/xy", False),
        ("/other/src/*", "/r/src/*", False),
    ],
)
def test_glob_overlap_is_conservative_but_proves_the_obvious(a: str, b: str, overlap: bool) -> None:
    assert globs_may_overlap(a, b) is overlap
    assert globs_may_overlap(b, a) is overlap


def test_lease_sets_follow_the_flags(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    # The workspace key is the real directory: a symlinked cwd is the same workspace.
    assert lease_set_for(str(link)).workspace == str(real.resolve())
    assert lease_set_for(str(real), shared_workspace=True).empty
    narrowed = lease_set_for(str(link), paths=["src/*.py", "docs/../lib/x"])
    assert narrowed.workspace is None  # --paths replaces the whole-directory lease
    assert narrowed.paths == (f"{real.resolve()}/src/*.py", f"{real.resolve()}/lib/x")
    assert lease_set_for(str(real), locks=["db", "db"]).locks == {"db"}
    # The option is documented as relative to the cwd: globs that leave it are refused.
    for outside in ("../x", "../**", "/etc/*", "~/x", "src/../../x"):
        with pytest.raises(QqError, match="stays inside it"):
            lease_set_for(str(real), paths=[outside])
    with pytest.raises(QqError, match="invalid --lock"):
        lease_set_for(str(real), locks=["-bad"])


def test_conflict_names_what_is_contended() -> None:
    ws = LeaseSet(workspace="/w")
    assert conflict(ws, LeaseSet(workspace="/w")) == "workspace /w"
    assert conflict(ws, LeaseSet(workspace="/v")) is None
    assert conflict(LeaseSet(locks=frozenset({"db", "gpu"})), LeaseSet(locks=frozenset({"gpu"})))
    assert conflict(LeaseSet(paths=("/w/a/*",)), LeaseSet(paths=("/w/a/x",))) is not None
    # Kinds never cross: a shared run's paths do not wait for a whole-workspace lease.
    assert conflict(LeaseSet(paths=("/w/a",)), ws) is None


def test_admit_is_greedy_in_order_and_explains_every_wait() -> None:
    a, b = LeaseSet(locks=frozenset({"a"})), LeaseSet(locks=frozenset({"b"}))
    decision = admit([(2, a), (3, a), (4, b), (5, LeaseSet())], held=[(1, a)], limit=5)
    assert decision.admitted == [4, 5]
    assert decision.waiting == {
        2: "waiting for lock a held by run 1",
        3: "waiting for lock a held by run 1",
    }
    decision = admit([(2, a), (3, a), (4, b)], held=[], limit=5)
    assert decision.admitted == [2, 4] and decision.waiting == {
        3: "waiting for lock a held by run 2"
    }
    # Past the limit every run is still judged, so each wait reason stays current.
    decision = admit([(2, a), (3, b), (4, a), (5, LeaseSet())], held=[], limit=1)
    assert decision.admitted == [2] and decision.unblocked == [3, 5]
    assert decision.waiting == {4: "waiting for lock a held by run 2"}


# --- the claim, per backend ----------------------------------------------------------------


@pytest.fixture
def db_url(backend_db_url: str) -> str:
    """Overrides the top conftest's: every store test here runs once per backend."""
    return backend_db_url


def add(store: Store, leases: LeaseSet | None = None) -> RunRecord:
    return store.add_run(RunSpec(argv=["true"], cwd="/"), session_id=SID, leases=leases)


def test_claim_never_starts_conflicting_runs_and_says_why_they_wait(store: Store) -> None:
    db = LeaseSet(locks=frozenset({"db"}))
    first, second = add(store, db), add(store, db)
    free = add(store, LeaseSet(locks=frozenset({"other"})))
    plain = add(store)
    claimed = store.claim_runs("w1", 10)
    assert [r.id for r in claimed] == [first.id, free.id, plain.id]
    waiting = store.get_run(second.id)
    assert waiting.status is Status.QUEUED
    assert waiting.reason == f"waiting for lock db held by run {first.id}"
    assert store.claim_runs("w2", 10) == []  # still held, whoever asks
    holder = claimed[0]
    store.finish_run(first.id, holder.claim_token or "", Status.SUCCEEDED, reason="exit 0")
    [next_one] = store.claim_runs("w2", 10)
    assert next_one.id == second.id and next_one.reason is None
    claim = next(e for e in store.events(second.id) if e.to_status == "running")
    assert claim.reason is not None and claim.reason.endswith("holds lock db")


def test_wait_reasons_stay_current_past_the_claim_limit(store: Store) -> None:
    db, x = LeaseSet(locks=frozenset({"db"})), LeaseSet(locks=frozenset({"x"}))
    a, b, c, d = add(store, db), add(store, db), add(store, x), add(store, x)
    held = store.claim_runs("w1", 10)
    assert [r.id for r in held] == [a.id, c.id]
    assert store.get_run(d.id).reason == f"waiting for lock x held by run {c.id}"
    for run in held:
        store.finish_run(run.id, run.claim_token or "", Status.SUCCEEDED, reason="exit 0")
    assert [r.id for r in store.claim_runs("w1", 1)] == [b.id]
    assert store.get_run(d.id).reason is None  # free now, only waiting for a slot


def test_a_lease_ends_when_its_run_is_requeued_or_rescued(store: Store) -> None:
    ws = LeaseSet(workspace="/w")
    first, second = add(store, ws), add(store, ws)
    [held] = store.claim_runs("w1", 5)
    store.requeue_for_retry(
        first.id, held.claim_token or "", not_before=time.time() + 3600, reason="exit 1"
    )
    [taken] = store.claim_runs("w1", 5)
    assert taken.id == second.id  # the retrying run waits in backoff without its lease


def _lease_loop(url: str, worker: str, log: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """Claim and 'run' until the queue is empty, logging enter and leave times taken
    strictly inside the running window (after the claim commits, before the end does)."""
    s = Store.open(url)
    done = 0
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    while True:
        claimed = s.claim_runs(worker, 2)
        if not claimed:
            counts = s.count_by_status()
            if not counts.get(Status.QUEUED) and not counts.get(Status.RUNNING):
                break
            time.sleep(0.005)
            continue
        for run in claimed:
            os.write(fd, f"enter {run.id} {time.time():.6f}\n".encode())
        time.sleep(0.03)
        for run in claimed:
            os.write(fd, f"leave {run.id} {time.time():.6f}\n".encode())
            s.finish_run(run.id, run.claim_token or "", Status.SUCCEEDED, reason="exit 0")
            done += 1
    os.close(fd)
    out.put(done)


def intervals(log: Path) -> dict[int, tuple[float, float]]:
    enter: dict[int, float] = {}
    spans: dict[int, tuple[float, float]] = {}
    for line in log.read_text().splitlines():
        kind, run_id, at = line.split()
        if kind == "enter":
            enter[int(run_id)] = float(at)
        else:
            spans[int(run_id)] = (enter[int(run_id)], float(at))
    return spans


def test_racing_claimer_processes_never_overlap_conflicting_runs(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    kinds = [
        LeaseSet(locks=frozenset({"a"})),
        LeaseSet(locks=frozenset({"b"})),
        LeaseSet(locks=frozenset({"a", "b"})),
        LeaseSet(workspace="/w"),
        LeaseSet(paths=("/w/src/*",)),
        LeaseSet(paths=("/w/src/x.py",)),
        LeaseSet(paths=("/w/docs/*",)),
        LeaseSet(),
    ]
    runs = {add(store, kinds[i % len(kinds)]).id: kinds[i % len(kinds)] for i in range(48)}
    log = tmp_path / "occupancy.log"
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_lease_loop, args=(db_url, f"w{i}", str(log), out)) for i in range(4)
    ]
    for p in procs:
        p.start()
    done = sum(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
    assert done == len(runs)
    spans = intervals(log)
    assert set(spans) == set(runs)
    overlapped_free = False
    for (i, (s1, e1)), (j, (s2, e2)) in itertools.combinations(spans.items(), 2):
        together = s1 < e2 and s2 < e1
        if conflict(runs[i], runs[j]) is not None:
            assert not together, f"runs {i} and {j} conflict but overlapped"
        elif together:
            overlapped_free = True
    assert overlapped_free  # the check did not just serialise everything
