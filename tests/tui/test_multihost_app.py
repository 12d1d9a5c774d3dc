"""The app in multi-host mode and when the database goes away: the "database unreachable"
banner (real PostgreSQL behind a real TCP proxy that is stopped and started again, and
a SQLite file that turns to garbage and back), the host filter, the output tail of a
run on another host, and clock skew warnings from real worker rows."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from sqlalchemy import make_url

from qqtui.config import Settings
from qqtui.core.clock import ServerClock
from qqtui.core.intents import submit_run
from qqtui.core.records import Status
from qqtui.core.runspec import RunSpec
from qqtui.core.store import Store
from qqtui.tui.app import QqApp, make_app
from qqtui.tui.screens.confirm import ConfirmScreen
from qqtui.tui.widgets.header import CountsHeader
from qqtui.tui.widgets.output_view import OutputView
from qqtui.tui.widgets.remote_output import RemoteOutputView
from qqtui.tui.widgets.run_table import RunTable, matches_filter
from tests.core.pgserver import TcpRelay, fresh_schema
from tests.tui.conftest import select_run, wait_until

SIZE = (160, 45)


def app_for(settings: Settings, store: Store, **kwargs: object) -> QqApp:
    kwargs.setdefault("start_worker", False)
    kwargs.setdefault("poll_interval", 0.2)
    kwargs.setdefault("cwd", str(settings.home))
    return make_app(settings, store, **kwargs)  # type: ignore[arg-type]


def shown_ids(app: QqApp) -> list[int]:
    return sorted(app.screen.query_one(RunTable).run_ids)


def screen_text(app: QqApp) -> str:
    """Everything on screen as plain text (what a person would read)."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def banner_text(app: QqApp) -> str:
    banner = app.screen.query_one("#db-banner")
    return str(banner.content) if banner.has_class("-shown") else ""  # type: ignore[attr-defined]


def toasts(app: QqApp) -> list[tuple[str, str]]:
    return [(str(n.message), n.severity) for n in app._notifications]


def on_host(store: Store, host: str) -> Store:
    """The same database as seen by a worker on another host."""
    return Store(store.engine, host=host, actor="worker")


def queue(store: Store, home: Path, *argv: str, name: str = "") -> int:
    # Shared workspace: runs in one directory would otherwise wait for each other.
    return submit_run(
        store, home, RunSpec(list(argv), cwd=str(home), name=name, shared_workspace=True)
    ).id


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


@pytest.fixture
def proxy(pg_url: str) -> Iterator[TcpRelay]:
    real = make_url(pg_url)
    p = TcpRelay((real.host or "127.0.0.1", real.port or 5432))
    yield p
    p.stop()


# --- database unreachable ------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_banner_while_postgres_is_unreachable_and_gone_when_it_is_back(
    home: Path, pg_url: str, proxy: TcpRelay
) -> None:
    proxied = (
        make_url(pg_url)
        .set(host="127.0.0.1", port=proxy.port)
        .render_as_string(hide_password=False)
    )
    direct = Store.open(pg_url, actor="test")  # not through the proxy: always reachable
    store = Store.open(proxied, actor="tui")
    try:
        first = queue(direct, home, "sleep", "60", name="before the outage")
        settings = Settings(home=home, db_url=proxied)
        app = app_for(settings, store)
        async with app.run_test(size=SIZE) as pilot:
            await select_run(pilot, app, first)
            assert banner_text(app) == ""
            table = app.screen.query_one(RunTable)

            proxy.stop()
            await wait_until(pilot, lambda: banner_text(app), timeout=30, what="the banner")
            text = banner_text(app)
            assert text.startswith("⚠ database unreachable since "), text
            assert "retrying (attempt " in text and "\n" not in text
            # The last known runs stay on screen, marked stale.
            assert shown_ids(app) == [first] and table.has_class("-stale")
            assert "stale: as of" in str(table.border_title)
            # On screen too, once the next frame is drawn (the state above changes first).
            await wait_until(
                pilot,
                lambda: "database unreachable since" in screen_text(app),
                what="the banner on screen",
            )
            # It keeps retrying, backing off: attempts go up, but not once per 0.2 s poll.
            outage_started = time.monotonic()
            await wait_until(pilot, lambda: app.outage and app.outage.attempts >= 4, timeout=30)
            assert time.monotonic() - outage_started > 0.4
            assert app.outage is not None and 0 < app.outage.retry_in_s <= 5.0

            # A user's intent meets the outage: one clear error toast, no traceback.
            await pilot.press("c")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await wait_until(
                pilot,
                lambda: any("Not done, the database is unavailable: " in m for m, _ in toasts(app)),
                what="the intent's error toast",
            )
            errors = [m for m, severity in toasts(app) if severity == "error"]
            assert len(errors) == 1 and "\n" not in errors[0], errors  # polls never toast
            assert "Traceback" not in errors[0] and "OperationalError" not in errors[0]

            # Work done elsewhere meanwhile shows as soon as the database is back.
            second = queue(direct, home, "sleep", "60", name="during the outage")
            proxy.start()
            await wait_until(pilot, lambda: not banner_text(app), timeout=30, what="recovery")
            # Checked while it shows: a toast expires after 4 s.
            await wait_until(
                pilot, lambda: any(m == "Database reachable again" for m, _ in toasts(app))
            )
            await wait_until(pilot, lambda: shown_ids(app) == [first, second])
            assert not table.has_class("-stale") and app.outage is None
            assert "stale" not in str(table.border_title)
        assert direct.get_run(first).status is Status.QUEUED  # the cancel never happened
    finally:
        store.close()
        direct.close()


