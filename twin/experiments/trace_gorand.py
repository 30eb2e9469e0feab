"""A bit-exact port of Go 1.19's ``math/rand`` global source (fgd-protocol.md §2).

The FGD reference simulator draws its pod shuffle, workload inflation and node ranking from Go's
global generator; replaying the published per-seed curves needs the very same stream, so this is a
literal port (an additive lagged-Fibonacci generator, length 607, tap 273) rather than a numpy
Generator. It is used only by the paper-protocol runner; everything else uses twin.seeding.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from typing import TypeVar

from twin.experiments.trace_gorand_cooked import RNG_COOKED

_LEN = 607
_TAP = 273
_MASK64 = (1 << 64) - 1
_MASK63 = (1 << 63) - 1
_INT32MAX = (1 << 31) - 1

T = TypeVar("T")


def _seedrand(x: int) -> int:
    """x -> 48271·x mod (2³¹−1) by Schrage's method, as Go computes it in int32."""
    hi, lo = _go_divmod(x, 44488)
    x = 48271 * lo - 3399 * hi
    if x < 0:
        x += _INT32MAX
    return x


def _go_divmod(x: int, y: int) -> tuple[int, int]:
    """Go's truncating division (x is never negative here, but keep the semantics honest)."""
    q = abs(x) // y
    if x < 0:
        q = -q
    return q, x - q * y


class GoRand:
    """Go's ``rand.New(rand.NewSource(seed))`` with the methods the reference simulator calls."""

    __slots__ = ("_feed", "_tap", "_vec")

    def __init__(self, seed: int) -> None:
        self._tap = 0
        self._feed = _LEN - _TAP
        seed %= _INT32MAX  # Python's % is already non-negative for a positive modulus
        if seed == 0:
            seed = 89482311
        x = seed
        vec = [0] * _LEN
        for i in range(-20, _LEN):
            x = _seedrand(x)
            if i >= 0:
                u = x << 40
                x = _seedrand(x)
                u ^= x << 20
                x = _seedrand(x)
                u ^= x
                u ^= RNG_COOKED[i] & _MASK64
                vec[i] = u & _MASK64
        self._vec = vec

    def copy(self) -> GoRand:
        """An independent generator at the same position in the stream."""
        clone = GoRand.__new__(GoRand)
        clone._tap = self._tap
        clone._feed = self._feed
        clone._vec = list(self._vec)
        return clone

    def uint64(self) -> int:
        self._tap -= 1
        if self._tap < 0:
            self._tap += _LEN
        self._feed -= 1
        if self._feed < 0:
            self._feed += _LEN
        x = (self._vec[self._feed] + self._vec[self._tap]) & _MASK64
        self._vec[self._feed] = x
        return x

    def int63(self) -> int:
        return self.uint64() & _MASK63

    def int31(self) -> int:
        return self.int63() >> 32

    def uint32(self) -> int:
        return (self.int63() >> 31) & 0xFFFFFFFF

    def float64(self) -> float:
        # Go 1.19 divides Int63 by 2^63 and redraws the rare 1.0 that float rounding produces.
        while True:
            f = self.int63() / (1 << 63)
            if f != 1.0:
                return f

    def int31n(self, n: int) -> int:
        """``Rand.Int31n``: masked for powers of two (still one draw for n = 1), else rejection."""
        if n <= 0:
            raise ValueError("invalid argument to Int31n")
        if n & (n - 1) == 0:
            return self.int31() & (n - 1)
        limit = _INT32MAX - (1 << 31) % n
        v = self.int31()
        while v > limit:
            v = self.int31()
        return v % n

    def intn(self, n: int) -> int:
        if n > _INT32MAX:
            raise ValueError("intn beyond 2^31-1 is not used by the protocol")
        return self.int31n(n)

    def _int31n_lemire(self, n: int) -> int:
        """The unexported ``int31n`` (Lemire's reduction) that ``Shuffle`` uses."""
        v = self.uint32()
        prod = v * n
        low = prod & 0xFFFFFFFF
        if low < n:
            thresh = ((1 << 32) - n) % n
            while low < thresh:
                v = self.uint32()
                prod = v * n
                low = prod & 0xFFFFFFFF
        return prod >> 32

    def shuffle(self, items: MutableSequence[T]) -> None:
        """``Rand.Shuffle`` in place (Fisher-Yates from the end)."""
        for i in range(len(items) - 1, 0, -1):
            j = self._int31n_lemire(i + 1)
            items[i], items[j] = items[j], items[i]

    def perm(self, n: int) -> list[int]:
        m = [0] * n
        for i in range(n):
            j = self.intn(i + 1)
            m[i] = m[j]
            m[j] = i
        return m
