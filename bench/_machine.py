"""What the core and app benchmarks share: the machine line, summary statistics, and
writing one "## ..." section of bench/README.md without touching the others."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from pathlib import Path

README = Path(__file__).with_name("README.md")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cores() -> int:
    try:
        return int(subprocess.run(["nproc"], capture_output=True, text=True).stdout)
    except (OSError, ValueError):
        return os.cpu_count() or 0


def machine_line() -> str:
    """'2 cores, x86_64, <CPU model>, Python 3.11.7'."""
    return (
        f"{cores()} cores, {platform.machine()}, {cpu_model()}, Python {platform.python_version()}"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """'median (min to max, n=N)' for repeated measurements."""
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}\u2013{fmt.format(max(values))}, n={len(values)})"


def update_readme_section(title: str, body: str) -> None:
    """Replace the `## {title}` section of bench/README.md (or append it).

    The file is re-read right before writing: other benchmarks own other sections.
    """
    heading = f"## {title}"
    old = README.read_text() if README.exists() else "# Benchmarks\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    section = heading + "\n\n" + body.strip() + "\n"
    if start is None:
        new = old.rstrip() + "\n\n" + section
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        before = "".join(lines[:start])
        after = "".join(lines[end:])
        new = before + section + ("\n" + after if after else "")
    README.write_text(new)


def code_state() -> str:
    """'at a1b2c3d' plus a warning when qqtui/ differs from that commit (shared tree)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "qqtui"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "code version unknown"
    return f"code at {head}" + (" plus uncommitted changes in qqtui/" if dirty else "")
