"""Keys as the bytes a terminal sends for them: named keys for `qqtui send --key`, and
the app's key events for an attached run (Textual's `key` name and `character`; no
Textual import here)."""

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


# -- Textual key events to terminal bytes (the attached view) ----------------------
# xterm's encoding, as a program on an xterm-256color terminal expects it. Arrows and
# home/end go as SS3 ("ESC O A") when the program turned on application cursor keys
# (DECCKM, mode 1), as readline and full-screen programs do, else as CSI ("ESC [ A").

_CURSOR_FINAL = {"up": "A", "down": "B", "right": "C", "left": "D", "home": "H", "end": "F"}
_TILDE_CODE = {"insert": 2, "delete": 3, "pageup": 5, "pagedown": 6}
_FUNCTION_KEYS = {
    "f1": "\x1bOP",
    "f2": "\x1bOQ",
    "f3": "\x1bOR",
    "f4": "\x1bOS",
    "f5": "\x1b[15~",
    "f6": "\x1b[17~",
    "f7": "\x1b[18~",
    "f8": "\x1b[19~",
    "f9": "\x1b[20~",
    "f10": "\x1b[21~",
    "f11": "\x1b[23~",
    "f12": "\x1b[24~",
}
_PLAIN_KEYS = {
    "enter": "\r",
    "tab": "\t",
    "shift+tab": "\x1b[Z",
    "backspace": "\x7f",
    "ctrl+h": "\x08",
    "escape": "\x1b",
    "space": " ",
    "ctrl+space": "\x00",
    "ctrl+@": "\x00",
    "ctrl+left_square_bracket": "\x1b",
    "ctrl+backslash": "\x1c",
    "ctrl+right_square_bracket": "\x1d",
    "ctrl+circumflex_accent": "\x1e",
    "ctrl+underscore": "\x1f",
}
# xterm's modifier parameter: 1 + shift(1) + alt(2) + ctrl(4).
_MODIFIER_BITS = {"shift": 1, "alt": 2, "meta": 2, "ctrl": 4}
BRACKETED_PASTE_START = b"\x1b[200~"
BRACKETED_PASTE_END = b"\x1b[201~"


def encode_key(key: str, character: str | None, *, app_cursor: bool) -> bytes | None:
    """The bytes an xterm sends for Textual key `key` (with its `character`), or None
    for a key that has no terminal encoding."""
    if key in _PLAIN_KEYS:
        return _PLAIN_KEYS[key].encode()
    *mods, base = key.split("+")
    modifier = 1 + sum(_MODIFIER_BITS.get(m, 0) for m in mods)
    if any(m not in _MODIFIER_BITS for m in mods):
        return None
    if base in _CURSOR_FINAL:
        final = _CURSOR_FINAL[base]
        if modifier > 1:
            return f"\x1b[1;{modifier}{final}".encode()
        return f"\x1b{'O' if app_cursor else '['}{final}".encode()
    if base in _TILDE_CODE:
        code = _TILDE_CODE[base]
        return (f"\x1b[{code};{modifier}~" if modifier > 1 else f"\x1b[{code}~").encode()
    if base in _FUNCTION_KEYS:
        return _FUNCTION_KEYS[base].encode() if modifier == 1 else None
    alt = [m for m in mods if m in ("alt", "meta")]
    if alt:
        # alt+x is ESC then x, as xterm sends it with metaSendsEscape.
        rest = "+".join([*(m for m in mods if m not in alt), base])
        inner = encode_key(rest, _alt_character(rest, character), app_cursor=app_cursor)
        return b"\x1b" + inner if inner is not None else None
    if mods == ["ctrl"] and len(base) == 1 and base.isascii() and base.isalpha():
        return bytes([ord(base.lower()) & 0x1F])
    if character is not None and len(character) == 1:
        if character.isprintable():
            return character.encode()
        if ord(character) < 0x20 and not mods[1:]:
            return character.encode()  # another C0 control Textual named (ctrl+4, ...)
    if not mods and len(base) == 1 and base.isprintable():
        return base.encode()
    return None


def _alt_character(key: str, character: str | None) -> str | None:
    """What alt+KEY's key alone would have typed."""
    if len(key) == 1:
        return key
    if key.startswith("shift+") and len(key) == 7:
        return key[-1].upper()
    return character if character and not character.startswith("\x1b") else None


def encode_paste(text: str, bracketed: bool) -> bytes:
    """A paste as the terminal sends it: wrapped in ESC[200~ ... ESC[201~ when the
    program turned bracketed paste on (mode 2004), with line breaks as carriage returns.
    The end marker is removed from the text, so a paste cannot end the paste early."""
    data = text.replace("\r\n", "\r").replace("\n", "\r").encode()
    if not bracketed:
        return data
    data = data.replace(BRACKETED_PASTE_END, b"")
    return BRACKETED_PASTE_START + data + BRACKETED_PASTE_END
