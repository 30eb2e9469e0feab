"""The Go math/rand port against Go's own outputs (fgd-protocol.md §2 test vectors)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from twin.experiments.trace_gorand import GoRand


def test_int63_vectors() -> None:
    r = GoRand(1)
    assert [r.int63() for _ in range(3)] == [5577006791947779410, 8674665223082153551, 6129484611666145821]
    r = GoRand(42)
    assert [r.int63() for _ in range(3)] == [3440579354231278675, 608747136543856411, 5571782338101878760]


def test_intn_vector() -> None:
    r = GoRand(1)
    assert [r.intn(100) for _ in range(10)] == [81, 87, 47, 59, 81, 18, 25, 40, 56, 0]


def test_seed_zero_and_negative_map_like_go() -> None:
    assert GoRand(0).int63() == GoRand(89482311).int63()
    assert GoRand(-1).int63() == GoRand((1 << 31) - 2).int63()


def test_intn_one_still_consumes_a_draw() -> None:
    a, b = GoRand(5), GoRand(5)
    assert a.intn(1) == 0
    b.int63()
    assert a.int63() == b.int63()


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=-(2**40), max_value=2**40), st.integers(min_value=1, max_value=300))
def test_shuffle_and_perm_are_permutations(seed: int, n: int) -> None:
    r = GoRand(seed)
    items = list(range(n))
    r.shuffle(items)
    assert sorted(items) == list(range(n))
    assert sorted(r.perm(n)) == list(range(n))
    assert all(0 <= r.intn(n) < n for _ in range(5))
    assert 0.0 <= r.float64() < 1.0


def test_copy_continues_the_same_stream_independently() -> None:
    a = GoRand(9)
    a.int63()
    b = a.copy()
    assert [a.int63() for _ in range(5)] == [b.int63() for _ in range(5)]
    a.int63()
    assert a.int63() != b.int63()
