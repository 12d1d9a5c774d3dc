"""The shim's side of a tty run's socket: viewers, the one writer, the input queue.

Stdlib only, like the shim that runs it (ttyproto.py is the contract). It never
blocks: every socket is non-blocking. A viewer that does not keep up is never waited
for: once its backlog passes SLOW_CLIENT_LIMIT the OUTPUT it has not been sent is
skipped, and when it has read what was left it gets a fresh SCREEN (as tmux redraws a
client that fell behind), so a burst under load costs a viewer frames, never its
connection, and a viewer that reads nothing holds at most one frame and a screen.
Input waits in a bounded queue until the terminal takes it.

Within the contract: at most MAX_CLIENTS connections, only from our own uid (or
root); a RESIZE from a viewer that is not the writer is ignored (it may have been
sent just before a take-over), one with a size out of range drops the client; a
client dropped with unread data of its own may read ECONNRESET instead of EOF
after the ERROR frame. "send" clients get the same frames as readers.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import select
import socket
import stat
import struct
import termios
import time

if __package__:
    from . import ttyproto as proto
    from .ttyreplay import ScreenReplay
else:  # the shim runs as a bare script with this directory on sys.path
    import ttyproto as proto  # type: ignore[no-redef]
    from ttyreplay import ScreenReplay  # type: ignore[no-redef]

SUN_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL
SLOW_CLIENT_LIMIT = 8 * 1024 * 1024
INPUT_QUEUE_CAP = 1024 * 1024
MAX_CLIENTS = 64
MAX_NAME = 80
MAX_SIZE = 4096  # columns or rows: beyond this a program only allocates
INPUT_MARK_INTERVAL_S = 0.5
RECV_CHUNK = 65536
WRITE_CHUNK = 65536
CLOSE_FLUSH_S = 3.0


class SocketRefused(Exception):
    """The socket's path cannot be served safely; the run does not start."""


