"""Benchmarks (not tests): `make bench` runs `python -m bench.run`; see bench/README.md."""
