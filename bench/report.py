"""The breakdown a benchmark prints before its last line (the JSON object): one part per line, for people."""

from __future__ import annotations

from collections.abc import Mapping


def print_parts(bench: str, parts: Mapping[str, object]) -> None:
    """Print `parts` as `bench: name  value` lines, names aligned (the JSON line that follows holds them too)."""
    width = max((len(name) for name in parts), default=0)
    for name, value in parts.items():
        print(f"{bench}: {name.ljust(width)}  {value}", flush=True)
