"""Numbers as a responder reads them: "420 ms", "4.2 s", "99.95%", "1.5 GiB", "$0.0042".

The unit names are the runbook format's (`bot.runbooks.schema.Unit`): a diagnostic declares
its unit once and every value, table cell, comparison and graph axis is formatted from it. An
unknown unit is not an error (a newer runbook, a typo caught elsewhere): the number is shown
with the unit's name after it.

Rules, chosen for a phone screen at 3 a.m.:
* at most three significant digits, trailing zeros dropped ("4.2 s", not "4.200 s");
* durations climb ns -> µs -> ms -> s -> min -> h -> d, bytes B -> KiB -> ... -> PiB, rates
  and counts k -> M -> G -> T, so the number stays short;
* values compared with each other share one scale (`format_values`): "4.2 s, up from 0.6 s"
  reads faster than "4.2 s, up from 600 ms";
* percentages just below 100 keep their decimals and are cut, never rounded up ("99.99%":
  an availability of 99.999% is not 100%);
* money below a dollar keeps two significant digits ("$0.0042" per inference), above it cents;
* NaN and infinities are spelled the way Prometheus spells them ("NaN", "+Inf", "-Inf"); a
  missing value (no sample) is `None` and reads "no data".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["NO_DATA", "UNITS", "format_value", "format_values"]

NO_DATA = "no data"


@dataclass(frozen=True)
class _Scale:
    factor: float
    suffix: str  # appended after a space unless it starts with "%" or is empty
    prefix: str = ""


@dataclass(frozen=True)
class _Unit:
    """How one unit climbs scales; `base` converts the raw value (e.g. ms) to the scale's unit."""

    scales: tuple[_Scale, ...]  # largest first; the last one is used for anything smaller
    base: float = 1.0


def _si_scales(suffix: str) -> tuple[_Scale, ...]:
    tail = f" {suffix}" if suffix else ""
    return (
        _Scale(1e12, f"T{tail}"),
        _Scale(1e9, f"G{tail}"),
        _Scale(1e6, f"M{tail}"),
        _Scale(1e3, f"k{tail}"),
        _Scale(1.0, tail),
    )


_DURATION = (
    _Scale(86400.0, " d"),
    _Scale(3600.0, " h"),
    _Scale(60.0, " min"),
    _Scale(1.0, " s"),
    _Scale(1e-3, " ms"),
    _Scale(1e-6, " µs"),
    _Scale(1e-9, " ns"),
)
_IEC = (
    _Scale(2.0**50, " PiB"),
    _Scale(2.0**40, " TiB"),
    _Scale(2.0**30, " GiB"),
    _Scale(2.0**20, " MiB"),
    _Scale(2.0**10, " KiB"),
    _Scale(1.0, " B"),
)
_PERCENT = (_Scale(0.01, "%"),)
_WATTS = (_Scale(1e3, " kW"), _Scale(1.0, " W"))

_UNITS: dict[str, _Unit] = {
    "seconds": _Unit(_DURATION),
    "milliseconds": _Unit(_DURATION, base=1e-3),
    "microseconds": _Unit(_DURATION, base=1e-6),
    "percent": _Unit(_PERCENT, base=0.01),
    "ratio": _Unit(_PERCENT),
    "bytes": _Unit(_IEC),
    "mebibytes": _Unit(_IEC, base=2.0**20),
    "requests/s": _Unit(_si_scales("req/s")),
    "tokens/s": _Unit(_si_scales("tok/s")),
    "celsius": _Unit((_Scale(1.0, " °C"),)),
    "watts": _Unit(_WATTS),
    "count": _Unit(_si_scales("")),
    "none": _Unit(_si_scales("")),
}
_MONEY = {"usd": "", "usd/hour": "/h"}

#: The units this module knows; the same names as the runbook format's `unit`.
UNITS: frozenset[str] = frozenset(_UNITS) | frozenset(_MONEY)


def _strip(text: str) -> str:
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _sig(value: float, digits: int = 3) -> str:
    """`value` with at most `digits` significant digits, no exponent, trailing zeros dropped."""
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    return _strip(f"{value:.{max(0, digits - 1 - magnitude)}f}")


def _number(scaled: float, *, percent: bool) -> str:
    if percent and 99 <= scaled < 100:
        # Cut, not round: 99.9996% must not read "100%".
        return _strip(f"{math.floor(round(scaled * 1000, 6)) / 1000:.3f}")
    if abs(scaled) >= 1000:
        return f"{scaled:,.0f}"
    if 0 < abs(scaled) < 1e-3:
        return f"{scaled:.2g}"
    return _sig(scaled)


def _pick(unit: _Unit, magnitude: float) -> _Scale:
    if magnitude == 0:
        return next((s for s in unit.scales if s.factor == 1.0), unit.scales[-1])
    # Round first, so that 999.7 climbs to "1k" instead of showing "1000".
    magnitude = float(f"{magnitude:.3g}")
    for scale in unit.scales:
        if magnitude >= scale.factor:
            return scale
    # Below the smallest scale: durations and bytes go to their smallest, plain numbers stay
    # plain (the last scale of SI units is 1).
    return unit.scales[-1]


def _special(value: float) -> str | None:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return None


def _money(value: float, per: str) -> str:
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    if magnitude == 0:
        text = "0"
    elif magnitude >= 1000:
        text = f"{magnitude:,.0f}"
    elif magnitude >= 1:
        text = f"{magnitude:.2f}"
    else:
        # Cost per inference is often a fraction of a cent: keep two significant digits.
        decimals = max(2, 1 - math.floor(math.log10(magnitude)))
        text = f"{magnitude:.{decimals}f}"
        while decimals > 2 and text.endswith("0"):  # "$0.020" -> "$0.02", never below cents
            text, decimals = text[:-1], decimals - 1
    return f"{sign}${text}{per}"


def _format(value: float, unit_name: str, scale: _Scale | None) -> str:
    if unit_name in _MONEY:
        return _money(value, _MONEY[unit_name])
    unit = _UNITS.get(unit_name)
    if unit is None:
        return f"{_format(value, 'none', None)} {unit_name}".rstrip()
    raw = value * unit.base
    if scale is None:
        scale = _pick(unit, abs(raw))
    scaled = raw / scale.factor
    if unit_name == "count" and scale.factor == 1.0 and scaled == int(scaled):
        return str(int(scaled))
    return f"{_number(scaled, percent=scale.suffix == '%')}{scale.suffix}"


def format_value(value: float | None, unit: str = "none") -> str:
    """`value` in `unit` for people; `None` (no sample) reads "no data"."""
    if value is None:
        return NO_DATA
    special = _special(value)
    return special if special is not None else _format(value, unit, None)


def format_values(values: Sequence[float | None], unit: str = "none") -> list[str]:
    """Several values that will be read against each other, on the scale of the largest.

    Falls back to each value's own scale when the smallest would need more than three
    leading zeros on the shared scale (0.0002 s next to 4 min reads better as "200 µs").
    """
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    spec = _UNITS.get(unit)
    if not finite or spec is None or len(spec.scales) == 1:
        return [format_value(v, unit) for v in values]
    scale = _pick(spec, max(finite) * spec.base)
    if min(finite) * spec.base / scale.factor < 1e-3:
        return [format_value(v, unit) for v in values]
    out: list[str] = []
    for value in values:
        if value is None or not math.isfinite(value):
            out.append(format_value(value, unit))
        else:
            out.append(_format(value, unit, scale))
    return out
