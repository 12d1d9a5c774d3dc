"""The shim between a supervisor and a run's command. Stdlib only, run as a script
(`python -I -S runshim.py`) so it starts in a few milliseconds.

Why it exists: when a supervisor dies, the command keeps running, and only its
parent can learn its exit status. The shim is that parent. It lives in its own
session (the command gets a process group of its own below it, so signals for
the run's tree never hit the shim), copies the command's output into the capped
log, becomes the subreaper for everything the command orphans, and writes the
true exit status atomically into the run directory, where any later supervisor
finds it.

Protocol: the supervisor writes one JSON object to our stdin and closes it:
{"argv", "cwd", "env", "log", "status", "cap"}. We answer on stdout with one JSON
line, {"pid", "pgid", "starttime", "shim_pid", "shim_starttime"} or {"error"},
and later a line {"exit_code", "signal"} when the command ends; stdout is then
closed. If the supervisor is gone by then, the writes fail quietly: the status
file is the record.

With "tty": {"cols", "rows"} and "socket" in the config, the command runs on a
pseudo-terminal instead of a pipe: we keep the master, copy its output into the
same capped log, and serve the terminal on the Unix socket (ttyserver.py, whose
protocol is ttyproto.py; both are stdlib-only siblings imported from our own
directory). Nothing of that depends on the supervisor: viewers keep working after
it dies, and the next one finds the socket where it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import select
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
CHUNK = 65536
HERE = os.path.dirname(os.path.abspath(__file__))
TTY_INPUT_FILE = "tty.input"  # sessions.TTY_INPUT_FILE (the shim cannot import qqtui)
# After the command exits, how long leftovers holding the output pipe may keep
# writing before we stop draining (the supervisor kills them meanwhile).
DRAIN_AFTER_EXIT_S = 3.0
# A pty master hands out at most this much a read (the line discipline's buffer).
PTY_READ = 4095
# Read this much in one wake-up and the pty (~64 KiB) was filling: no pause then.
BEHIND = 48 * 1024
# The pause after a wake-up that found output streaming (see copy_until_exit).
COALESCE_S = 0.001


def proc_starttime(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: start time in clock ticks since boot (PID-reuse proof)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(b")") + 2 :].split()
    return int(rest[19])


def write_status(path: str, obj: dict) -> None:
    """Atomic replace: a crash leaves the old or the new status, never a torn file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, json.dumps(obj).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def decode_wait_status(wstatus: int) -> dict:
    if os.WIFSIGNALED(wstatus):
        return {"exit_code": None, "signal": os.WTERMSIG(wstatus)}
    return {"exit_code": os.WEXITSTATUS(wstatus), "signal": None}


def report(obj: dict) -> None:
    with contextlib.suppress(OSError):
        os.write(1, (json.dumps(obj) + "\n").encode())


class CappedLog:
    """Appends to the run's log until `cap` bytes, then writes one marker line and
    counts what it discards; memory stays one chunk whatever the run prints."""

    def __init__(self, fd: int, cap: int) -> None:
        self.fd = fd
        self.cap = cap
        self.written = os.fstat(fd).st_size
        self.discarded = 0

    def write(self, data: bytes) -> None:
        room = self.cap - self.written
        if room > 0:
            part = data[:room]
            self._write_all(part)
            self.written += len(part)
            data = data[len(part) :]
            if data:
                self._write_all(
                    f"\n[qqtui] output truncated: the log reached its cap of {self.cap} bytes;"
                    " further output is discarded\n".encode()
                )
        self.discarded += len(data)

    def close(self) -> None:
        if self.discarded:
            self._write_all(f"[qqtui] {self.discarded} bytes of output were discarded\n".encode())

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                return  # disk full or similar: the run must not die because its log cannot grow
            view = view[n:]


