"""The job store: every read and write of the job table, one `Store` for all callers.

Every change of a run's status commits together with its event row. Writers use
conditional UPDATEs (expected status and version, and the claim token for the
owner's writes), so a stale owner's late write changes nothing and a lost race
is retried a bounded number of times before it is raised.

`Store` is joined here from one mixin per job, each in its own module:

    base.py         the engine and clock, transactions, driver-level statements, events
    schema.py       create, check and migrate the tables; refuse a foreign SQLite file
    runs.py         list and count runs; add a run, release or discard a held one
    claim.py        the atomic claim of due runs, with their leases
    transitions.py  the owner's fenced writes and every status transition
    intents.py      a user's cancel, kill and retry
    workers.py      workers and hosts, and the rescue of dead workers' runs
    tails.py        output tails of remote runs

Mixins rather than collaborator objects (`store.claims.claim_runs(...)`): callers
everywhere say `store.claim_runs(...)` and `store.finish_run(...)`, and the parts
share one engine, clock, host and actor through `StoreBase`, so one object with one
flat API keeps every call site as it is. A mixin reaches only `StoreBase` and its own
module's methods (`IntentsMixin` builds on `TransitionsMixin`'s `_transition`), so
each module reads on its own.
"""

from __future__ import annotations

from typing import Any

from qqtui.core.dialects import StoreError, make_engine, normalize_db_url
from qqtui.core.store.claim import ClaimMixin
from qqtui.core.store.intents import IntentsMixin
from qqtui.core.store.runs import RunsMixin
from qqtui.core.store.schema import SchemaMixin, refuse_foreign_sqlite
from qqtui.core.store.tails import OUTPUT_TAIL_BYTES, TailsMixin
from qqtui.core.store.transitions import MAX_RACE_RETRIES, TransitionsMixin
from qqtui.core.store.workers import WorkersMixin

__all__ = ["MAX_RACE_RETRIES", "OUTPUT_TAIL_BYTES", "Store", "StoreError", "make_engine"]


class Store(
    SchemaMixin,
    RunsMixin,
    ClaimMixin,
    IntentsMixin,
    TransitionsMixin,
    WorkersMixin,
    TailsMixin,
):
    """Owns every read and write of the job table."""

    @classmethod
    def open(cls, url: str, **kwargs: Any) -> Store:
        """Open (and create or check the schema of) the store at `url`."""
        url = normalize_db_url(url)
        refuse_foreign_sqlite(url)
        store = cls(make_engine(url), **kwargs)
        store.init_schema()
        return store