def set_winsize(fd: int, cols: int, rows: int) -> None:
    """TIOCSWINSZ on the master: the kernel sends SIGWINCH to the foreground group."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def socket_address(path: str, dir_fd: int) -> str:
    """What to bind or connect to: the path itself, or, when it does not fit in
    sun_path, the same name through an O_PATH fd of its directory."""
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        return path
    return f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}"


class Listener:
    """The listening socket at `path`, 0600 from its creation, in a private directory."""

    def __init__(self, path: str) -> None:
        directory, self.name = os.path.split(path)
        self.path = path
        try:
            self.dir_fd = os.open(
                directory or ".", os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            )
        except OSError as exc:
            raise SocketRefused(f"{directory}: {exc.strerror}") from None
        try:
            self.sock = self._bind()
        except BaseException:
            os.close(self.dir_fd)
            raise
        self.ino = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False).st_ino

    def _bind(self) -> socket.socket:
        st = os.fstat(self.dir_fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise SocketRefused(
                f"{os.path.dirname(self.path)} is not a private directory "
                f"(mode {stat.S_IMODE(st.st_mode):o}, owner uid {st.st_uid})"
            )
        try:
            existing = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(existing.st_mode):
                raise SocketRefused(f"{self.path} exists and is not a socket; refusing to use it")
            os.unlink(self.name, dir_fd=self.dir_fd)  # a dead shim's socket
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # 0600 at bind time: no window in which others may connect
        try:
            sock.bind(socket_address(self.path, self.dir_fd))
        except OSError as exc:
            sock.close()
            raise SocketRefused(f"cannot bind {self.path}: {exc.strerror}") from None
        finally:
            os.umask(old)
        sock.listen(16)
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        """Stop listening and remove the socket, if the path still names ours."""
        self.sock.close()
        with contextlib.suppress(OSError):
            st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
            if stat.S_ISSOCK(st.st_mode) and st.st_ino == self.ino:
                os.unlink(self.name, dir_fd=self.dir_fd)
        os.close(self.dir_fd)


class Client:
    __slots__ = (
        "bounds",
        "deadline",
        "fd",
        "name",
        "out",
        "queued",
        "reader",
        "resync",
        "sent",
        "sock",
        "want",
    )

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.reader = proto.FrameReader(proto.CLIENT_KINDS, proto.MAX_CLIENT_FRAME)
        self.out = bytearray()  # frames not yet sent, the first maybe in part
        # Byte counts since the connection began: queued, sent, and where each frame
        # still in `out` ends, so a backlog can be cut at a frame's end.
        self.queued = 0
        self.sent = 0
        self.bounds: collections.deque[int] = collections.deque()
        self.resync = False  # its backlog was skipped: a SCREEN once `out` is sent
        self.name = ""
        self.want: str | None = None  # set by HELLO
        self.deadline = deadline  # for HELLO


class TtyServer:
    """Serves one terminal: fed the master's output, answers the clients' frames."""

    def __init__(
        self, listener: Listener, master_fd: int, cols: int, rows: int, pid: int, input_mark: str
    ) -> None:
        self.listener: Listener | None = listener
        self.master_fd = master_fd
        self.cols, self.rows = cols, rows
        self.pid = pid
        self.replay = ScreenReplay()
        self.clients: dict[int, Client] = {}
        self.writer: Client | None = None
        self.pending = bytearray()  # input the terminal has not taken yet
        self.input_mark = input_mark
        self._mark_fd: int | None = None
        self._marked_at = 0.0
        self._streaming = 0  # clients past HELLO
        self._ended = False  # EXIT is queued: nothing may follow it

    # -- the shim's loop asks

    def read_fds(self) -> list[int]:
        if self.listener is None:
            return []  # the command has ended: only the last frames are still flushed
        return [*self.clients, self.listener.sock.fileno()]

    def write_fds(self) -> list[int]:
        fds = [c.fd for c in self.clients.values() if c.out]
        if self.pending:
            fds.append(self.master_fd)
        return fds

    def timeout(self, now: float) -> float | None:
        """Until the first HELLO deadline (None: nothing to wait for)."""
        deadlines = [c.deadline for c in self.clients.values() if c.want is None]
        return max(0.0, min(deadlines) - now) if deadlines else None

    def handle(self, readable: list[int], writable: list[int], now: float) -> None:
        if self.master_fd in writable:
            self._write_input()
        for fd in readable:
            client = self.clients.get(fd)
            if client is not None:
                self._read_client(client, now)
            elif self.listener is not None and fd == self.listener.sock.fileno():
                self._accept(now)
        for fd in writable:
            client = self.clients.get(fd)
            if client is not None:
                self._flush(client)
        for client in list(self.clients.values()):
            if client.want is None and now >= client.deadline:
                self._refuse(client, f"no HELLO within {proto.HELLO_TIMEOUT_S:g}s")

    def output(self, data: bytes) -> None:
        """The command wrote `data`: keep it for SCREEN, pass it to every viewer."""
        self.replay.feed(data)
        if not self._streaming:
            return
        for start in range(0, len(data), proto.MAX_SHIM_FRAME):
            chunk = proto.frame(proto.OUTPUT, data[start : start + proto.MAX_SHIM_FRAME])
            for client in list(self.clients.values()):
                if client.want is not None and not client.resync:
                    self._queue(client, chunk)

    def command_exited(self) -> None:
        """The command has ended; its last output may still be draining. The socket
        goes at once, so a late sender learns that the run has ended instead of waiting
        for an answer, and nothing more is read from the clients (no more input)."""
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def command_ended(self, exit_info: dict) -> None:
        """Its output drained: EXIT to every viewer after all of it, then no more
        clients (each goes once it has read its EXIT; `close` waits for the rest)."""
        self.command_exited()
        self._ended = True
        done = proto.frame(
            proto.EXIT, {"exit_code": exit_info.get("exit_code"), "signal": exit_info.get("signal")}
        )
        for client in list(self.clients.values()):
            if client.want is None:
                self._drop(client)
            else:
                if client.resync:
                    # The run's last screen, not the output it skipped.
                    client.resync = False
                    self._queue(client, proto.frame(proto.SCREEN, self.replay.replay()))
                self._queue(client, done)
                if not client.out and client.fd in self.clients:
                    self._drop(client)
        self.pending.clear()

    def close(self) -> None:
        """Flush what viewers have not read yet, all at once and for CLOSE_FLUSH_S at
        most (a viewer that reads nothing must not cost the others their EXIT), then
        close all."""
        self.command_exited()
        self._ended = True
        deadline = time.monotonic() + CLOSE_FLUSH_S
        while True:
            waiting = [client.fd for client in self.clients.values() if client.out]
            remaining = deadline - time.monotonic()
            if not waiting or remaining <= 0:
                break
            try:
                _, ready, _ = select.select([], waiting, [], remaining)
            except InterruptedError:
                continue
            for fd in ready:
                client = self.clients.get(fd)
                if client is not None:
                    self._flush(client)
        for client in list(self.clients.values()):
            self._drop(client, quiet=True)
        if self._mark_fd is not None:
            os.close(self._mark_fd)
            self._mark_fd = None

    # -- clients

    def _accept(self, now: float) -> None:
        assert self.listener is not None
        for _ in range(16):
            try:
                sock, _addr = self.listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EMFILE and the like: the next round tries again
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            if uid not in (os.geteuid(), 0):
                sock.close()
                continue
            if len(self.clients) >= MAX_CLIENTS:
                with contextlib.suppress(OSError):
                    sock.setblocking(False)
                    sock.send(proto.frame(proto.ERROR, {"error": "too many viewers"}))
                sock.close()
                continue
            sock.setblocking(False)
            client = Client(sock, now + proto.HELLO_TIMEOUT_S)
            self.clients[client.fd] = client

    def _read_client(self, client: Client, now: float) -> None:
        try:
            data = client.sock.recv(RECV_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        try:
            frames = client.reader.feed(data)
            for kind, payload in frames:
                if client.fd not in self.clients:
                    return
                self._on_frame(client, kind, payload, now)
        except proto.ProtocolError as exc:
            self._refuse(client, str(exc))

    def _on_frame(self, client: Client, kind: bytes, payload: bytes, now: float) -> None:
        if client.want is None:
            if kind != proto.HELLO:
                raise proto.ProtocolError("the first frame must be HELLO")
            self._hello(client, proto.decode_json(payload))
        elif kind == proto.HELLO:
            raise proto.ProtocolError("HELLO twice")
        elif kind == proto.INPUT:
            self._input(client, payload, now)
        elif kind == proto.RESIZE:
            self._resize(client, proto.decode_json(payload))
        elif kind == proto.TAKE:
            proto.decode_json(payload)
            if client.want == "send":
                raise proto.ProtocolError("a sender cannot take input")
            if self.writer is not client:
                self.writer = client
                self._broadcast_state()

    def _hello(self, client: Client, hello: dict) -> None:
        if hello.get("v") != proto.VERSION:
            raise proto.ProtocolError(
                f"protocol version {hello.get('v')!r} (this shim speaks {proto.VERSION})"
            )
        want = hello.get("want")
        name = hello.get("name")
        if want not in proto.WANTS or not isinstance(name, str):
            raise proto.ProtocolError('HELLO needs "name" and "want" (write, read or send)')
        # Shown to other viewers: keep it one short printable line.
        client.name = "".join(ch for ch in name if ch.isprintable())[:MAX_NAME] or "?"
        client.want = want
        self._streaming += 1
        took = want == "write" and self.writer is None
        if took:
            self.writer = client
        welcome = {"v": proto.VERSION, **self._state(client), "pid": self.pid}
        self._queue(client, proto.frame(proto.WELCOME, welcome))
        self._queue(client, proto.frame(proto.SCREEN, self.replay.replay()))
        if took:
            self._broadcast_state(skip=client)

    def _input(self, client: Client, data: bytes, now: float) -> None:
        if client is not self.writer and client.want != "send":
            holder = self.writer.name if self.writer is not None else "nobody"
            raise proto.ProtocolError(f"read-only: {holder} holds input")
        if len(self.pending) + len(data) > INPUT_QUEUE_CAP:
            raise proto.ProtocolError(
                "input refused: the terminal's input queue is full (the program is not reading)"
            )
        self.pending += data
        self._queue(client, proto.frame(proto.ACK, {"n": len(data)}))
        self._write_input()
        if data:
            self._mark_input(now)

    def _resize(self, client: Client, size: dict) -> None:
        cols, rows = size.get("cols"), size.get("rows")
        if not all(isinstance(v, int) and 1 <= v <= MAX_SIZE for v in (cols, rows)):
            raise proto.ProtocolError(f"RESIZE needs cols and rows from 1 to {MAX_SIZE}")
        if client is not self.writer:
            return  # a viewer's resize racing a take-over: nothing to refuse
        if (cols, rows) != (self.cols, self.rows):
            set_winsize(self.master_fd, cols, rows)  # type: ignore[arg-type]
            self.cols, self.rows = cols, rows  # type: ignore[assignment]
            self._broadcast_state()

    def _state(self, client: Client) -> dict:
        return {
            "cols": self.cols,
            "rows": self.rows,
            "writer": self.writer.name if self.writer is not None else None,
            "you_write": client is self.writer,
        }

    def _broadcast_state(self, skip: Client | None = None) -> None:
        for client in list(self.clients.values()):
            if client.want is not None and client is not skip:
                self._queue(client, proto.frame(proto.STATE, self._state(client)))

    def _queue(self, client: Client, data: bytes) -> None:
        """One whole frame to `client`: sent now if it can be, else kept in order."""
        client.queued += len(data)
        if not client.out:
            try:
                sent = client.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self._drop(client)
                return
            client.sent += sent
            if sent == len(data):
                return
            data = data[sent:]
        client.out += data
        client.bounds.append(client.queued)
        if len(client.out) > SLOW_CLIENT_LIMIT:
            self._skip_backlog(client)

    def _skip_backlog(self, client: Client) -> None:
        """Keep what is left of the frame being sent (a frame cut in two would break
        the stream) and drop the rest; the viewer gets a fresh SCREEN after it."""
        while client.bounds and client.bounds[0] <= client.sent:
            client.bounds.popleft()
        head_end = client.bounds[0] if client.bounds else client.sent
        del client.out[head_end - client.sent :]
        client.queued = head_end
        client.bounds.clear()
        if client.out:
            client.bounds.append(head_end)
            client.resync = True
        else:
            self._resynced(client)

    def _resynced(self, client: Client) -> None:
        """The screen as it is now (and who writes), then the stream again."""
        client.resync = False
        self._queue(client, proto.frame(proto.STATE, self._state(client)))
        self._queue(client, proto.frame(proto.SCREEN, self.replay.replay()))

    def _flush(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(client)
            return
        del client.out[:sent]
        client.sent += sent
        while client.bounds and client.bounds[0] <= client.sent:
            client.bounds.popleft()
        if client.out:
            return
        if client.resync and not self._ended:
            self._resynced(client)  # it has read what it was sent: catch it up
        elif self._ended:
            self._drop(client)  # the command has ended and this viewer has its EXIT

    def _refuse(self, client: Client, message: str) -> None:
        """ERROR (best effort, never blocking), then drop."""
        with contextlib.suppress(OSError):
            client.sock.send(bytes(client.out) + proto.frame(proto.ERROR, {"error": message}))
        client.out.clear()
        self._drop(client)

    def _drop(self, client: Client, *, quiet: bool = False) -> None:
        if self.clients.pop(client.fd, None) is None:
            return
        if client.want is not None:
            self._streaming -= 1
        client.sock.close()
        if client is self.writer:
            self.writer = None
            if not quiet and not self._ended:  # nothing may follow a viewer's EXIT
                self._broadcast_state()

    # -- the terminal

    def _write_input(self) -> None:
        while self.pending:
            try:
                n = os.write(self.master_fd, self.pending[:WRITE_CHUNK])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.pending.clear()  # the terminal is gone (EIO): nobody will read it
                return
            del self.pending[:n]

    def _mark_input(self, now: float) -> None:
        """Touch tty.input (its mtime says when input last arrived), at most every 0.5 s."""
        if now - self._marked_at < INPUT_MARK_INTERVAL_S:
            return
        self._marked_at = now
        try:
            if self._mark_fd is None:
                self._mark_fd = os.open(
                    self.input_mark,
                    os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                )
            os.utime(self._mark_fd)
        except OSError:
            pass  # a missing mark only delays clearing the waiting flag
