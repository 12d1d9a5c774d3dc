"""An agent that floods its output (tens of MB as fast as it can), optionally with one
huge line without a newline, then exits. qqtui should cap the log and stay responsive."""

from __future__ import annotations

import sys

from qqtui.agent import Session
from qqtui.demo.agents._common import BOLD, CYAN, GREEN, RESET, YELLOW, paint, parser, say

LINE = "{colour}flood {n:09d}{reset} the quick brown fox jumps over the lazy dog 0123456789\n"


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--megabytes", type=float, default=30.0, help="how much to print")
    p.add_argument(
        "--long-line-kb", type=int, default=0, help="then one line this long with no newline"
    )
    args = p.parse_args(argv)
    if not 0 <= args.megabytes <= 1024 or not 0 <= args.long_line_kb <= 64 * 1024:
        p.error("--megabytes must be 0-1024 and --long-line-kb 0-65536")

    session = Session.current(agent="flood")
    say(paint(f"flood · session {session.session_id} · {args.megabytes:g} MB", BOLD, CYAN))
    session.append_history({"role": "user", "content": "dump the whole table"})
    out = sys.stdout.buffer
    target = int(args.megabytes * 1024 * 1024)
    written = n = 0
    colours = (GREEN, YELLOW, CYAN)
    while written < target:
        # Build ~1 MB at a time: one write syscall per block keeps the flood fast.
        block = []
        size = 0
        while size < 1024 * 1024 and written + size < target:
            line = LINE.format(colour=colours[n % 3], n=n, reset=RESET)
            block.append(line)
            size += len(line)
            n += 1
        out.write("".join(block).encode())
        out.flush()
        written += size
        session.heartbeat()
        session.progress(min(1.0, written / target), f"{written >> 20} MB written")
    if args.long_line_kb:
        out.write(b"L" * (args.long_line_kb * 1024))
        out.write(b"\n")
        out.flush()
    session.append_history({"role": "assistant", "content": f"printed {n} lines"})
    say(paint(f"flood done: {n} lines, {written} bytes", BOLD, GREEN))
    return 0


if __name__ == "__main__":
    sys.exit(main())
