"""Shared pieces of the benchmark cases: summary statistics, the machine's state, the JSON hand-over.

Every case script runs in its own process and writes one JSON object (``--json PATH``) that run.py collects.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any


def summary(values: list[float], digits: int = 4) -> dict[str, Any]:
    """{"median", "min", "max", "n"} of `values` (rounded to `digits` significant places)."""
    rounded = lambda v: float(f"{v:.{digits}g}")  # noqa: E731
    return {
        "median": rounded(statistics.median(values)),
        "min": rounded(min(values)),
        "max": rounded(max(values)),
        "n": len(values),
    }


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages: above the core count, other processes competed for the CPU."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, MB (10^6 bytes)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6, 1)  # ru_maxrss: KiB on Linux


def write_result(path: str | None, result: dict[str, Any]) -> None:
    """Prints `result` and writes it as JSON to `path` (when given)."""
    text = json.dumps(result, indent=2)
    print(text, flush=True)
    if path:
        Path(path).write_text(text)
