"""RunSpec: what a user asks a run to be. The CLI's `add`, the app's launch form, resume,
the demo and the agents' profiles all build one, and it travels unchanged to the store.

A new run option is one field here plus its use: `qqtui add` takes an option of the
same name (cli.py passes its run options straight in), `submit_run` validates the spec,
and `Store.add_run` writes its column.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from qqtui.core.sessions import DEFAULT_AGENT

DEFAULT_HUNG_AFTER_S = 300.0
"""The hung threshold of a run whose spec and profile name none."""


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

    def __post_init__(self) -> None:
        # Sequences in, tuples kept: a spec is hashable and nobody's list aliases it.
        for name in ("argv", "locks", "paths"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        object.__setattr__(self, "env", dict(self.env))
