"""Benchmarks (``make bench``): measured numbers, never asserted in tests."""
