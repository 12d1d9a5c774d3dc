"""The app keeps the traceback of the error that ended it, for the crash file.

Textual prints an unhandled error's traceback and exits with return code 1, but gives
the entry point nothing to save. Its private hook `App._handle_exception` is where every
such error passes; the first one is kept (tui/entry.py saves it in the home)."""

from __future__ import annotations

from typing import Any

from textual.app import App

from qqtui.core.crashlog import format_crash


class CrashCaptureApp(App[Any]):
    """An App whose `crash` is the traceback of the first unhandled error, or None."""

    crash: str | None = None

    def _handle_exception(self, error: Exception) -> None:
        if self.crash is None:
            self.crash = format_crash(error)
        super()._handle_exception(error)
