"""Session ids and directories, atomic JSON writes, and files shared under a lock.

Layout: `<home>/<agent>/sessions/<session_id>/` holds `meta.json`, one directory
per run (`runs/<run_id>/` with `output.log`, `heartbeat`, `status.json`) and
whatever the agent adds (history.json, files_state.json, notes.md, ...).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qqtui.core.records import QqError

SESSION_ID_RE = re.compile(r"^\d{8}_\d{6}_[0-9a-f]{8}$")
AGENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEFAULT_AGENT = "default"

OUTPUT_LOG = "output.log"
HEARTBEAT_FILE = "heartbeat"
STATUS_FILE = "status.json"
META_FILE = "meta.json"
ARTIFACTS_DIR = "artifacts"
# A tty run's shim serves its terminal here (0600, in the 0700 run directory).
TTY_SOCKET = "tty.sock"
# Its mtime is when input last reached a tty run's terminal (the shim touches it).
TTY_INPUT_FILE = "tty.input"
# What the agent kit writes when the run waits for its user (`qqtui.agent.waiting`).
WAITING_FILE = "waiting.json"


class SessionError(QqError):
    pass


class UnsafePathError(SessionError):
    """A path qqtui would write to is a symlink or not what it should be."""


def new_session_id(now: float | None = None) -> str:
    """A fresh `YYYYMMDD_HHMMSS_<8 hex>` id (local time, like the seed's QQ)."""
    stamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(now if now is not None else time.time()))
    return f"{stamp}_{secrets.token_hex(4)}"


def validate_session_id(session_id: str) -> str:
    if not SESSION_ID_RE.match(session_id):
        raise SessionError(f"invalid session id {session_id!r}: expected YYYYMMDD_HHMMSS_<8 hex>")
    return session_id


def validate_agent(agent: str) -> str:
    if not AGENT_RE.match(agent):
        raise SessionError(
            f"invalid agent name {agent!r}: use letters, digits, '.', '_' or '-' (max 64)"
        )
    return agent


def ensure_private_dir(path: Path, mode: int = 0o700) -> Path:
    """Create `path` (parents too) or accept it if it is a real directory; never follow a
    planted symlink. Safe when several processes do it at once."""
    try:
        os.makedirs(path.parent, mode=mode, exist_ok=True)
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    except PermissionError as exc:
        raise SessionError(f"cannot create {path}: permission denied") from exc
    except OSError as exc:
        raise SessionError(f"cannot create {path}: {exc.strerror}") from exc
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"refusing to use {path}: it is a symlink")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"refusing to use {path}: it is not a directory")
    return path


