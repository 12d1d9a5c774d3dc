"""Core engine on SQLite: claim throughput, queued-to-running latency, `qqtui ls`, supervisor CPU.

    .venv/bin/python bench/bench_core.py                   # everything, prints a table
    .venv/bin/python bench/bench_core.py --only claim,ls   # a subset
    .venv/bin/python bench/bench_core.py --update-readme   # also write "## Core engine (SQLite)"

Every part uses a temp home with the real store (`Store.open("sqlite:///<home>/qqtui.db")`)
and, where a worker is involved, a real `python -m qqtui --home H worker` subprocess.

claim      N queued runs (filled once with `Store.add_run`, the file copied per repeat);
           1 or 4 processes call `claim_runs(worker, limit)` until nothing is left; claims/s
           over the wall time from a shared start to the last process done. Peer: the same
           UPDATE ... RETURNING + event INSERT through the stdlib sqlite3 module.
latency    a worker (-j 8) waits; runs of `true` are submitted one at a time with
           `intents.submit_run` (which nudges the worker's socket); latency is the claim
           event's `at` minus `created_at` (both time.time() on this host).
ls         10,000 runs in mixed states; `qqtui ls` and `ls --json` timed end to end by
           hyperfine (or a loop) next to python's bare startup and a stdlib sqlite3 read.
cpu        a worker with -j 100 and 100 runs of `sleep 600`; the worker's and its shims'
           CPU time over 60 s (psutil). Every process is stopped and checked gone at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from _machine import code_state, machine_line, percentile, spread, update_readme_section

from qqtui.config import default_db_url
from qqtui.core.intents import submit_run
from qqtui.core.records import RunRecord, Status
from qqtui.core.runspec import RunSpec
from qqtui.core.store import Store

SESSION = "20260101_000000_abcdef12"
DATE = "2026-11-22"
PY = sys.executable


def submit(store: Store, home: Path, argv: list[str], **kwargs: object) -> RunRecord:
    """`intents.submit_run` for runs that all share cwd "/": they must run side by side,
    so they opt out of the working-directory lease. (To bench a commit from before
    RunSpec, run that commit's own bench/.)"""
    spec = RunSpec(tuple(argv), shared_workspace=True, **kwargs)  # type: ignore[arg-type]
    return submit_run(store, home, spec)


def open_store(home: Path) -> Store:
    return Store.open(default_db_url(home))


def fill_queued(home: Path, n: int) -> float:
    """`n` queued runs through `Store.add_run`; returns adds per second."""
    store = open_store(home)
    t0 = time.perf_counter()
    for i in range(n):
        store.add_run(RunSpec(argv=["true", str(i)], cwd="/"), session_id=SESSION)
    rate = n / (time.perf_counter() - t0)
    store.close()
    return rate


def copy_db(src_home: Path, dst_home: Path) -> None:
    dst_home.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = src_home / f"qqtui.db{suffix}"
        if src.exists():
            shutil.copy2(src, dst_home / f"qqtui.db{suffix}")


# --- claim throughput -----------------------------------------------------------------------


def _claimer(home: str, limit: int, start: mp.Event, out: mp.Queue) -> None:
    store = open_store(Path(home))
    worker = f"bench-{os.getpid()}"
    store.claim_runs(worker, 0)  # nothing: only warms the engine
    ids: list[int] = []
    calls = 0
    start.wait()
    while True:
        got = store.claim_runs(worker, limit)
        calls += 1
        if not got:
            break
        ids.extend(r.id for r in got)
    out.put((time.time(), calls, ids))
    store.close()


def _raw_claimer(home: str, limit: int, start: mp.Event, out: mp.Queue) -> None:
    """The store's own claim statements (`dialects.claim_sql`), sent straight through the
    stdlib driver on a connection of its own: the floor the store's engine adds to."""
    from qqtui.core.dialects import claim_event_reason, claim_sql

    sql = claim_sql("sqlite")
    assert sql.leased_due is not None and sql.events is not None
    conn = sqlite3.connect(Path(home) / "qqtui.db", timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    worker = f"raw-{os.getpid()}"
    ids: list[int] = []
    calls = 0
    start.wait()
    while True:
        now = time.time()
        params = {
            "now": now,
            "limit": limit,
            "worker": worker,
            "host": "h",
            "token": uuid.uuid4().hex,
            "actor": f"worker:{worker}",
        }
        conn.execute("BEGIN IMMEDIATE")
        assert conn.execute(sql.leased_due, params).fetchone() is None
        rows = conn.execute(sql.claim, params).fetchall()
        conn.executemany(
            sql.events,
            [
                {
                    "run_id": row[0],
                    "now": now,
                    "reason": claim_event_reason(worker, 1),
                    "actor": params["actor"],
                    "host": "h",
                }
                for row in rows
            ],
        )
        conn.execute("COMMIT")
        calls += 1
        if not rows:
            break
        ids.extend(r[0] for r in rows)
    out.put((time.time(), calls, ids))
    conn.close()


DUE_SELECT = (
    "SELECT id FROM runs WHERE status = 'queued' AND leased = 0"
    " AND (not_before IS NULL OR not_before <= ?) ORDER BY id LIMIT 1"
)


def due_select_cost(template: Path, work: Path) -> tuple[str, float]:
    """The claim's subquery alone on a full queue: its plan and microseconds per call."""
    home = work / f"plan-{uuid.uuid4().hex[:8]}"
    copy_db(template, home)
    conn = sqlite3.connect(home / "qqtui.db")
    plan = "; ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + DUE_SELECT, (time.time(),)))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(100):
            conn.execute(DUE_SELECT, (time.time(),)).fetchall()
        times.append((time.perf_counter() - t0) / 100 * 1e6)
    conn.close()
    shutil.rmtree(home)
    return plan, statistics.median(times)


def claim_once(template: Path, work: Path, procs: int, limit: int, raw: bool = False) -> dict:
    home = work / f"claim-{uuid.uuid4().hex[:8]}"
    copy_db(template, home)
    ctx = mp.get_context("fork")
    start = ctx.Event()
    out = ctx.Queue()
    target = _raw_claimer if raw else _claimer
    children = [
        ctx.Process(target=target, args=(str(home), limit, start, out)) for _ in range(procs)
    ]
    for c in children:
        c.start()
    time.sleep(1.0)  # let every process open its engine before the gun
    t0 = time.time()
    start.set()
    results = [out.get(timeout=600) for _ in children]
    for c in children:
        c.join()
    end = max(r[0] for r in results)
    ids = [i for r in results for i in r[2]]
    shutil.rmtree(home)
    return {
        "claims": len(ids),
        "unique": len(set(ids)),
        "seconds": end - t0,
        "rate": len(ids) / (end - t0),
        "per_proc": [len(r[2]) for r in results],
    }


# (processes, limit, stdlib sqlite3 instead of the store)
ALL_CASES = [
    (1, 1, False),
    (4, 1, False),
    (1, 8, False),
    (4, 8, False),
    (1, 1, True),
    (4, 1, True),
]
BIG_CASES = [(1, 1, False), (4, 1, False), (1, 8, False), (1, 1, True)]


def case_key(procs: int, limit: int, raw: bool) -> str:
    return f"{procs}p-l{limit}{'-raw' if raw else ''}"


def bench_claim(work: Path, n: int, repeats: int, cases: list[tuple[int, int, bool]]) -> dict:
    template = work / f"claim-template-{n}"
    template.mkdir()
    add_rate = fill_queued(template, n)
    print(f"  filled {n:,} queued runs with Store.add_run: {add_rate:,.0f} adds/s", flush=True)
    results: dict = {"n": n, "add_rate": add_rate, "cases": {}}
    results["plan"] = due_select_cost(template, work)
    print(f"  due select: {results['plan']}", flush=True)
    for rep in range(repeats):
        for procs, limit, raw in cases:
            r = claim_once(template, work, procs, limit, raw)
            if r["unique"] != r["claims"] or r["claims"] != n:
                raise SystemExit(f"claim check failed: {r['claims']} claims, {r['unique']} unique")
            results["cases"].setdefault(case_key(procs, limit, raw), []).append(r["rate"])
            print(
                f"  {n:,} queued, rep {rep + 1}: {procs} proc(s), limit {limit}"
                f"{' (stdlib sqlite3)' if raw else ''}:"
                f" {r['rate']:,.0f} claims/s in {r['seconds']:.1f} s, split {r['per_proc']}",
                flush=True,
            )
    shutil.rmtree(template)
    return results


# --- worker helpers ---------------------------------------------------------------------------


def start_worker(home: Path, *args: str) -> subprocess.Popen:
    log = open(home / "worker.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [PY, "-m", "qqtui", "--home", str(home), "worker", *args],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    store = open_store(home)
    deadline = time.monotonic() + 30
    while not store.workers(live_only=True):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start: {(home / 'worker.log').read_text()}")
        time.sleep(0.05)
    store.close()
    return proc


def stop_tree(proc: subprocess.Popen, extra: list[psutil.Process] | None = None) -> list[str]:
    """SIGTERM the worker (it stops its runs with --stop-runs), then make sure nothing
    it started is alive; returns descriptions of what had to be killed by force."""
    try:
        known = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        known = []
    known += extra or []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _, alive = psutil.wait_procs(known, timeout=10)
    forced = []
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            forced.append(f"{p.pid} {' '.join(p.cmdline())[:60]}")
            p.kill()
    psutil.wait_procs(alive, timeout=5)
    return forced


# --- queued-to-running latency ------------------------------------------------------------


def bench_latency(work: Path, n: int, gap_s: float) -> dict:
    home = work / "latency"
    home.mkdir()
    store = open_store(home)
    worker = start_worker(home, "-j", "8", "--stop-runs", "--grace", "2")
    try:
        submitted = []
        submit_ms = []
        for _ in range(n):
            t0 = time.perf_counter()
            run = submit(store, home, ["true"], session_id=SESSION, cwd="/")
            submit_ms.append((time.perf_counter() - t0) * 1000)
            submitted.append(run)
            time.sleep(gap_s)
        deadline = time.monotonic() + 60
        while store.count_by_status().get(Status.QUEUED, 0) and time.monotonic() < deadline:
            time.sleep(0.1)
        lat = []
        for run in submitted:
            claim = next(
                e
                for e in store.events(run.id)
                if e.from_status == "queued" and e.to_status == "running"
            )
            lat.append((claim.at - run.created_at) * 1000)
    finally:
        forced = stop_tree(worker)
        store.close()
    return {"lat_ms": lat, "submit_ms": submit_ms, "forced": forced, "n": n, "gap_s": gap_s}


# --- qqtui ls on 10,000 runs ------------------------------------------------------------------


def fill_mixed(home: Path, n: int) -> dict[str, int]:
    """`n` runs: ~70 % succeeded, 10 % failed, 5 % cancelled, 5 % timed out, 5 % running,
    5 % queued (ids interleaved, the way a busy day looks)."""
    store = open_store(home)
    for i in range(n):
        store.add_run(
            RunSpec(argv=["agent", "--task", f"task {i}"], cwd="/", name=f"task-{i}"),
            session_id=SESSION,
        )
    ends = [Status.SUCCEEDED] * 14 + [Status.FAILED] * 2 + [Status.CANCELLED, Status.TIMED_OUT]
    left_queued = set(range(1, n + 1, 20))
    # Claim everything (claims are in id order), then finish or leave running.
    claimed = []
    while len(claimed) < n:
        got = store.claim_runs("bench-fill", 500)
        if not got:
            break
        claimed.extend(got)
    for k, run in enumerate(claimed):
        if run.id in left_queued:
            continue
        slot = k % 20
        if slot == 19:
            store.record_spawn(
                run.id,
                run.claim_token,
                pid=100000 + k,
                pid_create_time=0.0,
                pgid=100000 + k,
                shim_pid=100000 + k,
                shim_create_time=0.0,
            )
            continue  # stays running
        status = ends[slot % len(ends)]
        store.finish_run(
            run.id,
            run.claim_token,
            status,
            reason="bench",
            exit_code=0 if status == Status.SUCCEEDED else 1,
            output_bytes=1234 * k,
        )
    # Put the chosen ones back to queued the honest way is not possible (no transition
    # running -> queued except retry); write them directly as freshly queued rows instead.
    with sqlite3.connect(home / "qqtui.db") as conn:
        conn.execute(
            f"UPDATE runs SET status='queued', worker_id=NULL, host=NULL, claim_token=NULL,"
            f" started_at=NULL, heartbeat_at=NULL, activity_at=NULL"
            f" WHERE id IN ({','.join(map(str, sorted(left_queued)))})"
        )
    counts = {str(k): v for k, v in store.count_by_status().items()}
    store.close()
    return counts


def hyperfine(commands: dict[str, list[str]], runs: int, work: Path) -> dict[str, list[float]]:
    """name -> list of wall times in ms, from hyperfine when installed, else a loop."""
    if shutil.which("hyperfine"):
        out = work / "hf.json"
        cmd = ["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", str(out)]
        for name, argv in commands.items():
            cmd += ["-n", name, subprocess.list2cmdline(argv)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        data = json.loads(out.read_text())
        return {r["command"]: [t * 1000 for t in r["times"]] for r in data["results"]}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
            times[name].append((time.perf_counter() - t0) * 1000)
    return times


def bench_ls(work: Path, n: int, runs: int) -> dict:
    home = work / "ls"
    home.mkdir()
    t0 = time.perf_counter()
    counts = fill_mixed(home, n)
    print(f"  filled {n:,} mixed runs in {time.perf_counter() - t0:.1f} s: {counts}", flush=True)
    db = str(home / "qqtui.db")
    raw_read = (
        "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); "
        "rows=c.execute('select * from runs order by id').fetchall(); "
        "sys.stdout.write('\\n'.join(map(repr, rows)))"
    )
    commands = {
        "qqtui ls": [PY, "-m", "qqtui", "--home", str(home), "ls"],
        "qqtui ls --json": [PY, "-m", "qqtui", "--home", str(home), "ls", "--json"],
        "qqtui --version": [PY, "-m", "qqtui", "--version"],
        "python -c pass": [PY, "-c", "pass"],
        "python + sqlite3 select *": [PY, "-c", raw_read, db],
    }
    if shutil.which("sqlite3"):
        commands["sqlite3 CLI select *"] = ["sqlite3", db, "select * from runs order by id"]
    lines = subprocess.run(commands["qqtui ls"], capture_output=True, text=True).stdout.count("\n")
    times = hyperfine(commands, runs, work)
    return {"n": n, "counts": counts, "times": times, "lines": lines, "runs": runs}


# --- supervisor CPU with 100 idle runs ----------------------------------------------------------


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def bench_cpu(work: Path, runs: int, seconds: float, repeats: int) -> dict:
    home = work / "cpu"
    home.mkdir()
    store = open_store(home)
    worker = start_worker(home, "-j", str(runs), "--stop-runs", "--grace", "2")
    wproc = psutil.Process(worker.pid)
    try:
        for _ in range(runs):
            submit(store, home, ["sleep", "600"], session_id=SESSION, cwd="/", hung_after_s=86400)
        deadline = time.monotonic() + 120
        while True:
            active = store.list_runs([Status.RUNNING])
            if len(active) == runs and all(r.pid for r in active):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(active)} runs running after 120 s")
            time.sleep(0.2)
        time.sleep(5)  # let the spawn burst settle
        shims = wproc.children()
        tree = wproc.children(recursive=True)
        samples = []
        for rep in range(repeats):
            w0 = _cpu(wproc)
            s0 = {p.pid: _cpu(p) for p in shims}
            t0 = time.monotonic()
            time.sleep(seconds)
            dt = time.monotonic() - t0
            w1 = _cpu(wproc)
            s1 = {}
            for p in shims:
                with contextlib.suppress(psutil.NoSuchProcess):
                    s1[p.pid] = _cpu(p)
            worker_pct = (w1 - w0) / dt * 100
            shim_pct = sum(s1[k] - s0[k] for k in s1) / dt * 100
            samples.append((worker_pct, shim_pct))
            print(
                f"  window {rep + 1}: worker {worker_pct:.2f} % of a core, "
                f"{len(shims)} shims {shim_pct:.3f} % in total",
                flush=True,
            )
        still = len(store.list_runs([Status.RUNNING]))
    finally:
        forced = stop_tree(worker, extra=[])
        store.close()
    leftover = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    return {
        "runs": runs,
        "seconds": seconds,
        "samples": samples,
        "procs": len(tree),
        "shims": len(shims),
        "still_running": still,
        "forced": forced,
        "leftover": len(leftover),
    }


# --- report -------------------------------------------------------------------------------------


def report(res: dict, args: argparse.Namespace) -> str:
    out = [
        f"`bench/bench_core.py{''.join(' ' + a for a in sys.argv[1:] if a != '--update-readme')}`"
        f", {DATE}, {machine_line()}, {code_state()}, temp home on the local disk. Load "
        f"average (1 min) {res['load'][0]:.2f} at the start and {res['load'][1]:.2f} at the end; "
        "medians with (min\u2013max, n) over repeats.",
        "",
        "| what | measured | goal |",
        "| --- | --- | --- |",
    ]
    notes = []
    if "claim" in res:
        for part in res["claim"]:
            c, n = part["cases"], part["n"]
            for key, label, goal in [
                ("1p-l1", "claim, 1 process, limit 1", "≥ 5,000/s"),
                ("4p-l1", "claim, 4 contending processes, limit 1", "≥ 1,000/s"),
                ("1p-l8", "claim, 1 process, limit 8 (runs/s)", ""),
                ("4p-l8", "claim, 4 processes, limit 8 (runs/s)", ""),
                (
                    "1p-l1-raw",
                    "floor: the same statements via stdlib sqlite3, 1 process, limit 1",
                    "",
                ),
                (
                    "4p-l1-raw",
                    "floor: the same statements via stdlib sqlite3, 4 processes, limit 1",
                    "",
                ),
            ]:
                if key in c:
                    out.append(
                        f"| {label}, {n:,} queued until empty | {spread(c[key], '{:,.0f}')} claims/s | {goal} |"
                    )
            plan, us = part["plan"]
            out.append(
                f"| the claim's due-runs SELECT alone, {n:,} queued (plan: {plan}) | {us:,.1f} µs | |"
            )
            if "1p-l1" in c and "1p-l1-raw" in c:
                notes.append(
                    f"With {n:,} queued, the store's claim takes "
                    f"{statistics.median(c['1p-l1-raw']) / statistics.median(c['1p-l1']):.2f}x the time "
                    "of the same statements sent through the stdlib driver (one process)."
                )
        out.append(
            "| `Store.add_run` (pre-fill, one transaction each) | "
            f"{statistics.median([p['add_rate'] for p in res['claim']]):,.0f} adds/s | |"
        )
    if "latency" in res:
        lat = res["latency"]["lat_ms"]
        out.append(
            f"| queued → running, {len(lat)} runs submitted {res['latency']['gap_s'] * 1000:.0f} ms apart, "
            f"worker -j 8 | p50 {percentile(lat, 50):.1f} ms, p95 {percentile(lat, 95):.1f} ms, "
            f"p99 {percentile(lat, 99):.1f} ms, max {max(lat):.1f} ms | p99 ≤ 20 ms |"
        )
        sm = res["latency"]["submit_ms"]
        out.append(
            f"| `submit_run` itself (session dir, add, meta, nudge) | p50 {percentile(sm, 50):.1f} ms, "
            f"p99 {percentile(sm, 99):.1f} ms | |"
        )
    if "ls" in res:
        t = res["ls"]["times"]
        floor = statistics.median(t["python -c pass"])
        for name, goal in [
            ("qqtui ls", "≤ 300 ms"),
            ("qqtui ls --json", "≤ 300 ms"),
            ("qqtui --version", ""),
            ("python -c pass", ""),
            ("python + sqlite3 select *", ""),
            ("sqlite3 CLI select *", ""),
        ]:
            if name in t:
                label = f"`{name}`" + (
                    f", {res['ls']['n']:,} runs" if name.startswith("qqtui ls") else ""
                )
                if name == "python -c pass":
                    label += " (interpreter floor)"
                elif name == "qqtui --version":
                    label += " (CLI import floor)"
                elif "select" in name:
                    label = f"peer: {name} on the same file"
                out.append(
                    f"| {label} | {spread(t[name], '{:.0f}')} ms wall ({statistics.median(t[name]) / floor:.1f}x python startup) | {goal} |"
                )
        notes.append(
            f"`ls` timed end to end by hyperfine -N ({res['ls']['runs']} runs + 3 warm-up, page cache warm) "
            f"on {res['ls']['n']:,} runs: {res['ls']['counts']}; `ls` prints {res['ls']['lines']:,} lines."
        )
    if "cpu" in res:
        s = res["cpu"]["samples"]
        out.append(
            f"| supervisor CPU, {res['cpu']['runs']} running idle runs (`sleep 600`), "
            f"{res['cpu']['seconds']:.0f} s windows | {spread([w for w, _ in s], '{:.2f}')} % of one core | ≤ 2 % |"
        )
        out.append(
            f"| their {res['cpu']['shims']} shims, in total | {spread([x for _, x in s], '{:.3f}')} % of one core | ~0 |"
        )
        notes.append(
            f"CPU is psutil `cpu_times()` (user+system) deltas of the worker process and of its "
            f"{res['cpu']['shims']} shim children ({res['cpu']['procs']} processes in the tree). "
            f"At the end the worker got SIGTERM with --stop-runs: "
            f"{len(res['cpu']['forced'])} processes needed a forced kill, {res['cpu']['leftover']} left alive."
        )
    out.append("")
    out.extend(f"- {note}" for note in notes)
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", default="claim,latency,ls,cpu")
    p.add_argument("--claim-runs", type=int, default=20_000, help="queue for one pass (0: skip)")
    p.add_argument("--claim-small", type=int, default=2_000, help="queue for the repeated passes")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--latency-runs", type=int, default=300)
    p.add_argument("--latency-gap-ms", type=float, default=20)
    p.add_argument("--ls-runs", type=int, default=10_000)
    p.add_argument("--hyperfine-runs", type=int, default=20)
    p.add_argument("--cpu-seconds", type=float, default=60)
    p.add_argument("--cpu-windows", type=int, default=2)
    p.add_argument("--update-readme", action="store_true")
    args = p.parse_args()
    parts = set(args.only.split(","))
    res: dict = {}
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="qqbench-core-") as tmp:
        work = Path(tmp)
        if "claim" in parts:
            print("claim throughput", flush=True)
            res["claim"] = [bench_claim(work, args.claim_small, args.repeats, ALL_CASES)]
            if args.claim_runs:
                res["claim"].append(bench_claim(work, args.claim_runs, 1, BIG_CASES))
        if "latency" in parts:
            print("queued-to-running latency", flush=True)
            res["latency"] = bench_latency(work, args.latency_runs, args.latency_gap_ms / 1000)
        if "ls" in parts:
            print("qqtui ls", flush=True)
            res["ls"] = bench_ls(work, args.ls_runs, args.hyperfine_runs)
        if "cpu" in parts:
            print("supervisor CPU", flush=True)
            res["cpu"] = bench_cpu(work, 100, args.cpu_seconds, args.cpu_windows)
    res["load"] = (load_at_start, os.getloadavg()[0])
    text = report(res, args)
    print()
    print(text)
    if args.update_readme:
        update_readme_section("Core engine (SQLite)", text)


if __name__ == "__main__":
    main()
