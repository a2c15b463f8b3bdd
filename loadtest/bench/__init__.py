"""`make bench`: the reservation endpoint against its floor and a naive baseline, and the
order pipeline behind it (python -m loadtest.bench; docs/benchmarks.md)."""