def overwrite_in_place(path: Path, data: bytes) -> None:
    """Put `data` in `path` with no moment in which the file is empty.

    `write_bytes` truncates first, and a poll that lands in that instant reads a
    zero-byte SQLite file: a database with no tables, which the app rightly shows as
    no runs and no error (CI caught the table empty after the "restore").
    """
    with path.open("r+b") as fh:
        fh.write(data)
        fh.truncate(len(data))


@pytest.mark.asyncio
async def test_banner_while_the_sqlite_file_is_garbage_and_gone_when_restored(
    tui_settings: Settings, tui_store: Store
) -> None:
    run_id = queue(tui_store, tui_settings.home, "sleep", "60", name="kept on screen")
    db = tui_settings.home / "qqtui.db"
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == [run_id])
        # Everything into the main file, so its bytes are the whole database.
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        original = db.read_bytes()
        overwrite_in_place(db, b"definitely not a database " * 1000)
        try:
            await wait_until(pilot, lambda: banner_text(app), what="the banner")
            assert "not a qqtui database or is corrupt" in banner_text(app)
            assert shown_ids(app) == [run_id]
            assert app.screen.query_one(RunTable).has_class("-stale")
        finally:
            overwrite_in_place(db, original)
        await wait_until(pilot, lambda: not banner_text(app), what="recovery")
        assert shown_ids(app) == [run_id] and app.outage is None
        assert not any(severity == "error" for _, severity in toasts(app))


# --- host filter -----------------------------------------------------------------------------


def test_host_words_match_exact_hosts_any_of_them(tui_store: Store, tui_settings: Settings) -> None:
    home = tui_settings.home
    for _ in range(3):
        queue(tui_store, home, "true")
    [a] = on_host(tui_store, "host-a").claim_runs("wa", limit=1)
    [b] = on_host(tui_store, "host-ab").claim_runs("wb", limit=1)
    [queued] = [r for r in tui_store.list_runs() if r.status is Status.QUEUED]
    assert matches_filter(a, "host:host-a") and not matches_filter(b, "host:host-a")
    assert matches_filter(a, "host:HOST-A")  # host names ignore case
    assert matches_filter(b, "host:host-a host:host-ab") and matches_filter(a, "host:host-a host:x")
    assert not matches_filter(queued, "host:host-a")  # not started: on no host yet
    assert matches_filter(a, "running host:host-a") and not matches_filter(a, "queued host:host-a")
    assert matches_filter(queued, "host:")  # a host word still being typed filters nothing


