"""Turn untrusted run output into inert Rich `Text`: colours kept, everything else gone.

A run's output is written by programs we do not control. Passed to a terminal as
is, escape sequences could set the window title, write the clipboard (OSC 52),
plant hyperlinks, move the cursor, clear the screen or ask the terminal to answer
(DSR), and text like "[bold]" could be read as Rich markup. Here only SGR
sequences (`CSI ... m`: colours and text attributes) survive, and they are turned
into styles by Rich's ANSI decoder, never echoed. Markup is never parsed.
"""

from __future__ import annotations

import re

from rich.ansi import AnsiDecoder
from rich.text import Text

TAB_SIZE = 8

# One pass over the line finds every sequence or control character; whatever is
# not matched is plain text. Alternatives are tried in order, so SGR comes before
# the general CSI and the string-type sequences before the two-character escapes.
_CONTROL = re.compile(
    r"""
    (?P<sgr>\x1b\[[0-9;:]{0,256}m)                        # SGR: kept
    |(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?   # other CSI (or cut short)
    |(?:\x1b\]|\x9d).*?(?:\x07|\x1b\\|\x9c|\Z)             # OSC, ended by BEL or ST
    |(?:\x1b[P_^X]|[\x90\x98\x9e\x9f]).*?(?:\x1b\\|\x9c|\Z)  # DCS, APC, PM, SOS
    |\x1b[\x20-\x2f]*[\x30-\x7e]?                        # ESC c, ESC 7, ESC ( B, ...
    |[\x00-\x08\x0a-\x1a\x1c-\x1f\x7f-\x9f\u2028\u2029]  # C0 (not tab), DEL, C1
    """,
    re.VERBOSE | re.DOTALL,
)
# Everything the pattern above could match starts with one of these, so a line
# without any of them is plain text and takes the fast path.
_NEEDS_WORK = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# Rich's decoder turns each SGR parameter into an int; bound their length so a
# hostile "\x1b[999...9m" cannot trip int()'s digit limit or waste time.
_SGR_PARAM_MAX_DIGITS = 8


def strip_controls(line: str) -> str:
    """`line` with every escape sequence and control character except tab removed."""
    if not _NEEDS_WORK.search(line):
        return line
    return _CONTROL.sub("", line)


def sanitize_line(data: str | bytes, *, tab_size: int = TAB_SIZE) -> Text:
    """Render one line of untrusted output as `Text` with only its SGR styles.

    Bytes are decoded as UTF-8 with invalid sequences replaced. Newlines are
    removed (this is one display line). Never raises.
    """
    line = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if not _NEEDS_WORK.search(line):
        text = Text(line, end="", no_wrap=True)
    else:
        text = _decode(_keep_only_sgr(line))
    if "\t" in text.plain:
        text.expand_tabs(tab_size)
    return text


def _keep_only_sgr(line: str) -> str:
    def keep(match: re.Match[str]) -> str:
        sgr = match.group("sgr")
        if sgr is None:
            return ""
        params = sgr[2:-1].replace(":", ";").split(";")
        if any(len(param) > _SGR_PARAM_MAX_DIGITS for param in params):
            return ""
        return sgr

    return _CONTROL.sub(keep, line)


def _decode(sanitized: str) -> Text:
    """Styles from the SGR sequences of an already sanitized line."""
    try:
        text = AnsiDecoder().decode_line(sanitized)
    except Exception:
        # Rich's decoder is lenient, but this is untrusted input and one bad line
        # must not take the app down: show its text without styles instead.
        text = Text(_CONTROL.sub("", sanitized))
    text.end = ""
    text.no_wrap = True
    return text
