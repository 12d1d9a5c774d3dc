"""The waiting flag in the store, once per backend: fenced flips with one event each,
the hung flag cleared by a wait, and the flag reset when an attempt ends or requeues."""

from __future__ import annotations

from pathlib import Path

import pytest

from qqtui.core.records import Status
from qqtui.core.store import Store

from .test_waiting import claimed, kinds, reasons


@pytest.fixture
def db_url(backend_db_url: str) -> str:
    """Overrides the top conftest's: every test here runs once per backend."""
    return backend_db_url


def test_set_waiting_flips_once_clears_hung_and_is_reset_when_the_run_ends(
    store: Store, home: Path, db_url: str
) -> None:
    run_id, token, _ = claimed(store, home)
    assert store.set_hung(run_id, token, True, "silent")
    assert not store.set_waiting(run_id, "not-the-token", True, "approve?", "agent")
    assert store.set_waiting(run_id, token, True, "approve?", "agent")
    run = store.get_run(run_id)
    assert run.waiting and run.waiting_reason == "approve?" and run.waiting_since is not None
    assert not run.hung, "a waiting run is never hung"
    # Already waiting: no second event, but the newest words show.
    assert not store.set_waiting(run_id, token, True, "approve edit to x.py?", "agent")
    assert store.get_run(run_id).waiting_reason == "approve edit to x.py?"
    assert kinds(db_url, run_id).count("waiting") == 1
    assert reasons(db_url, run_id, "waiting") == ["agent: approve?"]
    assert reasons(db_url, run_id, "unhung") == ["it waits for its user"]
    assert store.set_waiting(run_id, token, False, "input reached its terminal", "input")
    assert not store.set_waiting(run_id, token, False, "again", "input")
    run = store.get_run(run_id)
    assert not run.waiting and run.waiting_reason is None and run.waiting_since is None
    assert reasons(db_url, run_id, "ready") == ["input: input reached its terminal"]
    store.set_waiting(run_id, token, True, "last question", "screen")
    store.finish_run(run_id, token, Status.SUCCEEDED, reason="exit 0", exit_code=0)
    run = store.get_run(run_id)
    assert not run.waiting and run.waiting_reason is None
    assert not store.set_waiting(run_id, token, True, "too late", "agent"), "running runs only"


def test_a_requeued_attempt_does_not_wait(store: Store, home: Path) -> None:
    run_id, token, _ = claimed(store, home, retries=1)
    store.set_waiting(run_id, token, True, "approve?", "agent")
    store.requeue_for_retry(run_id, token, not_before=0.0, reason="exit 1", exit_code=1)
    run = store.get_run(run_id)
    assert run.status is Status.QUEUED and not run.waiting and run.waiting_reason is None
