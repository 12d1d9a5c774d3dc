"""An agent whose output attacks the terminal: clipboard writes, title changes, screen
clears, cursor queries, links, C1 controls, invalid UTF-8 and Rich markup. qqtui must
render all of it inert (only SGR colours are allowed through)."""

from __future__ import annotations

import sys

from qqtui.agent import Session
from qqtui.demo.agents._common import BOLD, CYAN, GREEN, busy_wait, paint, parser, say, seconds

# (label, raw bytes): each is preceded by a readable label so a user can see what was sent.
ATTACKS: list[tuple[str, bytes]] = [
    ("OSC 52 clipboard write", b"\x1b]52;c;aGVsbG8=\x07"),
    ("OSC 0 title change", b"\x1b]0;pwned\x07"),
    ("OSC 2 title change (ST)", b"\x1b]2;pwned again\x1b\\"),
    ("screen clear + home", b"\x1b[2J\x1b[H"),
    ("DSR cursor position query", b"\x1b[6n"),
    ("OSC 8 hyperlink", b"\x1b]8;;https://example.invalid/\x1b\\click me\x1b]8;;\x1b\\"),
    ("cursor moves", b"\x1b[10;10H\x1b[5A\x1b[?25l"),
    ("DCS and APC strings", b"\x1bPq#0;2;0;0;0\x1b\\\x1b_apc payload\x1b\\"),
    ("C1 CSI (8-bit) clear", "\u009b2J".encode()),
    ("full reset ESC c", b"\x1bc"),
    ("bell and backspaces", b"\x07\x08\x08\x08"),
    ("invalid UTF-8", b"\xff\xfe\xc3\x28 \xed\xa0\x80"),
    ("Rich markup", b"[bold red]not markup[/] [link=https://example.invalid]x[/link]"),
    ("Textual markup", b"[@click=app.quit]quit[/] $variable"),
]


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__ or "")
    p.add_argument("--seconds", type=seconds, default=20.0, help="time spent after the attacks")
    args = p.parse_args(argv)

    session = Session.current(agent="hostile")
    say(paint(f"hostile · session {session.session_id}", BOLD, CYAN))
    session.append_history({"role": "user", "content": "[bold]summarise[/] \x1b]0;pwned\x07"})
    out = sys.stdout.buffer
    for label, payload in ATTACKS:
        out.write(f"{label}: ".encode() + payload + b"\n")
        out.flush()
        session.heartbeat()
    say(paint("attacks sent; only the colours on this line should render", GREEN))
    steps = max(1, int(args.seconds))
    for i in range(steps):
        session.progress(i / steps, "waiting")
        busy_wait(session, args.seconds / steps)
        say(f"still here {i + 1}/{steps} [dim]markup stays literal[/dim]")
    session.progress(1.0, "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
