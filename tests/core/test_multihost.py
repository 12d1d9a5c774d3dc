"""Multi-host mode on a real PostgreSQL server, with simulated hosts: each "host" is a
distinct host name and boot id (workers take `--host` and `--boot-id`), so one
machine can play four and the tests can check that a host never signals what
another host launched.

Sizes: the claim-level test defaults to 5,000 runs (QQTUI_STRESS_RUNS scales it);
the real-worker test runs QQTUI_MULTIHOST_RUNS (default 160) commands. The server
restart test restarts the shared server, so it only runs under CI (or with
QQTUI_PG_RESTART=1), where nothing else is using it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import make_url, text

from qqtui.core.intents import submit_run
from qqtui.core.outage import DB_ERRORS
from qqtui.core.records import Status
from qqtui.core.runspec import RunSpec
from qqtui.core.store import Store
from qqtui.core.supervisor import Supervisor, SupervisorConfig

from ..conftest import Workers, cli_env, kill_home_processes, wait_for
from .pgserver import TcpRelay, fresh_schema, require_pg

pytestmark = pytest.mark.postgres

HOSTS = 4
WORKERS_PER_HOST = 8
CLAIM_RUNS = int(os.environ.get("QQTUI_STRESS_RUNS", "5000"))
WORKER_RUNS = int(os.environ.get("QQTUI_MULTIHOST_RUNS", "160"))
WORKER_CMD = [sys.executable, "-m", "qqtui", "worker", "--poll", "0.1"]


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    store = Store.open(pg_url, host="submitter", actor="test")
    yield store
    store.close()


class HostWorkers(Workers):
    """Real `qqtui worker` processes, each on a simulated host; reaped at teardown."""

    def __init__(self, home: Path, url: str) -> None:
        super().__init__(home)
        self.url = url

    def start(self, host: str, *args: str) -> subprocess.Popen[bytes]:  # type: ignore[override]
        env = cli_env(self.home)
        env["QQTUI_DB"] = self.url
        log = open(self.home / f"worker-{host}-{len(self.procs)}.err", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [*WORKER_CMD, "--host", host, "--boot-id", f"boot-{host}", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        self.procs.append(proc)
        return proc


@pytest.fixture
def hosts(home: Path, pg_url: str) -> Iterator[HostWorkers]:
    w = HostWorkers(home, pg_url)
    yield w
    w.stop_all()
    kill_home_processes(home)


def _bulk_add(store: Store, n: int) -> set[int]:
    return {
        store.add_run(RunSpec(argv=["true"], cwd="/"), session_id="20260101_000000_abcdef12").id
        for _ in range(n)
    }


# --- claim level: 4 hosts x 8 workers, every attempt exactly once ---------------------------


def _host_process(url: str, host: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """One simulated host: 8 worker threads claiming and finishing until the queue is dry."""
    store = Store.open(url, host=host, actor="worker")
    claimed: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def work(worker_id: str) -> None:
        store.register_worker(
            worker_id=worker_id, pid=os.getpid(), pid_create_time=0.0, boot_id=f"boot-{host}"
        )
        empty = 0
        while empty < 3:  # a few empty polls: others may still be inserting events
            runs = store.claim_runs(worker_id, 2)
            if not runs:
                empty += 1
                time.sleep(0.05)
                continue
            empty = 0
            for run in runs:
                try:
                    store.finish_run(run.id, run.claim_token or "", Status.SUCCEEDED, reason="ok")
                except Exception as exc:  # reported to the parent, which fails the test
                    with lock:
                        errors.append(f"{worker_id} run {run.id}: {exc!r}")
            with lock:
                claimed.extend(r.id for r in runs)

    threads = [
        threading.Thread(target=work, args=(f"{host}-w{i}",)) for i in range(WORKERS_PER_HOST)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((host, claimed, errors))


def test_four_hosts_of_eight_workers_claim_every_attempt_exactly_once(
    pg_store: Store, pg_url: str
) -> None:
    ids = _bulk_add(pg_store, CLAIM_RUNS)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_host_process, args=(pg_url, f"host-{h}", out)) for h in range(HOSTS)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(30)
    claimed = Counter(rid for _, got, _ in results for rid in got)
    assert [e for _, _, errs in results for e in errs] == []
    assert set(claimed) == ids and set(claimed.values()) == {1}
    assert all(len(got) > 0 for _, got, _ in results)  # every host really took part
    with pg_store.engine.connect() as conn:
        doubles = conn.execute(
            text(
                "SELECT run_id FROM events WHERE to_status = 'running' "
                "GROUP BY run_id HAVING count(*) <> 1"
            )
        ).all()
        by_host = dict(conn.execute(text("SELECT host, count(*) FROM runs GROUP BY host")).all())
    assert doubles == []
    assert pg_store.count_by_status() == {Status.SUCCEEDED: len(ids)}
    assert set(by_host) == {f"host-{h}" for h in range(HOSTS)}


# --- real workers on four hosts -----------------------------------------------------------


def test_real_workers_on_four_hosts_run_every_command_exactly_once(
    tmp_path: Path, home: Path, pg_store: Store, hosts: HostWorkers
) -> None:
    ledger = tmp_path / "ledger.txt"
    sid = None
    for _ in range(WORKER_RUNS):
        run = submit_run(
            pg_store,
            home,
            RunSpec(
                ["sh", "-c", f'echo "$QQ_RUN_ID" >> {ledger}'],
                session_id=sid,
                shared_workspace=True,  # one directory, all in parallel
            ),
        )
        sid = run.session_id
    procs = [
        hosts.start(f"host-{h}", "-j", "4", "--until-idle") for h in range(HOSTS) for _ in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0
    counts = Counter(ledger.read_text().split())
    assert len(counts) == WORKER_RUNS and set(counts.values()) == {1}
    runs = pg_store.list_runs()
    assert {r.status for r in runs} == {Status.SUCCEEDED}
    assert {r.host for r in runs} == {f"host-{h}" for h in range(HOSTS)}
    # Each owner left its run's output tail (empty here) and where the full log lives.
    tail = pg_store.output_tail(runs[0].id)
    assert tail is not None and tail.host == runs[0].host and tail.tail == b""
    assert tail.log_path.endswith("output.log") and str(home) in tail.log_path


def test_logs_of_a_run_on_another_host_come_from_the_database(
    tmp_path: Path, pg_url: str, pg_store: Store
) -> None:
    home_a, home_b = tmp_path / "host-a-home", tmp_path / "host-b-home"
    for h in (home_a, home_b):
        h.mkdir(mode=0o700)
    workers_a = HostWorkers(home_a, pg_url)
    try:
        run = submit_run(pg_store, home_a, RunSpec(["sh", "-c", "printf 'one\\ntwo\\nthree\\n'"]))
        assert workers_a.start("host-a", "-j", "1", "--until-idle").wait(timeout=60) == 0
    finally:
        workers_a.stop_all()
        kill_home_processes(home_a)
    env = cli_env(home_b)  # host b has its own home: host a's log file is not there
    env["QQTUI_DB"] = pg_url
    proc = subprocess.run(
        [sys.executable, "-m", "qqtui", "logs", "-n", "2", str(run.id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "two\nthree\n"
    assert "ran on host-a" in proc.stderr and str(home_a) in proc.stderr


# --- a host's worker dies: rescue after the horizon, never a signal from elsewhere ---------


def _alive(pid: int | None, create_time: float | None) -> bool:
    try:
        proc = psutil.Process(pid or 0)
        return abs(proc.create_time() - (create_time or 0)) < 0.05 and proc.status() != "zombie"
    except psutil.Error:
        return False


def test_dead_hosts_runs_are_rescued_after_the_horizon_and_never_signalled_by_another_host(
    home: Path, pg_store: Store, pg_url: str, hosts: HostWorkers
) -> None:
    horizon = 6.0  # vs a 2 s heartbeat: a loaded CI machine must not look dead
    host_c = hosts.start("host-c", "-j", "1", "--rescue-after", str(horizon))
    # These share one directory (the test's) and must run at once, on any host.
    shared = {"shared_workspace": True}
    talker = submit_run(
        pg_store,
        home,
        RunSpec(["sh", "-c", "echo hello-from-c; exec sleep 60"], name="talker", **shared),
    )
    got = wait_for(lambda: (r := pg_store.get_run(talker.id)).pid and r.host == "host-c" and r, 30)
    assert got
    doomed = submit_run(pg_store, home, RunSpec(["sleep", "60"], name="doomed", **shared))
    retried = submit_run(
        pg_store, home, RunSpec(["sleep", "60"], name="retried", retries=1, **shared)
    )
    with pg_store.engine.begin() as conn:  # --retry-lost, as `qqtui add` sets it
        conn.execute(text(f"UPDATE runs SET retry_on_lost = true WHERE id = {retried.id}"))
    host_a = hosts.start("host-a", "-j", "2", "--rescue-after", str(horizon))
    for run_id in (doomed.id, retried.id):
        wait_for(lambda r=run_id: pg_store.get_run(r).pid, 30, what=f"run {run_id} to start")
    before = {r: pg_store.get_run(r) for r in (doomed.id, retried.id)}
    assert {r.host for r in before.values()} == {"host-a"}
    host_b = hosts.start("host-b", "-j", "2", "--rescue-after", str(horizon))
    host_a.send_signal(signal.SIGKILL)
    host_a.wait()
    killed_at = time.monotonic()

    wait_for(
        lambda: pg_store.get_run(doomed.id).status is Status.LOST,
        horizon + 30,
        what="the doomed run to be rescued",
    )
    assert time.monotonic() - killed_at >= horizon - 0.5
    lost = pg_store.get_run(doomed.id)
    assert "on host host-a" in (lost.reason or "") and "rescued from host-" in (lost.reason or "")
    [dead_worker] = pg_store.workers(host="host-a")
    lost_event = [e for e in pg_store.events(doomed.id) if e.to_status == "lost"][-1]
    assert lost_event.at - dead_worker.heartbeat_at >= horizon  # by the server's clock
    assert lost_event.host in ("host-b", "host-c")
    # The run that allows retry on loss runs again, as attempt 2, on a living host.
    again = wait_for(
        lambda: (
            (r := pg_store.get_run(retried.id)).status is Status.RUNNING
            and r.attempt == 2
            and r.pid
            and r
        ),
        30,
        what="the retried run's second attempt",
    )
    assert again.host in ("host-b", "host-c")  # type: ignore[union-attr]
    # Host a's processes were not touched by the hosts that rescued their runs.
    for record in before.values():
        assert _alive(record.pid, record.pid_create_time), f"run {record.id} was signalled"
    # A run whose worker heartbeats is never rescued, however long it runs.
    assert pg_store.get_run(talker.id).status is Status.RUNNING
    tail = pg_store.output_tail(talker.id)
    assert tail is not None and b"hello-from-c" in tail.tail and tail.host == "host-c"
    assert tail.log_path.endswith("output.log")
    # Cancel from another host: stored, and the owning worker acts on it.
    Store.open(pg_url, host="host-b").request_cancel(talker.id, grace_s=1)
    done = wait_for(
        lambda: (r := pg_store.get_run(talker.id)).status.is_final and r, 15, what="cancel"
    )
    assert done.status is Status.CANCELLED  # type: ignore[union-attr]
    assert host_b.poll() is None and host_c.poll() is None
    # Host a comes back: its new worker stops what host a's ended attempts left running
    # there, and nothing of the attempt that runs on now (attempt 2 of `retried`).
    hosts.start("host-a", "-j", "2", "--rescue-after", str(horizon))
    for record in before.values():
        wait_for(
            lambda r=record: not _alive(r.pid, r.pid_create_time),
            30,
            what=f"run {record.id}'s leftover attempt to be stopped",
        )
    stopped = [e for e in pg_store.events(doomed.id) if e.kind == "strays_stopped"]
    assert stopped and stopped[0].host == "host-a"
    assert _alive(again.pid, again.pid_create_time)  # type: ignore[union-attr]


# --- the database goes away between a run's end and its recording ------------------------


def test_an_end_that_cannot_be_written_waits_in_memory_and_is_applied_on_reconnect(
    home: Path, pg_url: str, pg_store: Store
) -> None:
    real = make_url(pg_url)
    proxy = TcpRelay((real.host or "127.0.0.1", real.port or 5432))
    proxied = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    sup = Supervisor(
        Store.open(proxied, host="host-p", actor="worker"),
        home,
        SupervisorConfig(concurrency=1, poll_s=0.05),
    )
    try:
        sup.start()
        run = submit_run(pg_store, home, RunSpec(["/nonexistent/qqtui-test-command"]))
        sup.tick()  # claims it and starts its shim, which will report the start error
        tracked = sup.tracked[run.id]
        assert tracked.spawned is not None
        ready, _, _ = select.select([tracked.spawned.report_fd], [], [], 10)
        assert ready, "the shim never answered"
        proxy.stop()
        with pytest.raises(DB_ERRORS):
            sup.tick()  # records nothing: the end waits in memory
        assert run.id in sup.pending_ends and run.id not in sup.tracked
        assert pg_store.get_run(run.id).status is Status.RUNNING
        proxy.start()
        sup.tick()
        assert sup.pending_ends == {}
        done = pg_store.get_run(run.id)
        assert done.status is Status.FAILED and "qqtui-test-command" in (done.reason or "")
        moves = [(e.from_status, e.to_status) for e in pg_store.events(run.id) if e.to_status]
        assert moves == [(None, "queued"), ("queued", "running"), ("running", "failed")]
    finally:
        proxy.start()
        with contextlib.suppress(Exception):
            sup.shutdown()
        proxy.stop()
        sup.store.close()


# --- the server restarts mid-run -----------------------------------------------------------


def _restart_allowed() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or bool(
        os.environ.get("QQTUI_PG_RESTART")
    )


def _pg_ctl(action: str) -> None:
    versions = os.listdir("/etc/postgresql")
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", action]
        + (["-m", "fast"] if action == "stop" else []),
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.mark.slow
def test_server_restart_mid_run_loses_nothing(
    tmp_path: Path, home: Path, pg_store: Store, hosts: HostWorkers
) -> None:
    if not _restart_allowed():
        pytest.skip("restarts the shared server: only under CI=true or QQTUI_PG_RESTART=1")
    ledger = tmp_path / "ledger.txt"
    started = tmp_path / "started"
    started.mkdir()
    go = tmp_path / "go"
    # Each run says it started, then waits for `go`: the test releases the runs in
    # flight only once the server is down, so they end while it is away (their ends
    # wait in memory) however slowly a loaded machine stops the server.
    script = (
        f'touch {started}/"$QQ_RUN_ID"; '
        f"while [ ! -e {go} ]; do sleep 0.05; done; "
        f'echo "$QQ_RUN_ID" >> {ledger}'
    )
    ids = [
        submit_run(pg_store, home, RunSpec(["sh", "-c", script], shared_workspace=True)).id
        for _ in range(12)
    ]
    procs = [hosts.start(f"host-{h}", "-j", "3", "--until-idle") for h in range(2)]
    wait_for(lambda: len(list(started.iterdir())) >= 4, 60, what="runs to start")
    _pg_ctl("stop")
    try:
        in_flight = len(list(started.iterdir()))
        go.touch()
        wait_for(
            lambda: ledger.exists() and len(ledger.read_text().split()) >= in_flight,
            30,
            what="the runs in flight to end while the server is down",
        )
        done_while_down = len(ledger.read_text().split())
        time.sleep(1)  # let the workers notice the ends and fail to record them
    finally:
        _pg_ctl("start")
    assert done_while_down >= 4  # commands ran on (and ended) without the database
    require_pg()
    for proc in procs:
        assert proc.wait(timeout=180) == 0, "a worker crashed on the restart"
    runs = {r.id: r for r in pg_store.list_runs()}
    assert {runs[i].status for i in ids} == {Status.SUCCEEDED}
    assert {runs[i].attempt for i in ids} == {1}
    counts = Counter(ledger.read_text().split())
    assert set(counts) == {str(i) for i in ids} and set(counts.values()) == {1}
    for run_id in ids:
        moves = [(e.from_status, e.to_status) for e in pg_store.events(run_id) if e.to_status]
        assert moves == [(None, "queued"), ("queued", "running"), ("running", "succeeded")]
    errs = "".join(p.read_text() for p in home.glob("worker-*.err"))
    assert "database unreachable" in errs  # the outage really happened under the workers
