"""Make untrusted run output safe for a terminal: SGR colour and style sequences stay,
every other control sequence goes (titles, clipboard writes, links, cursor moves,
screen clears, device queries, DCS/APC strings, C1 controls, resets)."""

from __future__ import annotations

import re

# One alternation, tried left to right at each escape or control character:
#  1. CSI (7-bit ESC[ or 8-bit 0x9b): params, intermediates, final byte
#  2. OSC / DCS / SOS / PM / APC strings, to BEL or ST, or to the end if unterminated
#  3. any other ESC + one character (ESC c, ESC 7, charset designations ...)
#  4. a lone ESC at the end, C1 controls, and C0 controls other than \t and \n
_CONTROL = re.compile(
    r"(?P<csi>(?:\x1b\[|\x9b)(?P<params>[0-?]*)(?P<inter>[ -/]*)(?P<final>[@-~])?)"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])(?:[^\x07\x1b\x9c]*)(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
    r"|[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]"
)
_SGR_PARAMS = re.compile(r"^[0-9;:]*$")


def _keep_sgr(match: re.Match[str]) -> str:
    if match.group("csi") is not None:
        final = match.group("final")
        if final == "m" and not match.group("inter") and _SGR_PARAMS.match(match.group("params")):
            return "\x1b[" + match.group("params") + "m"
    return ""


def keep_sgr_only(text: str) -> str:
    """`text` with every control sequence removed except SGR (which is normalised to 7-bit)."""
    return _CONTROL.sub(_keep_sgr, text)


def strip_all_escapes(text: str) -> str:
    """`text` with every control sequence removed, SGR included (for plain output)."""
    return _CONTROL.sub("", text)
