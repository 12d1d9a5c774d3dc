r"""Agent profiles from `<home>/config.toml`, and migration of seed 000's single-file history.

```toml
[agents.qq]
description = "the qq coding agent"
command = ["qq", "-m", "{args}"]            # what `qqtui add --agent qq -- ARGS...` runs
resume = ["qq", "--session", "{session_id}"] # what `qqtui resume` runs
timeout = 3600                               # seconds; kill the tree after this
hung_after = 600                             # seconds without output or heartbeat
env = { QQ_MODEL = "small" }
tty = true                                   # on a pseudo-terminal (attach, send, live screen)
tty_size = "120x40"                          # its COLSxROWS until a viewer resizes it
waiting_patterns = ['\[y/n\]', "Do you want to"]  # screen lines that mean "needs you"
```

Template semantics (command and resume):
- An element that is exactly `"{args}"` is replaced by the user's ARGS, spliced in as
  separate elements (zero or more). `{args}` inside a longer element is an error.
- A template without an `"{args}"` element gets the ARGS appended at its end, so
  `command = ["qq"]` acts as a prefix.
- In any element, `{session_id}`, `{session_dir}`, `{home}` and `{agent}` are replaced by
  their values; `{{` and `}}` are literal braces. Any other placeholder is an error when
  the file is loaded, not when a run starts. The run id is not known when a command is
  built; a run reads it from `QQ_RUN_ID`.
- No `command`: ARGS are run as given. No `resume`: the session's last argv is rerun
  (with `QQ_SESSION_ID` set by qqtui), or, when new ARGS are given, the command template.

Only the `agents` table is checked here; other top-level tables belong to other parts
of qqtui. Inside `[agents.NAME]` unknown keys and wrong types are errors that name the
file, the line and the key.
"""

from __future__ import annotations

import math
import os
import re
import string
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qqtui.core.records import QqError
from qqtui.core.runspec import parse_tty_size
from qqtui.core.sessions import (
    AGENT_RE,
    META_FILE,
    atomic_write_bytes,
    atomic_write_json,
    create_session_dir,
    locked,
    new_session_id,
    read_json,
    session_dir,
    validate_agent,
)

CONFIG_FILE = "config.toml"
ARGS_ELEMENT = "{args}"
PLACEHOLDERS = frozenset({"session_id", "session_dir", "home", "agent"})
PROFILE_KEYS = frozenset(
    {
        "description",
        "command",
        "resume",
        "timeout",
        "hung_after",
        "env",
        "tty",
        "tty_size",
        "waiting_patterns",
    }
)
# What a prompt for its user looks like on a tty run's screen, for profiles naming
# none (regular expressions, matched against the last lines of the emulated screen).
DEFAULT_WAITING_PATTERNS: tuple[str, ...] = (
    r"(?i)[\[(]y(?:es)?/no?[\])]",  # [y/n] (Y/n) [yes/no]
    r"Do you want to",
    r"(?i)press enter to continue",
)
# qqtui sets these for every run; a profile overriding them would break the contract.
RESERVED_ENV = frozenset(
    {"QQ_HOME", "QQ_SESSION_ID", "QQ_SESSION_DIR", "QQ_RUN_ID", "QQ_HEARTBEAT_FILE", "QQ_ATTEMPT"}
)
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

LEGACY_FILES = ("history.json", "files_state.json")
MIGRATED_MARKER = ".migrated.json"


