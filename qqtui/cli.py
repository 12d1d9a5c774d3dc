"""The `qqtui` command line: parse, call core, print (text or --json).

Heavy modules (SQLAlchemy, psutil, Textual) are imported inside the commands
that need them, so `qqtui ls` stays fast.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from qqtui import __version__
from qqtui.config import HOME_ENV, Settings, resolve_settings
from qqtui.core import presentation
from qqtui.core.records import (
    DEFAULT_GRACE_S,
    MAX_RETRIES,
    QqError,
    RunRecord,
    Status,
)
from qqtui.core.termtext import plain_field

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

    from qqtui.core.store import Store


@dataclass
class Context:
    settings: Settings
    _store: Store | None = None

    def store(self, actor: str = "cli", host: str | None = None) -> Store:
        """Open the store (creating the home 0700 and the database 0600 if needed)."""
        if self._store is None:
            from qqtui.core.sessions import ensure_home
            from qqtui.core.store import Store

            ensure_home(self.settings.home)
            self._store = Store.open(self.settings.db_url, actor=actor, host=host)
        return self._store

    def snapshot(self) -> Any:
        from qqtui.core.snapshot import Snapshot

        check_home_readable(self.settings.home)
        return Snapshot(self.settings.db_url)


def check_home_readable(home: Path) -> None:
    """A home that is a file, or a directory we cannot write (`/proc/1`), is no qqtui home:
    say so instead of listing nothing. A home not created yet is fine (nothing ran)."""
    if not home.exists():
        return
    if not home.is_dir():
        fail(f"home {home} is not a directory")
    if not os.access(home, os.W_OK | os.X_OK):
        fail(f"home {home} is not writable: not a qqtui home")


pass_ctx = click.make_pass_decorator(Context)


def fail(message: str) -> NoReturn:
    raise QqError(message)


# Run ids are 64-bit database integers; a larger number is no id the store can hold.
MAX_RUN_ID = 2**63 - 1


def parse_run_id(value: str) -> int:
    try:
        run_id = int(value)
    except ValueError:
        fail(f"invalid run id {value!r}: expected a number")
    if run_id <= 0:
        fail(f"invalid run id {value!r}: expected a positive number")
    if run_id > MAX_RUN_ID:
        fail(f"no run with id {value}: run ids go up to {MAX_RUN_ID}")
    return run_id


class Seconds(click.ParamType):
    """A positive, finite number of seconds (`inf`, `1e400`, `nan` and `-5` are usage errors)."""

    name = "seconds"

    def __init__(self, *, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        low_ok = seconds >= 0 if self.allow_zero else seconds > 0
        if not (low_ok and math.isfinite(seconds)):
            wanted = "0 or a positive" if self.allow_zero else "a positive"
            self.fail(f"must be {wanted}, finite number of seconds, not {value!r}", param, ctx)
        return seconds


class TtySize(click.ParamType):
    """A terminal size, COLSxROWS (e.g. 120x40), within what a terminal can be."""

    name = "COLSxROWS"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        from qqtui.core.runspec import parse_tty_size

        try:
            return parse_tty_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _completion_settings(click_ctx: click.Context) -> Settings:
    """The home and database the command line names so far (completion runs before
    the group's callback, so they are read from its parsed parameters)."""
    root = click_ctx.find_root()
    return resolve_settings(root.params.get("home") or None, root.params.get("db") or None)


def complete_run_id(
    click_ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Run ids of this home, newest first, each with its status and name as help."""
    from click.shell_completion import CompletionItem

    from qqtui.core.snapshot import Snapshot

    try:
        lines = Snapshot(_completion_settings(click_ctx).db_url).run_lines(None, None)
    except Exception:  # a shell's Tab must never print a traceback: no candidates instead
        return []
    found = [r for r in lines if str(r.id).startswith(incomplete)]
    found.sort(key=lambda r: r.id, reverse=True)
    return [
        CompletionItem(str(r.id), help=plain_field(f"{r.status.value} {r.name}"))
        for r in found[:200]
    ]


def complete_session_id(
    click_ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Session ids of this home, newest first, with their agent as help."""
    from click.shell_completion import CompletionItem

    from qqtui.core.sessions import list_sessions

    try:
        found = list_sessions(_completion_settings(click_ctx).home)
    except Exception:  # as above: no candidates rather than a traceback in the shell
        return []
    return [
        CompletionItem(info.session_id, help=plain_field(info.agent))
        for info in found
        if info.session_id.startswith(incomplete)
    ][:200]


def human_size(num_bytes: int) -> str:
    """The CLI says sizes in IEC units (`1.5 MiB`); the app says them compactly (`1.5M`)."""
    return presentation.size(num_bytes, presentation.IEC_UNITS)


def run_json(run: RunRecord) -> dict[str, Any]:
    return run.to_json()


def print_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


# --- the group ---------------------------------------------------------------------------


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", metavar="DIR", help="State directory (env QQ_HOME, default ~/.qq).")
@click.option("--db", metavar="URL", help="Database URL (env QQTUI_DB, default SQLite in home).")
@click.option(
    "--notify/--no-notify",
    default=None,
    help="The app: a desktop notification (OSC 9) when a run needs you ([tui] notify).",
)
@click.version_option(__version__, "--version", prog_name="qqtui")
@click.pass_context
def cli(ctx: click.Context, home: str | None, db: str | None, notify: bool | None) -> None:
    """Mission control for parallel runs. Without a command, opens the app."""
    if home is not None and not home.strip():
        raise click.BadParameter("give a directory, not an empty string", param_hint="--home")
    if db is not None and not db.strip():
        raise click.BadParameter("give a database URL, not an empty string", param_hint="--db")
    ctx.obj = Context(resolve_settings(home, db))
    if ctx.invoked_subcommand is None:
        from qqtui.tui.entry import run_app

        require_terminal("the app")

        sys.exit(run_app(ctx.obj.settings, notify=notify))


@cli.command(context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False})
@click.option("--name", default="", help="A short name shown in the table.")
@click.option("--agent", default="default", show_default=True, help="Agent the session belongs to.")
@click.option("--cwd", metavar="DIR", help="Working directory (default: the current one).")
@click.option(
    "--timeout", "timeout_s", type=Seconds(), metavar="S", help="Stop the run after S seconds."
)
@click.option(
    "--hung-after",
    "hung_after_s",
    type=Seconds(),
    metavar="S",
    help="Flag the run hung after S seconds without output or heartbeat (default 300).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0, max=MAX_RETRIES),
    default=0,
    show_default=True,
    help="Retry a failed run this many times, with exponential backoff.",
)
@click.option(
    "--retry-lost",
    "retry_on_lost",
    is_flag=True,
    help="Also retry (counting against --retries) when the run's worker dies on another host.",
)
@click.option(
    "--session",
    "session_id",
    metavar="ID",
    help="Run in this existing session.",
    shell_complete=complete_session_id,
)
@click.option(
    "--env", "env_pairs", multiple=True, metavar="K=V", help="Extra environment (repeat)."
)
@click.option(
    "--shared-workspace",
    is_flag=True,
    help="Let this run share its cwd with other runs (by default runs in one "
    "directory run one at a time).",
)
@click.option(
    "--lock",
    "locks",
    multiple=True,
    metavar="NAME",
    help="Never run together with another run holding NAME (repeat).",
)
@click.option(
    "--paths",
    multiple=True,
    metavar="GLOB",
    help="Files this run writes, relative to its cwd (repeat); runs whose globs can "
    "overlap never run together. Replaces the whole-directory lease.",
)
@click.option(
    "--worktree",
    is_flag=True,
    help="Run in a new git worktree <home>/workspaces/<id> on branch qqtui/<id>.",
)
@click.option("--repo", metavar="PATH", help="With --worktree: the repository (default: cwd's).")
@click.option("--ref", metavar="REF", help="With --worktree: start from REF (default HEAD).")
@click.option(
    "--keep-worktree", is_flag=True, help="With --worktree: keep it even when the run succeeds."
)
@click.option(
    "--tty/--no-tty",
    default=None,
    help="Run on a pseudo-terminal of its own: attach to it, send it input, see its "
    "screen (default: the agent profile's `tty`, else no).",
)
@click.option(
    "--size",
    "tty_size",
    type=TtySize(),
    metavar="COLSxROWS",
    help="With --tty: the terminal's size until a viewer resizes it (default 120x40).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def add(
    ctx: Context,
    env_pairs: Sequence[str],
    as_json: bool,
    command: Sequence[str],
    **spec_options: Any,
) -> None:
    """Queue a command: qqtui add [OPTIONS] -- CMD [ARG...]

    Runs whose cwd is the same directory run one at a time unless --shared-workspace
    (or --paths) is given; --worktree gives a run a private checkout instead.
    """
    # Every other option is named as a RunSpec field and goes into the spec as it is.
    from qqtui.core.intents import parse_env_pairs, submit_run
    from qqtui.core.runspec import RunSpec

    if not command and spec_options["agent"] == "default":
        fail("empty command: give the command after --, e.g. qqtui add -- sleep 10")
    spec = RunSpec(argv=tuple(command), env=parse_env_pairs(env_pairs), **spec_options)
    run = submit_run(ctx.store(), ctx.settings.home, spec)
    if as_json:
        print_json(run_json(run))
    else:
        click.echo(run.id)


def _parse_statuses(value: str | None) -> list[Status] | None:
    if not value:
        return None
    out = []
    for part in value.split(","):
        try:
            out.append(Status(part.strip()))
        except ValueError:
            fail(f"unknown status {part!r}: use one of {', '.join(s.value for s in Status)}")
    return out


@cli.command("ls")
@click.option("--status", metavar="S[,S]", help="Only runs in these states.")
@click.option(
    "--host", "hosts", metavar="H[,H]", help="Only runs claimed by workers on these hosts."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_ctx
def ls_cmd(ctx: Context, status: str | None, hosts: str | None, as_json: bool) -> None:
    """List runs."""
    statuses = _parse_statuses(status)
    wanted = {h.strip() for h in hosts.split(",") if h.strip()} if hosts else None
    if as_json:
        listed = ctx.snapshot().runs_json(statuses)
        if wanted is not None:
            listed = [r for r in listed if r["host"] in wanted]
        sys.stdout.write(json.dumps(listed, ensure_ascii=False) + "\n")
        return
    runs = ctx.snapshot().run_lines(statuses, wanted)
    if not runs:
        click.echo("no runs", err=True)
        return
    now = time.time()
    lines = [
        f"{'ID':>5}  {'STATUS':<11} {'NAME':<20} {'AGENT':<10} {'PID':>7}  "
        f"{'RUNTIME':>8} {'IDLE':>7}  OUTCOME"
    ]
    for r in runs:
        # The status's own name, as --status takes it, not the app's words.
        state = f"{presentation.STATUS_ICONS[r.status]} {r.status.value}"
        if r.hung:
            state = "! hung"
        if r.waiting and r.status is Status.RUNNING:
            state = "? waiting"  # needs its user; never hung at the same time
        idle = "-"
        if r.activity_at and r.is_active:
            idle = presentation.duration(now - r.activity_at)
        runtime = presentation.duration(r.runtime_s(now))
        # Names and outcomes are written by users and runs: one sanitised line each,
        # measured after sanitising so the columns stay where they are.
        lines.append(
            f"{r.id:>5}  {state:<11} {plain_field(r.name)[:20]:<20} "
            f"{plain_field(r.agent)[:10]:<10} {(r.pid or '-')!s:>7}  "
            f"{runtime:>8} {idle:>7}  {plain_field(presentation.outcome(r))}"
        )
    sys.stdout.write("\n".join(lines) + "\n")


def _get_run(ctx: Context, run_id_text: str) -> RunRecord:
    run_id = parse_run_id(run_id_text)
    run = ctx.snapshot().run(run_id)
    if run is None:
        fail(f"no run with id {run_id}")
    return run


@cli.command()
@click.argument("run_id", shell_complete=complete_run_id)
@click.option("--json", "as_json", is_flag=True, help="Print the run and its events as JSON.")
@pass_ctx
def show(ctx: Context, run_id: str, as_json: bool) -> None:
    """Show one run and its events."""
    from qqtui.core.intents import run_paths

    run = _get_run(ctx, run_id)
    events = ctx.snapshot().events(run.id)
    from qqtui.core.leases import LeaseSet
    from qqtui.core.runspec import tty_size_of
    from qqtui.core.sessions import artifacts_dir, list_artifacts

    session_path, run_dir = run_paths(ctx.settings.home, run)
    artifacts = list_artifacts(session_path, run.id)
    if as_json:
        data = run_json(run)
        data["session_dir"] = str(session_path)
        data["log"] = str(run_dir / "output.log")
        data["artifacts_dir"] = str(artifacts_dir(session_path, run.id))
        data["artifacts"] = [{"name": n, "size": size} for n, size in artifacts]
        data["events"] = [e.to_json() for e in events]
        print_json(data)
        return
    fields = [
        ("id", run.id),
        ("name", run.name),
        ("agent", run.agent),
        ("status", f"{run.status.value}{' (hung)' if run.hung else ''}"),
    ]
    if run.waiting and run.status is Status.RUNNING:
        since = time.strftime("%H:%M:%S", time.localtime(run.waiting_since or 0))
        fields.append(("waiting", f"since {since}: {run.waiting_reason or '-'}"))
    fields += [
        ("command", " ".join(run.argv)),
        ("cwd", run.cwd),
        ("session", run.session_id),
        ("session dir", session_path),
        ("log", run_dir / "output.log"),
        ("attempt", f"{run.attempt} (retries allowed: {run.max_retries})"),
        ("pid", run.pid or "-"),
        ("host", run.host or "-"),
        ("worker", run.worker_id or "-"),
        ("timeout", f"{run.timeout_s:g}s" if run.timeout_s else "-"),
        ("hung after", f"{run.hung_after_s:g}s"),
        ("exit", run.exit_code if run.exit_code is not None else "-"),
        ("reason", presentation.outcome(run) or "-"),
        ("holds", LeaseSet.of_row(run.to_json()).describe() or "- (shared workspace)"),
    ]
    if run.worktree:
        kept = " (kept on success)" if run.keep_worktree else ""
        fields.append(("worktree", f"{run.worktree}{kept}"))
        fields.append(("branch", f"{run.worktree_branch} in {run.worktree_repo}"))
    if run.tty:
        size = tty_size_of(run)
        assert size is not None
        fields.append(
            (
                "terminal",
                f"{size[0]}x{size[1]} (attach: qqtui attach {run.id}; "
                f"input: qqtui send {run.id} TEXT)",
            )
        )
    fields.append(("artifacts", artifacts_dir(session_path, run.id)))
    fields += [("", f"{name}  {human_size(size)}") for name, size in artifacts]
    if run.env:
        fields.append(("env", " ".join(f"{k}={v}" for k, v in sorted(run.env.items()))))
    for key, value in fields:
        shown = plain_field(value)
        click.echo(f"{key:>12}: {shown}" if key else f"{'':>14}{shown}")
    click.echo("      events:")
    for e in events:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.at))
        move = plain_field(f"{e.from_status or ''}→{e.to_status}" if e.to_status else e.kind)
        by = plain_field(f"{e.actor or '-'}@{e.host or '-'}")
        click.echo(f"  {stamp}  {move:<22} {plain_field(e.reason or '')}  [{by}]")


