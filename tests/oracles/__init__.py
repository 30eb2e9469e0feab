"""Slow, straightforward reference implementations the tests and benchmarks check the twin against."""
