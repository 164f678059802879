"""Numbers read as a person would say them: three significant digits, units, no float noise."""

from __future__ import annotations

import pytest

from modelfleet_common.humanize import duration, milliseconds, number, percent, slo_value


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (11.947907480061986, "11.9 ms"),
        (0.5234, "0.523 ms"),
        (1532.4, "1532 ms"),
        (12.0, "12 ms"),
        (None, "n/a"),
    ],
)
def test_a_latency_reads_in_three_significant_digits_of_milliseconds(value: float | None, shown: str) -> None:
    assert milliseconds(value) == shown


@pytest.mark.parametrize(
    ("share", "shown"), [(0.1, "10%"), (0.0123, "1.23%"), (1 / 3, "33.3%"), (1.0, "100%"), (0.0, "0%")]
)
def test_a_share_reads_as_a_percentage(share: float, shown: str) -> None:
    assert percent(share) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.42, "0.42 s"),
        (4.234, "4.2 s"),
        (42.4, "42 s"),
        (125, "2 min 5 s"),
        (3600, "1 h"),
        (3725, "1 h 2 min"),
        (3 * 86400 + 4 * 3600 + 100, "3 d 4 h"),
    ],
)
def test_a_duration_reads_in_the_two_largest_units_it_needs(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


@pytest.mark.parametrize(
    ("value", "shown"), [(3.0, "3"), (0.30000000000000004, "0.30"), (0.4123, "0.412"), (0.000123, "0.00012")]
)
def test_a_statistic_keeps_what_tells_it_apart_and_drops_float_noise(value: float, shown: str) -> None:
    assert number(value) == shown


def test_an_slo_value_reads_in_the_unit_its_name_says() -> None:
    assert slo_value("latency_p99_ms", 11.947907480061986) == "11.9 ms"
    assert slo_value("error_rate", 0.0123) == "1.23%"
    assert slo_value("accuracy", 0.91234) == "0.912"
