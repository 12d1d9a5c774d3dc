"""The words the CLI and the app both show for a run: status icons, outcome, durations,
ages, sizes and command lines, as plain text.

Plain strings only (no Rich, no Textual): the CLI prints them as they are, the app
styles them (`qqtui.tui.widgets.formatting`), and the app's poll worker formats rows
with them off the UI thread.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Protocol

from qqtui.core.records import FINAL_STATUSES, Status

STATUS_ICONS: dict[Status, str] = {
    Status.QUEUED: "◌",
    Status.RUNNING: "▶",
    Status.SUCCEEDED: "✔",
    Status.FAILED: "✘",
    Status.CANCELLED: "■",
    Status.TIMED_OUT: "⧗",
    Status.LOST: "?",
}

# Unit sets for `size`: the app's narrow table columns, and the CLI's listings.
COMPACT_UNITS = ("B", "K", "M", "G")
IEC_UNITS = (" B", " KiB", " MiB", " GiB")


class OutcomeFacts(Protocol):
    """What `outcome` reads: a RunRecord, or a listing's RunLine."""

    @property
    def status(self) -> Status: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def exit_code(self) -> int | None: ...
    @property
    def cancel_requested(self) -> bool: ...
    @property
    def kill_requested(self) -> bool: ...


def status_name(status: Status) -> str:
    """`timed out`: the status as words."""
    return status.value.replace("_", " ")


def status_label(status: Status) -> str:
    """`⧗ timed out`: icon and words."""
    return f"{STATUS_ICONS[status]} {status_name(status)}"


def outcome(run: OutcomeFacts) -> str:
    """Exit code or reason: why it ended, or what is pending for it."""
    if run.status is Status.RUNNING:
        # A pending stop says more than the reason it was started or waited with.
        if run.kill_requested:
            return "kill requested"
        if run.cancel_requested:
            return "cancel requested"
        return run.reason or ""
    if run.status in FINAL_STATUSES:
        if run.reason:
            return run.reason
        return f"exit {run.exit_code}" if run.exit_code is not None else ""
    return run.reason or ""


def duration(seconds: float | None) -> str:
    """`4.2s`, `12s`, `3m05s`, `2h10m`, `3d04h`; `-` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{int(seconds // 86400)}d{int(seconds % 86400 // 3600):02d}h"


def age(seconds: float | None) -> str:
    """A coarse age (`5s`, `3m`, `2h`, `4d`): coarse so idle rows do not change every tick."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    for unit, per in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= per:
            return f"{int(seconds // per)}{unit}"
    return f"{int(seconds)}s"


def size(num_bytes: float | None, units: Sequence[str] = COMPACT_UNITS) -> str:
    """`512B`, `1.5K`, `120M` (or with IEC_UNITS `512 B`, `1.5 KiB`, `120 MiB`); `-` when unknown.

    Whole bytes; one decimal below 100 of a larger unit, none from 100 on, so the
    number never takes more than four characters below the last unit.
    """
    if num_bytes is None:
        return "-"
    value = float(num_bytes)
    for index, unit in enumerate(units):
        if value < 1024 or index == len(units) - 1:
            return f"{value:.0f}{unit}" if index == 0 or value >= 100 else f"{value:.1f}{unit}"
        value /= 1024
    raise ValueError("size needs at least one unit")


def command_line(argv: Sequence[str]) -> str:
    """The argv as a shell would need it typed: quoted where a word needs it."""
    return shlex.join(argv)
