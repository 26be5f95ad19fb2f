"""The one parser of what people type: ids, names, versions, reasons, and the limits the
columns take from it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain import inputs
from bot.domain.inputs import ID_MAX, NAME_MAX, REASON_MAX, VERSION_MAX, InputError
from bot.storage.models import AuditEventRow, EnvironmentLockRow, ProbeRunRow, SessionRow


@given(st.integers(min_value=1, max_value=ID_MAX), st.sampled_from(["", "#", " "]))
def test_ids_as_people_type_them(number: int, prefix: str) -> None:
    assert inputs.session_id(f"{prefix}{number}") == number


@pytest.mark.parametrize(
    "text", ["", "#", "0", "-1", "1.5", "²", "١٢", "1_0", "12a", "2147483648", "9" * 20, "9" * 5000]
)
def test_what_is_not_an_id_is_refused_with_its_text(text: str) -> None:
    with pytest.raises(InputError, match="is not a deploy id"):
        inputs.session_id(text)


@given(st.text())
def test_any_text_is_an_id_or_refused(text: str) -> None:
    try:
        assert 0 < inputs.session_id(text) <= ID_MAX
    except InputError as refused:
        assert "\x00" not in str(refused) and len(str(refused)) < 200


@given(st.text(max_size=NAME_MAX + 5))
def test_names_are_one_printable_word_within_the_limit(text: str) -> None:
    try:
        assert inputs.name(text, "service") == text
    except InputError:
        return
    assert 0 < len(text) <= NAME_MAX
    assert not any(c.isspace() or c in "\x00\x1b" for c in text)


def test_limits_are_stated_and_refused() -> None:
    with pytest.raises(InputError, match=f"the limit is {NAME_MAX}"):
        inputs.name("e" * (NAME_MAX + 1), "environment")
    with pytest.raises(InputError, match=f"the limit is {VERSION_MAX}"):
        inputs.version("v" * (VERSION_MAX + 1))
    with pytest.raises(InputError, match="the limit is 1,000"):
        inputs.free_text("r" * (REASON_MAX + 1))
    with pytest.raises(InputError, match=r"U\+0000"):
        inputs.free_text("flaky\x00")
    assert inputs.free_text("  two\nlines\tand a tab ") == "two\nlines\tand a tab"
    assert f"up to {NAME_MAX} characters" in inputs.LIMITS


def test_the_columns_take_their_sizes_from_the_limits() -> None:
    def length(column: object) -> int | None:
        return getattr(getattr(column, "type", None), "length", None)

    assert length(SessionRow.__table__.c.environment) == NAME_MAX
    assert length(SessionRow.__table__.c.service) == NAME_MAX
    assert length(SessionRow.__table__.c.version) == VERSION_MAX
    assert length(EnvironmentLockRow.__table__.c.environment) == NAME_MAX
    assert length(AuditEventRow.__table__.c.environment) == NAME_MAX
    assert length(ProbeRunRow.__table__.c.environment) == NAME_MAX