def _remote_output(
    ctx: Context, run: RunRecord, lines: int | None, follow: bool, emit: Callable[[bytes], None]
) -> bool:
    """A run on another host whose log this host cannot read: print the tail its
    worker keeps in the database (False: there is none, fall back to the file)."""
    from qqtui.core.logfollow import follow_stored_tail

    store = ctx.store()
    stored = store.output_tail(run.id)
    if stored is None:
        return False
    click.echo(
        f"qqtui: run {run.id} ran on {stored.host}; its full log is there at "
        f"{stored.log_path} (this is the last {len(stored.tail):,} of {stored.size:,} bytes)",
        err=True,
    )
    chunks = follow_stored_tail(
        stored,
        lines=lines,
        follow=follow,
        read_tail=lambda: store.output_tail(run.id),
        run_ended=lambda: store.get_run(run.id).status.is_final,
    )
    for data in chunks:
        emit(data)
    return True


@cli.command()
@click.argument("run_id", shell_complete=complete_run_id)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the run ends.")
@click.option(
    "--tail", "-n", type=click.IntRange(min=0), metavar="N", help="Only the last N lines."
)
@pass_ctx
def logs(ctx: Context, run_id: str, follow: bool, tail: int | None) -> None:
    """Print a run's output (only colour sequences reach a terminal)."""
    from qqtui.core.intents import output_log_path
    from qqtui.core.logfollow import follow_file, tail_offset
    from qqtui.core.termtext import keep_sgr_only

    run = _get_run(ctx, run_id)
    path = str(output_log_path(ctx.settings.home, run))
    tty = sys.stdout.isatty()
    clean = keep_sgr_only if tty else None  # a pipe gets the bytes as written, like `cat`
    out = sys.stdout.buffer

    def emit(data: bytes) -> None:
        if clean is None:
            out.write(data)
        else:
            out.write(clean(data.decode("utf-8", errors="replace")).encode())
        out.flush()

    if not os.path.exists(path) and not ctx.settings.is_sqlite:
        remote = _remote_output(ctx, run, tail, follow, emit)
        if remote:
            return
    try:
        offset = tail_offset(path, tail) if tail is not None else 0
    except FileNotFoundError:
        if not follow:
            if run.status is Status.QUEUED:
                fail(f"run {run.id} has not started yet; no output")
            return
        offset = 0

    def run_ended() -> bool:
        current = ctx.snapshot().run(run.id)
        return current is None or current.status.is_final

    # Only whole UTF-8 sequences go through the sanitiser.
    chunks = follow_file(
        path, offset=offset, follow=follow, run_ended=run_ended, whole_lines=clean is not None
    )
    for data in chunks:
        emit(data)


