"""Demo agent `review`: an interactive agent on a terminal of its own, as Claude Code or
aider are. It draws a full-screen interface on the alternate screen, works for a few
seconds, then asks "Apply this change? [y/n]" and waits for its user (telling qqtui
so). y applies the change and exits 0; n rejects it and exits 1.

It needs a terminal (`qqtui add --tty`); on a pipe it says so and exits 2.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import termios
import time
import tty
from collections.abc import Iterator

from qqtui import agent
from qqtui.demo.agents._common import MAX_LIFETIME_S, parser, seconds

ALT_ON, ALT_OFF = "\x1b[?1049h", "\x1b[?1049l"
HIDE, SHOW = "\x1b[?25l", "\x1b[?25h"
CLEAR, HOME = "\x1b[2J", "\x1b[H"
RESET, BOLD, DIM = "\x1b[0m", "\x1b[1m", "\x1b[2m"
GREEN, RED, YELLOW, CYAN, INVERSE = "\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[36m", "\x1b[7m"

DIFF = (
    (DIM, "--- a/queue.py"),
    (DIM, "+++ b/queue.py"),
    (CYAN, "@@ -41,7 +41,9 @@ def claim(self, worker):"),
    ("", "     with self.lock:"),
    (RED, "-        run = self.pending.pop()"),
    (GREEN, "+        if not self.pending:"),
    (GREEN, "+            return None"),
    (GREEN, "+        run = self.pending.popleft()"),
    ("", "         run.owner = worker"),
    ("", "         return run"),
)
STEPS = ("reading queue.py", "running the tests", "writing the fix", "running the tests again")
QUESTION = "Apply this change? [y/n]"


def write(text: str) -> None:
    os.write(1, text.encode())


def at(row: int, col: int, text: str) -> str:
    return f"\x1b[{row};{col}H{text}"


def draw(task: str, step: str, fraction: float, footer: str) -> None:
    cols, rows = os.get_terminal_size(1)
    width = max(20, min(cols, 100))
    bar_width = width - 12
    filled = int(bar_width * fraction)
    lines = [
        HOME + CLEAR,
        at(1, 1, f"{INVERSE}{BOLD} review agent · {task} ".ljust(width) + RESET),
        at(3, 3, f"{BOLD}{step}{RESET}"),
        at(4, 3, f"[{GREEN}{'█' * filled}{RESET}{'·' * (bar_width - filled)}] {fraction:4.0%}"),
    ]
    for i, (style, text) in enumerate(DIFF):
        if 6 + i >= rows - 2:
            break
        lines.append(at(6 + i, 3, f"{style}{text[: width - 4]}{RESET}"))
    lines.append(at(max(rows - 1, 2), 1, f"{YELLOW}{BOLD}{footer}{RESET}\x1b[K"))
    write("".join(lines))


@contextlib.contextmanager
def full_screen() -> Iterator[None]:
    attrs = termios.tcgetattr(0)
    write(ALT_ON + HIDE)
    try:
        tty.setcbreak(0)
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, attrs)
        write(SHOW + ALT_OFF)


def read_answer() -> str:
    """Wait for y or n (other keys are ignored); redraws on SIGWINCH."""
    deadline = time.monotonic() + MAX_LIFETIME_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            ready, _, _ = select.select([0], [], [], min(left, 1.0))
        except InterruptedError:
            continue
        if not ready:
            continue
        key = os.read(0, 1).decode(errors="replace").lower()
        if not key:
            return "n"  # the terminal went away: nobody approved
        if key in ("y", "n"):
            return key
    return "n"


def main() -> int:
    p = parser("An interactive agent on a terminal: asks before it applies a change.")
    p.add_argument("--seconds", type=seconds, default=6.0, help="work this long before asking")
    p.add_argument("--task", default="fix the claim race in queue.py")
    args = p.parse_args()
    if not (os.isatty(0) and os.isatty(1)):
        print("review agent: needs a terminal; run it with `qqtui add --tty`", file=sys.stderr)
        return 2
    session = agent.Session.current()
    state = {"step": STEPS[0], "fraction": 0.0, "footer": "working…"}

    def redraw(*_: object) -> None:
        draw(args.task, state["step"], state["fraction"], state["footer"])  # type: ignore[arg-type]

    signal.signal(signal.SIGWINCH, redraw)
    with full_screen():
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < args.seconds:
            fraction = elapsed / args.seconds if args.seconds else 1.0
            state.update(step=STEPS[min(int(fraction * len(STEPS)), len(STEPS) - 1)])
            state["fraction"] = fraction
            session.heartbeat()
            agent.progress(fraction, str(state["step"]))
            redraw()
            time.sleep(0.2)
        state.update(step="the change is ready", fraction=1.0, footer=QUESTION + " ")
        redraw()
        agent.waiting("apply the change to queue.py? [y/n]")
        answer = read_answer()
        agent.working()
        state["footer"] = "applying…" if answer == "y" else "rejected"
        redraw()
        time.sleep(0.5)
    if answer == "y":
        print(f"{GREEN}applied{RESET} the change to queue.py (3 lines added, 1 removed)")
        agent.progress(1.0, "applied")
        return 0
    print(f"{RED}rejected{RESET}: the change to queue.py was not applied")
    return 1


if __name__ == "__main__":
    sys.exit(main())
