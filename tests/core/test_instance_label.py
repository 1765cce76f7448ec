"""The label rule both servers apply, the agent's cleaning, and terminal escaping."""

from __future__ import annotations

import pytest

from mqtt_licensing.core.errors import ErrorCode, LicensingError
from mqtt_licensing.core.instance_label import MAX_LENGTH, check, clean, problem, terminal_text


def test_clean_makes_any_host_name_acceptable() -> None:
    assert clean("line-7-broker") == "line-7-broker"
    assert clean("  plant\x1b[31m  ") == "plant?[31m"
    assert clean("\u202e" + "x" * 100) == "?" + "x" * (MAX_LENGTH - 1)
    assert clean(" \t\n ") is None and clean("") is None
    for odd in ("a\x00b", "é" * 80, "x" * (MAX_LENGTH - 1) + " y", "\u2028tail"):
        cleaned = clean(odd)
        assert cleaned is not None and problem(cleaned) is None


@pytest.mark.parametrize("label", ["", " x", "x ", "a\tb", "a\x7fb", "a\u200fb", "x" * (MAX_LENGTH + 1)])
def test_check_refuses_with_one_safe_line(label: str) -> None:
    with pytest.raises(LicensingError) as err:
        check(label)
    assert err.value.code == ErrorCode.INVALID_FIELD
    assert err.value.message.isprintable()


def test_check_passes_printable_text_and_none() -> None:
    assert check(None) is None
    assert check("<script>alert(1)</script>") == "<script>alert(1)</script>"  # escaping is the viewer's job


def test_terminal_text_shows_escapes_as_text() -> None:
    assert terminal_text("plain") == "plain"
    assert terminal_text("\x1b[31mred\x07") == "\\x1b[31mred\\x07"
    assert terminal_text("a\u202eb").isprintable()
