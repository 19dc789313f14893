"""Normalization rules and number reading, table-driven, plus idempotence properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tapo.rewards.normalize import normalize, normalize_answer
from tapo.rewards.numbers import parse_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Paris \n", "paris"),
        ("Twelve", "12"),
        ("one two three", "1 2 3"),
        ("someone", "someone"),  # whole words only
        ("thirteen", "thirteen"),  # one..twelve only
        ("1,234,567", "1234567"),
        ("Paris, France", "paris, france"),  # commas outside digit strings stay
        ("ÉCOLE", "école"),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("an apple, a pear", "apple pear"),
        ("  lots   of\tspace ", "lots of space"),
        ("theatre", "theatre"),
        ("U.S.A.", "usa"),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42.0),
        ("1,234", 1234.0),
        ("1,234,567.5", 1234567.5),
        ("-3.5 km", -3.5),
        ("−7", -7.0),  # unicode minus
        ("25%", 25.0),
        ("25 \\%", 25.0),
        ("$18", 18.0),
        ("\\$18.00", 18.0),
        ("1.5e3", 1500.0),
        ("2E-3", 0.002),
        ("3 \\times 10^{4}", 30000.0),
        ("6.02 × 10^23", 6.02e23),
        ("\\frac{1}{2}", 0.5),
        ("$\\dfrac{-3}{4}$", -0.75),
        ("3/4", 0.75),
        ("\\boxed{42}", 42.0),
        ("twelve apples", 12.0),
        ("\\text{3 km}", 3.0),
        (".5", 0.5),
        ("99 753", 99753.0),  # thousands grouped by spaces are one number
        ("1\u202f234\u202f567.5 m", 1234567.5),
        ("25 m²", 25.0),  # a power of the unit, not of the number
        ("3km", 3.0),
    ],
)
def test_parse_number(text, value):
    assert parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Paris",
        "between 3 and 4",
        "2020-05-01",
        "1/0",
        "1e999",
        "h2o",
        "x^2",
        "5²",
        "2^10",
        "10^3",
        "5!",
        "\\sqrt{2}",
        "0x10",
        "1.2.3",
        "1_000",
        "x + 2",
        "2\\pi",
        "12 3456",
    ],
)
def test_parse_number_refuses(text):
    assert parse_number(text) is None


@given(st.text())
def test_normalize_is_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once


@given(st.text())
def test_normalize_answer_is_idempotent(text):
    once = normalize_answer(text)
    assert normalize_answer(once) == once


_NOT_THE_NUMBER = ["{a}^{b}", "{a}^{{{b}}}", "{a} ^ {b}", "{a}**{b}", "{a}²", "{a}!", "\\sqrt{{{a}}}", "√{a}", "0x{a}"]
_NOT_THE_NUMBER += ["{a}.{b}.{b}", "{a}_{b:03d}", "{a} + x", "x - {a}", "{a} \\cdot y", "{a}, {b}", "0 {b:03d}"]


@given(st.integers(0, 10**6), st.integers(1, 999), st.sampled_from(_NOT_THE_NUMBER))
def test_a_number_next_to_an_operator_or_another_number_is_not_read(a, b, template):
    """Issue 16 item 9: ``2^10`` was read as 2, ``5!`` as 5, ``0x10`` as 0, ``1.2.3`` as 1.2, and so on."""
    text = template.format(a=a, b=b)
    assert parse_number(text) is None, text


@given(
    st.integers(-(10**12), 10**12),
    st.sampled_from([" ", "\u00a0", "\u2009", "\u202f", ","]),
    st.sampled_from(["{}", "{} km", "about {} people", "\\boxed{{{}}}", "${}$"]),
)
def test_grouped_thousands_are_one_number(value, separator, template):
    """Issue 16 item 9: ``99 753`` was two numbers and scored 0 against 99753."""
    text = template.format(f"{value:,}".replace(",", separator))
    assert parse_number(text) == value, text


@given(st.text(alphabet=st.sampled_from("0123456789,.-e ")))
def test_parse_number_never_raises(text):
    value = parse_number(text)
    assert value is None or isinstance(value, float)


@pytest.mark.parametrize(("text", "value"), [("42", 42.0), ("$18", 18.0), ("25%", 25.0), ("1/2", 0.5), ("x + 2", None)])
def test_parse_number_strict_takes_only_bare_numbers(text, value):
    assert parse_number(text, strict=True) == value
    assert parse_number("42 apples", strict=True) is None