@pytest.mark.asyncio
async def test_host_key_cycles_through_the_hosts_in_the_store(
    tui_settings: Settings, tui_store: Store
) -> None:
    home = tui_settings.home
    ids = [queue(tui_store, home, "true", name=f"run {i}") for i in range(4)]
    on_host(tui_store, "host-b").claim_runs("wb", limit=2)  # runs 1 and 2
    on_host(tui_store, "host-a").claim_runs("wa", limit=1)  # run 3; run 4 stays queued
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: shown_ids(app) == ids)
        box = app.screen.query_one("#filter")
        table = app.screen.query_one(RunTable)
        # The key is a Binding with an id and a tooltip, so Footer, help and palette know it.
        binding = app.screen.active_bindings["H"].binding
        assert binding.id == "main.cycle_host" and binding.tooltip
        await wait_until(pilot, lambda: "H Host" in screen_text(app).splitlines()[-1])

        await pilot.press("H")  # hosts in name order: host-a first
        await wait_until(pilot, lambda: shown_ids(app) == [ids[2]], what="host-a's runs")
        assert box.value == "host:host-a" and box.has_class("-open")  # type: ignore[attr-defined]
        assert "host host-a" in str(table.border_title)
        # The filter line says which host is on (once the next frame is drawn).
        await wait_until(pilot, lambda: "host:host-a" in screen_text(app))

        await pilot.press("H")
        await wait_until(pilot, lambda: shown_ids(app) == ids[:2], what="host-b's runs")
        assert box.value == "host:host-b"  # type: ignore[attr-defined]

        await pilot.press("H")  # back to every host
        await wait_until(pilot, lambda: shown_ids(app) == ids)
        assert box.value == "" and not box.has_class("-open")  # type: ignore[attr-defined]

        # Typed host words combine with other words; H keeps those and swaps the host.
        await pilot.press("slash", *"running host:host-a host:host-b", "enter")
        await wait_until(pilot, lambda: shown_ids(app) == ids[:3], what="both hosts")
        await pilot.press("H")
        assert box.value == "running"  # type: ignore[attr-defined]
        await pilot.press("H")
        await wait_until(pilot, lambda: shown_ids(app) == [ids[2]])
        assert box.value == "running host:host-a"  # type: ignore[attr-defined]


# --- output of a run on another host -----------------------------------------------------------

HOSTILE_TAIL = (
    b"e cut off by the 64 KiB window\n"
    b"\x1b]52;c;cm0gLXJmIH4K\x07clipboard write above was dropped\n"
    b"\x1b]0;pwned title\x07title change above was dropped\n"
    b"\x1b[2J\x1b[Hscreen clear above was dropped\n"
    b"\x1b[31mred\x1b[0m stays coloured\n"
    b"[bold red]rich markup stays literal[/bold red]\n"
    b"invalid utf-8: \xff\xfe done\n"
)


@pytest.mark.asyncio
async def test_remote_run_shows_its_stored_tail_inert_and_where_the_full_log_is(
    tui_settings: Settings, tui_store: Store
) -> None:
    home = tui_settings.home
    local = queue(tui_store, home, "true", name="a local run")
    remote_id = queue(tui_store, home, "agent", name="on host b")
    tui_store.claim_runs("here", limit=1)  # the local run runs on this host
    host_b = on_host(tui_store, "host-b")
    [remote] = host_b.claim_runs("wb", limit=1)
    token = remote.claim_token or ""
    far_log = "/srv/b-home/default/sessions/x/output.log"  # host b's home, not ours
    size = 3_000_000
    assert host_b.record_output_tail(
        remote_id, token, attempt=1, log_path=far_log, size=size, tail=HOSTILE_TAIL
    )
    app = app_for(tui_settings, tui_store)
    async with app.run_test(size=SIZE) as pilot:
        await select_run(pilot, app, remote_id)
        view = app.screen.query_one(RemoteOutputView)
        bottom = app.screen.query_one("#bottom")
        await wait_until(pilot, lambda: bottom.has_class("-remote"), what="the remote pane")
        await wait_until(pilot, lambda: view.log.lines, what="the tail's lines")
        lines = [strip.text for strip in view.log.lines]
        assert lines == [
            "clipboard write above was dropped",
            "title change above was dropped",
            "screen clear above was dropped",
            "red stays coloured",
            "[bold red]rich markup stays literal[/bold red]",
            "invalid utf-8: \ufffd\ufffd done",
        ]
        segments = [seg for strip in view.log.lines for seg in strip]
        assert not any(ch in seg.text for seg in segments for ch in "\x1b\x07\x9b\x9d")
        red = next(seg for seg in segments if seg.text == "red")
        assert red.style is not None and red.style.color is not None
        assert red.style.color.number == 1  # SGR 31: red
        text = screen_text(app)
        where = str(app.screen.query_one("#remote-output-where").content)  # type: ignore[attr-defined]
        assert (
            where == f"remote run: last 268B shown (of 2.9M), full log on host host-b at {far_log}"
        )
        # All of it on screen, wrapped: the path is what a person needs from it.
        assert "remote run: last 268B shown (of 2.9M)" in text
        assert "full log on host host-b at" in text and "output.log" in text
        assert "pwned" not in text and "cut off by the 64 KiB window" not in text
        # Follow and search are for a local log: greyed out here.
        assert app.screen.check_action("follow", ()) is None

        # While it runs, each poll shows what its worker stored since.
        more = HOSTILE_TAIL + b"a new line from host b\n"
        host_b.record_output_tail(
            remote_id, token, attempt=1, log_path=far_log, size=size + 23, tail=more
        )
        await wait_until(
            pilot,
            lambda: view.log.lines and view.log.lines[-1].text == "a new line from host b",
            what="the refreshed tail",
        )

        # A run on this host shows its log file again.
        await select_run(pilot, app, local)
        await wait_until(pilot, lambda: not bottom.has_class("-remote"))
        assert app.screen.query_one(OutputView).display
        assert app.screen.check_action("follow", ()) is True


