"""Exact sums of floats, as integers: the mergeable state of every sum of real values.

A float64 is ``m * 2**e`` with integer ``m`` and ``e >= -1074``, so every finite float
is an integer multiple of ``2**-1074`` (:data:`ULP_SHIFT`). Summing those integers (Python
ints do not overflow) is exact: the total does not depend on the order of the terms or
on how they were split between workers, and subtracting a term (a corrected label)
restores the previous total exactly. A float sum would give 1 and 3 workers results
that differ in the last bits.

Only the final reading rounds, once, to the nearest float (:func:`to_float`): the value
is the correctly rounded real sum of the terms, which is also what ``math.fsum`` returns.

Products of two values are exact too: the units of ``x * y`` are ``units(x) * units(y)``
at scale ``2**-2148`` (:data:`SQUARE_SHIFT`), which is how sums of squares stay exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

ULP_SHIFT = 1074  # every finite float64 is an integer multiple of 2**-ULP_SHIFT
SQUARE_SHIFT = 2 * ULP_SHIFT  # scale of the product of two unit counts
_MANTISSA_BITS = 53


def units(values: npt.ArrayLike) -> list[int]:
    """Each finite value as an exact integer count of ``2**-1074``.

    >>> units([0.5, -3.0, 0.0]) == [1 << 1073, -3 << 1074, 0]
    True
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(x).all():
        raise ValueError("exact sums take finite values only")
    mantissa, exponent = np.frexp(x)  # x = mantissa * 2**exponent, 0.5 <= |mantissa| < 1
    # mantissa * 2**53 is an integer of at most 53 bits; its scale is 2**(exponent - 53).
    m = (mantissa * float(1 << _MANTISSA_BITS)).astype(np.int64).tolist()
    shift = (exponent.astype(np.int64) + (ULP_SHIFT - _MANTISSA_BITS)).tolist()
    # A subnormal's shift is negative; its mantissa then ends in at least that many zero
    # bits, so the right shift is exact.
    return [v << s if s >= 0 else v >> -s for v, s in zip(m, shift, strict=True)]


def total(values: npt.ArrayLike) -> int:
    """The exact sum of ``values`` in units of ``2**-1074``.

    >>> to_float(total([0.1] * 10)), sum([0.1] * 10)
    (1.0, 0.9999999999999999)
    """
    return sum(units(values))


def square_total(values: npt.ArrayLike) -> int:
    """The exact sum of squares of ``values`` in units of ``2**-2148``.

    >>> to_float(square_total([0.1, 3.0]), SQUARE_SHIFT) == 0.1 * 0.1 + 9.0
    True
    """
    return sum(u * u for u in units(values))


def to_float(units_total: int, shift: int = ULP_SHIFT) -> float:
    """``units_total * 2**-shift`` rounded once to the nearest float.

    Python's int / int true division is correctly rounded, so this is the float nearest
    to the exact sum; a sum past the largest float reads as an infinity of its sign.

    >>> to_float(total([1e16, 1.0, -1e16]))
    1.0
    """
    try:
        return units_total / (1 << shift)
    except OverflowError:
        return math.inf if units_total > 0 else -math.inf


def totals_by_bin(values: npt.ArrayLike, bins: npt.ArrayLike, n_bins: int) -> list[int]:
    """Exact sum of ``values`` per bin index (``bins[i]`` is the bin of ``values[i]``).

    >>> [to_float(t) for t in totals_by_bin([0.25, 0.5, 0.75], [0, 0, 2], 3)]
    [0.75, 0.0, 0.75]
    """
    out = [0] * n_bins
    for b, u in zip(np.asarray(bins).tolist(), units(values), strict=True):
        out[b] += u
    return out


def add_into(target: list[int], delta: Iterable[int], sign: int = 1) -> None:
    """``target += sign * delta`` element-wise, in place (vectors of exact sums)."""
    for i, d in enumerate(delta):
        if d:
            target[i] += sign * d
