"""Keystroke to echo while attached to a tty run in the real app, under the 100-run load
(issue #15, "Performance": p99 ≤ 25 ms), with the same program in a plain tmux pane as
the floor.

    .venv/bin/python bench/bench_tty_attach.py                  # prints a table
    .venv/bin/python bench/bench_tty_attach.py --update-readme  # also writes the section

On a temp home with a real `qqtui worker`: bench_app's "load" case (fill_home with 100
printing runs and its 2 quiet marker runs, ~300 processes, ~500 lines/s) plus one tty run
of ECHO, a program that puts its terminal in raw mode and answers each byte it reads with
a token on a line of its own (`k00042a`: a counter and the byte), written at the next row
with cursor addressing (rows cycle, the screen never scrolls, so one row changes per key,
as when a shell echoes a key). The app (`python -m qqtui --home H`, 160x45 window of a
private tmux server, bench_app's Tmux) selects the tty run (the `/` filter on its name,
the output title `output · run N` checked), `a` attaches, and the bar
"attached to run N" is waited for.

Measured with bench_app's control-mode client (`tmux -C attach`): a key goes in as a
`send-keys` line on its stdin; the sample ends when the pane's `%output` (escape
sequences removed) contains the token, i.e. when tmux has read the app's bytes from its
pty. Per sample: app (tmux -> app -> shim socket -> pty -> ECHO -> pty -> shim -> socket
-> app's reader thread -> emulator -> repaint -> tmux), then the floor, ECHO itself in a
plain pane of the same tmux server (tmux -> pty -> ECHO -> pty -> tmux): interleaved, one
app sample then one floor sample, with a random 50-150 ms pause after each. Then
bench_app's ctl_floor_latency: `echo` in a plain sh window, back to back after them.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import os
import random
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import code_state, machine_line, percentile, update_readme_section
from bench_app import (
    DATE,
    PY,
    Control,
    LoadSampler,
    Tmux,
    ctl_floor_latency,
    env_for,
    fill_home,
    selected_run,
    start_app,
    start_worker,
    stop_home,
    submit,
    wait_running,
)

from qqtui.config import default_db_url
from qqtui.core import ttyproto
from qqtui.core.store import Store
from qqtui.core.ttyclient import TtyConnection, tty_socket

# bench_app's "load" case: scenario_runs(work, "load", 100, 0, args).
CHATTY, IDLE = 100, 0
SECTION = "tty attach: keystroke to echo (#15)"
GOAL_P99_MS = 25.0
NAME = "ttyecho"

ECHO = r"""
import os, sys, termios, tty
fd = sys.stdin.fileno()
tty.setraw(fd)
out = sys.stdout.fileno()
os.write(out, b"\x1b[2J\x1b[H ready\r\n")
n = 0
while True:
    b = os.read(fd, 1)
    if not b:
        break
    rows = max(2, os.get_terminal_size(out).lines)
    row = n % (rows - 1) + 2  # row 1 says ready; the rest cycle, nothing scrolls
    os.write(out, b"\x1b[%d;1H\x1b[2Kk%05d%s" % (row, n, b if b.isalnum() else b"?"))
    n += 1
"""
# Keys that are plain printable bytes to the app (AttachScreen sends them as they are)
# and to tmux's send-keys (no key name).
KEYS = string.ascii_lowercase


# --trace: the app started through this wrapper, which (without touching qqtui/) writes a
# monotonic timestamp at each step of a key's way through the app to a file: the key
# parsed by Textual's input thread, AttachScreen.on_key and its send, the socket reader's
# read_frames returning output, TerminalView.feed (from AttachScreen._on_frames; the
# @on handler itself cannot be wrapped), TerminalView._repaint, the frame
# handed to Textual's writer thread, and written and flushed to the pty by it.
TRACER = r"""
import os, sys, time
from textual import events
from textual.drivers import _writer_thread, linux_driver
from qqtui.core import ttyclient
from qqtui.tui.screens import attach
from qqtui.tui.widgets import terminal_view

