"""A line of untrusted run output as inert Rich `Text`: its colours as styles, nothing else.

A run's output is written by programs we do not control. Passed to a terminal as
is, escape sequences could set the window title, write the clipboard (OSC 52),
plant hyperlinks, move the cursor, clear the screen or ask the terminal to answer
(DSR), and text like "[bold]" could be read as Rich markup. Core's one sanitiser
(`qqtui.core.termtext`) keeps only SGR sequences (`CSI ... m`: colours and text
attributes); here Rich's ANSI decoder turns them into styles, never echoed. Markup is
never parsed.
"""

from __future__ import annotations

from rich.ansi import AnsiDecoder
from rich.text import Text

from qqtui.core.termtext import NEEDS_WORK_RE, keep_sgr_only, plain_text

TAB_SIZE = 8


def sanitize_line(data: str | bytes, *, tab_size: int = TAB_SIZE) -> Text:
    """Render one line of untrusted output as `Text` with only its SGR styles.

    Bytes are decoded as UTF-8 with invalid sequences replaced. Newlines are
    removed (this is one display line). Never raises.
    """
    line = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if not NEEDS_WORK_RE.search(line):
        text = Text(line, end="", no_wrap=True)
    else:
        text = _decode(keep_sgr_only(line).replace("\n", ""))
    if "\t" in text.plain:
        text.expand_tabs(tab_size)
    return text


def _decode(sanitized: str) -> Text:
    """Styles from the SGR sequences of an already sanitized line."""
    try:
        text = AnsiDecoder().decode_line(sanitized)
    except Exception:
        # Rich's decoder is lenient, but this is untrusted input and one bad line
        # must not take the app down: show its text without styles instead.
        text = Text(plain_text(sanitized))
    text.end = ""
    text.no_wrap = True
    return text
