"""Where qqtui keeps its state: the home directory and the database URL. No I/O at import."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOME_ENV = "QQ_HOME"
DB_ENV = "QQTUI_DB"
DEFAULT_HOME = "~/.qq"


@dataclass(frozen=True, slots=True)
class Settings:
    home: Path
    db_url: str

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The home from the argument, else `QQ_HOME`, else `~/.qq`, made absolute."""
    raw = os.fspath(home) if home else os.environ.get(HOME_ENV) or DEFAULT_HOME
    return Path(raw).expanduser().absolute()


def sqlite_path(url: str) -> Path | None:
    """The file a `sqlite:///PATH` URL names; None for other databases and in-memory ones."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    raw = url[len(prefix) :].split("?", 1)[0]
    if raw in ("", ":memory:"):
        return None
    return Path(raw)


def default_db_url(home: Path) -> str:
    return f"sqlite:///{home / 'qqtui.db'}"


def resolve_settings(home: str | os.PathLike[str] | None = None, db: str | None = None) -> Settings:
    """Settings from explicit values, then the environment, then defaults."""
    home_path = resolve_home(home)
    return Settings(
        home=home_path, db_url=db or os.environ.get(DB_ENV) or default_db_url(home_path)
    )


TUI_TABLE = "tui"
DEFAULT_DETACH_KEY = "ctrl+]"
_KEY_RE = r"^(?:(?:ctrl|alt|shift|meta)\+)*(?:[!-~]|[a-z_0-9]{2,32})$"

NOTIFY_KINDS: dict[object, tuple[str, ...]] = {
    False: (),
    True: ("osc9",),
    "osc9": ("osc9",),
    "osc777": ("osc777",),
    "both": ("osc9", "osc777"),
}
"""`[tui] notify` in config.toml, as the escape sequences the app sends (see
qqtui/tui/desktop_notify.py): true is OSC 9, the one most terminals read."""


def _tui_table(home: Path) -> tuple[Path, dict[str, Any]]:
    """The `[tui]` table of `<home>/config.toml` ({} when the file or table is absent);
    QqError naming the file when it cannot be read."""
    import tomllib

    from qqtui.core.errors import QqError

    path = home / "config.toml"
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return path, {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise QqError(f"{path}: cannot read it: {exc}") from exc
    table = doc.get(TUI_TABLE, {})
    return path, table if isinstance(table, dict) else {}


def tui_notify(home: Path) -> tuple[str, ...]:
    """The desktop notifications `[tui] notify` of `<home>/config.toml` asks for (none
    when the file or the key is absent); a wrong value is a QqError naming the file."""
    from qqtui.core.errors import QqError

    path, tui = _tui_table(home)
    value = tui.get("notify", False)
    kinds = NOTIFY_KINDS.get(value) if isinstance(value, bool | str) else None
    if kinds is None:
        raise QqError(
            f'{path}: [tui] notify must be true, false, "osc9", "osc777" or "both", not {value!r}'
        )
    return kinds


def detach_key(home: Path) -> str:
    """`[tui] detach_key` of `<home>/config.toml` (ctrl+] when absent): the key that
    leaves an attached run's terminal. ValueError names the file for a bad value."""
    import re

    from qqtui.core.errors import QqError

    try:
        path, table = _tui_table(home)
    except QqError as exc:
        raise ValueError(str(exc)) from None
    key = table.get("detach_key", DEFAULT_DETACH_KEY)
    if not isinstance(key, str) or not re.match(_KEY_RE, key):
        raise ValueError(f'{path}: [tui] detach_key must be a key such as "ctrl+]", not {key!r}')
    return key