_fd = os.open(os.environ["QQ_BENCH_TRACE"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
_now = time.monotonic

def mark(what):
    os.write(_fd, b"%s %.6f\n" % (what, _now()))

def wrap(cls, name, before=None, after=None, when=None):
    old = getattr(cls, name)
    def new(*a, **k):
        if before is not None and (when is None or when(a, None)):
            mark(before)
        r = old(*a, **k)
        if after is not None and (when is None or when(a, r)):
            mark(after)
        return r
    setattr(cls, name, new)

wrap(linux_driver.LinuxDriver, "process_message", before=b"key_in",
     when=lambda a, r: isinstance(a[1], events.Key))
wrap(attach.AttachScreen, "on_key", before=b"on_key", after=b"sent")
wrap(ttyclient.TtyConnection, "read_frames", after=b"frames_read",
     when=lambda a, r: bool(r) and any(k == b"o" for k, _ in r))
# The attached view only: the main screen's output pane, a TerminalView too, follows the
# same run's log underneath (its marks are "pane_feed" and "pane_repaint").
attached = lambda a, r: a[0].id == "attach-terminal"
pane = lambda a, r: a[0].id != "attach-terminal"
wrap(terminal_view.TerminalView, "feed", before=b"feed", when=attached)
wrap(terminal_view.TerminalView, "_repaint", before=b"repaint", when=attached)
wrap(terminal_view.TerminalView, "feed", before=b"pane_feed", when=pane)
wrap(terminal_view.TerminalView, "_repaint", before=b"pane_repaint", when=pane)
wrap(_writer_thread.WriterThread, "write", before=b"display")

class File:
    def __init__(self, f):
        self.f = f
    def write(self, t):
        return self.f.write(t)
    def flush(self):
        self.f.flush()
        mark(b"written")
    def __getattr__(self, n):
        return getattr(self.f, n)

_init = _writer_thread.WriterThread.__init__
def _new_init(self, file):
    _init(self, File(file))
_writer_thread.WriterThread.__init__ = _new_init

from qqtui.cli import main
sys.argv = ["qqtui", *sys.argv[1:]]
main()
"""
STEPS = ("key_in", "on_key", "sent", "frames_read", "feed", "repaint", "display", "written")


class Echoer:
    """One ECHO program behind a control-mode client: sends a key, waits for its token."""

    def __init__(self, ctl: Control) -> None:
        self.ctl = ctl
        self.n = 0
        self.times: list[tuple[float, float]] = []  # (send, seen) of each timed sample

    def sample(self) -> float | None:
        key = random.choice(KEYS)
        token = f"k{self.n:05d}{key}"
        self.n += 1
        t0 = self.ctl.send(key)
        seen = self.ctl.wait(token, lambda s, t=token: t in s, timeout=15)
        if seen is None:
            return None
        self.times.append((t0, seen))
        return (seen - t0) * 1000


class SocketEchoer:
    """The shim's half alone: a `send` client on the run's socket (as `qqtui send`, the
    app stays the writer) sends a key as an INPUT frame and reads OUTPUT frames until the
    token: socket -> shim -> pty -> ECHO -> pty -> shim -> socket, no app, no tmux."""

    def __init__(self, conn: TtyConnection, counter: Echoer) -> None:
        self.conn = conn
        self.counter = counter  # the same program: one count of keys
        self.buf = b""

    def sample(self) -> float | None:
        while self.conn.read_frames(0):  # the app's tokens come here too
            pass
        key = random.choice(KEYS)
        token = f"k{self.counter.n:05d}{key}".encode()
        self.counter.n += 1
        self.buf = b""
        t0 = time.monotonic()
        self.conn.send_input(key.encode())
        deadline = t0 + 15
        while time.monotonic() < deadline:
            for kind, payload in self.conn.read_frames(1.0):
                if kind == ttyproto.OUTPUT:
                    self.buf += payload
                    if token in self.buf:
                        return (time.monotonic() - t0) * 1000
        return None


def breakdown(trace: Path, samples: list[tuple[float, float]]) -> dict[str, list[float]]:
    """ms spent in each step, per sample: each step's first mark after the step before
    it, all within the sample's (send, seen)."""
    marks: dict[str, list[float]] = {step: [] for step in STEPS}
    for line in trace.read_text().splitlines():
        what, at = line.split()
        marks.setdefault(what, []).append(float(at))
    for v in marks.values():
        v.sort()
    names = ["tmux -> Textual input thread", *(f"{a} -> {b}" for a, b in itertools.pairwise(STEPS))]
    names.append("written -> tmux read it")
    out: dict[str, list[float]] = {name: [] for name in names}
    out["total"] = []
    for t0, seen in samples:
        at, points = t0, [t0]
        for step in STEPS:
            k = bisect.bisect_left(marks[step], at)
            if k == len(marks[step]) or marks[step][k] > seen:
                break
            at = marks[step][k]
            points.append(at)
        else:
            points.append(seen)
            for name, (a, b) in zip(names, itertools.pairwise(points), strict=True):
                out[name].append((b - a) * 1000)
            out["total"].append((seen - t0) * 1000)
    return out


def rates(trace: Path, start: float, end: float) -> dict[str, float]:
    """How often each mark happened per second while the samples were taken (three
    parties' keys, ~3 a second, and whatever else the app does meanwhile)."""
    counts: dict[str, int] = {}
    for line in trace.read_text().splitlines():
        what, at = line.split()
        if start <= float(at) <= end:
            counts[what] = counts.get(what, 0) + 1
    return {what: n / (end - start) for what, n in sorted(counts.items())}


def slowest(b: dict[str, list[float]], share: float = 0.05) -> str:
    """The mean of each step over the slowest `share` of the samples."""
    total = b["total"]
    if not total:
        return "    no sample traced through every step"
    order = sorted(range(len(total)), key=total.__getitem__, reverse=True)
    top = order[: max(1, round(len(total) * share))]
    parts = [
        f"{name} {sum(b[name][i] for i in top) / len(top):.1f}" for name in b if name != "total"
    ]
    return (
        f"    slowest {len(top)} (mean total {sum(total[i] for i in top) / len(top):.1f} ms): "
        + (", ".join(parts))
    )


def ms(v: float) -> str:
    return f"{v:.1f}"


def stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values),
    }


