"""The run shim on a pty (#15): CPU to copy 50 MB/s of terminal output, and an idle tty run.

    .venv/bin/python bench/bench_tty_shim.py                  # prints a table
    .venv/bin/python bench/bench_tty_shim.py --update-readme  # also writes "## tty shim (#15)"

copy   a producer writes 50 MB/s of 80-byte lines to its terminal for ~10 s (paced by
       the clock, in 64 KiB writes); the shim's CPU (run time from /proc/<shim>/schedstat)
       over that window, as % of one core. Three ways: a tty run nobody watches, a tty run
       with one viewer reading all it is sent (a process of its own), and
       the peer, the same producer as a pipe run (the shim as it was before #15). The
       shim writes its log with a 1 GiB cap, so every byte is written to the log; one
       more tty case keeps the default 64 MiB cap, past which output is counted, not written.
idle   a tty run of `sleep 60`, nobody attached: the shim's CPU over 30 s.

The pty's line discipline runs partly in kernel workers (the flip buffer), which are
not the shim's time; the producer's own CPU is shown to put the numbers in scale.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import code_state, machine_line, spread, update_readme_section

from qqtui.core import sessions
from qqtui.core.procs.spawn import DEFAULT_LOG_CAP, RunEnvironment, Spawned, spawn_run

RATE = 50_000_000
SECONDS = 10.0
IDLE_SECONDS = 30.0
LOG_CAP = 1 << 30
TICKS = os.sysconf("SC_CLK_TCK")

PRODUCER = r"""
import os, sys, time
rate, seconds, out = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
chunk = (b"x" * 79 + b"\n") * 819
w = sys.stdout.buffer
time.sleep(0.5)  # let the bench attach and take its first CPU sample
start = time.monotonic()
sent = 0
while (now := time.monotonic() - start) < seconds:
    ahead = sent - rate * now
    if ahead > 0:
        time.sleep(ahead / rate)
        continue
    w.write(chunk)
    w.flush()
    sent += len(chunk)
elapsed = time.monotonic() - start
t = os.times()
with open(out, "w") as fh:
    fh.write(f"{sent} {elapsed} {t.user + t.system}")
"""


def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """(user, system, total) CPU seconds of `pid` so far: user and system in clock
    ticks from /proc/PID/stat, the total exact from the scheduler (schedstat, ns)."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    with open(f"/proc/{pid}/schedstat") as fh:
        total = int(fh.read().split()[0]) / 1e9
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS, total


def start(
    tmp: Path, name: str, argv: list[str], tty: bool, cap: int = LOG_CAP
) -> tuple[Spawned, Path]:
    run_dir = tmp / name
    run_dir.mkdir(mode=0o700)
    env = RunEnvironment(1, tmp, "sid", tmp, tmp / "hb")
    spawned = spawn_run(
        run_env=env,
        argv=argv,
        cwd=str(tmp),
        env_overrides={},
        log_path=run_dir / sessions.OUTPUT_LOG,
        status_path=run_dir / sessions.STATUS_FILE,
        log_cap=cap,
        tty_size=(80, 24) if tty else None,
        socket_path=run_dir / sessions.TTY_SOCKET if tty else None,
    )
    return spawned, run_dir


def wait_end(spawned: Spawned) -> None:
    import select

    while spawned.exit_report is None:
        select.select([spawned.report_fd], [], [], 1.0)
        if spawned.read_reports():
            break
    spawned.close()
    spawned.shim.wait(30)


VIEWER = r"""
import json, socket, struct, sys
# The cheapest viewer there is: HELLO, then raw bytes counted until the shim closes
# (frames are not split: the bench measures the shim, not a client's parsing).
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
hello = json.dumps({"v": 1, "name": "bench", "want": "read"}).encode()
sock.sendall(struct.pack(">cI", b"h", len(hello)) + hello)
got = 0
buf = bytearray(1 << 20)
while n := sock.recv_into(buf):
    got += n
print(got)
"""


