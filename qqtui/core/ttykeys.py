"""Keys as the bytes a terminal sends for them."""

from __future__ import annotations

# --- named keys for `qqtui send --key` ---------------------------------------------------
# What an xterm sends in its default (normal cursor key) mode; programs that switch to
# application cursor keys (DECCKM) accept these too.

KEY_BYTES: dict[str, bytes] = {
    "enter": b"\r",
    "escape": b"\x1b",
    "esc": b"\x1b",
    "tab": b"\t",
    "backspace": b"\x7f",
    "space": b" ",
    "up": b"\x1b[A",
    "down": b"\x1b[B",
    "right": b"\x1b[C",
    "left": b"\x1b[D",
    "home": b"\x1b[H",
    "end": b"\x1b[F",
    "pgup": b"\x1b[5~",
    "pgdn": b"\x1b[6~",
    "delete": b"\x1b[3~",
    "ctrl-]": b"\x1d",
    **{f"ctrl-{chr(c)}": bytes([c - ord("a") + 1]) for c in range(ord("a"), ord("z") + 1)},
}


def key_bytes(name: str) -> bytes:
    """The bytes for a key name (`ctrl-c`, `enter`, `up`, or one printable character:
    `y`, `1`); ValueError names some known keys."""
    if len(name) == 1 and name.isprintable():
        return name.encode()
    found = KEY_BYTES.get(name.lower())
    if found is None:
        raise ValueError(
            f"unknown key {name!r}: use ctrl-a..ctrl-z, ctrl-], enter, escape, tab, "
            "backspace, up, down, left, right, home, end, pgup, pgdn, delete, space, "
            "or one character"
        )
    return found