def lat(s: dict) -> str:
    if not s.get("n"):
        return "no sample"
    return (
        f"p50 {ms(s['p50'])}, p95 {ms(s['p95'])}, p99 {ms(s['p99'])}, "
        f"max {ms(s['max'])} ms (n={s['n']})"
    )


def attach(tmux: Tmux, run_id: int) -> None:
    """Select the run with the `/` filter on its name, check the title, press `a`."""
    tmux.wait_for("app", lambda s: selected_run(s) is not None, timeout=60)
    if selected_run(tmux.screen("app")) != run_id:
        tmux.keys("app", "/")
        time.sleep(0.3)
        tmux.keys("app", NAME, literal=True)
        time.sleep(0.5)
        tmux.keys("app", "Enter")
        tmux.wait_for("app", lambda s: selected_run(s) == run_id, timeout=20)
    time.sleep(1)
    tmux.keys("app", "a")
    tmux.wait_for("app", lambda s: f"attached to run {run_id}" in s and "ready" in s, timeout=20)
    time.sleep(2)  # the resize to the view's size and its redraw settle


def measure(args: argparse.Namespace, sampler: LoadSampler) -> dict:
    res: dict = {"loadavg": {}}
    with tempfile.TemporaryDirectory(prefix="qqbench-ttyattach-") as tmp:
        home = Path(tmp) / "load"
        home.mkdir(mode=0o700)
        tmux = Tmux()
        workers: list[subprocess.Popen] = []
        try:
            workers.append(start_worker(home, CHATTY + IDLE + 3))
            fill_home(home, CHATTY, IDLE)
            store = Store.open(default_db_url(home))
            try:
                run = submit(
                    store, home, [PY, "-c", ECHO], name=NAME, cwd="/", tty=True, tty_size=(120, 40)
                )
            finally:
                store.close()
            wait_running(home, CHATTY + IDLE + 3)
            time.sleep(3)
            if args.trace:
                tracer = Path(tmp) / "trace_app.py"
                tracer.write_text(TRACER)
                trace = Path(tmp) / "trace.txt"
                env = env_for(home)
                env["QQ_BENCH_TRACE"] = str(trace)
                tmux.start("app", f"exec {PY} {tracer} --home {home}", env)
                tmux.wait_for("app", lambda s: "running" in s and "Launch" in s, 60, 0.1)
            else:
                start_app(tmux, home)
            print(f"  attaching to run {run.id}", flush=True)
            attach(tmux, run.id)
            env = dict(os.environ, TERM="xterm-256color")
            script = Path(tmp) / "echo_keys.py"
            script.write_text(ECHO)
            tmux.start("tfloor", f"exec {PY} {script}", env)
            tmux.wait_for("tfloor", lambda s: "ready" in s, timeout=20)
            app_ms: list[float] = []
            floor_ms: list[float] = []
            sock_ms: list[float] = []
            missed = {"app": 0, "floor": 0, "socket": 0}
            print(f"  {args.samples} samples, app, floor and socket interleaved", flush=True)
            with (
                sampler.part(res, "interleaved"),
                Control(tmux, "app") as actl,
                Control(tmux, "tfloor") as fctl,
                TtyConnection.open(
                    tty_socket(home, run), want="send", name="bench_tty_attach"
                ) as conn,
            ):
                app, floor = Echoer(actl), Echoer(fctl)
                sock = SocketEchoer(conn, app)
                for _ in range(args.warmup):
                    app.sample()
                    floor.sample()
                    sock.sample()
                parties = (
                    ("app", app, app_ms),
                    ("floor", floor, floor_ms),
                    ("socket", sock, sock_ms),
                )
                for i in range(args.samples):
                    for name, who, out in parties:
                        v = who.sample()
                        if v is None:
                            missed[name] += 1
                        else:
                            out.append(v)
                        time.sleep(random.uniform(0.05, 0.15))
                    if (i + 1) % 50 == 0:
                        print(
                            f"    {i + 1}: app p50 {percentile(app_ms, 50):.1f} ms, "
                            f"floor p50 {percentile(floor_ms, 50):.1f} ms",
                            flush=True,
                        )
            tmux.kill_session("tfloor")
            if args.trace:
                res["breakdown"] = breakdown(trace, app.times)
                res["rates"] = rates(trace, app.times[0][0], app.times[-1][1])
                if args.keep_trace:
                    shutil.copy(trace, args.keep_trace)
                    Path(args.keep_trace + ".samples").write_text(
                        "".join(f"{a:.6f} {b:.6f}\n" for a, b in app.times)
                    )
            print("  sh echo floor (bench_app's ctl_floor_latency)", flush=True)
            with sampler.part(res, "sh floor"):
                sh_ms, sh_missed = ctl_floor_latency(tmux, args.sh_samples)
            still = f"attached to run {run.id}" in tmux.screen("app")
            res.update(
                app=app_ms,
                floor=floor_ms,
                socket=sock_ms,
                sh=sh_ms,
                missed={**missed, "sh": sh_missed},
                run_id=run.id,
                still_attached=still,
            )
        finally:
            tmux.kill_server()
            res["forced"] = stop_home(home, workers)
    return res


