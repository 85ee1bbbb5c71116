"""Benchmarks (not tests): `python -m bench NAME [options]`; each prints one JSON object last."""
