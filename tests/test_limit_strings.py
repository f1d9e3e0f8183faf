"""Limit strings as Flask-Limiter users write them: the ``limits`` library's
grammar, ``,`` and ``|`` between limits, and errors that say what works."""

from __future__ import annotations

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from flask_lockout import Limit, Lockout, parse_limit, parse_limits

try:  # the grammar's reference; Flask-Limiter's own parser
    import limits as limits_library
except ImportError:  # pragma: no cover
    limits_library = None

MINUTE, HOUR, DAY = 60, 3600, 86400


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10/minute, 100/hour", (Limit(10, MINUTE), Limit(100, HOUR))),
        ("10/minute,100/hour", (Limit(10, MINUTE), Limit(100, HOUR))),
        ("10/minute|100/hour", (Limit(10, MINUTE), Limit(100, HOUR))),
        (
            "10/minute | 100/hour ; 1/day",
            (Limit(10, 60), Limit(100, HOUR), Limit(1, DAY)),
        ),
        ("1 per second, 5 per minute", (Limit(1, 1), Limit(5, MINUTE))),
    ],
)
def test_flask_limiter_separators(text: str, expected: tuple[Limit, ...]) -> None:
    assert parse_limits(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10 per minute", Limit(10, MINUTE)),
        ("10/2 minutes", Limit(10, 2 * MINUTE)),
        ("10 per 2 minutes", Limit(10, 2 * MINUTE)),
        ("10per minute", Limit(10, MINUTE)),
        ("10 perminute", Limit(10, MINUTE)),
        ("10 PER 3 Hours", Limit(10, 3 * HOUR)),
        ("5/seconds", Limit(5, 1)),
        ("1/month", Limit(1, 30 * DAY)),
        ("2 per months", Limit(2, 30 * DAY)),
        ("1/year", Limit(1, 360 * DAY)),
    ],
)
def test_every_spelling_of_the_limits_library(text: str, expected: Limit) -> None:
    assert parse_limit(text) == expected
    assert parse_limits(text) == (expected,)


@pytest.mark.parametrize(
    "text",
    ["10/minute 100/hour", "10/minute and 100/hour", "10/minute: 100/hour"],
)
def test_limits_run_together_get_an_error_naming_the_separators(text: str) -> None:
    with pytest.raises(ValueError, match="more than one limit") as found:
        parse_limits(text)
    assert "';', ',' or '|'" in str(found.value)


def test_a_separator_in_a_single_limit_says_which_separators_work() -> None:
    with pytest.raises(ValueError, match="Invalid rate limit") as found:
        parse_limit("10/minute, 100/hour")
    assert "';', ',' or '|'" in str(found.value)


def test_a_bad_part_is_named_with_the_whole_string() -> None:
    with pytest.raises(ValueError, match="'5/fortnight'") as found:
        parse_limits("10/minute, 5/fortnight")
    assert "in '10/minute, 5/fortnight'" in str(found.value)
    assert "month, year" in str(found.value)


def test_decorators_and_config_take_flask_limiter_strings() -> None:
    app = Flask(__name__)
    app.config["LOCKOUT_DEFAULT_LIMITS"] = "3 per minute | 100 per day"
    lockout = Lockout(app)

    @app.get("/a")
    @lockout.throttled("2/minute, 50/hour")
    def a() -> str:
        return "a"

    @app.get("/b")
    @lockout.throttled()
    def b() -> str:
        return "b"

    client = app.test_client()
    assert [client.get("/a").status_code for _ in range(3)] == [200, 200, 429]
    assert [client.get("/b").status_code for _ in range(4)] == [200, 200, 200, 429]


# -- the same answers as limits.parse_many --------------------------------------

UNITS = ["second", "minute", "hour", "day", "month", "year"]
SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
SECONDS.update(month=30 * 86400, year=360 * 86400)


@st.composite
def limiter_strings(draw: st.DrawFn) -> str:
    """Strings in the grammar of ``limits.parse_many``."""
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        count = draw(st.integers(1, 10**6))
        per = draw(st.sampled_from(["/", " / ", " per ", "per", "PER ", " per"]))
        unit = draw(st.sampled_from(UNITS))
        multiplier = draw(st.sampled_from(["", "1", "2 ", "5", "10 "]))
        if unit in ("month", "year") and multiplier:
            multiplier = ""  # beyond a year: outside our bound on purpose
        plural = draw(st.sampled_from(["", "s"]))
        case = draw(st.sampled_from([str.lower, str.upper, str.title]))
        parts.append(f"{count}{per}{multiplier}{case(unit + plural)}")
    separators = st.sampled_from([";", ",", "|", ", ", " ; ", " | "])
    text = parts[0]
    for part in parts[1:]:
        text += draw(separators) + part
    return text


@pytest.mark.skipif(limits_library is None, reason="pip install limits")
@given(limiter_strings())
def test_we_read_what_limits_reads(text: str) -> None:
    assert limits_library is not None
    parsed = limits_library.parse_many(text)
    theirs = [Limit(item.amount, item.get_expiry()) for item in parsed]
    assert list(parse_limits(text)) == theirs