def ensure_home(home: Path) -> Path:
    """Create the home directory 0700 (tightening it if we own it) and check it is writable."""
    try:
        os.makedirs(home, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise SessionError(f"cannot create home {home}: {exc.strerror or exc}") from exc
    if not home.is_dir():
        raise SessionError(f"home {home} is not a directory")
    st = home.stat()
    if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(home, 0o700)
    if not os.access(home, os.W_OK | os.X_OK):
        raise SessionError(f"home {home} is not writable")
    return home


def session_dir(home: Path, agent: str, session_id: str) -> Path:
    return home / validate_agent(agent) / "sessions" / validate_session_id(session_id)


def create_session_dir(home: Path, agent: str, session_id: str) -> Path:
    """Create (or reuse) the session directory, refusing symlinks at every level below home."""
    validate_agent(agent)
    validate_session_id(session_id)
    path = home
    for part in (agent, "sessions", session_id):
        path = ensure_private_dir(path / part)
    return path


def run_dir(session_path: Path, run_id: int) -> Path:
    return session_path / "runs" / str(run_id)


def create_run_dir(session_path: Path, run_id: int) -> Path:
    ensure_private_dir(session_path / "runs")
    return ensure_private_dir(run_dir(session_path, run_id))


def artifacts_dir(session_path: Path, run_id: int) -> Path:
    """Where a run keeps its own outputs (`QQ_ARTIFACTS_DIR`): never shared with
    another run, so parallel runs cannot overwrite each other's reports."""
    return run_dir(session_path, run_id) / ARTIFACTS_DIR


def list_artifacts(session_path: Path, run_id: int) -> list[tuple[str, int]]:
    """(relative name, size) of every file a run left in its artifacts directory."""
    root = artifacts_dir(session_path, run_id)
    out: list[tuple[str, int]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            try:
                st = full.lstat()
            except OSError:
                continue
            out.append((str(full.relative_to(root)), st.st_size))
    return out


def _refuse_symlink(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"refusing to write {path}: it is a symlink")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` so a crash at any moment leaves old or new content."""
    path = Path(path)
    _refuse_symlink(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write `obj` as JSON atomically (temp file in the same dir, fsync, replace, dir fsync)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode())


def read_json(path: Path, default: Any = None) -> Any:
    """Read JSON; a missing file gives `default`, a corrupt one a clear SessionError."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return default
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SessionError(f"{path} is not valid JSON: {exc}") from exc


@contextlib.contextmanager
def locked(path: Path, timeout: float = 30.0) -> Iterator[None]:
    """Hold an exclusive lock beside `path` (`<path>.lock`, never deleted, so every process
    locks the same inode)."""
    from filelock import FileLock, Timeout

    lock = FileLock(
        f"{path}.lock", timeout=timeout, mode=0o600, thread_local=False, preserve_lock_file=True
    )
    try:
        with lock:
            yield
    except Timeout as exc:
        raise SessionError(f"timed out after {timeout}s waiting for the lock on {path}") from exc


def update_json(path: Path, fn: Callable[[Any], Any], default: Any = None) -> Any:
    """Read-modify-write a JSON file under its lock; returns the new value."""
    with locked(path):
        new = fn(read_json(path, default))
        atomic_write_json(path, new)
        return new


def append_text_locked(path: Path, text: str) -> None:
    """Append to a shared text file (notes.md) under its lock, atomically."""
    with locked(path):
        try:
            old = path.read_bytes()
        except FileNotFoundError:
            old = b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        atomic_write_bytes(path, old + text.encode())


@dataclass(frozen=True, slots=True)
class SessionInfo:
    agent: str
    session_id: str
    path: Path
    created_at: float
    size_bytes: int


def find_session(home: Path, session_id: str) -> SessionInfo:
    """Locate a session by id under any agent."""
    validate_session_id(session_id)
    try:
        agents = sorted(os.scandir(home), key=lambda e: e.name)
    except FileNotFoundError:
        agents = []
    for entry in agents:
        if not entry.is_dir(follow_symlinks=False):
            continue
        candidate = Path(entry.path) / "sessions" / session_id
        if candidate.is_dir() and not candidate.is_symlink():
            return _session_info(entry.name, candidate)
    raise SessionError(f"no session {session_id} under {home}")


def _dir_size(path: Path) -> int:
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def _session_info(agent: str, path: Path) -> SessionInfo:
    try:
        created = path.stat().st_mtime
        meta = read_json(path / META_FILE, {}) or {}
        created = float(meta.get("created_at", created))
    except (SessionError, OSError, TypeError, ValueError, AttributeError):
        created = 0.0
    return SessionInfo(agent, path.name, path, created, _dir_size(path))


def list_sessions(home: Path, agent: str | None = None) -> list[SessionInfo]:
    """Every session under home (optionally one agent), newest first."""
    out: list[SessionInfo] = []
    try:
        agent_entries = list(os.scandir(home))
    except FileNotFoundError:
        return out
    for entry in agent_entries:
        if agent is not None and entry.name != agent:
            continue
        if not entry.is_dir(follow_symlinks=False) or not AGENT_RE.match(entry.name):
            continue
        sessions_path = Path(entry.path) / "sessions"
        try:
            session_entries = list(os.scandir(sessions_path))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for sess in session_entries:
            if sess.is_dir(follow_symlinks=False) and SESSION_ID_RE.match(sess.name):
                out.append(_session_info(entry.name, Path(sess.path)))
    out.sort(key=lambda s: (s.session_id, s.agent), reverse=True)
    return out


def open_append_log(path: Path) -> int:
    """Open a run's output log for appending, 0600, refusing a planted symlink."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"refusing to write {path}: it is a symlink") from exc
        raise


# --- reading a session for people (the app's session view) ---------------------------

HISTORY_FILE = "history.json"


@dataclass(frozen=True, slots=True)
class History:
    """A session's history.json as it can be shown: exactly one of these is set."""

    problem: str | None = None
    """Why it cannot be shown, in one line (unreadable, not JSON)."""
    missing: bool = False
    """The session has none."""
    messages: tuple[tuple[str, str], ...] | None = None
    """(role, text) of each message, when it is a conversation."""
    raw: str | None = None
    """Any other JSON, indented."""


def read_history(path: Path) -> History:
    """A session's history.json (`path`) as a conversation, raw JSON or a problem: never
    raises. What it holds is the agent's (untrusted): callers sanitise it to show it."""
    try:
        data = read_json(path)
    except SessionError as exc:
        return History(problem=f"cannot show {path.name}: {exc}")
    except OSError as exc:
        return History(problem=f"cannot read {path.name}: {exc.strerror or exc}")
    if data is None:
        return History(missing=True)
    pairs = conversation(data)
    if pairs is None:
        return History(raw=json.dumps(data, indent=2, ensure_ascii=False))
    return History(messages=tuple(pairs))


def message_text(content: Any) -> str:
    """Text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                parts.append(json.dumps(part, ensure_ascii=False))
        return "\n".join(parts)
    return json.dumps(content, indent=2, ensure_ascii=False)


def conversation(data: Any) -> list[tuple[str, str]] | None:
    """(role, text) pairs if `data` is {"messages": [...]} or a bare list of
    {role, content}; None if it is some other JSON."""
    messages = data.get("messages") if isinstance(data, dict) else data
    if not isinstance(messages, list) or not messages:
        return None
    pairs = []
    for item in messages:
        if not isinstance(item, dict) or "role" not in item or "content" not in item:
            return None
        pairs.append((str(item["role"]), message_text(item["content"])))
    return pairs


def run_logs(session_path: Path) -> list[tuple[int, Path]]:
    """(run id, output log) for each run directory of the session, newest first."""
    runs_dir = session_path / "runs"
    found = []
    try:
        entries = list(os.scandir(runs_dir))
    except OSError:
        return []
    for entry in entries:
        if entry.name.isdigit() and entry.is_dir(follow_symlinks=False):
            found.append((int(entry.name), Path(entry.path) / OUTPUT_LOG))
    return sorted(found, reverse=True)
