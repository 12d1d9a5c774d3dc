"""Crash reports: an unexpected error's traceback, saved in the home for the user to send."""

from __future__ import annotations

import tempfile
import time
import traceback
from pathlib import Path

from qqtui.core.errors import QqError
from qqtui.core.sessions import atomic_write_bytes, ensure_private_dir

CRASH_DIR = "crashes"


def format_crash(exc: BaseException) -> str:
    """The whole traceback of `exc`, as Python prints it."""
    return "".join(traceback.format_exception(exc))


def save_crash_report(home: Path, text: str, *, now: float | None = None) -> Path:
    """Write `text` to `<home>/crashes/crash-<time>.txt` (0600), or to the temp dir when
    the home cannot take it (the crash may be the home's fault); returns the file."""
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(now if now is not None else time.time()))
    name = f"crash-{stamp}-{time.monotonic_ns() % 1_000_000:06d}.txt"
    data = text.encode("utf-8", "replace")
    try:
        folder = ensure_private_dir(home / CRASH_DIR)
        atomic_write_bytes(folder / name, data)
        return folder / name
    except (OSError, QqError):
        fallback = Path(tempfile.gettempdir()) / f"qqtui-{name}"
        atomic_write_bytes(fallback, data)
        return fallback
