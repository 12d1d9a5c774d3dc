"""The one sanitiser (qqtui.core.termtext): what may reach a terminal from untrusted text."""

from __future__ import annotations

import random

import pytest

from qqtui.core.termtext import CONTROL_RE, keep_sgr_only, plain_field, plain_text

HOSTILE = [
    ("nm\x1b]2;NAMEPWN\x1b\\x", "nmx"),  # OSC 2 title, ST-terminated
    ("a\x1b]0;T\x07b", "ab"),  # OSC 0, BEL-terminated
    ("a\x1b]52;c;Zm9v\x07b", "ab"),  # clipboard write
    ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),  # hyperlink
    ("a\x1bkSCREENTITLE\x1b\\b", "ab"),  # screen's title string, like an OSC
    ("a\x1bkunterminated", "a"),
    ("a\x1bP1$qm\x1b\\b", "ab"),  # DCS query
    ("a\x1b[2Jb\x1b[Hc", "abc"),  # clear, home
    ("a\x9b2Jb", "ab"),  # 8-bit CSI
    ("a\x9d0;T\x9cb", "ab"),  # 8-bit OSC
    ("abc\u202edcba\u202c", "abcdcba"),  # bidi override and pop
    ("x\u2066y\u2067z\u2068w\u2069", "xyzw"),  # bidi isolates
    ("a\x1bcb", "ab"),  # reset
    ("a\rb\x08c\x00d\x7f", "abcd"),
]


@pytest.mark.parametrize(("raw", "plain"), HOSTILE)
def test_every_control_sequence_goes(raw: str, plain: str) -> None:
    assert plain_field(raw) == plain
    assert plain_text(raw) == plain
    assert keep_sgr_only(raw) == plain


def test_sgr_survives_only_keep_sgr_only() -> None:
    raw = "\x1b[1;31mred\x1b[0m"
    assert keep_sgr_only(raw) == raw
    assert plain_field(raw) == "red"
    assert keep_sgr_only("\x1b[" + "9" * 20 + "mx") == "x"  # oversized parameter dropped


def test_a_field_is_one_line_while_text_keeps_its_lines() -> None:
    assert plain_field("a\nb\tc") == "a b c"
    assert plain_text("a\nb\tc") == "a\nb\tc"
    assert keep_sgr_only("a\n\x1b]2;x\x07b\n") == "a\nb\n"


def test_fuzz_nothing_but_sgr_and_text_remains() -> None:
    rng = random.Random(7)
    alphabet = "\x1b\x9b\x9d\x90[]();?0123456789mkPX^_\\\x07\x9c\u202e\u2066abc\n\t"
    for _ in range(3000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        field = plain_field(raw)
        assert not any(c in field for c in "\x1b\x9b\x9d\x90\x07\x9c\u202e\u2066\n\t"), repr(raw)
        kept = keep_sgr_only(raw)
        # Whatever escape is left is a complete SGR sequence and nothing else.
        residue = CONTROL_RE.sub(lambda m: "" if m.group("sgr") else m.group(0), kept)
        assert "\x1b" not in residue and "\x9b" not in residue, repr(raw)