class ProfileError(QqError):
    """config.toml is wrong; the message names the file, the line and the key."""

    def __init__(self, path: Path, line: int | None, key: str | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.problem = problem
        where = f"{path}:{line}" if line else str(path)
        what = f"{key}: " if key else ""
        super().__init__(f"{where}: {what}{problem}")


def _expand(element: str, values: Mapping[str, str]) -> str:
    out: list[str] = []
    for literal, name, _spec, _conv in string.Formatter().parse(element):
        out.append(literal)
        if name is not None:
            out.append(values[name])
    return "".join(out)


def _check_template_element(element: str) -> str | None:
    """Why `element` is not a valid template element, or None when it is."""
    if element == ARGS_ELEMENT:
        return None
    try:
        parsed = list(string.Formatter().parse(element))
    except ValueError as exc:
        return f"bad braces in {element!r} ({exc}); write {{{{ and }}}} for literal braces"
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if name == "args":
            return f"{{args}} must be a whole element of its own, not part of {element!r}"
        if name not in PLACEHOLDERS or spec or conversion:
            known = ", ".join(sorted(f"{{{p}}}" for p in (*PLACEHOLDERS, "args")))
            return f"unknown placeholder in {element!r}; known: {known}"
    return None


def expand_template(
    template: Sequence[str], args: Sequence[str], values: Mapping[str, str]
) -> list[str]:
    """Apply the template semantics of this module to one argv template."""
    argv: list[str] = []
    spliced = False
    for element in template:
        if element == ARGS_ELEMENT:
            argv.extend(args)
            spliced = True
        else:
            argv.append(_expand(element, values))
    if not spliced:
        argv.extend(args)
    return argv


@dataclass(frozen=True, slots=True)
class AgentProfile:
    """How to start and resume one agent; an agent absent from config.toml gets defaults."""

    name: str
    command: tuple[str, ...] | None = None
    resume: tuple[str, ...] | None = None
    timeout: float | None = None
    hung_after: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    configured: bool = False
    tty: bool = False
    tty_size: tuple[int, int] | None = None
    waiting_patterns: tuple[str, ...] = DEFAULT_WAITING_PATTERNS

    def _values(self, home: Path, session_id: str) -> dict[str, str]:
        return {
            "session_id": session_id,
            "session_dir": str(session_dir(home, self.name, session_id)),
            "home": str(home),
            "agent": self.name,
        }

    def build_command(self, args: Sequence[str], *, home: Path, session_id: str) -> list[str]:
        """The argv of a new run: the command template applied to the user's ARGS."""
        if self.command is None:
            if not args:
                raise QqError(
                    f"agent {self.name!r} has no command in {CONFIG_FILE}: give one after --"
                )
            return list(args)
        return expand_template(self.command, args, self._values(home, session_id))

    def build_resume(
        self,
        session_id: str,
        last_argv: Sequence[str] | None,
        *,
        home: Path,
        args: Sequence[str] = (),
    ) -> list[str]:
        """The argv that resumes a session (a new run in it).

        With a resume template: the template, `{args}` being the extra ARGS given to
        resume. Without one: the extra ARGS through the command template when given,
        else the session's last argv.
        """
        if self.resume is not None:
            return expand_template(self.resume, args, self._values(home, session_id))
        if args:
            return self.build_command(args, home=home, session_id=session_id)
        if not last_argv:
            raise QqError(
                f"cannot resume session {session_id}: it has no previous command and agent "
                f"{self.name!r} has no resume template in {CONFIG_FILE}"
            )
        return list(last_argv)


def config_path(home: Path) -> Path:
    return home / CONFIG_FILE


def load_profiles(home: Path) -> dict[str, AgentProfile]:
    """Every `[agents.NAME]` profile of `<home>/config.toml` (none when the file is absent)."""
    path = config_path(home)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ProfileError(path, None, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ProfileError(path, line, None, "not valid UTF-8") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib (3.11-3.13) puts the position only in the message: "... (at line 3, column 9)".
        m = re.search(r"at line (\d+)", str(exc))
        raise ProfileError(
            path, int(m.group(1)) if m else None, None, f"invalid TOML: {exc}"
        ) from exc
    return _parse_agents(doc, text, path)


def profile_for(home: Path, agent: str) -> AgentProfile:
    """The configured profile of `agent`, or a pass-through one when it has none."""
    validate_agent(agent)
    return load_profiles(home).get(agent) or AgentProfile(name=agent)


def _parse_agents(doc: dict[str, Any], text: str, path: Path) -> dict[str, AgentProfile]:
    agents = doc.get("agents", {})

    def fail(
        name: str | None, key: str | None, problem: str, sub: str | None = None
    ) -> ProfileError:
        dotted = ".".join(p for p in ("agents", name, key) if p)
        return ProfileError(path, find_key_line(text, name, key, sub), dotted, problem)

    if not isinstance(agents, dict):
        raise fail(None, None, "must be a table of [agents.NAME] profiles")
    profiles: dict[str, AgentProfile] = {}
    for name, table in agents.items():
        if not AGENT_RE.match(name):
            raise fail(name, None, "agent names use letters, digits, '.', '_' or '-' (max 64)")
        if not isinstance(table, dict):
            raise fail(name, None, "must be a table ([agents.NAME]) of profile keys")
        for key in table:
            if key not in PROFILE_KEYS:
                raise fail(name, key, f"unknown key; known: {', '.join(sorted(PROFILE_KEYS))}")
        templates: dict[str, tuple[str, ...] | None] = {}
        for key in ("command", "resume"):
            value = table.get(key)
            if value is None:
                templates[key] = None
                continue
            if not isinstance(value, list) or not value:
                raise fail(name, key, "must be a non-empty list of strings")
            for element in value:
                if not isinstance(element, str):
                    raise fail(name, key, f"must be a list of strings, found {element!r}")
                problem = _check_template_element(element)
                if problem:
                    raise fail(name, key, problem)
            templates[key] = tuple(value)
        seconds: dict[str, float | None] = {}
        for key in ("timeout", "hung_after"):
            value = table.get(key)
            if value is None:
                seconds[key] = None
                continue
            is_number = isinstance(value, int | float) and not isinstance(value, bool)
            if not is_number or not math.isfinite(value) or value <= 0:
                raise fail(name, key, f"must be a positive number of seconds, got {value!r}")
            seconds[key] = float(value)
        env = table.get("env", {})
        if not isinstance(env, dict):
            raise fail(name, "env", 'must be a table of NAME = "value" strings')
        for env_name, env_value in env.items():
            if not ENV_NAME_RE.match(env_name):
                raise fail(
                    name, "env", f"{env_name!r} is not a valid environment variable name", env_name
                )
            if env_name in RESERVED_ENV:
                raise fail(name, "env", f"{env_name} is set by qqtui for every run", env_name)
            if not isinstance(env_value, str):
                raise fail(name, "env", f"{env_name} must be a string, got {env_value!r}", env_name)
        description = table.get("description", "")
        if not isinstance(description, str):
            raise fail(name, "description", f"must be a string, got {description!r}")
        tty = table.get("tty", False)
        if not isinstance(tty, bool):
            raise fail(name, "tty", f"must be true or false, got {tty!r}")
        tty_size = None
        if "tty_size" in table:
            value = table["tty_size"]
            if not isinstance(value, str):
                raise fail(name, "tty_size", f'must be a string like "120x40", got {value!r}')
            try:
                tty_size = parse_tty_size(value)
            except ValueError as exc:
                raise fail(name, "tty_size", str(exc)) from exc
        patterns = table.get("waiting_patterns", DEFAULT_WAITING_PATTERNS)
        if not isinstance(patterns, list | tuple) or not all(isinstance(p, str) for p in patterns):
            raise fail(name, "waiting_patterns", "must be a list of regular expressions")
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise fail(
                    name, "waiting_patterns", f"{pattern!r} is not a regular expression: {exc}"
                ) from exc
        profiles[name] = AgentProfile(
            name=name,
            command=templates["command"],
            resume=templates["resume"],
            timeout=seconds["timeout"],
            hung_after=seconds["hung_after"],
            env=dict(env),
            description=description,
            configured=True,
            tty=tty,
            tty_size=tty_size,
            waiting_patterns=tuple(patterns),
        )
    return profiles


def _name_pattern(name: str) -> str:
    # A TOML key may be bare or quoted.
    return rf"""(?:{re.escape(name)}|"{re.escape(name)}"|'{re.escape(name)}')"""


def find_key_line(
    text: str, agent: str | None, key: str | None, sub: str | None = None
) -> int | None:
    """Best-effort 1-based line of `agents.<agent>.<key>[.<sub>]` in TOML text, or None.

    tomllib returns plain dicts without positions, so for semantic errors we scan the
    text for the forms TOML allows: `[agents.NAME]` then `key = ...` (or dotted
    `key.sub = ...`) up to the next header; a `[agents.NAME.key]` sub-table then
    `sub = ...`; dotted `agents.NAME.key = ...` / `NAME.key = ...`; an inline table
    `NAME = { ... }` under `[agents]`.
    """
    lines = text.splitlines()
    sep = r"\s*\.\s*"
    if agent is None:
        pattern = re.compile(r"^\s*(\[\s*agents\s*[.\]]|agents\s*[.=])")
        return next((i + 1 for i, line in enumerate(lines) if pattern.match(line)), None)
    any_header = re.compile(r"^\s*\[")

    def header_line(*parts: str) -> int | None:
        pattern = re.compile(
            rf"^\s*\[\s*agents{sep}" + sep.join(_name_pattern(p) for p in parts) + r"\s*\]"
        )
        return next((i for i, line in enumerate(lines) if pattern.match(line)), None)

    def in_section(start: int, *patterns: str) -> int | None:
        # First line after header `start` (before the next header) matching a pattern,
        # trying the patterns in order of precision.
        for form in patterns:
            pattern = re.compile(form)
            for j in range(start + 1, len(lines)):
                if any_header.match(lines[j]):
                    break
                if pattern.match(lines[j]):
                    return j + 1
        return None

    name = _name_pattern(agent)
    header_at = header_line(agent)
    if key is None:
        if header_at is not None:
            return header_at + 1
    else:
        k = _name_pattern(key)
        if header_at is not None:
            forms = [rf"^\s*{k}{sep}{_name_pattern(sub)}\s*="] if sub else []
            found = in_section(header_at, *forms, rf"^\s*{k}\s*[=.]")
            if found:
                return found
        sub_table = header_line(agent, key)
        if sub_table is not None:
            forms = [rf"^\s*{_name_pattern(sub)}\s*="] if sub else []
            return in_section(sub_table, *forms) or sub_table + 1
        for form in (
            rf"^\s*(?:agents{sep})?{name}{sep}{k}{sep}{_name_pattern(sub)}\s*=" if sub else None,
            rf"^\s*(?:agents{sep})?{name}{sep}{k}\s*[=.]",
        ):
            if form:
                pattern = re.compile(form)
                for i, line in enumerate(lines):
                    if pattern.match(line):
                        return i + 1
    inline = re.compile(rf"^\s*(?:agents{sep})?{name}\s*=")  # `qq = { ... }`
    for i, line in enumerate(lines):
        if inline.match(line):
            return i + 1
    return header_at + 1 if header_at is not None else None


def migrate_legacy_history(home: Path, agent: str, now: float | None = None) -> Path | None:
    """Copy seed 000's `<home>/<agent>/history.json` into a new session, once.

    The original stays untouched. `<home>/<agent>/.migrated.json` records the session id
    before copying (so a crash midway finishes into the same session next time, never a
    second one) and `complete` after; the whole step runs under that marker's lock, so two
    processes doing it at once migrate once. Returns the new session dir when this call
    migrated, else None (nothing to migrate, or done before).
    """
    validate_agent(agent)
    agent_dir = home / agent
    legacy = agent_dir / LEGACY_FILES[0]
    if not legacy.is_file() or legacy.is_symlink():
        return None
    marker = agent_dir / MIGRATED_MARKER
    if _migration_complete(marker):
        return None  # the common case, without taking the lock (the marker is atomic)
    with locked(marker):
        if _migration_complete(marker):
            return None
        state = read_json(marker, None)
        if isinstance(state, dict) and isinstance(state.get("session_id"), str):
            session_id = state["session_id"]
        else:
            session_id = new_session_id(now)
        started = time.time() if now is None else now
        atomic_write_json(
            marker, {"session_id": session_id, "source": str(legacy), "complete": False}
        )
        path = create_session_dir(home, agent, session_id)
        for name in LEGACY_FILES:
            source = agent_dir / name
            if source.is_file() and not source.is_symlink():
                # Byte for byte: a corrupt legacy file stays visible as it was.
                atomic_write_bytes(path / name, source.read_bytes())
        atomic_write_json(
            path / META_FILE,
            {
                "session_id": session_id,
                "agent": agent,
                "created_at": os.stat(legacy).st_mtime,
                "origin": "migrated",
                "migrated_from": str(legacy),
                "migrated_at": started,
            },
        )
        atomic_write_json(
            marker,
            {
                "session_id": session_id,
                "source": str(legacy),
                "complete": True,
                "migrated_at": started,
            },
        )
        return path


def _migration_complete(marker: Path) -> bool:
    state = read_json(marker, None)
    return isinstance(state, dict) and state.get("complete") is True


def migrate_all_legacy_histories(home: Path) -> list[Path]:
    """Run `migrate_legacy_history` for every agent directory under home."""
    migrated: list[Path] = []
    try:
        entries = sorted(os.scandir(home), key=lambda e: e.name)
    except FileNotFoundError:
        return migrated
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and AGENT_RE.match(entry.name):
            path = migrate_legacy_history(home, entry.name)
            if path is not None:
                migrated.append(path)
    return migrated
