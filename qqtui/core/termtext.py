"""The one sanitiser for untrusted text on its way to a terminal: run output, and every
name, reason, progress message, host, note or history line that a run or a user wrote.

SGR colour and style sequences may stay (`keep_sgr_only`); every other control
sequence goes: titles (OSC 0/2, and screen's `ESC k ... ESC \\`), clipboard writes
(OSC 52), hyperlinks (OSC 8), cursor moves, screen clears, device queries, DCS/APC/PM/SOS
strings, C1 controls, resets, and the bidi overrides that make a line read other than
it is (U+202A-U+202E, U+2066-U+2069). A one-line field (`plain_field`) keeps no
escape at all and no line break, so it cannot shift a table's columns; `plain_line`
drops line breaks but keeps tabs, for a cell that folds long values itself.
The app turns what `keep_sgr_only` keeps into Rich styles (`qqtui.tui.output_text`).
"""

from __future__ import annotations

import re

# One pass over the text finds every sequence or control character; whatever is not
# matched is plain text. Alternatives are tried in order, so SGR comes before the
# general CSI and the string-type sequences before the two-character escapes. Tab and
# newline are text here: a caller drawing one line decides what they become.
CONTROL_RE = re.compile(
    r"""
    (?P<sgr>\x1b\[[0-9;:]{0,256}m)                          # SGR: kept by keep_sgr_only
    |(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?     # other CSI (or cut short)
    |(?:\x1b\]|\x9d).*?(?:\x07|\x1b\\|\x9c|\Z)               # OSC, ended by BEL or ST
    |(?:\x1b[P_^Xk]|[\x90\x98\x9e\x9f]).*?(?:\x1b\\|\x9c|\Z)  # DCS APC PM SOS, screen title
    |\x1b[\x20-\x2f]*[\x30-\x7e]?                          # ESC c, ESC 7, ESC ( B, ...
    |[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]
    """,
    re.VERBOSE | re.DOTALL,
)
# Everything CONTROL_RE could match starts with one of these (newline included, for
# callers that drop it), so text without any of them takes the fast path.
NEEDS_WORK_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# Rich's decoder and terminals turn each SGR parameter into an int; bound their length
# so a hostile "\x1b[999...9m" cannot trip int()'s digit limit or waste time.
SGR_PARAM_MAX_DIGITS = 8


def _keep_sgr(match: re.Match[str]) -> str:
    sgr = match.group("sgr")
    if sgr is None:
        return ""
    params = sgr[2:-1].replace(":", ";").split(";")
    if any(len(param) > SGR_PARAM_MAX_DIGITS for param in params):
        return ""
    return sgr


def keep_sgr_only(text: str) -> str:
    """`text` with every control sequence removed except SGR; tabs and newlines stay."""
    if not NEEDS_WORK_RE.search(text):
        return text
    return CONTROL_RE.sub(_keep_sgr, text)


def plain_text(value: object) -> str:
    """Untrusted text with no escape of any kind; its tabs and line breaks stay."""
    text = value if isinstance(value, str) else str(value)
    if not NEEDS_WORK_RE.search(text):
        return text
    return CONTROL_RE.sub("", text)


def plain_field(value: object) -> str:
    """One display line of untrusted text: no escape of any kind, no line break, no tab."""
    text = plain_text(value)
    if "\n" in text or "\t" in text:
        return text.replace("\n", " ").replace("\t", " ")
    return text


def plain_line(value: object) -> str:
    """Untrusted text as one line: no escape of any kind, line breaks dropped, tabs kept."""
    text = plain_text(value)
    return text.replace("\n", "") if "\n" in text else text
