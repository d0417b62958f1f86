"""Memory sizes: parsing what a user writes ('8GB', '1.5 GiB', '800M') and showing bytes back; below the config
(train.memory_budget is checked when the config is read) and the planner alike."""

from __future__ import annotations

import re

GIB = 1024**3
MIB = 1024**2

UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": MIB, "mb": 1000**2, "mib": MIB}
UNITS.update({"g": GIB, "gb": 1000**3, "gib": GIB, "t": 1024**4, "tb": 1000**4, "tib": 1024**4})


def parse_size(text: str) -> int:
    """'12GB', '1.5 GiB', '800M' -> bytes (GB = 10^9, GiB and a bare G = 2^30)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in UNITS:
        raise ValueError(f"not a memory size: {text!r} (write e.g. 8GB, 1.5GiB or 800MB)")
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def human(n: float) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.0f} MiB"
