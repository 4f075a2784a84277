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


def _totals_by_bin_each(values: npt.ArrayLike, bins: npt.ArrayLike, n_bins: int) -> list[int]:
    """Exact sum of ``values`` per bin index (``bins[i]`` is the bin of ``values[i]``), a value at a time.

    >>> [to_float(t) for t in _totals_by_bin_each([0.25, 0.5, 0.75], [0, 0, 2], 3)]
    [0.75, 0.0, 0.75]
    """
    out = [0] * n_bins
    for b, u in zip(np.asarray(bins).tolist(), units(values), strict=True):
        out[b] += u
    return out


# Exact sums of many values. A positive normal float64 with bit pattern ``b`` is
# ``sig * 2**-1074 * 2**e`` with ``sig = b & (2**52 - 1) | 2**52`` and ``e = (b >> 52) - 1``:
# its units are ``sig << e``. The significands are added in numpy per (bin, exponent class);
# a class spans 8 exponents, so a significand shifted within its class is below 2**60; split
# at bit 30 its halves are below 2**30, and float64 sums of up to 2**22 of them are exact
# integers. Only the group totals become Python ints.
_CLASS_BITS = 3
_SPLIT = 30
_LOW_MASK = (1 << _SPLIT) - 1
_FRACTION_MASK = (1 << 52) - 1
_IMPLICIT_BIT = 1 << 52
_SMALLEST_NORMAL = 1 << 52  # bit pattern of the smallest positive normal float
_INFINITY = 0x7FF << 52  # bit pattern of +inf; NaNs lie above it
_CHUNK = 1 << 22
_VECTOR_MIN = 128  # below this many values the per-value path is faster


def totals_by_bin(values: npt.ArrayLike, bins: npt.ArrayLike, n_bins: int) -> list[int]:
    """Exact sum of ``values`` per bin index (``bins[i]`` is the bin of ``values[i]``), in
    units of ``2**-1074``: vectorised for large batches of positive values, a value at a
    time otherwise (negative, subnormal or non-finite values; small batches). The same
    integers either way.

    >>> [to_float(t) for t in totals_by_bin([0.25, 0.5, 0.75], [0, 0, 2], 3)]
    [0.75, 0.0, 0.75]
    >>> x = np.geomspace(1e-300, 1e300, 1000)
    >>> b = np.arange(1000) % 3
    >>> totals_by_bin(x, b, 3) == _totals_by_bin_each(x, b, 3)
    True
    """
    x = np.ascontiguousarray(values, dtype=np.float64).ravel()
    where = np.asarray(bins, dtype=np.int64).ravel()
    if len(x) >= _VECTOR_MIN:
        bits = x.view(np.int64)  # ordered as the values when they are >= 0
        low, high = int(bits.min()), int(bits.max())
        if 0 <= low < _SMALLEST_NORMAL:  # zeros add nothing; a subnormal takes the other path
            keep = bits != 0
            bits, where = bits[keep], where[keep]
            low = int(bits.min()) if len(bits) else _SMALLEST_NORMAL
        if low >= _SMALLEST_NORMAL and high < _INFINITY:
            out = [0] * n_bins
            if not len(bits):
                return out
            c_min, c_max = (((v >> 52) - 1) >> _CLASS_BITS for v in (low, high))
            for start in range(0, len(bits), _CHUNK):
                chunk = slice(start, start + _CHUNK)
                _add_positive_normal(out, bits[chunk], where[chunk], n_bins, c_min, c_max - c_min + 1)
            return out
    return _totals_by_bin_each(x, where, n_bins)


def _add_positive_normal(
    out: list[int],
    bits: npt.NDArray[np.int64],
    where: npt.NDArray[np.int64],
    n_bins: int,
    c_min: int,
    span: int,
) -> None:
    e = bits >> 52
    e -= 1  # units = sig << e, e >= 0
    sig = bits & _FRACTION_MASK
    sig |= _IMPLICIT_BIT
    key = e >> _CLASS_BITS
    key -= c_min
    e &= (1 << _CLASS_BITS) - 1
    sig <<= e  # below 2**60
    key += where * span
    groups: list[int] | None = None
    if n_bins * span > 4 * len(key) + 4096:  # sparse keys: number them densely first
        unique, key = np.unique(key, return_inverse=True)
        groups = unique.tolist()
    high = np.bincount(key, weights=(sig >> _SPLIT).astype(np.float64))
    sig &= _LOW_MASK
    low = np.bincount(key, weights=sig.astype(np.float64))
    used = np.flatnonzero(high + low)  # both halves are >= 0
    keys = used.tolist() if groups is None else [groups[k] for k in used.tolist()]
    for k, h, lo in zip(keys, high[used].tolist(), low[used].tolist(), strict=True):
        group_sum = (int(h) << _SPLIT) + int(lo)
        out[k // span] += group_sum << ((c_min + k % span) << _CLASS_BITS)


def add_into(target: list[int], delta: Iterable[int], sign: int = 1) -> None:
    """``target += sign * delta`` element-wise, in place (vectors of exact sums)."""
    for i, d in enumerate(delta):
        if d:
            target[i] += sign * d
