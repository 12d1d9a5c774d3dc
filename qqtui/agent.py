"""The agent kit: per-session state, shared files without lost updates, heartbeats, progress.

An agent (or any program qqtui runs) uses it like this::

    from qqtui import agent

    session = agent.Session.current()          # the run's session, or a new one
    session.append_history({"role": "user", "content": prompt})
    session.update_json("counters.json", lambda d: {**d, "steps": d.get("steps", 0) + 1}, {})
    for i, item in enumerate(work):
        agent.heartbeat()                      # free to call in a hot loop
        agent.progress(i / len(work), f"item {i}")
    agent.waiting("approve edit to x.py?")     # the run shows "needs you" ...
    answer = input()
    agent.working()                            # ... until it works again

Inside qqtui the session comes from the environment contract (`QQ_SESSION_ID`,
`QQ_SESSION_DIR`, `QQ_RUN_ID`, `QQ_HEARTBEAT_FILE`); run by hand, the same program
gets a fresh session under `QQ_HOME` (default `~/.qq`) so it works both ways.

Files:
- `history.json`: `{"messages": [ {...}, ... ]}`, appended under a lock, written atomically.
- `progress.json`: `{"fraction": float 0..1, "message": str, "at": epoch seconds}` in
  `<session>/runs/<run_id>/` when `QQ_RUN_ID` is set (parallel runs of one session do not
  collide), else in `<session>/`.
- `waiting.json`: `{"message": str, "at": epoch seconds}` in `<session>/runs/<run_id>/`
  while the run waits for its user (`waiting()`), removed by `working()`. Only a run
  qqtui started has one: outside qqtui (no `QQ_RUN_ID`) both are no-ops.

Importing this module is cheap on purpose (stdlib `os`/`time`/`pathlib` only): shell
helpers and short-lived agents pay for `qqtui.core.sessions` (tempfile, secrets) and
`filelock` only when they first write something.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from qqtui.core.errors import QqError

# Environment contract (DESIGN.md). QQ_AGENT only matters outside qqtui.
ENV_HOME = "QQ_HOME"
ENV_SESSION_ID = "QQ_SESSION_ID"
ENV_SESSION_DIR = "QQ_SESSION_DIR"
ENV_RUN_ID = "QQ_RUN_ID"
ENV_HEARTBEAT_FILE = "QQ_HEARTBEAT_FILE"
ENV_AGENT = "QQ_AGENT"

HISTORY_FILE = "history.json"
PROGRESS_FILE = "progress.json"
WAITING_FILE = "waiting.json"  # sessions.WAITING_FILE, named here to keep the import cheap
WAITING_MESSAGE_MAX = 1000  # characters of a waiting message kept (the app shows fewer)
NOTES_FILE = "notes.md"
# qqtui owns meta.json (run records point at it); an agent overwriting it would break
# the sessions screen, so the kit refuses to write it.
RESERVED_NAMES = frozenset({"meta.json"})

# Touch the heartbeat at most this often. Half the one-second freshness promise, so a
# caller that calls at least every 0.5 s always lands a touch inside every second.
HEARTBEAT_INTERVAL_S = 0.5


class AgentKitError(QqError):
    """Misuse of the agent kit a program can fix (bad name, no session, bad history file)."""


class InvalidNameError(AgentKitError, ValueError):
    """A file name that would escape the session directory."""


def check_name(name: str) -> str:
    """Return `name` if it is a plain file name inside a session dir, else raise."""
    if not isinstance(name, str):
        raise InvalidNameError(f"session file name must be a str, got {type(name).__name__}")
    if not name or name in (".", ".."):
        raise InvalidNameError(f"invalid session file name {name!r}: empty, '.' or '..'")
    if "/" in name or "\\" in name or "\0" in name or os.sep in name:
        raise InvalidNameError(
            f"invalid session file name {name!r}: no path separators; pass a pathlib.Path "
            "to reach a file outside the session directory"
        )
    return name


def _sessions() -> Any:
    # Deferred so `import qqtui.agent` stays cheap (see module docstring).
    from qqtui.core import sessions

    return sessions


class Session:
    """One session directory plus the current run's heartbeat and progress files."""

    __slots__ = (
        "_clock",
        "_last_beat",
        "agent",
        "heartbeat_error",
        "heartbeat_file",
        "heartbeat_interval",
        "home",
        "path",
        "run_id",
        "session_id",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        session_id: str | None = None,
        agent: str | None = None,
        home: str | os.PathLike[str] | None = None,
        run_id: str | None = None,
        heartbeat_file: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        heartbeat_interval: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        self.path = Path(path).absolute()
        self.session_id = session_id or self.path.name
        # `<home>/<agent>/sessions/<id>`: recover agent and home from the layout when
        # the caller only knows the directory.
        in_layout = self.path.parent.name == "sessions"
        self.agent = agent or (self.path.parent.parent.name if in_layout else None)
        if home is not None:
            self.home: Path | None = Path(home).absolute()
        else:
            self.home = self.path.parent.parent.parent if in_layout else None
        if run_id is not None:
            check_name(run_id)
        self.run_id = run_id
        self.heartbeat_file = Path(heartbeat_file) if heartbeat_file else None
        # Injected so tests can drive the rate limit deterministically.
        self._clock = clock
        self.heartbeat_interval = heartbeat_interval
        self._last_beat = -math.inf
        self.heartbeat_error: OSError | None = None

    def __repr__(self) -> str:
        return f"Session({str(self.path)!r}, run_id={self.run_id!r})"

    # -- finding the session ------------------------------------------------------

    @classmethod
    def current(cls, agent: str | None = None) -> Session:
        """The session of this process: from the environment under qqtui, else a new one.

        Outside qqtui a new session is created under `QQ_HOME` (default `~/.qq`) for
        `agent`, else `$QQ_AGENT`, else "default", and `QQ_SESSION_ID`/`QQ_SESSION_DIR`
        are exported so helper processes this program starts join the same session.
        `agent` only names a session being created; a session qqtui started keeps its
        own agent. The result is cached per process (until the environment names
        another session), so the heartbeat rate limit holds across calls.
        """
        global _current
        env = os.environ
        key = (env.get(ENV_SESSION_ID), env.get(ENV_SESSION_DIR))
        cached = _current
        if cached is not None and _current_key == key:
            return cached
        session = cls.from_environ(env, agent=agent)
        _remember(session)
        return session

    @classmethod
    def from_environ(
        cls, env: Any = None, agent: str | None = None, *, create: bool = True
    ) -> Session:
        """Build from an environment mapping, uncached.

        With `create=False` (shell helpers like `qqtui progress`, where a fresh session per
        call would be useless) a missing `QQ_SESSION_DIR`/`QQ_SESSION_ID` is an error.
        """
        exporting = env is None or env is os.environ
        env = os.environ if env is None else env
        s = _sessions()
        home = Path(env.get(ENV_HOME) or "~/.qq").expanduser().absolute()
        session_id = env.get(ENV_SESSION_ID) or None
        session_dir = env.get(ENV_SESSION_DIR) or None
        run_id = env.get(ENV_RUN_ID) or None
        heartbeat = env.get(ENV_HEARTBEAT_FILE) or None
        created_for: str | None = None  # the agent, when this call creates the session

        if session_dir:
            path = Path(session_dir)
            if not path.is_dir():
                raise AgentKitError(f"{ENV_SESSION_DIR}={session_dir} is not a directory")
            if session_id and path.name != session_id:
                raise AgentKitError(
                    f"{ENV_SESSION_ID}={session_id} does not match {ENV_SESSION_DIR}={session_dir}"
                )
        elif session_id:
            # An id alone (e.g. `QQ_SESSION_ID=... qq` to resume by hand): find it under
            # home, or start it under the agent if it does not exist yet.
            s.validate_session_id(session_id)
            try:
                path = s.find_session(home, session_id).path
            except s.SessionError:
                if not create:
                    raise
                created_for = _agent_name(agent, env)
                path = _create(home, created_for, session_id)
        elif not create:
            raise AgentKitError(
                f"not inside a qqtui run: neither {ENV_SESSION_DIR} nor {ENV_SESSION_ID} is set"
            )
        else:
            session_id = s.new_session_id()
            created_for = _agent_name(agent, env)
            path = _create(home, created_for, session_id)
            if exporting:
                # Children of a standalone agent should share its session, not each make one.
                os.environ[ENV_SESSION_ID] = session_id
                os.environ[ENV_SESSION_DIR] = str(path)
                os.environ.setdefault(ENV_HOME, str(home))

        if heartbeat is None and run_id is not None:
            heartbeat = str(path / "runs" / check_name(run_id) / s.HEARTBEAT_FILE)
        return cls(
            path,
            session_id=session_id or path.name,
            agent=created_for,
            home=None if session_dir else home,
            run_id=run_id,
            heartbeat_file=heartbeat,
        )

    # -- files in the session -----------------------------------------------------

    def file(self, name: str) -> Path:
        """Path of the plain file `name` inside the session directory."""
        return self.path / check_name(name)

    def _target(self, path_or_name: str | os.PathLike[str]) -> Path:
        # A str is a name inside the session (validated); a Path may point anywhere,
        # e.g. a notes file shared by several sessions (seed 000's ./memory/notes.md).
        if isinstance(path_or_name, str):
            return self.file(path_or_name)
        return Path(path_or_name)

    def _writable(self, name: str) -> Path:
        path = self.file(name)
        if name in RESERVED_NAMES:
            raise InvalidNameError(f"{name} belongs to qqtui; write another file name")
        return path

    def read_json(self, name: str, default: Any = None) -> Any:
        """Read a JSON file of the session; missing gives `default`, corrupt raises."""
        return _sessions().read_json(self.file(name), default)

    def write_json(self, name: str, obj: Any) -> None:
        """Replace a JSON file atomically, under its lock so no concurrent update is lost."""
        s = _sessions()
        path = self._writable(name)
        with s.locked(path):
            s.atomic_write_json(path, obj)

    def update_json(self, name: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
        """Read-modify-write under the file's lock (no lost update); returns the new value."""
        return _sessions().update_json(self._writable(name), fn, default)

    @contextmanager
    def locked(self, path_or_name: str | os.PathLike[str], timeout: float = 30.0) -> Iterator[Path]:
        """Hold the exclusive lock of a session file (or any Path); yields the file's path."""
        path = self._target(path_or_name)
        with _sessions().locked(path, timeout=timeout):
            yield path

    def append_note(self, path_or_name: str | os.PathLike[str], text: str) -> None:
        """Append `text` as whole lines to a notes file, locked and atomic."""
        if not text.endswith("\n"):
            # Line-oriented on purpose: two notes never end up glued on one line.
            text += "\n"
        _sessions().append_text_locked(self._target(path_or_name), text)

    def append_history(self, message: dict[str, Any]) -> int:
        """Append one message to history.json's `messages` list; returns the new length."""
        if not isinstance(message, dict):
            raise AgentKitError(f"a history message must be a dict, got {type(message).__name__}")
        path = self.file(HISTORY_FILE)

        def add(doc: Any) -> Any:
            if not isinstance(doc, dict) or not isinstance(doc.get("messages", []), list):
                # Refuse rather than silently replace someone's history.
                raise AgentKitError(f"{path} is not a {{'messages': [...]}} document")
            return {**doc, "messages": [*doc.get("messages", []), message]}

        return len(_sessions().update_json(path, add, {"messages": []})["messages"])

    def history(self) -> list[Any]:
        """The messages of history.json (empty when there is none yet)."""
        doc = self.read_json(HISTORY_FILE, {"messages": []})
        if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list):
            raise AgentKitError(
                f"{self.file(HISTORY_FILE)} is not a {{'messages': [...]}} document"
            )
        return doc["messages"]

    # -- liveness -----------------------------------------------------------------

    def heartbeat(self) -> bool:
        """Say "still making progress"; returns whether the file was touched this call.

        Rate-limited with a monotonic clock so a hot loop pays one clock read and one
        compare per call; the file is touched at most every `heartbeat_interval` s.
        """
        now = self._clock()
        if now - self._last_beat < self.heartbeat_interval:
            return False
        path = self.heartbeat_file
        if path is None:
            return False  # nobody watches a run started outside qqtui
        self._last_beat = now
        try:
            try:
                os.utime(path, follow_symlinks=False)
            except FileNotFoundError:
                # First beat: create it (never through a planted symlink).
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        except OSError as exc:
            # A missed beat must not crash the agent's real work (seed 003, item 5): it is
            # reported once as a warning and kept on `heartbeat_error`; later beats retry.
            if self.heartbeat_error is None:
                import warnings

                warnings.warn(f"qqtui heartbeat failed: {exc}", RuntimeWarning, stacklevel=2)
            self.heartbeat_error = exc
            return False
        self.heartbeat_error = None
        return True

    @property
    def progress_file(self) -> Path:
        """Where `progress()` writes: per run when the run id is known."""
        if self.run_id is not None:
            return self.path / "runs" / self.run_id / PROGRESS_FILE
        return self.path / PROGRESS_FILE

    def progress(self, fraction: float, message: str = "") -> None:
        """Write progress.json atomically: {"fraction": 0..1, "message": str, "at": epoch}."""
        fraction = float(fraction)
        if not 0.0 <= fraction <= 1.0:  # also rejects NaN
            raise AgentKitError(f"progress fraction must be between 0 and 1, got {fraction}")
        s = _sessions()
        path = self.progress_file
        if self.run_id is not None:
            s.create_run_dir(self.path, self.run_id)
        s.atomic_write_json(
            path, {"fraction": fraction, "message": str(message), "at": time.time()}
        )

    @property
    def waiting_file(self) -> Path | None:
        """Where `waiting()` writes: the run's directory; None outside a qqtui run."""
        if self.run_id is None:
            return None
        return self.path / "runs" / self.run_id / WAITING_FILE

    def waiting(self, message: str = "") -> None:
        """Say "this run needs its user" (why, in `message`): waiting.json, atomically."""
        path = self.waiting_file
        if path is None:
            raise AgentKitError(f"not inside a qqtui run: {ENV_RUN_ID} is not set")
        s = _sessions()
        s.create_run_dir(self.path, self.run_id)
        s.atomic_write_json(
            path, {"message": str(message)[:WAITING_MESSAGE_MAX], "at": time.time()}
        )

    def working(self) -> None:
        """Withdraw `waiting()`: the run works again (nothing to do when it was not)."""
        path = self.waiting_file
        if path is None:
            raise AgentKitError(f"not inside a qqtui run: {ENV_RUN_ID} is not set")
        with suppress(FileNotFoundError):
            os.unlink(path)


def _agent_name(agent: str | None, env: Any) -> str:
    return agent or env.get(ENV_AGENT) or _sessions().DEFAULT_AGENT


def _create(home: Path, agent: str, session_id: str) -> Path:
    s = _sessions()
    s.ensure_home(home)
    path = s.create_session_dir(home, agent, session_id)
    meta = path / s.META_FILE
    with s.locked(meta):
        if not meta.exists():
            s.atomic_write_json(
                meta,
                {
                    "session_id": session_id,
                    "agent": agent,
                    "created_at": time.time(),
                    "origin": "standalone",
                },
            )
    return path


_current: Session | None = None
_current_key: tuple[str | None, str | None] = (None, None)


def _remember(session: Session) -> None:
    global _current, _current_key
    _current = session
    # Keyed on the environment *after* creation (a standalone session exports itself).
    _current_key = (os.environ.get(ENV_SESSION_ID), os.environ.get(ENV_SESSION_DIR))


def current_session(agent: str | None = None) -> Session:
    """Same as `Session.current()`."""
    return Session.current(agent)


# Module-level conveniences: each delegates to the current session.


def read_json(name: str, default: Any = None) -> Any:
    """`Session.current().read_json(...)`."""
    return Session.current().read_json(name, default)


def write_json(name: str, obj: Any) -> None:
    """`Session.current().write_json(...)`."""
    Session.current().write_json(name, obj)


def update_json(name: str, fn: Callable[[Any], Any], default: Any = None) -> Any:
    """`Session.current().update_json(...)`."""
    return Session.current().update_json(name, fn, default)


@contextmanager
def locked(path_or_name: str | os.PathLike[str], timeout: float = 30.0) -> Iterator[Path]:
    """`Session.current().locked(...)`."""
    with Session.current().locked(path_or_name, timeout) as path:
        yield path


def append_note(path_or_name: str | os.PathLike[str], text: str) -> None:
    """`Session.current().append_note(...)`."""
    Session.current().append_note(path_or_name, text)


def append_history(message: dict[str, Any]) -> int:
    """`Session.current().append_history(...)`."""
    return Session.current().append_history(message)


def heartbeat() -> bool:
    """`Session.current().heartbeat()`, without re-reading the environment on each call."""
    session = _current
    if session is None:
        session = Session.current()
    return session.heartbeat()


def progress(fraction: float, message: str = "") -> None:
    """`Session.current().progress(...)`."""
    Session.current().progress(fraction, message)


def _run_session() -> Session | None:
    """The current run's session, or None outside a qqtui run (no session is created)."""
    if not os.environ.get(ENV_RUN_ID) or not os.environ.get(ENV_SESSION_DIR):
        return None
    return Session.current()


def _warn(what: str, exc: BaseException) -> None:
    import warnings

    warnings.warn(f"qqtui {what} failed: {exc}", RuntimeWarning, stacklevel=3)


def waiting(message: str = "") -> bool:
    """Tell qqtui this run waits for its user (the app shows it as "needs you").

    Returns whether it was written: outside a qqtui run this does nothing, and a
    failed write is a warning, never an exception in the agent's own work.
    """
    try:
        session = _run_session()
        if session is None:
            return False
        session.waiting(message)
    except (OSError, QqError) as exc:
        _warn("waiting", exc)
        return False
    return True


def working() -> bool:
    """Tell qqtui this run works again (after `waiting()`); a no-op outside qqtui."""
    try:
        session = _run_session()
        if session is None:
            return False
        session.working()
    except (OSError, QqError) as exc:
        _warn("working", exc)
        return False
    return True
