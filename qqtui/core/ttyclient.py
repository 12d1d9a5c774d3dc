"""The client side of a tty run's socket, which every viewer, writer and sender uses:
find the socket, check it is one we may trust, speak ttyproto to the run's shim."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import stat
import time
from pathlib import Path
from types import TracebackType

from qqtui.core import sessions, ttyproto
from qqtui.core.errors import QqError
from qqtui.core.records import RunRecord, Status
from qqtui.core.termtext import plain_field
from qqtui.core.ttyserver import socket_address

# Small enough that splitting what arrives into frames stays cheap (FrameReader moves
# its buffer's rest after every frame), large enough for a few syscalls per MB.
RECV_CHUNK = 65536


class TtyError(QqError):
    """A run's terminal cannot be reached or refused us; one line."""


class TtyClosed(TtyError):
    """The shim closed the connection (the run ended, or it dropped us)."""


def tty_socket(home: Path, run: RunRecord) -> Path:
    from qqtui.core.intents import run_paths

    return run_paths(home, run)[1] / sessions.TTY_SOCKET


def check_attachable(home: Path, run: RunRecord, this_host: str | None) -> Path:
    """The socket of a run whose terminal this host can reach, or TtyError saying why
    not. `this_host` None skips the host check (SQLite: one host by construction).

    A run on another host gets an error naming that host: its socket is a Unix socket
    there, and input relayed through the job table would arrive seconds late and
    unconfirmed, which is worse than a clear "go there"."""
    if not run.tty:
        raise TtyError(f"run {run.id} has no terminal (start it with --tty)")
    if run.status is Status.QUEUED:
        raise TtyError(f"run {run.id} is not running yet (queued)")
    if run.status.is_final:
        raise TtyError(f"run {run.id} has ended ({run.status.value})")
    if this_host is not None and run.host and run.host != this_host:
        raise TtyError(f"run {run.id} runs on host {run.host}; attach or send from {run.host}")
    path = tty_socket(home, run)
    if not os.path.lexists(path):
        if not run.pid:
            raise TtyError(f"run {run.id} is still starting; try again in a moment")
        raise TtyError(f"run {run.id} has no terminal socket at {path} (its shim is gone)")
    return path


