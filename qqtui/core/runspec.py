"""RunSpec: what a user asks a run to be. The CLI's `add`, the app's launch form, resume,
the demo and the agents' profiles all build one, and it travels unchanged to the store.

A new run option is one field here plus its use: `qqtui add` takes an option of the
same name (cli.py passes its run options straight in), `submit_run` validates the spec,
and `Store.add_run` writes its column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from qqtui.core.sessions import DEFAULT_AGENT

if TYPE_CHECKING:
    from qqtui.core.records import RunRecord

DEFAULT_HUNG_AFTER_S = 300.0
"""The hung threshold of a run whose spec and profile name none."""

DEFAULT_TTY_SIZE = (120, 40)
"""The (columns, rows) of a tty run whose spec and profile name no size."""
TTY_COLS_RANGE = (10, 1000)
TTY_ROWS_RANGE = (2, 500)


def tty_size_of(run: RunRecord) -> tuple[int, int] | None:
    """The terminal size a run starts with; None for a run without a terminal."""
    if not run.tty:
        return None
    if run.tty_cols and run.tty_rows:
        return (run.tty_cols, run.tty_rows)
    return DEFAULT_TTY_SIZE


def parse_tty_size(text: str) -> tuple[int, int]:
    """`COLSxROWS` (e.g. 120x40) as (columns, rows); ValueError says what is wrong."""
    cols_text, sep, rows_text = text.strip().lower().partition("x")
    if not sep or not cols_text.isdigit() or not rows_text.isdigit():
        raise ValueError(f"terminal size must be COLSxROWS, e.g. 120x40, not {text!r}")
    size = (int(cols_text), int(rows_text))
    check_tty_size(size)
    return size


def check_tty_size(size: tuple[int, int]) -> None:
    cols, rows = size
    if not TTY_COLS_RANGE[0] <= cols <= TTY_COLS_RANGE[1]:
        raise ValueError(
            f"terminal width must be {TTY_COLS_RANGE[0]} to {TTY_COLS_RANGE[1]} columns, not {cols}"
        )
    if not TTY_ROWS_RANGE[0] <= rows <= TTY_ROWS_RANGE[1]:
        raise ValueError(
            f"terminal height must be {TTY_ROWS_RANGE[0]} to {TTY_ROWS_RANGE[1]} rows, not {rows}"
        )


@dataclass(frozen=True)
class RunSpec:
    """A run as asked for, before qqtui resolves it (profile, cwd, session, leases)."""

    argv: tuple[str, ...]
    """The command; an agent's profile may wrap it (`use_profile`)."""
    name: str = ""
    """Shown in the table; defaults to the command's basename."""
    agent: str = DEFAULT_AGENT
    """The profile it runs under, and the session folder it belongs to."""
    cwd: str | None = None
    """Its working directory; None: the submitter's."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to its environment (qqtui's own QQ_ variables cannot be overridden)."""
    timeout_s: float | None = None
    """Stopped (TERM, grace, KILL) after this long; None: the profile's, else never."""
    hung_after_s: float | None = None
    """Flagged hung after this long without output or heartbeat; None: the profile's."""
    retries: int = 0
    """Queued again after a failure, up to this many times."""
    retry_on_lost: bool = False
    """Also retried when its worker died under it."""
    session_id: str | None = None
    """Continue this session; None: a new one."""
    shared_workspace: bool = False
    """Do not lease the cwd: other runs in it may run alongside."""
    locks: tuple[str, ...] = ()
    """Never alongside another run holding one of these names."""
    paths: tuple[str, ...] = ()
    """Globs (relative to the cwd) of what it writes; replaces the whole-cwd lease."""
    worktree: bool = False
    """Run in a git worktree of its own."""
    repo: str | None = None
    """With `worktree`: the repository (default: the cwd's)."""
    ref: str | None = None
    """With `worktree`: start from this ref (default HEAD)."""
    keep_worktree: bool = False
    """With `worktree`: keep it even when the run succeeds."""
    tty: bool | None = None
    """On a pseudo-terminal of its own (attach, send, a live screen); None: the profile's."""
    tty_size: tuple[int, int] | None = None
    """With `tty`: the terminal's (columns, rows) until a viewer resizes it."""

    def __post_init__(self) -> None:
        # Sequences in, tuples kept: a spec is hashable and nobody's list aliases it.
        for name in ("argv", "locks", "paths"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "env", dict(self.env))
