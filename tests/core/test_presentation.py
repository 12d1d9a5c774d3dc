"""The words the CLI and the app share (qqtui.core.presentation)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from qqtui.core import presentation
from qqtui.core.records import Status


@dataclass(frozen=True)
class Facts:
    status: Status
    reason: str | None = None
    exit_code: int | None = None
    cancel_requested: bool = False
    kill_requested: bool = False


@pytest.mark.parametrize(
    ("facts", "said"),
    [
        # A running run: a pending stop first (kill over cancel), then its reason.
        (Facts(Status.RUNNING, "waiting", cancel_requested=True, kill_requested=True), "kill requested"),
        (Facts(Status.RUNNING, "waiting", cancel_requested=True), "cancel requested"),
        (Facts(Status.RUNNING, "waiting"), "waiting"),
        (Facts(Status.RUNNING), ""),
        # An ended run: its reason, else its exit code.
        (Facts(Status.FAILED, "timed out after 5s", exit_code=3), "timed out after 5s"),
        (Facts(Status.FAILED, exit_code=3), "exit 3"),
        (Facts(Status.SUCCEEDED, exit_code=0), "exit 0"),
        (Facts(Status.LOST), ""),
        # A queued run: why it waits.
        (Facts(Status.QUEUED, "waiting for workspace /src held by run 12"), "waiting for workspace /src held by run 12"),
        (Facts(Status.QUEUED, cancel_requested=True), ""),
    ],
)  # fmt: skip
def test_outcome(facts: Facts, said: str) -> None:
    assert presentation.outcome(facts) == said


def test_every_status_has_an_icon_and_a_label() -> None:
    assert set(presentation.STATUS_ICONS) == set(Status)
    assert presentation.status_name(Status.TIMED_OUT) == "timed out"
    assert presentation.status_label(Status.TIMED_OUT) == "⧗ timed out"
    assert presentation.status_label(Status.QUEUED) == "◌ queued"


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(None, "-"), (-3, "0.0s"), (4.25, "4.2s"), (12.4, "12s"), (185, "3m05s"),
     (7800, "2h10m"), (3 * 86400 + 4 * 3600, "3d04h")],
)  # fmt: skip
def test_duration(seconds: float | None, said: str) -> None:
    assert presentation.duration(seconds) == said


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(None, "-"), (-1, "0s"), (59.9, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"),
     (86399, "23h"), (86400, "1d"), (5 * 86400, "5d")],
)  # fmt: skip
def test_age_is_coarse(seconds: float | None, said: str) -> None:
    assert presentation.age(seconds) == said


@pytest.mark.parametrize(
    ("num_bytes", "compact", "iec"),
    [
        (None, "-", "-"),
        (0, "0B", "0 B"),
        (1023, "1023B", "1023 B"),
        (1536, "1.5K", "1.5 KiB"),
        (99.94 * 1024**2, "99.9M", "99.9 MiB"),
        (150 * 1024**2, "150M", "150 MiB"),
        (3 * 1024**3, "3.0G", "3.0 GiB"),
        (2048 * 1024**3, "2048G", "2048 GiB"),  # the last unit has no ceiling
    ],
)
def test_size(num_bytes: float | None, compact: str, iec: str) -> None:
    assert presentation.size(num_bytes) == compact
    assert presentation.size(num_bytes, presentation.IEC_UNITS) == iec


def test_command_line_quotes_what_a_shell_would_split() -> None:
    assert presentation.command_line(["echo", "x y", "it's"]) == "echo 'x y' 'it'\"'\"'s'"
    assert presentation.command_line([]) == ""
