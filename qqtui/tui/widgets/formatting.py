"""Short human text for durations, ages, sizes, CPU sparklines and run statuses.

Pure functions (no Textual), so the poll worker can format rows off the UI thread.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from qqtui.core.records import FINAL_STATUSES, RunRecord, Status

STATUS_ICONS: dict[Status, str] = {
    Status.QUEUED: "◌",
    Status.RUNNING: "▶",
    Status.SUCCEEDED: "✔",
    Status.FAILED: "✘",
    Status.CANCELLED: "■",
    Status.TIMED_OUT: "⧗",
    Status.LOST: "?",
}

# Rich styles for table cells: a cell is a Rich renderable, so its colour cannot
# come from the stylesheet; these are the status colours used everywhere.
STATUS_STYLES: dict[Status, str] = {
    Status.QUEUED: "dim",
    Status.RUNNING: "bold cyan",
    Status.SUCCEEDED: "green",
    Status.FAILED: "bold red",
    Status.CANCELLED: "yellow",
    Status.TIMED_OUT: "bold magenta",
    Status.LOST: "bold red",
}
HUNG_STYLE = "bold black on yellow"

SPARK_CHARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 10


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
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def size(num_bytes: float | None) -> str:
    if num_bytes is None:
        return "-"
    value = float(num_bytes)
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.0f}{unit}" if unit == "B" or value >= 100 else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}T"


def sparkline(samples: Sequence[float], width: int = SPARK_WIDTH, full: float = 100.0) -> str:
    """`width` block characters for `samples` (oldest first), each the peak of its bucket.

    The scale is fixed (`full` = one busy core) so two runs' sparklines compare.
    """
    if not samples:
        return " " * width
    per = max(1, -(-len(samples) // width))
    peaks = [max(samples[i : i + per]) for i in range(0, len(samples), per)][-width:]
    top = len(SPARK_CHARS) - 1
    chars = "".join(SPARK_CHARS[min(top, max(0, round(p / full * top)))] for p in peaks)
    return chars.rjust(width)


def progress_bar(fraction: float, width: int = 8) -> str:
    """`▕███▌    ▏ 45%`: eighth-block resolution, so slow progress still moves."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")
    return f"▕{bar:<{width}}▏{fraction * 100:4.0f}%"


def status_label(status: Status) -> str:
    return f"{STATUS_ICONS[status]} {status.value.replace('_', ' ')}"


def outcome(run: RunRecord) -> str:
    """Exit code or reason: why it ended, or what is pending for it."""
    if run.status is Status.RUNNING:
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


def command_line(argv: Sequence[str]) -> str:
    return shlex.join(argv)