def report(runs: list[dict], started: str) -> str:
    out = [
        f"`bench/bench_tty_attach.py --samples {runs[0]['args'].samples}`, {DATE} (started "
        f"{started} UTC), {machine_line()}, {code_state()}. The real app in a 160x45 tmux "
        "window (private server), temp home, a real worker; bench_app's load case (100 runs "
        "printing 5 lines/s, each with 2 sleeping children, and 2 quiet runs) plus the tty "
        "run answering keys, attached in the app. The 2 cores are shared with other "
        "sessions' work: the 1-minute load average is in the table.",
        "",
        "| what (p50 / p95 / p99 / max, n) | "
        + " | ".join(f"run {i} ({r['started']} UTC)" for i, r in enumerate(runs, 1))
        + " |",
        "| --- |" + " --- |" * len(runs),
    ]

    def cell(values: list[float]) -> str:
        x = stats(values)
        if not x.get("n"):
            return "no sample"
        return f"{ms(x['p50'])} / {ms(x['p95'])} / {ms(x['p99'])} / {ms(x['max'])} ms (n={x['n']})"

    def row(what: str, cells: list[str]) -> None:
        out.append(f"| {what} | " + " | ".join(cells) + " |")

    row("**app**: key to echo, attached in the app", [f"**{cell(r['app'])}**" for r in runs])
    row(
        "floor: the same program in a plain tmux pane (interleaved)",
        [cell(r["floor"]) for r in runs],
    )
    row(
        "the shim alone: a `send` client on the run's socket, no app (interleaved)",
        [cell(r["socket"]) for r in runs],
    )
    row("floor: `echo` in a plain sh (bench_app's, after)", [cell(r["sh"]) for r in runs])
    row(
        "app p99 \u2212 floor p99",
        [f"{ms(percentile(r['app'], 99) - percentile(r['floor'], 99))} ms" for r in runs],
    )
    row(
        f"goal: app p99 ≤ {GOAL_P99_MS:.0f} ms",
        [
            "met"
            if r["app"] and percentile(r["app"], 99) <= GOAL_P99_MS and not r["missed"]["app"]
            else "**not met**"
            for r in runs
        ],
    )
    row(
        "missed (app / floor / socket / sh)",
        [" / ".join(str(r["missed"][k]) for k in ("app", "floor", "socket", "sh")) for r in runs],
    )
    row(
        "1-minute load average during the run (min\u2013max)",
        [
            f"{min(v for vs in r['loadavg'].values() for v in vs):.1f}\u2013"
            f"{max(v for vs in r['loadavg'].values() for v in vs):.1f}"
            for r in runs
        ],
    )
    out += [
        "",
        "- How: a control-mode client (`tmux -C attach`, bench_app's Control) per session; a "
        "key goes in as a `send-keys` line on its stdin, and the sample ends when the "
        "pane's `%output` text (escape sequences removed) contains the token the program "
        "answered that key with (`k00042a`, a fresh line at the next row; rows cycle so "
        "nothing scrolls and one row changes per key). That is when tmux has read the "
        "app's bytes from its pty, before tmux or a terminal paints them. App path: tmux → "
        "app (Textual key event → AttachScreen → INPUT frame on the shim's socket) → shim → "
        "pty → program → pty → shim → OUTPUT frame → the app's socket reader thread → "
        "post_message → TerminalView.feed (pyte) → repaint (throttled to REPAINT_S, 1/30 s) "
        "→ Textual frame → tmux. Floor: the same program in a plain pane of the same tmux "
        "server; the shim alone: a `send` client (as `qqtui send`) on the run's socket, the app "
        "staying the writer, timing INPUT frame to OUTPUT frame with the token. One app, one "
        "floor and one socket sample in turn, random 50\u2013150 ms pauses after each. "
        "The sh floor (bench_app's ctl_floor_latency) runs after them, under the same load.",
        "- Missed: samples whose token the screen showed but the stream never had in one "
        "piece (not timed). The app stayed attached to the end in every run: "
        + ("yes" if all(r["still_attached"] for r in runs) else "**no**")
        + f"; processes left to kill at the end: {sum(r['forced'] for r in runs)}.",
    ]
    for i, r in enumerate(runs, 1):
        b = r.get("breakdown")
        if not b or not b["total"]:
            continue
        order = sorted(range(len(b["total"])), key=b["total"].__getitem__, reverse=True)
        top = order[: max(1, round(len(order) * 0.05))]
        out += [
            "",
            f"Run {i}, traced (--trace): where the app's time goes, ms per step, "
            f"{len(b['total'])} samples traced through every step:",
            "",
            f"| step | p50 | p99 | mean over the slowest {len(top)} samples |",
            "| --- | --- | --- | --- |",
        ]
        for name, v in b.items():
            mean_top = sum(v[j] for j in top) / len(top)
            out.append(
                f"| {name} | {ms(percentile(v, 50))} | {ms(percentile(v, 99))} | {ms(mean_top)} |"
            )
        out += [
            "",
            "Marks per second while sampling (the three parties sent ~3 keys a second): "
            + ", ".join(f"{k} {v:.1f}" for k, v in r.get("rates", {}).items())
            + ".",
        ]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--sh-samples", type=int, default=200)
    p.add_argument("--runs", type=int, default=1, help="repeat the whole measurement")
    p.add_argument("--trace", action="store_true", help="time each step inside the app")
    p.add_argument("--keep-trace", metavar="PATH", help="copy the trace marks there")
    p.add_argument("--update-readme", action="store_true")
    args = p.parse_args()
    if not shutil.which("tmux"):
        raise SystemExit("tmux is required")
    sampler = LoadSampler()
    sampler.start()
    started = time.strftime("%H:%M", time.gmtime())
    runs = []
    for i in range(args.runs):
        print(f"run {i + 1} of {args.runs}", flush=True)
        t = time.strftime("%H:%M", time.gmtime())
        r = measure(args, sampler)
        r["started"], r["args"] = t, args
        runs.append(r)
        print(f"  app {lat(stats(r['app']))}", flush=True)
        print(f"  floor {lat(stats(r['floor']))}", flush=True)
        print(f"  socket {lat(stats(r['socket']))}", flush=True)
        print(f"  sh {lat(stats(r['sh']))}; missed {r['missed']}", flush=True)
        for name, values in r.get("breakdown", {}).items():
            print(f"    {name}: {lat(stats(values))}", flush=True)
        if r.get("breakdown"):
            print(slowest(r["breakdown"]), flush=True)
            print(f"    per second: {r['rates']}", flush=True)
    text = report(runs, started)
    print()
    print(text)
    if args.update_readme:
        update_readme_section(SECTION, text)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    main()
