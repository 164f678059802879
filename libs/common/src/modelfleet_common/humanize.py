"""Numbers for people: the one place that decides how a latency, a share, a duration or a
statistic reads in a reason, a log line or the CLI (`p99 11.9 ms`, `error rate 1.2%`, `2 min 5 s`).

Machine-readable output (events' numeric fields, `--json`) keeps full precision; these functions
are only for text a person reads.
"""

from __future__ import annotations

import math

#: Significant digits a person needs to compare two latencies or shares.
SIGNIFICANT = 3


def _significant(value: float, digits: int = SIGNIFICANT) -> str:
    """`value` with `digits` significant digits, never in exponent form, without trailing zeros."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{round(value, decimals):.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def number(value: float) -> str:
    """Short but recognisable: whole numbers as such, tiny ones (p-values) in two significant
    digits, the rest with two or three decimals (0.30, 0.412)."""
    if value.is_integer() and abs(value) >= 1:
        return str(int(value))
    if 0 < abs(value) < 0.001:
        return f"{value:.2g}"
    text = f"{value:.3f}"
    return text[:-1] if text.endswith("0") else text


def milliseconds(value: float | None) -> str:
    """A latency in milliseconds: `11.9 ms`, `0.523 ms`, `1532 ms`; `n/a` when unknown."""
    return "n/a" if value is None else f"{_significant(value)} ms"


def percent(share: float | None) -> str:
    """A share of 1 as a percentage: 0.1 → `10%`, 0.0123 → `1.23%`, 1/3 → `33.3%`."""
    return "n/a" if share is None else f"{_significant(share * 100)}%"


def duration(seconds: float | None) -> str:
    """A duration as a person says it: `0.42 s`, `4.2 s`, `42 s`, `12 min 5 s`, `2 h 5 min`, `3 d 4 h`."""
    if seconds is None:
        return "n/a"
    if seconds < 0:
        return f"-{duration(-seconds)}"
    if seconds < 10:
        return f"{_significant(seconds, 2)} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return _in_two_units(whole, (60, "min"), (1, "s"))
    if whole < 86400:
        return _in_two_units(whole, (3600, "h"), (60, "min"))
    return _in_two_units(whole, (86400, "d"), (3600, "h"))


def _in_two_units(seconds: int, big: tuple[int, str], small: tuple[int, str]) -> str:
    count, rest = divmod(seconds, big[0])
    part = rest // small[0]
    return f"{count} {big[1]} {part} {small[1]}" if part else f"{count} {big[1]}"


def slo_value(slo: str, value: float) -> str:
    """An SLO's observed value or objective in its unit: latencies (`*_ms`) in ms, rates in percent."""
    if slo.endswith("_ms"):
        return milliseconds(value)
    if slo.endswith("_rate"):
        return percent(value)
    return number(value)
