"""Desktop notifications through the terminal: OSC 9 (iTerm2, WezTerm, kitty, foot,
Windows Terminal, ConEmu) and OSC 777 (urxvt, VTE terminals, WezTerm, Ghostty).

The text is a run's words (untrusted), and it is written inside an escape sequence
to the user's terminal, so it is cut down to printable characters first: no C0 or
C1 control (BEL and ST end an OSC early; ESC starts another sequence), no Unicode
format or line/paragraph separators, and no `;`, which separates OSC 777's fields
(and makes ConEmu read `9;4;...` as a progress command).
"""

from __future__ import annotations

import unicodedata

from qqtui.core.termtext import plain_field

NOTIFICATION_MAX_CHARS = 160
"""Terminals show a line or two; the rest of a long reason is in the app."""
# Unicode categories dropped: controls, format (bidi overrides, zero-width joiners),
# surrogates, private use, unassigned, line and paragraph separators.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def notification_text(text: object, limit: int = NOTIFICATION_MAX_CHARS) -> str:
    """`text` as one safe field of an OSC notification, at most `limit` characters."""
    plain = plain_field(text)
    kept = "".join(
        "," if ch == ";" else ch
        for ch in plain
        if unicodedata.category(ch) not in _DROPPED_CATEGORIES
    )
    kept = " ".join(kept.split())
    if len(kept) > limit:
        kept = kept[: limit - 1].rstrip() + "…"
    return kept


def osc_notification(title: str, body: str, kinds: tuple[str, ...] = ("osc9",)) -> str:
    """The sequences (`kinds`: "osc9", "osc777") that show `title`/`body` as a desktop
    notification, each BEL-terminated; every field sanitised. Terminals that read both
    (WezTerm, Ghostty) show one notification per sequence, hence the choice."""
    safe_title = notification_text(title, 40) or "qqtui"
    safe_body = notification_text(body)
    out = []
    if "osc9" in kinds:
        out.append(f"\x1b]9;{safe_title}: {safe_body}\x07")
    if "osc777" in kinds:
        out.append(f"\x1b]777;notify;{safe_title};{safe_body}\x07")
    return "".join(out)