@cli.command()
@click.argument("run_id", shell_complete=complete_run_id)
@pass_ctx
def attach(ctx: Context, run_id: str) -> None:
    """Open a tty run's terminal here until the detach key (ctrl+] unless config.toml
    says otherwise in [tui] detach_key); the run goes on after."""
    from qqtui.tui.entry import run_attach

    run = _get_run(ctx, run_id)
    sys.exit(run_attach(ctx.settings.home, run, ctx.store().host))


@cli.command()
@click.argument("run_id", shell_complete=complete_run_id)
@click.option(
    "--grace",
    type=Seconds(allow_zero=True),
    default=DEFAULT_GRACE_S,
    show_default=True,
    metavar="S",
    help="Seconds between TERM and KILL.",
)
@pass_ctx
def cancel(ctx: Context, run_id: str, grace: float) -> None:
    """Cancel a run: TERM its tree, KILL whatever is left after the grace period."""
    from qqtui.core.intents import cancel_run

    run = cancel_run(ctx.store(), parse_run_id(run_id), grace_s=grace)
    if run.status is Status.CANCELLED:
        click.echo(f"run {run.id}: cancelled before it started")
    else:
        click.echo(f"run {run.id}: cancel requested (TERM, KILL after {grace:g}s)")


@cli.command()
@click.argument("run_id", shell_complete=complete_run_id)
@pass_ctx
def kill(ctx: Context, run_id: str) -> None:
    """Kill a run's whole process tree now."""
    from qqtui.core.intents import kill_run

    run = kill_run(ctx.store(), parse_run_id(run_id))
    if run.status is Status.CANCELLED:
        click.echo(f"run {run.id}: cancelled before it started")
    else:
        click.echo(f"run {run.id}: kill requested")


