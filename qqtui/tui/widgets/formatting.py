"""What only the app draws: the status colours, CPU sparklines and progress bars.

The words themselves (icons, outcome, durations, sizes) are core's, shared with the
CLI (`qqtui.core.presentation`). No Textual here, so the poll worker can format rows
off the UI thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from qqtui.core.presentation import status_label
from qqtui.core.records import Status

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
# "Needs you": the run waits for its user. Unlike any status colour, so it stands out.
WAITING_STYLE = "bold white on blue"
WAITING_TEXT_STYLE = "bold bright_blue"

SPARK_CHARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 10


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


def status_text(status: Status) -> Text:
    """`⧗ timed out` in the status's colour."""
    return Text(status_label(status), style=STATUS_STYLES[status])
