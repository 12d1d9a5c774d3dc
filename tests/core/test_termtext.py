"""The one sanitiser (qqtui.core.termtext): what may reach a terminal from untrusted text."""

from __future__ import annotations

import random
import re

import pytest

from qqtui.core.termtext import CONTROL_RE, keep_sgr_only, plain_field, plain_line, plain_text

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
    assert plain_line(raw) == plain
    assert plain_text(raw) == plain
    assert keep_sgr_only(raw) == plain


def test_sgr_survives_only_keep_sgr_only() -> None:
    raw = "\x1b[1;31mred\x1b[0m"
    assert keep_sgr_only(raw) == raw
    assert plain_field(raw) == "red"
    assert keep_sgr_only("\x1b[" + "9" * 20 + "mx") == "x"  # oversized parameter dropped


def test_a_field_is_one_line_while_text_keeps_its_lines() -> None:
    assert plain_field("a\nb\tc") == "a b c"
    assert plain_line("a\nb\tc") == "ab\tc"
    assert plain_line("\x1b[31ma\tb\x1b]0;t\x07") == "a\tb"
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


# What may be left of random bytes: printable text, tab and newline, and (from
# keep_sgr_only only) whole SGR sequences. No other C0 or C1 control, no DEL, no bidi
# override or isolate, no line or paragraph separator.
FORBIDDEN_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
WHOLE_SGR_RE = re.compile(r"\x1b\[[0-9;:]*m")


def test_fuzz_random_bytes_leave_only_text_and_whole_sgr() -> None:
    rng = random.Random(20261207)
    pieces = [b"\x1b", b"\x1b[", b"\x1b]", b"\x1bk", b"\x1b\\", b"\x07", b"m", b";", b"31"]
    pieces += ["\u202e".encode(), "\u2067".encode(), "\u2028".encode(), b"\xc2\x9b", b"\xc2\x9d"]
    for _ in range(3000):
        data = b"".join(
            rng.choice(pieces) if rng.random() < 0.4 else bytes([rng.randrange(256)])
            for _ in range(rng.randint(0, 64))
        )
        for raw in (data.decode("utf-8", errors="replace"), data.decode("latin-1")):
            for plain in (plain_text(raw), plain_line(raw), plain_field(raw)):
                assert not FORBIDDEN_RE.search(plain), repr(raw)
            assert "\n" not in plain_line(raw) and "\n" not in plain_field(raw), repr(raw)
            assert "\t" not in plain_field(raw), repr(raw)
            kept = WHOLE_SGR_RE.sub("", keep_sgr_only(raw))
            assert not FORBIDDEN_RE.search(kept), repr(raw)