# --- clock skew -----------------------------------------------------------------------------


def skewed_store(store: Store, host: str, skew_s: float) -> Store:
    """A worker's store on `host` whose wall clock is `skew_s` off the database's."""
    worker_store = on_host(store, host)
    worker_store.server_clock = ServerClock(time.time, wall=lambda: time.time() + skew_s)
    worker_store.server_clock.measure()
    return worker_store


@pytest.mark.asyncio
async def test_header_warns_of_a_live_workers_clock_skew_until_it_is_fixed(
    tui_settings: Settings, tui_store: Store
) -> None:
    me = psutil.Process()
    fine = skewed_store(tui_store, "host-a", 2.0)
    fine.register_worker(
        worker_id="w1", pid=me.pid, pid_create_time=me.create_time(), boot_id="boot-a"
    )
    app = app_for(tui_settings, tui_store)
    app.monitor.clock_check_s = 0.1  # the app reads workers every few seconds
    async with app.run_test(size=SIZE) as pilot:
        header = app.screen.query_one(CountsHeader)
        await wait_until(pilot, lambda: app.last_poll is not None)
        await pilot.pause(0.3)
        assert header.warning == ""  # 2 s off is nothing to warn about

        off = skewed_store(tui_store, "host-b", 75.0)
        off.register_worker(
            worker_id="w3", pid=os.getpid(), pid_create_time=me.create_time(), boot_id="boot-b"
        )
        await wait_until(pilot, lambda: header.warning, what="the clock warning")
        assert header.warning == "⚠ clock: worker w3 on host-b is 75 s ahead of the database"
        await wait_until(pilot, lambda: header.warning in screen_text(app).splitlines()[0])

        # Its host's clock gets fixed; the next heartbeat says so and the warning goes.
        off.server_clock = ServerClock(time.time)
        off.server_clock.measure()
        off.heartbeat_worker("w3")
        await wait_until(pilot, lambda: not header.warning, what="the warning to go")

        # A stopped worker's old skew is no reason to warn either.
        slow = skewed_store(tui_store, "host-c", -90.0)
        slow.register_worker(
            worker_id="w4", pid=me.pid, pid_create_time=me.create_time(), boot_id="boot-c"
        )
        await wait_until(pilot, lambda: "90 s behind" in header.warning)
        slow.stop_worker("w4")
        await wait_until(pilot, lambda: not header.warning, what="a stopped worker forgotten")


def test_a_remote_runs_log_on_a_shared_home_is_read_as_a_file(
    tui_settings: Settings, tui_store: Store
) -> None:
    from qqtui.core.intents import output_log_path
    from qqtui.core.monitor import Monitor

    home = tui_settings.home
    run_id = queue(tui_store, home, "agent")
    host_b = on_host(tui_store, "host-b")
    [run] = host_b.claim_runs("wb", limit=1)
    monitor = Monitor(home, tui_settings.db_url, scan_processes=False, host="host-a")
    assert monitor.remote_output(run) is None  # no tail stored yet: nothing to show instead
    host_b.record_output_tail(
        run_id, run.claim_token or "", attempt=1, log_path="/b/out.log", size=3, tail=b"hi\n"
    )
    remote = monitor.remote_output(run)
    assert remote is not None and remote.tail.tail == b"hi\n" and remote.tail.host == "host-b"
    # On its own host a run's log is read from its file, never from the database.
    assert Monitor(home, tui_settings.db_url, host="host-b").remote_output(run) is None
    log = output_log_path(home, run)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"hi\n")  # a shared home (NFS): the file is right here
    assert monitor.remote_output(run) is None