def read_available(fd: int, max_reads: int) -> tuple[bytes, bool]:
    """What `fd` holds now, in up to `max_reads` reads; and whether it reached EOF.
    A pty hands out at most 4 KiB a read: reading on before we process keeps the
    per-chunk work (log write, replay, frames) off the hot path."""
    parts: list[bytes] = []
    eof = False
    for _ in range(max_reads):
        try:
            data = os.read(fd, CHUNK)
        except (BlockingIOError, InterruptedError):
            break
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            eof = True  # a pty master reads EIO once the last slave is closed
            break
        if not data:
            eof = True
            break
        parts.append(data)
    return b"".join(parts), eof


def spawn_on_pipe(config: dict) -> tuple[subprocess.Popen, int]:
    read_fd, write_fd = os.pipe()
    try:
        child = subprocess.Popen(
            config["argv"],
            cwd=config["cwd"],
            env=config["env"],
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            process_group=0,
            close_fds=True,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return child, read_fd


def _take_controlling_terminal() -> None:
    """In the child, after setsid: the pty slave (fd 0) becomes its controlling terminal."""
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def spawn_on_pty(config: dict):  # -> (Popen, int, ttyserver.TtyServer)
    """The command on a new pty, as session leader with the slave as its controlling
    terminal; returns (child, master fd, the server of the run's socket)."""
    import termios

    if HERE not in sys.path:
        sys.path.append(HERE)  # last: none of our siblings may shadow a stdlib module
    import ttyserver

    cols, rows = int(config["tty"]["cols"]), int(config["tty"]["rows"])
    socket_path = config["socket"]
    # Bound before the command starts: a refused path means it never starts.
    listener = ttyserver.Listener(socket_path)
    try:
        master, slave = os.openpty()
        try:
            ttyserver.set_winsize(master, cols, rows)
            attrs = termios.tcgetattr(slave)
            # Erase whole UTF-8 characters, as terminals do (Linux IUTF8; termios lacks the name).
            attrs[0] |= getattr(termios, "IUTF8", 0o40000)
            termios.tcsetattr(slave, termios.TCSANOW, attrs)
            env = dict(config["env"])
            env["TERM"] = "xterm-256color"
            child = subprocess.Popen(
                config["argv"],
                cwd=config["cwd"],
                env=env,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,  # session leader, so its group is its own
                preexec_fn=_take_controlling_terminal,
                close_fds=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)  # ours; EIO on the master then means the run's are all closed
    except BaseException:
        listener.close()
        raise
    os.set_blocking(master, False)
    input_mark = os.path.join(os.path.dirname(socket_path), TTY_INPUT_FILE)
    server = ttyserver.TtyServer(listener, master, cols, rows, child.pid, input_mark)
    return child, master, server


def main() -> int:
    config = json.loads(sys.stdin.buffer.read())
    os.close(0)
    os.open(os.devnull, os.O_RDONLY)  # fd 0 again, so nothing inherits the closed pipe slot

    # A TERM for the run's tree must not take the shim with it; a handler (not SIG_IGN)
    # keeps exec'd children on the default disposition.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGHUP, lambda *_: None)
    # A child's exit wakes the select below through this pipe, so an idle run costs
    # no wake-ups at all (a hundred polling shims cost a few % of a core).
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    status_path = config["status"]
    log_fd = os.open(config["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    log = CappedLog(log_fd, int(config["cap"]))
    shim_start = proc_starttime(os.getpid())
    server = None
    try:
        if "tty" in config:
            child, read_fd, server = spawn_on_pty(config)
        else:
            child, read_fd = spawn_on_pipe(config)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, OSError) and exc.strerror:
            message = f"cannot execute {config['argv'][0]!r}: {exc.strerror}"
        elif type(exc).__name__ == "SocketRefused":
            message = f"cannot serve the run's terminal: {exc}"
        write_status(
            status_path,
            {
                "spawn_error": message,
                "finished_at": time.time(),
                "attempt": config.get("attempt", 1),
            },
        )
        log.write(f"[qqtui] {message}\n".encode())
        report({"error": message})
        return 127
    started = {
        "pid": child.pid,
        "pgid": child.pid,
        "starttime": proc_starttime(child.pid),
        "shim_pid": os.getpid(),
        "shim_starttime": shim_start,
        "started_at": time.time(),
        "attempt": config.get("attempt", 1),
    }
    write_status(status_path, started)
    report(started)
    try:
        exit_info = copy_until_exit(child, read_fd, wake_r, log, server, status_path, started)
    finally:
        if server is not None:
            server.close()  # the socket goes with the shim
    log.close()
    final = dict(started)
    final.update(
        exit_info or {},
        finished_at=time.time(),
        output_bytes=log.written,
        discarded_bytes=log.discarded,
    )
    write_status(status_path, final)
    return 0


def copy_until_exit(
    child: subprocess.Popen,
    read_fd: int,
    wake_r: int,
    log: CappedLog,
    server,  # a ttyserver.TtyServer for a tty run, else None
    status_path: str,
    started: dict,
) -> dict | None:
    """Copy the command's output into the log (and to the terminal's viewers) until it
    has ended and its output is drained; reap everything orphaned onto us meanwhile."""
    exit_info: dict | None = None
    drain_deadline: float | None = None
    eof = False
    leftovers = True
    # A pipe read takes 64 KiB; a pty hands out 4 KiB, so read on a while per wake-up.
    max_reads = 64 if server is not None else 1
    os.set_blocking(read_fd, False)
    while True:
        if eof and exit_info is None and server is None:
            # Everything closed the pipe but the command still runs: block until it ends.
            _, wstatus = os.waitpid(child.pid, 0)
            exit_info = decode_wait_status(wstatus)
        else:
            readable = [wake_r] if eof else [read_fd, wake_r]
            writable: list[int] = []
            timeout = None
            if drain_deadline is not None:
                timeout = max(0.0, drain_deadline - time.monotonic())
            if server is not None:
                readable += server.read_fds()
                writable = server.write_fds()
                wait = server.timeout(time.monotonic())
                if wait is not None:
                    timeout = wait if timeout is None else min(timeout, wait)
            ready, ready_w, _ = select.select(readable, writable, [], timeout)
            if wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 512):
                        pass
            woken = wake_r in ready
            if read_fd in ready:
                data, eof = read_available(read_fd, max_reads)
                if data:
                    log.write(data)
                    if server is not None:
                        server.output(data)
                        if PTY_READ <= len(data) < BEHIND:
                            # Output streams (a full pty read) and we are not behind (the
                            # pty holds ~64 KiB): let it gather for a moment, so that
                            # 50 MB/s costs about a thousand wake-ups a second, not the
                            # twelve thousand of one 4 KiB read each. A keystroke's echo
                            # waits at most this long, and only while output floods.
                            time.sleep(COALESCE_S)
            if server is not None:
                server.handle(ready, ready_w, time.monotonic())
            if not woken and exit_info is None:
                continue  # no signal came in: nothing to reap
        # Reap the command and anything orphaned onto us as subreaper. Everything the
        # command started is in our subtree, so how this loop ends says whether it
        # left processes behind.
        while True:
            try:
                pid, wstatus = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                leftovers = False
                break
            if pid == 0:
                leftovers = True
                break
            if pid == child.pid and exit_info is None:
                exit_info = decode_wait_status(wstatus)
        if exit_info is not None and drain_deadline is None:
            child.returncode = 0  # reaped by us: keep Popen from trying again
            drain_deadline = time.monotonic() + DRAIN_AFTER_EXIT_S
            final = dict(started)
            final.update(exit_info, finished_at=time.time(), output_bytes=log.written)
            write_status(status_path, final)
            report({**exit_info, "leftovers": leftovers})
            if server is not None:
                server.command_exited()
        if exit_info is not None and (eof or time.monotonic() >= drain_deadline):
            if server is not None:
                # Only now: what the command wrote before it ended may still be on its
                # way through the pty (the kernel moves it in the background, later
                # under load), and the viewers get all of it before EXIT.
                server.command_ended(exit_info)
            break
    return exit_info


if __name__ == "__main__":
    sys.exit(main())
