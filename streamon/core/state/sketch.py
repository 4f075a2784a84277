"""A mergeable, exactly-countable quantile summary of raw values (for KS and Wasserstein drift).

``LogSketch`` follows DDSketch: with relative accuracy ``a`` and ``gamma = (1 + a) / (1 - a)``
a value ``x > 0`` goes to bucket ``k = ceil(log(x) / log(gamma))``, which covers
``(gamma**(k-1), gamma**k]`` and is represented by ``2 * gamma**k / (gamma + 1)``; that
representative is within relative error ``a`` of every value in the bucket. Negative values
use a second store keyed by ``|x|``; ``|x| < MIN_VALUE`` is counted as zero.

Key range (bounded memory): keys are clipped to those of ``|x|`` in ``[MIN_VALUE, MAX_VALUE]``
= ``[1e-9, 1e15]``; larger magnitudes and infinities land in the outermost bucket (their value is
then not within ``a``). At ``a = 0.01`` that is 2,764 keys per sign, so even a sketch touching
every key stays under 70 kB; storage is sparse, and a feature spanning three decades needs
about 350 buckets (~4 kB). Thousands of per-minute sketches are kept, hence sparse.

Why not a randomised sketch (KLL, or a t-digest whose centroids depend on insertion order):
their result depends on the random seed and on the order in which parts are merged, so the
global metrics would differ between 1 and 3 workers. Here every bucket holds an exact int64
count over a fixed key grid, so merge is integer addition (commutative, associative) and
subtraction (window expiry) undoes it exactly. The key of a value is computed with ``np.log``,
which is deterministic for one numpy build; a fleet mixing builds could in principle disagree
on a value within an ulp of a bucket boundary.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Callable
from typing import Any, TypeVar, overload

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_VALUE", "MIN_VALUE", "LogSketch"]

MIN_VALUE = 1e-9
MAX_VALUE = 1e15

_VERSION = 1
# version, relative accuracy, zero count, n negative keys, n positive keys, bytes per count
_HEADER = struct.Struct("<BdQIIB")
_COUNT_DTYPES = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}
_EMPTY_KEYS = np.empty(0, dtype=np.int32)
_EMPTY_COUNTS = np.empty(0, dtype=np.int64)
# Python object + four ndarray headers; the data buffers are added on top.
_FIXED_OVERHEAD = 120 + 4 * sys.getsizeof(np.empty(0))

_Store = tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]
T = TypeVar("T")


def _combine(a: _Store, b: _Store, sign: int) -> _Store:
    """``a + sign * b`` over sparse (keys, counts); raises if a count would go negative."""
    (ka, ca), (kb, cb) = a, b
    if kb.size == 0:
        return ka, ca
    if ka.size == 0 and sign > 0:
        return kb.copy(), cb.copy()
    keys = np.union1d(ka, kb)
    counts = np.zeros(keys.size, dtype=np.int64)
    counts[np.searchsorted(keys, ka)] = ca  # keys are unique, so fancy assignment is exact
    counts[np.searchsorted(keys, kb)] += sign * cb
    if (counts < 0).any():
        raise ValueError("cannot subtract a LogSketch that is not contained in this one")
    keep = counts != 0
    return keys[keep], counts[keep]


class LogSketch:
    """Mergeable log-bucket quantile sketch with exact integer counts.

    >>> s = LogSketch(0.01)
    >>> s.add(np.array([1.0, 2.0, 3.0, -4.0, 0.0, np.nan]))
    >>> s.count
    5
    >>> round(s.quantile(0.5), 2)  # the median 1.0, within 1%
    0.99
    >>> (s + s - s) == s
    True
    """

    __slots__ = ("_alpha", "_derived", "_gamma", "_kmax", "_kmin", "_log_gamma", "_neg", "_pos", "_zero")

    def __init__(self, relative_accuracy: float = 0.01) -> None:
        alpha = float(relative_accuracy)
        # Below 1e-5 the key grid gets huge (and int32 keys could overflow); above 0.5 it is useless.
        if not 1e-5 <= alpha <= 0.5:
            raise ValueError(f"relative_accuracy must be in [1e-5, 0.5], got {relative_accuracy!r}")
        self._alpha = alpha
        self._gamma = (1.0 + alpha) / (1.0 - alpha)
        self._log_gamma = math.log(self._gamma)
        self._kmin = math.ceil(math.log(MIN_VALUE) / self._log_gamma)
        self._kmax = math.ceil(math.log(MAX_VALUE) / self._log_gamma)
        self._zero = 0
        self._neg: _Store = (_EMPTY_KEYS, _EMPTY_COUNTS)
        self._pos: _Store = (_EMPTY_KEYS, _EMPTY_COUNTS)
        # What was derived from the buckets (see derived()); dropped by every change.
        self._derived: dict[str, Any] | None = None

    @property
    def relative_accuracy(self) -> float:
        """The ``alpha`` the sketch was built with.

        >>> LogSketch(0.02).relative_accuracy
        0.02
        """
        return self._alpha

    @property
    def count(self) -> int:
        """Number of values added (NaN excluded).

        >>> s = LogSketch(); s.add(np.arange(10.0)); s.count
        10
        """
        return self._zero + int(self._neg[1].sum()) + int(self._pos[1].sum())

    @property
    def is_empty(self) -> bool:
        """True when no value has been added.

        >>> LogSketch().is_empty
        True
        """
        return self.count == 0

    @property
    def nbytes(self) -> int:
        """Approximate memory held by this sketch, in bytes.

        >>> s = LogSketch(); s.add(np.linspace(1, 1000, 10_000)); s.nbytes < 6000
        True
        """
        arrays = (*self._neg, *self._pos)
        return _FIXED_OVERHEAD + sum(a.nbytes for a in arrays)

    def add(self, values: npt.ArrayLike) -> None:
        """Add values (any shape); NaN is ignored because the caller counts missing values itself.

        >>> s = LogSketch(); s.add([0.5, np.nan, -0.5]); s.count
        2
        """
        x = np.asarray(values, dtype=np.float64).ravel()
        x = x[~np.isnan(x)]
        if x.size == 0:
            return
        self._derived = None
        mag = np.abs(x)
        nonzero = mag >= MIN_VALUE
        keys = np.ceil(np.log(mag[nonzero]) / self._log_gamma)
        np.clip(keys, self._kmin, self._kmax, out=keys)  # bounded key range; inf lands at the top
        span = self._kmax - self._kmin + 1
        # One index space for both signs: positives in [0, span), negatives in [span, 2 * span).
        idx = keys.astype(np.int64) - self._kmin
        idx[x[nonzero] < 0] += span
        if 2 * span <= 16 * idx.size + 65536:
            dense = np.bincount(idx, minlength=2 * span)
            where = np.flatnonzero(dense)
            uniq, cnt = where, dense[where]
        else:  # few values over a very fine grid: sorting beats a huge bincount
            uniq, cnt = np.unique(idx, return_counts=True)
        cnt = cnt.astype(np.int64, copy=False)
        split = int(np.searchsorted(uniq, span))
        pos = ((uniq[:split] + self._kmin).astype(np.int32), cnt[:split])
        neg = ((uniq[split:] - span + self._kmin).astype(np.int32), cnt[split:])
        self._pos = _combine(self._pos, pos, 1)
        self._neg = _combine(self._neg, neg, 1)
        self._zero += int(x.size - np.count_nonzero(nonzero))

    def _check(self, other: LogSketch) -> None:
        if other._alpha != self._alpha:
            raise ValueError(
                f"cannot combine LogSketches of relative accuracy {self._alpha} and {other._alpha}"
            )

    def __iadd__(self, other: LogSketch) -> LogSketch:
        if not isinstance(other, LogSketch):
            return NotImplemented
        self._check(other)
        self._derived = None
        self._pos = _combine(self._pos, other._pos, 1)
        self._neg = _combine(self._neg, other._neg, 1)
        self._zero += other._zero
        return self

    def __isub__(self, other: LogSketch) -> LogSketch:
        if not isinstance(other, LogSketch):
            return NotImplemented
        self._check(other)
        if other._zero > self._zero:
            raise ValueError("cannot subtract a LogSketch that is not contained in this one")
        # Compute both stores before assigning, so a failed subtraction leaves self unchanged.
        pos = _combine(self._pos, other._pos, -1)
        neg = _combine(self._neg, other._neg, -1)
        self._pos, self._neg, self._zero = pos, neg, self._zero - other._zero
        self._derived = None
        return self

    def __add__(self, other: LogSketch) -> LogSketch:
        result = self.copy()
        result += other
        return result

    def __sub__(self, other: LogSketch) -> LogSketch:
        result = self.copy()
        result -= other
        return result

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LogSketch):
            return NotImplemented
        if self._alpha != other._alpha or self._zero != other._zero:
            return False
        stores = ((self._neg, other._neg), (self._pos, other._pos))
        return all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in stores)

    def __repr__(self) -> str:
        buckets = self._neg[0].size + self._pos[0].size + (self._zero > 0)
        return f"LogSketch(relative_accuracy={self._alpha}, count={self.count}, buckets={buckets})"

    def copy(self) -> LogSketch:
        """An independent copy.

        >>> s = LogSketch(); s.add([1.0]); t = s.copy(); t.add([2.0]); (s.count, t.count)
        (1, 2)
        """
        new = LogSketch(self._alpha)
        new._zero = self._zero
        new._neg = (self._neg[0].copy(), self._neg[1].copy())
        new._pos = (self._pos[0].copy(), self._pos[1].copy())
        return new

    def _representatives(self, keys: npt.NDArray[np.int32]) -> npt.NDArray[np.float64]:
        powers = np.power(self._gamma, keys.astype(np.float64))
        rep: npt.NDArray[np.float64] = 2.0 * powers / (self._gamma + 1)
        return rep

    def derived(self, key: str, compute: Callable[[LogSketch], T]) -> T:
        """``compute(self)``, kept under ``key`` until this sketch next changes.

        For what is read from a sketch at every evaluation while it rarely changes (a rolling
        reference window's aggregate changes once per bucket it gains or loses). Every
        method that changes the sketch drops what was kept; ``compute`` must depend only on
        the sketch's contents, and its result must not be modified (arrays are kept read-only).

        >>> s = LogSketch(); s.add([1.0, 2.0])
        >>> s.derived("n", lambda sk: sk.count), s.derived("n", lambda sk: -1)  # the kept one
        (2, 2)
        >>> s.add([3.0]); s.derived("n", lambda sk: sk.count)
        3
        """
        kept = self._derived
        if kept is None:
            kept = self._derived = {}
        elif key in kept:
            value: T = kept[key]
            return value
        value = kept[key] = compute(self)
        return value

    def buckets(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """Non-empty buckets as (representative values ascending, counts), read-only arrays.

        Computed once per state of the sketch (see :meth:`derived`).

        >>> s = LogSketch(); s.add([-2.0, 0.0, 3.0, 3.0]); v, c = s.buckets()
        >>> np.round(v, 1).tolist(), c.tolist()
        ([-2.0, 0.0, 3.0], [1, 1, 2])
        >>> c.flags.writeable
        False
        """
        return self.derived("buckets", LogSketch._buckets)

    def _buckets(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        zero_v = np.zeros(1 if self._zero else 0)
        zero_c = np.full(zero_v.size, self._zero, dtype=np.int64)
        values = np.concatenate(
            [-self._representatives(self._neg[0][::-1]), zero_v, self._representatives(self._pos[0])]
        )
        counts = np.concatenate([self._neg[1][::-1], zero_c, self._pos[1]])
        values.flags.writeable = counts.flags.writeable = False  # shared by every reader
        return values, counts

    def cdf(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """CDF of the bucketed distribution (each value replaced by its representative).

        It differs from the raw ECDF at ``x`` by at most the share of the bucket containing ``x``.
        NaN everywhere for an empty sketch.

        >>> s = LogSketch(); s.add([1.0, 2.0, 3.0, 4.0]); s.cdf([0.0, 2.5, 10.0]).tolist()
        [0.0, 0.5, 1.0]
        """
        points = np.asarray(x, dtype=np.float64)
        n = self.count
        if n == 0:
            return np.full(points.shape, np.nan)
        values, counts = self.buckets()
        cum = np.concatenate([[0], np.cumsum(counts)])
        result: npt.NDArray[np.float64] = cum[np.searchsorted(values, points, side="right")] / n
        return result

    @overload
    def quantile(self, q: float) -> float: ...
    @overload
    def quantile(self, q: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...
    def quantile(self, q: float | npt.NDArray[np.float64]) -> float | npt.NDArray[np.float64]:
        """Representative value of the bucket holding the sorted value at index ``floor(q*(n-1))``.

        That is ``np.quantile(data, q, method="lower")`` within relative error ``alpha``
        (for ``|x|`` in ``[MIN_VALUE, MAX_VALUE]``). NaN for an empty sketch.

        >>> s = LogSketch(); s.add(np.arange(1.0, 101.0))
        >>> abs(s.quantile(0.9) - 90.0) <= 0.01 * 90.0
        True
        >>> s.quantile(np.array([0.0, 1.0])).round(1).tolist()
        [1.0, 100.5]
        """
        qs = np.asarray(q, dtype=np.float64)
        if not np.all((qs >= 0) & (qs <= 1)):
            raise ValueError("quantile q must be in [0, 1]")
        n = self.count
        if n == 0:
            out = np.full(qs.shape, np.nan)
        else:
            values, counts = self.buckets()
            rank = np.floor(qs * (n - 1))
            out = values[np.searchsorted(np.cumsum(counts), rank, side="right")]
        return float(out) if np.ndim(q) == 0 else out

    def to_bytes(self) -> bytes:
        """Compact, versioned encoding: header, int32 keys, counts in the narrowest unsigned width.

        >>> s = LogSketch(); s.add(np.arange(100.0)); LogSketch.from_bytes(s.to_bytes()) == s
        True
        """
        (nk, nc), (pk, pc) = self._neg, self._pos
        largest = int(max(nc.max(initial=0), pc.max(initial=0)))
        width = next(w for w in (1, 2, 4, 8) if largest < 1 << (8 * w))
        header = _HEADER.pack(_VERSION, self._alpha, self._zero, nk.size, pk.size, width)
        dtype = _COUNT_DTYPES[width]
        parts = [nk.astype("<i4"), pk.astype("<i4"), nc.astype(dtype), pc.astype(dtype)]
        return header + b"".join(p.tobytes() for p in parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> LogSketch:
        """Decode ``to_bytes`` output; ValueError on an unknown version or malformed input.

        >>> LogSketch.from_bytes(b"\\x09")
        Traceback (most recent call last):
        ...
        ValueError: unsupported LogSketch format version 9 (this build reads 1)
        """
        if not data:
            raise ValueError("empty LogSketch encoding")
        if data[0] != _VERSION:
            raise ValueError(f"unsupported LogSketch format version {data[0]} (this build reads {_VERSION})")
        if len(data) < _HEADER.size:
            raise ValueError("truncated LogSketch encoding")
        _, alpha, zero, n_neg, n_pos, width = _HEADER.unpack_from(data)
        if width not in _COUNT_DTYPES:
            raise ValueError(f"invalid LogSketch count width {width}")
        if len(data) != _HEADER.size + 4 * (n_neg + n_pos) + width * (n_neg + n_pos):
            raise ValueError("LogSketch encoding has the wrong length")
        sketch = cls(alpha)
        off = _HEADER.size
        n = n_neg + n_pos
        keys = np.frombuffer(data, dtype="<i4", count=n, offset=off).astype(np.int32)
        counts = np.frombuffer(data, dtype=_COUNT_DTYPES[width], count=n, offset=off + 4 * n)
        if width == 8 and (counts > np.iinfo(np.int64).max).any():
            raise ValueError("LogSketch count overflows int64")
        counts = counts.astype(np.int64)
        neg = (keys[:n_neg], counts[:n_neg])
        pos = (keys[n_neg:], counts[n_neg:])
        for k, c in (neg, pos):
            out_of_range = k.size > 0 and (k[0] < sketch._kmin or k[-1] > sketch._kmax)
            if out_of_range or (np.diff(k) <= 0).any() or (c <= 0).any():
                raise ValueError("LogSketch encoding has invalid keys or counts")
        sketch._zero, sketch._neg, sketch._pos = int(zero), neg, pos
        return sketch