def start_viewer(sock: Path) -> subprocess.Popen[str]:
    """A viewer reading everything until the run ends, in a process of its own (a
    thread here would fight the producer's pacing for the GIL)."""
    return subprocess.Popen(
        [sys.executable, "-c", VIEWER, str(sock)], stdout=subprocess.PIPE, text=True
    )


def copy_case(
    tmp: Path, name: str, *, tty: bool, watched: bool, cap: int = LOG_CAP
) -> dict[str, float]:
    result = tmp / f"{name}.result"
    argv = [sys.executable, "-c", PRODUCER, str(RATE), str(SECONDS), str(result)]
    spawned, run_dir = start(tmp, name, argv, tty, cap)
    viewer = start_viewer(run_dir / sessions.TTY_SOCKET) if watched else None
    shim = spawned.shim.pid
    before = cpu_seconds(shim)
    t0 = time.monotonic()
    while not result.exists():
        time.sleep(0.05)
    after = cpu_seconds(shim)
    wall = time.monotonic() - t0
    wait_end(spawned)
    viewed = 0
    if viewer is not None:
        out, _ = viewer.communicate(timeout=60)
        viewed = int(out.strip() or 0)
    sent, elapsed, producer_cpu = (float(x) for x in result.read_text().split())
    logged = (run_dir / sessions.OUTPUT_LOG).stat().st_size
    return {
        "mb_s": sent / elapsed / 1e6,
        "shim_pct": 100 * (after[2] - before[2]) / wall,
        "user_pct": 100 * (after[0] - before[0]) / wall,
        "sys_pct": 100 * (after[1] - before[1]) / wall,
        "producer_pct": 100 * producer_cpu / elapsed,
        "logged_mb": logged / 1e6,
        "viewer_mb": viewed / 1e6,
    }


def idle_case(tmp: Path) -> float:
    spawned, _ = start(tmp, "idle", ["sleep", str(IDLE_SECONDS + 30)], tty=True)
    shim = spawned.shim.pid
    time.sleep(1.0)  # past the start
    before = cpu_seconds(shim)[2]
    time.sleep(IDLE_SECONDS)
    used = cpu_seconds(shim)[2] - before
    spawned.shim.kill()  # and the sleep: its tty goes, and we kill it below
    os.kill(spawned.pid or 0, 9)
    spawned.close()
    spawned.shim.wait(10)
    return 100 * used / IDLE_SECONDS


