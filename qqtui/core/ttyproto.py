"""The wire protocol of a tty run's socket (`tty.sock` in its run directory), spoken
by the run's shim and by every viewer, writer and sender. Stdlib only: the shim,
which runs as a bare script, imports this module from its own directory.

A frame is one kind byte, a 4-byte big-endian payload length, then the payload.
JSON payloads are UTF-8 objects; byte payloads are raw terminal bytes.

Client to shim (first frame HELLO, within HELLO_TIMEOUT_S, or the client is dropped):
- HELLO  {"v": 1, "name": "who is asking", "want": "write" | "read" | "send"}
- INPUT  bytes for the terminal. Accepted from the writer and from "send" clients
  (one frame is queued whole or refused whole, then ACK), refused from readers.
- RESIZE {"cols": int, "rows": int}, writer only: TIOCSWINSZ, which sends SIGWINCH.
- TAKE   {}: become the writer (the UI confirms before it sends this).

Shim to client:
- WELCOME {"v": 1, "cols", "rows", "writer": name | None, "you_write": bool,
  "pid": the command's pid}
- SCREEN  bytes that redraw the current screen on a blank emulator (ttyreplay.py):
  after WELCOME, and again whenever the viewer fell too far behind (the OUTPUT it
  missed is skipped: reset the emulator and draw this instead)
- OUTPUT  bytes the command wrote since
- STATE   {"cols", "rows", "writer", "you_write"} when the writer or the size changes
- ACK     {"n": bytes queued} after an accepted INPUT
- ERROR   {"error": "one line"}; the shim closes the connection after it
- EXIT    {"exit_code", "signal"} when the command has ended; then the shim closes

Anything else (an unknown kind, a frame over MAX_CLIENT_FRAME, JSON that is not an
object) drops that client; the shim and the run carry on.
"""

from __future__ import annotations

import json
import struct
from typing import Any

VERSION = 1
HEADER = struct.Struct(">cI")

HELLO = b"h"
INPUT = b"i"
RESIZE = b"r"
TAKE = b"t"
CLIENT_KINDS = frozenset({HELLO, INPUT, RESIZE, TAKE})

WELCOME = b"w"
SCREEN = b"s"
OUTPUT = b"o"
STATE = b"x"
ACK = b"a"
ERROR = b"e"
EXIT = b"q"
SHIM_KINDS = frozenset({WELCOME, SCREEN, OUTPUT, STATE, ACK, ERROR, EXIT})

JSON_KINDS = frozenset({HELLO, RESIZE, TAKE, WELCOME, STATE, ACK, ERROR, EXIT})

WANTS = ("write", "read", "send")
MAX_CLIENT_FRAME = 64 * 1024
"""The largest frame a client may send (a paste larger than this is split by the client)."""
MAX_SHIM_FRAME = 4 * 1024 * 1024
HELLO_TIMEOUT_S = 2.0


class ProtocolError(Exception):
    """The peer broke the protocol; the connection is dropped."""


def frame(kind: bytes, payload: bytes | dict[str, Any] = b"") -> bytes:
    """One frame; a dict payload is sent as JSON."""
    if isinstance(payload, dict):
        payload = json.dumps(payload, separators=(",", ":")).encode()
    return HEADER.pack(kind, len(payload)) + payload


def decode_json(payload: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("a JSON payload must be an object")
    return obj


class FrameReader:
    """Splits a byte stream into frames; bounded: a frame over `max_frame` or of a
    kind outside `kinds` raises ProtocolError before its payload is buffered."""

    def __init__(self, kinds: frozenset[bytes], max_frame: int) -> None:
        self.kinds = kinds
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buffer += data
        frames: list[tuple[bytes, bytes]] = []
        while len(self._buffer) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buffer)
            if kind not in self.kinds:
                raise ProtocolError(f"unknown frame kind {kind!r}")
            if length > self.max_frame:
                raise ProtocolError(f"frame of {length} bytes (limit {self.max_frame})")
            end = HEADER.size + length
            if len(self._buffer) < end:
                break
            frames.append((kind, bytes(self._buffer[HEADER.size : end])))
            del self._buffer[:end]
        return frames
