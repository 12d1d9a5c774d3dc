"""Output tails: the last bytes of a remote run's output, kept for TUIs on other hosts."""

from __future__ import annotations

from sqlalchemy import select, update

from qqtui.core.models import run_outputs_table, runs_table
from qqtui.core.records import FINAL_STATUSES, OutputTail
from qqtui.core.store.base import StoreBase

OUTPUT_TAIL_BYTES = 64 * 1024  # what a TUI on another host can show of a remote run


class TailsMixin(StoreBase):
    """Stores, reads and prunes the output tails of runs."""

    def record_output_tail(
        self,
        run_id: int,
        token: str,
        *,
        attempt: int,
        log_path: str,
        size: int,
        tail: bytes,
    ) -> bool:
        """Keep the last OUTPUT_TAIL_BYTES of a run's output for TUIs on other hosts;
        fenced by the claim token like every owner write."""
        tail = tail[-OUTPUT_TAIL_BYTES:]
        values = {
            "attempt": attempt,
            "host": self.host,
            "log_path": log_path,
            "size": size,
            "tail": tail,
            "updated_at": self.clock(),
        }
        with self._write() as conn:
            owned = conn.execute(
                select(runs_table.c.id).where(
                    runs_table.c.id == run_id, runs_table.c.claim_token == token
                )
            ).first()
            if owned is None:
                return False
            result = conn.execute(
                update(run_outputs_table)
                .where(run_outputs_table.c.run_id == run_id)
                .values(**values)
            )
            if result.rowcount == 0:
                # Only the run's owner writes its row, so the insert cannot race.
                conn.execute(run_outputs_table.insert().values(run_id=run_id, **values))
        return True

    def output_tail(self, run_id: int) -> OutputTail | None:
        """The stored output tail of a run (None if its worker never stored one)."""
        with self._read() as conn:
            row = (
                conn.execute(select(run_outputs_table).where(run_outputs_table.c.run_id == run_id))
                .mappings()
                .first()
            )
        return OutputTail.from_row(row) if row is not None else None

    def prune_output_tails(self, keep_s: float) -> int:
        """Drop the stored output tails of runs that ended more than `keep_s` ago (or
        are gone); returns how many. A finished remote run's tail stays viewable for
        a while; then it is 64 KiB per run that nobody will read."""
        finals = ", ".join(f"'{s}'" for s in sorted(str(s) for s in FINAL_STATUSES))
        with self._write() as conn:
            return self._execute(
                conn,
                "DELETE FROM run_outputs WHERE run_id IN (SELECT id FROM runs WHERE"
                f" status IN ({finals}) AND finished_at < :cutoff)"
                " OR run_id NOT IN (SELECT id FROM runs)",
                {"cutoff": self.clock() - keep_s},
            )