def load_average() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each copy case.")
    parser.add_argument("--update-readme", action="store_true")
    args = parser.parse_args()
    cases = [
        ("tty run, nobody attached", "tty", True, False, LOG_CAP),
        ("tty run, one viewer reading", "tty-watched", True, True, LOG_CAP),
        ("tty run, the default 64 MiB log cap", "tty-capped", True, False, DEFAULT_LOG_CAP),
        ("peer: the same producer as a pipe run", "pipe", False, False, LOG_CAP),
    ]
    results: dict[str, list[dict[str, float]]] = {label: [] for label, *_ in cases}
    loads = [load_average()]
    with tempfile.TemporaryDirectory(prefix="qq-bench-tty-") as tmp_name:
        tmp = Path(tmp_name)
        for repeat in range(args.repeats):  # interleaved, so drifting load hits every case
            for label, name, tty, watched, cap in cases:
                r = copy_case(tmp, f"{name}-{repeat}", tty=tty, watched=watched, cap=cap)
                results[label].append(r)
                loads.append(load_average())
                print(label, {k: round(v, 1) for k, v in r.items()}, flush=True)
        idle = idle_case(tmp)
        loads.append(load_average())
    rows = []
    for label, _name, tty, watched, _cap in cases:
        rs = results[label]

        def of(key: str, fmt: str = "{:.1f}", rs: list[dict[str, float]] = rs) -> str:
            return spread([r[key] for r in rs], fmt)

        viewer_text = (
            f"; the viewer got {of('viewer_mb', '{:.0f}')} of {of('logged_mb', '{:.0f}')} MB"
            if watched
            else f"; log {of('logged_mb', '{:.0f}')} MB"
        )
        worst = max(r["shim_pct"] for r in rs)
        median = sorted(r["shim_pct"] for r in rs)[len(rs) // 2]
        rows.append(
            (
                f"shim CPU copying {RATE / 1e6:.0f} MB/s: {label}",
                f"{of('shim_pct')} % of a core (user {of('user_pct')}, kernel "
                f"{of('sys_pct')}); producer {of('mb_s')} MB/s at {of('producer_pct', '{:.0f}')} %"
                f"{viewer_text}",
                "≤ 20 %" if tty else "",
                ("yes" if worst <= 20 else "median yes" if median <= 20 else "no") if tty else "",
            )
        )
    rows.append(
        (
            f"idle tty run (`sleep`), shim CPU over {IDLE_SECONDS:.0f} s",
            f"{idle:.3f} % of a core",
            "about 0",
            "yes" if idle < 0.1 else "no",
        )
    )

    def median_of(label: str, key: str) -> float:
        return statistics.median(r[key] for r in results[label])

    alone, peer = cases[0][0], cases[-1][0]
    verdict = (
        f"- Verdict: {median_of(alone, 'shim_pct'):.0f} % against the 20 % target: "
        + ("met" if median_of(alone, "shim_pct") <= 20 else "not met on this machine")
        + f". The shim's own work (user time) is {median_of(alone, 'user_pct'):.1f} % of a "
        f"core; the kernel's {median_of(alone, 'sys_pct'):.1f} % is the pty's, paid per "
        f"4 KiB read (the same producer on a pipe, same runs: kernel "
        f"{median_of(peer, 'sys_pct'):.1f} %, user {median_of(peer, 'user_pct'):.1f} %)."
    )
    lines = [
        f"{time.strftime('%Y-%m-%d')}, {machine_line()}, {code_state()}; 1-minute load "
        f"average during the run {min(loads):.1f}\u2013{max(loads):.1f} (other work shared the "
        "machine).",
        "",
        "| what | measured: median (min\u2013max, n) | target | met |",
        "| --- | --- | --- | --- |",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
        verdict,
        "- `bench/bench_tty_shim.py`: the producer paces 64 KiB writes of 80-byte lines to "
        f"{RATE / 1e6:.0f} MB/s for {SECONDS:.0f} s; the shim's CPU is its scheduler run "
        "time (/proc/<pid>/schedstat) over that window, the user/kernel split from "
        "/proc/<pid>/stat ticks. A 1 GiB log cap has every byte written to the log. "
        "Cases are interleaved, each repeated.",
        "- Where the time goes: a pty hands out at most 4 KiB a read (the line discipline's "
        "buffer), so 50 MB/s is ~12,000 reads a second whatever the shim does, and each one "
        "hands the next 4 KiB over through a kernel worker. `perf record` of the shim: "
        "~80 % of its samples in the kernel, led by that hand-off (queue_work_on waking the "
        "flush worker, and the switches while n_tty_read waits for it; in this Firecracker "
        "VM a cross-CPU wake-up is expensive); the kernel share also moves most between "
        "repeats. The shim's own (user) time is the 'user' figure. It reads on (up to 64 "
        "reads) after each wake-up, and after a wake-up that found output streaming but "
        "not piling up it waits 1 ms before the next, so each wake-up writes the log, feeds "
        "the screen replay and sends frames for ~50 KiB, not 4 KiB (~1,000 wake-ups a "
        "second instead of ~12,000).",
        "- The screen replay the shim keeps (ttyreplay.ScreenReplay, fed ~50 KiB batches) "
        "costs about 3 % of a core at 50 MB/s of plain lines and 8 % of SGR-coloured ones "
        "(timed on its own); the producer here writes plain lines.",
        "- The viewer is a bare socket reader in a process of its own. A viewer more than "
        "8 MiB behind is dropped (it may reconnect for a fresh screen): 'the viewer got' "
        "shows whether it kept up on these 2 shared cores (at 4 MiB, 2 of 3 runs dropped it).",
    ]
    for line in lines:
        print(line)
    if args.update_readme:
        update_readme_section("tty shim (#15)", "\n".join(lines))


if __name__ == "__main__":
    main()