@cli.command()
@click.argument("run_id", shell_complete=complete_run_id)
@pass_ctx
def retry(ctx: Context, run_id: str) -> None:
    """Queue a finished run again as a new attempt."""
    from qqtui.core.intents import retry_run

    run = retry_run(ctx.store(), parse_run_id(run_id))
    click.echo(f"run {run.id}: queued again (attempt {run.attempt})")


@cli.command()
@click.argument("run_id", shell_complete=complete_run_id)
@click.argument("text", required=False)
@click.option("--no-enter", is_flag=True, help="Do not press enter after TEXT.")
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="NAME",
    help="Press a key (ctrl-c, enter, escape, up, tab, y ...); repeat for several.",
)
@pass_ctx
def send(ctx: Context, run_id: str, text: str | None, no_enter: bool, keys: Sequence[str]) -> None:
    """Type into a tty run's terminal: send ID TEXT [--no-enter], or send ID --key NAME..."""
    from qqtui.core.ttyclient import send_to_run
    from qqtui.core.ttykeys import key_bytes

    if text is not None and keys:
        fail("give TEXT or --key, not both")
    if text is None and not keys:
        fail("nothing to send: give TEXT or --key NAME")
    if keys and no_enter:
        fail("--no-enter applies to TEXT only")
    if text is not None:
        data = text.encode() + (b"" if no_enter else b"\r")
    else:
        try:
            data = b"".join(key_bytes(name) for name in keys)
        except ValueError as exc:
            fail(str(exc))
    run = _get_run(ctx, run_id)
    # One machine in SQLite mode; in PostgreSQL mode the socket is on the run's host.
    this_host = (
        None if ctx.settings.is_sqlite else os.environ.get("QQTUI_HOST") or os.uname().nodename
    )
    sent = send_to_run(ctx.settings.home, run, data, this_host=this_host)
    click.echo(f"run {run.id}: sent {sent} bytes")