def _check_socket(path: Path) -> None:
    """Only a socket of ours, 0600, not a symlink: anything else may be a plant."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise TtyClosed(f"{path} is gone (the run has ended)") from None
    except OSError as exc:
        raise TtyError(f"cannot reach {path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise TtyError(f"{path} is not a socket; refusing to use it")
    if st.st_uid != os.geteuid():
        raise TtyError(f"{path} belongs to uid {st.st_uid}, not to us; refusing to use it")
    if stat.S_IMODE(st.st_mode) != 0o600:
        raise TtyError(f"{path} has mode {stat.S_IMODE(st.st_mode):o}, not 600; refusing it")


def _connect(path: Path, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    dir_fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock.connect(socket_address(str(path), dir_fd))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise TtyClosed(f"nobody serves {path} (the run has ended)") from None
    except OSError as exc:
        sock.close()
        raise TtyError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    finally:
        os.close(dir_fd)
    return sock


def error_text(payload: bytes) -> str:
    """The message of an ERROR frame, made one plain line (it comes from another process)."""
    try:
        message = str(ttyproto.decode_json(payload).get("error", "refused"))
    except ttyproto.ProtocolError:
        message = "refused"
    return plain_field(message)[:200]


class TtyConnection:
    """One connection to a run's terminal: WELCOME and SCREEN read, frames after them
    on demand. `cols`, `rows`, `writer` and `you_write` follow the STATE frames that
    `read_frames` passes through."""

    def __init__(self, sock: socket.socket, path: Path) -> None:
        self.sock = sock
        self.path = path
        self.welcome: dict = {}
        self.screen = b""
        self.cols = 0
        self.rows = 0
        self.writer: str | None = None
        self.you_write = False
        self._reader = ttyproto.FrameReader(ttyproto.SHIM_KINDS, ttyproto.MAX_SHIM_FRAME)
        self._frames: list[tuple[bytes, bytes]] = []
        self._eof = False

    @classmethod
    def open(cls, path: Path, *, want: str, name: str, timeout: float = 2.0) -> TtyConnection:
        """Connect, say HELLO, read WELCOME and SCREEN (TtyError within `timeout` if not)."""
        if want not in ttyproto.WANTS:
            raise ValueError(f"want must be one of {ttyproto.WANTS}, not {want!r}")
        _check_socket(path)
        conn = cls(_connect(path, timeout), path)
        try:
            conn._send(ttyproto.frame(ttyproto.HELLO, {"v": 1, "name": name, "want": want}))
            deadline = time.monotonic() + timeout
            welcome = conn._expect(ttyproto.WELCOME, deadline)
            conn.welcome = ttyproto.decode_json(welcome)
            conn._apply_state(conn.welcome)
            conn.screen = conn._expect(ttyproto.SCREEN, deadline)
        except BaseException:
            conn.close()
            raise
        return conn

    def _expect(self, kind: bytes, deadline: float) -> bytes:
        while True:
            for i, (got, payload) in enumerate(self._frames):
                if got == kind:
                    del self._frames[: i + 1]
                    return payload
                if got in (ttyproto.ERROR, ttyproto.EXIT):
                    del self._frames[: i + 1]
                    raise self._ended(got, payload)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TtyError(f"the terminal at {self.path} did not answer in time")
            self._fill(remaining)

    def _ended(self, kind: bytes, payload: bytes) -> TtyError:
        if kind == ttyproto.EXIT:
            return TtyClosed("the run has ended")
        return TtyClosed(f"the run's terminal refused us: {error_text(payload)}")

    def _fill(self, timeout: float | None) -> bool:
        """Read what arrives within `timeout` into the frame list; False on timeout."""
        if self._eof:
            raise TtyClosed("the run's terminal closed the connection")
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return False
        try:
            data = self.sock.recv(RECV_CHUNK)
        except (BlockingIOError, InterruptedError, TimeoutError):
            return False
        except OSError:
            data = b""  # ECONNRESET after an ERROR: the shim dropped us
        if not data:
            self._eof = True
            if not self._frames:
                raise TtyClosed("the run's terminal closed the connection")
            return True
        try:
            self._frames += self._reader.feed(data)
        except ttyproto.ProtocolError as exc:
            self._eof = True
            raise TtyError(f"the run's terminal spoke garbage: {exc}") from None
        return True

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_frames(self, timeout: float | None) -> list[tuple[bytes, bytes]]:
        """The frames that arrive within `timeout` ([] if none; None waits). Raises
        TtyClosed once the shim has closed and every frame before that was returned."""
        if not self._frames:
            self._fill(timeout)
        frames, self._frames = self._frames, []
        for kind, payload in frames:
            if kind == ttyproto.STATE:
                with contextlib.suppress(ttyproto.ProtocolError):
                    self._apply_state(ttyproto.decode_json(payload))
        return frames

    def _apply_state(self, state: dict) -> None:
        self.cols = int(state.get("cols") or self.cols)
        self.rows = int(state.get("rows") or self.rows)
        writer = state.get("writer")
        self.writer = writer if isinstance(writer, str) else None
        self.you_write = bool(state.get("you_write"))

    def send_input(self, data: bytes) -> None:
        """Send `data` to the terminal (in frames of at most MAX_CLIENT_FRAME)."""
        limit = ttyproto.MAX_CLIENT_FRAME
        for start in range(0, len(data), limit):
            self._send(ttyproto.frame(ttyproto.INPUT, data[start : start + limit]))

    def resize(self, cols: int, rows: int) -> None:
        self._send(ttyproto.frame(ttyproto.RESIZE, {"cols": cols, "rows": rows}))

    def take(self) -> None:
        """Become the writer (ask the user first: it takes input from whoever has it)."""
        self._send(ttyproto.frame(ttyproto.TAKE, {}))

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise TtyError(f"the terminal at {self.path} does not take input") from None
        except OSError:
            raise TtyClosed("the run's terminal closed the connection") from None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> TtyConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def send_to_run(
    home: Path, run: RunRecord, data: bytes, *, this_host: str | None, timeout: float = 2.0
) -> int:
    """Send `data` as one INPUT frame and wait for the shim's ACK; returns the bytes
    queued. The frame is queued whole or not at all, so an error means nothing was sent."""
    if len(data) > ttyproto.MAX_CLIENT_FRAME:
        raise TtyError(
            f"{len(data)} bytes is more than one send delivers ({ttyproto.MAX_CLIENT_FRAME})"
        )
    path = check_attachable(home, run, this_host)
    ended = f"run {run.id} ended before the input reached it"
    name = f"qqtui send (pid {os.getpid()})"
    try:
        conn = TtyConnection.open(path, want="send", name=name, timeout=timeout)
    except TtyClosed:
        raise TtyError(ended) from None
    with conn:
        try:
            conn._send(ttyproto.frame(ttyproto.INPUT, data))
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TtyError(f"run {run.id}'s terminal did not confirm the input in time")
                for kind, payload in conn.read_frames(remaining):
                    if kind == ttyproto.ACK:
                        return int(ttyproto.decode_json(payload).get("n", 0))
                    if kind == ttyproto.EXIT:
                        raise TtyError(ended)
                    if kind == ttyproto.ERROR:
                        raise TtyError(f"run {run.id} refused the input: {error_text(payload)}")
        except TtyClosed:
            raise TtyError(ended) from None
