"""RunDetails: everything about one run, and its events timeline from the store."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from qqtui.core import presentation
from qqtui.core.intents import output_log_path, run_paths
from qqtui.core.records import EventRecord, RunRecord, Status
from qqtui.core.termtext import plain_line
from qqtui.tui.widgets import formatting as fmt


def clock_time(at: float | None) -> str:
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _safe(value: object) -> str:
    # argv, env and reasons come from users and programs: never let them move the cursor.
    return plain_line(value)


def _waiting_reason(run: RunRecord) -> str:
    return _safe(run.waiting_reason or "-")


def details_table(run: RunRecord, home: Path, now: float) -> Table:
    """The run's fields as a two-column table."""
    session_dir, run_dir = run_paths(home, run)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    status = fmt.status_text(run.status)
    running = run.status is Status.RUNNING
    if running and run.waiting:
        status.append("  WAITING", style=fmt.WAITING_STYLE)
    elif run.hung and run.is_active:
        status.append("  HUNG", style=fmt.HUNG_STYLE)
    rows: list[tuple[str, Text | str]] = [
        ("Run", f"{run.id}  {_safe(run.name)}"),
        ("Status", status),
        ("Outcome", _safe(presentation.outcome(run)) or "-"),
        *(
            # The agent's (or its screen's) words: untrusted, one sanitised line.
            [("Needs you", f"since {clock_time(run.waiting_since)}: {_waiting_reason(run)}")]
            if running and run.waiting
            else []
        ),
        ("Command", _safe(presentation.command_line(run.argv))),
        ("Working dir", _safe(run.cwd)),
        ("Agent", run.agent),
        ("Session", run.session_id),
        ("Session dir", str(session_dir)),
        ("Output log", str(output_log_path(home, run))),
        ("Run dir", str(run_dir)),
        (
            "Env overrides",
            "\n".join(f"{_safe(k)}={_safe(v)}" for k, v in sorted(run.env.items())) or "-",
        ),
        ("Attempt", f"{run.attempt} of {run.max_retries + 1}"),
        ("Timeout", presentation.duration(run.timeout_s) if run.timeout_s else "none"),
        ("Hung after", presentation.duration(run.hung_after_s)),
        ("Created", clock_time(run.created_at)),
        ("Started", clock_time(run.started_at)),
        ("Finished", clock_time(run.finished_at)),
        ("Runtime", presentation.duration(run.runtime_s(now))),
        ("Last activity", clock_time(run.activity_at)),
        ("Output", presentation.size(run.output_bytes)),
        (
            "Process",
            f"pid {run.pid or '-'}  pgid {run.pgid or '-'}  shim {run.shim_pid or '-'}",
        ),
        ("Worker", f"{run.worker_id or '-'} on {run.host or '-'}"),
        # Isolation: what this run may not share with others while it runs.
        (
            "Workspace",
            _safe(run.workspace)
            if run.workspace
            else ("per --paths" if run.paths else "shared with other runs"),
        ),
        ("Locks", ", ".join(_safe(lock) for lock in run.locks) or "-"),
        ("Paths", ", ".join(_safe(glob) for glob in run.paths) or "-"),
        (
            "Worktree",
            (_safe(run.worktree) + ("  (kept on success)" if run.keep_worktree else ""))
            if run.worktree
            else "-",
        ),
        (
            "Branch",
            f"{_safe(run.worktree_branch)} of {_safe(run.worktree_repo or '-')}"
            if run.worktree_branch
            else "-",
        ),
    ]
    for label, value in rows:
        # A plain str cell is parsed as Rich markup: a command or lock named "[bold]x"
        # must show as written.
        table.add_row(label, value if isinstance(value, Text) else Text(value))
    return table


def events_table(events: list[EventRecord]) -> Table:
    """The timeline, oldest first."""
    table = Table(
        "Time", "Event", "Change", "Reason", "By", box=None, expand=True, header_style="bold"
    )
    for event in events:
        change = f"{event.from_status or '·'} → {event.to_status}" if event.to_status else ""
        table.add_row(
            clock_time(event.at),
            event.kind,
            change,
            _safe(event.reason or ""),
            _safe(event.actor or ""),
        )
    if not events:
        table.add_row("-", "no events", "", "", "")
    return table


class RunDetails(Static):
    """Details and timeline of one run; `show` replaces what is shown."""

    def show(
        self, run: RunRecord | None, events: list[EventRecord], home: Path, now: float
    ) -> None:
        if run is None:
            self.update(Text("The run is gone from the store.", style="italic"))
            return
        self.update(
            Group(
                details_table(run, home, now),
                Text(""),
                Text("Events", style="bold underline"),
                events_table(events),
            )
        )