# Interspersed args stay on here: the session id comes first, so only the usual `--`
# separator can mark where the command starts.
@cli.command()
@click.argument("session_id", shell_complete=complete_session_id)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--json", "as_json", is_flag=True, help="Print the new run as JSON.")
@pass_ctx
def resume(ctx: Context, session_id: str, command: Sequence[str], as_json: bool) -> None:
    """Start a new run in a session (default: its last command): resume ID [-- CMD...]"""
    from qqtui.core.intents import resume_session

    run = resume_session(ctx.store(), ctx.settings.home, session_id, list(command) or None)
    if as_json:
        print_json(run_json(run))
    else:
        click.echo(run.id)


@cli.command("agents")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_ctx
def agents_cmd(ctx: Context, as_json: bool) -> None:
    """List the agent profiles of <home>/config.toml."""
    from qqtui.core.profiles import config_path, load_profiles

    profiles = load_profiles(ctx.settings.home)
    rows = [
        {
            "name": p.name,
            "description": p.description,
            "command": list(p.command) if p.command is not None else None,
            "resume": list(p.resume) if p.resume is not None else None,
            "timeout": p.timeout,
            "hung_after": p.hung_after,
            "env": sorted(p.env),
        }
        for p in profiles.values()
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo(f"no agent profiles in {config_path(ctx.settings.home)}", err=True)
        return
    for r in rows:
        name, description = plain_field(r["name"]), plain_field(r["description"] or "")
        command = plain_field(" ".join(r["command"])) if r["command"] else "(the given ARGS)"
        resume = plain_field(" ".join(r["resume"])) if r["resume"] else "(the last command)"
        click.echo(f"{name}: {description}" if description else name)
        click.echo(f"  command: {command}")
        click.echo(f"  resume:  {resume}")
        limits = [f"timeout {r['timeout']:g}s" if r["timeout"] else "no timeout"]
        if r["hung_after"]:
            limits.append(f"hung after {r['hung_after']:g}s")
        if r["env"]:
            limits.append("env " + ", ".join(r["env"]))
        click.echo("  " + "; ".join(limits))


@cli.command()
def heartbeat() -> None:
    """Tell qqtui this run is still making progress (from a shell agent)."""
    from qqtui.agent import Session

    session = Session.from_environ(create=False)
    if session.heartbeat_file is None:
        fail("no heartbeat file: QQ_HEARTBEAT_FILE is not set (run this inside a qqtui run)")
    session.heartbeat()
    if session.heartbeat_error:
        fail(f"cannot touch {session.heartbeat_file}: {session.heartbeat_error}")


@cli.command()
@click.argument("fraction", type=click.FloatRange(0.0, 1.0))
@click.argument("message", required=False, default="")
def progress(fraction: float, message: str) -> None:
    """Report progress (0..1 and a message) for the current run (from a shell agent)."""
    from qqtui.agent import Session

    Session.from_environ(create=False).progress(fraction, message)


@cli.command()
@click.option("--message", "-m", default="", help="Why it waits (shown in the app).")
@click.option("--done", is_flag=True, help="It works again: clear the flag.")
@click.option(
    "--run", "run_id", metavar="ID", help="A running run of this home (default: $QQ_RUN_ID)."
)
@click.argument("words", nargs=-1)
@pass_ctx
def waiting(
    ctx: Context, message: str, done: bool, run_id: str | None, words: tuple[str, ...]
) -> None:
    """Say the current run waits for its user ("needs you"), or with --done that it
    works again. Extra words (or JSON a hook passes as one) are appended to the message."""
    from qqtui.agent import Session

    if done and (message or words):
        fail("--done clears the flag; it takes no message")
    text = " ".join(part for part in (message, *(_hook_message(w) for w in words)) if part)
    if run_id is None:
        session = Session.from_environ(create=False)
        if session.run_id is None:
            fail("not inside a qqtui run: QQ_RUN_ID is not set (or pass --run ID)")
    else:
        from qqtui.core.intents import run_paths

        run = _get_run(ctx, run_id)
        if run.status is not Status.RUNNING:
            fail(f"run {run.id} is {run.status.value}, not running: it waits for nobody")
        session_path, _ = run_paths(ctx.settings.home, run)
        session = Session(session_path, run_id=str(run.id))
    try:
        if done:
            session.working()
        else:
            session.waiting(text)
    except OSError as exc:
        fail(f"cannot write {session.waiting_file}: {exc.strerror or exc}")


def _hook_message(word: str) -> str:
    """A word, or what a JSON object a notify hook passes as its argument says: its
    `message`, or for Codex CLI's `notify = ["qqtui", "waiting"]` its turn's end."""
    if not word.startswith("{"):
        return word
    try:
        data = json.loads(word)
    except ValueError:
        return word
    if not isinstance(data, dict):
        return word
    message = data.get("message")
    if isinstance(message, str) and message.strip():
        return message
    last = data.get("last-assistant-message")
    if data.get("type") == "agent-turn-complete":
        # Codex finished its turn: it waits for the next prompt.
        return (
            f"turn complete: {last}" if isinstance(last, str) and last.strip() else "turn complete"
        )
    kind = data.get("type")
    return kind if isinstance(kind, str) and kind.strip() else "the agent waits for you"


@cli.command()
@click.pass_context
def demo(click_ctx: click.Context) -> None:
    """Open the app on a fresh demo home with sample agents queued (or on --home)."""
    from qqtui.tui.entry import run_demo

    require_terminal("the demo")
    ctx: Context = click_ctx.obj
    parent = click_ctx.parent
    home_given = parent is not None and parent.params.get("home") is not None
    # QQ_HOME counts as given, as --home's help promises; otherwise a fresh temp home.
    home_given = home_given or bool(os.environ.get(HOME_ENV))
    sys.exit(run_demo(ctx.settings if home_given else None))


def require_terminal(what: str) -> None:
    """The full-screen app draws on a terminal; without one it is a usage error (exit 2)."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise click.UsageError(
            f"{what} needs a terminal (stdin and stdout are not one); "
            "for a listing use `qqtui ls` (or `qqtui ls --json`)"
        )


@cli.command("sessions")
@click.option("--agent", help="Only this agent's sessions.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_ctx
def sessions_cmd(ctx: Context, agent: str | None, as_json: bool) -> None:
    """List sessions, newest first."""
    from qqtui.core.profiles import migrate_all_legacy_histories
    from qqtui.core.sessions import list_sessions

    migrate_all_legacy_histories(ctx.settings.home)  # seed 000's single-file layout, once
    infos = list_sessions(ctx.settings.home, agent)
    summaries = ctx.snapshot().session_summaries()
    rows = []
    for info in infos:
        count, last_status, last_id = summaries.get(info.session_id, (0, "", 0))
        rows.append(
            {
                "session_id": info.session_id,
                "agent": info.agent,
                "path": str(info.path),
                "created_at": info.created_at,
                "size_bytes": info.size_bytes,
                "runs": count,
                "last_status": last_status or None,
                "last_run_id": last_id or None,
            }
        )
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no sessions", err=True)
        return
    now = time.time()
    click.echo(f"{'SESSION':<26} {'AGENT':<12} {'RUNS':>4}  {'LAST':<10} {'SIZE':>9}  AGE")
    for r in rows:
        click.echo(
            f"{plain_field(r['session_id']):<26} {plain_field(r['agent'])[:12]:<12} {r['runs']:>4}  "
            f"{(r['last_status'] or '-'):<10} {human_size(r['size_bytes']):>9}  "
            f"{presentation.duration(now - r['created_at']) if r['created_at'] else '-'}"
        )


@cli.group("worktrees", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def worktrees_cmd(click_ctx: click.Context, as_json: bool) -> None:
    """List the git worktrees of --worktree runs (see also: worktrees clean)."""
    if click_ctx.invoked_subcommand is not None:
        return
    from qqtui.core.workspaces import list_worktrees

    ctx: Context = click_ctx.obj
    infos = list_worktrees(ctx.snapshot().runs())
    if as_json:
        print_json([w.to_json() for w in infos])
        return
    if not infos:
        click.echo("no worktrees", err=True)
        return
    click.echo(f"{'RUN':>5}  {'STATUS':<10} {'STATE':<8} {'SIZE':>9}  {'BRANCH':<16} PATH")
    for w in infos:
        size = human_size(w.size) if w.state != "removed" else "-"
        click.echo(
            f"{w.run_id:>5}  {w.status:<10} {w.state:<8} {size:>9}  "
            f"{plain_field(w.branch):<16} {plain_field(w.path)}"
        )


@worktrees_cmd.command("clean")
@click.option(
    "--finished",
    "mode",
    flag_value="finished",
    default=True,
    help="Remove clean worktrees of finished runs; delete their branches if merged (default).",
)
@click.option(
    "--all",
    "mode",
    flag_value="all",
    help="Also discard uncommitted changes and delete unmerged branches.",
)
@pass_ctx
def worktrees_clean(ctx: Context, mode: str) -> None:
    """Remove worktrees of finished runs and prune git's records of them.

    Worktrees of queued or running runs are never touched. Branches (qqtui/<id>)
    outlive their worktrees; clean deletes them once merged into the repository's
    HEAD, or with --all, merged or not.
    """
    from qqtui.core.workspaces import clean_worktrees

    result = clean_worktrees(ctx.snapshot().runs(), everything=mode == "all")
    for path in result.removed:
        click.echo(f"removed {path}")
    for branch in result.deleted_branches:
        click.echo(f"deleted branch {branch}")
    for line in result.kept:
        click.echo(f"kept {line}", err=True)
    if not (result.removed or result.deleted_branches or result.kept):
        click.echo("nothing to clean", err=True)


@cli.group(invoke_without_command=True)
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=4, show_default=True, help="Runs at once."
)
@click.option("--until-idle", is_flag=True, help="Exit when nothing is queued or running.")
@click.option(
    "--exit-when-idle",
    type=click.FloatRange(min=0),
    default=None,
    metavar="S",
    help="Exit after S seconds with nothing queued or running while no app is open "
    "(the worker the app starts uses this; 0: never).",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.01),
    default=0.5,
    show_default=True,
    metavar="S",
    help="Seconds between polls of the job table.",
)
@click.option("--stop-runs", is_flag=True, help="On exit, stop runs instead of leaving them.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=DEFAULT_GRACE_S,
    show_default=True,
    metavar="S",
    help="Seconds between TERM and KILL for timeouts and --stop-runs.",
)
@click.option(
    "--log-cap",
    type=click.IntRange(min=1024),
    default=64 * 1024 * 1024,
    show_default=True,
    metavar="BYTES",
    help="Output kept per run.",
)
@click.option(
    "--retry-base",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    metavar="S",
    help="First retry delay; doubles per attempt, with jitter.",
)
@click.option(
    "--rescue-after",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    metavar="S",
    help="PostgreSQL: a worker silent this long is dead; its runs on any host become lost.",
)
@click.option(
    "--host",
    envvar="QQTUI_HOST",
    metavar="NAME",
    help="Host name recorded for this worker (env QQTUI_HOST, default the node name).",
)
@click.option("--boot-id", hidden=True, help="Pretend to be another boot (simulated hosts).")
@pass_ctx
def worker(
    ctx: Context,
    jobs: int,
    until_idle: bool,
    exit_when_idle: float | None,
    poll: float,
    stop_runs: bool,
    grace: float,
    log_cap: int,
    retry_base: float,
    rescue_after: float,
    host: str | None,
    boot_id: str | None,
) -> None:
    """Run the supervisor: claim queued runs and watch them.

    `qqtui worker stop` stops the workers of this home on this host."""
    if click.get_current_context().invoked_subcommand is not None:
        return
    import logging

    from qqtui.core.supervisor import Supervisor, SupervisorConfig

    logging.basicConfig(level=logging.INFO, format="qqtui worker: %(message)s", stream=sys.stderr)
    config = SupervisorConfig(
        concurrency=jobs,
        poll_s=poll,
        until_idle=until_idle,
        exit_when_idle_s=exit_when_idle or None,
        stop_runs_on_exit=stop_runs,
        kill_grace_s=grace,
        log_cap=log_cap,
        retry_base_s=retry_base,
        rescue_after_s=rescue_after,
    )
    supervisor = Supervisor(ctx.store(actor="worker", host=host), ctx.settings.home, config)
    if boot_id:
        supervisor.boot = boot_id
    sys.exit(supervisor.run_forever())


@worker.command("stop")
@click.option(
    "--stop-runs",
    is_flag=True,
    help="Cancel the runs the workers own first (TERM, grace, KILL), then stop them.",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=15.0,
    show_default=True,
    metavar="S",
    help="How long to wait for the workers (and with --stop-runs, their runs) to end.",
)
@pass_ctx
def worker_stop(ctx: Context, stop_runs: bool, wait_s: float) -> None:
    """Stop the live workers of this home on this host (SIGTERM, pid create time checked).

    Without --stop-runs a worker stops claiming and exits, but the runs it started keep
    running: they show as running and the next worker (the app starts one) adopts them
    and records their end. With --stop-runs they are cancelled first. Exits 1 if a
    worker is still alive after --wait."""
    from qqtui.core.workerctl import stop_workers

    store = ctx.store(actor="cli")
    results = stop_workers(store, stop_runs=stop_runs, timeout_s=wait_s)
    if not results:
        click.echo(f"no worker running for {plain_field(str(ctx.settings.home))}")
        return
    stuck = False
    for r in results:
        runs = f", cancelled run(s) {', '.join(map(str, r.cancelled))}" if r.cancelled else ""
        if r.stopped:
            click.echo(f"stopped worker {r.worker.id} (pid {r.worker.pid}){runs}")
        else:
            stuck = True
            click.echo(
                f"worker {r.worker.id} (pid {r.worker.pid}) is still running after {wait_s:g}s"
                f"{runs}"
            )
    if stuck:
        sys.exit(1)


# --- entry point -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; errors a user can cause become one line on stderr and exit 1 (2 for usage)."""
    try:
        cli.main(
            args=list(argv) if argv is not None else None, prog_name="qqtui", standalone_mode=False
        )
    except click.UsageError as exc:
        click.echo(f"qqtui: error: {plain_field(exc.format_message())}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"qqtui: error: {plain_field(exc.format_message())}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("qqtui: aborted", err=True)
        sys.exit(130)
    except QqError as exc:
        click.echo(f"qqtui: error: {plain_field(exc)}", err=True)
        sys.exit(1)
    except BrokenPipeError:
        # `qqtui ls | head`: the reader left; that is not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # database errors and the like: still one line, never a traceback
        from qqtui.core.snapshot import database_error_text

        cause = database_error_text(exc)  # the driver's own words, not SQLAlchemy's wrapper
        if cause is not None:
            click.echo(f"qqtui: error: database: {plain_field(cause)}", err=True)
            sys.exit(1)
        report_crash(exc)
        sys.exit(1)


def report_crash(exc: BaseException) -> None:
    """A bug, not the user's doing: the traceback goes to a file, one line to stderr."""
    from qqtui.config import resolve_home
    from qqtui.core.crashlog import format_crash, save_crash_report

    path = save_crash_report(resolve_home(_home_argument()), format_crash(exc))
    click.echo(
        f"qqtui: internal error: {type(exc).__name__}: {plain_field(exc)[:200]} "
        f"(traceback saved to {path})",
        err=True,
    )


def _home_argument() -> str | None:
    """--home as given on the command line (the crash may have come before it was parsed)."""
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg == "--home" and i + 1 < len(args):
            return args[i + 1] or None
        if arg.startswith("--home="):
            return arg.split("=", 1)[1] or None
    return None
