"""One default run, as `vaelab-train <overrides>` runs it: wall time, the time its diagnostics take (every
`Diagnostics.run` during training and the final one on the test split) and their share, and the process's
peak resident memory.

    python scripts/bench/default_run.py                                   # the default synthetic run
    python scripts/bench/default_run.py -- experiment=vae_mnist paths.data_dir=/path/to/data
"""

from __future__ import annotations

import argparse
import tempfile
import time

from common import load_average, peak_rss_mb, write_result
from vaelab.callbacks import Diagnostics
from vaelab.config import compose_config
from vaelab.train import train


def measure(overrides: list[str]) -> dict:
    diagnostics_s: list[float] = []
    plain_run = Diagnostics.run

    def timed_run(self, trainer, module, split):
        start = time.perf_counter()
        try:
            return plain_run(self, trainer, module, split)
        finally:
            diagnostics_s.append(time.perf_counter() - start)

    Diagnostics.run = timed_run  # this process runs nothing else
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(overrides, output_dir=f"{tmp}/run")
        start = time.perf_counter()
        result = train(cfg)
        wall = time.perf_counter() - start
    return {
        "kind": "default_run",
        "overrides": overrides,
        "wall_s": round(wall, 2),
        "steps": result["steps"],
        "diagnostics_runs": len(diagnostics_s),
        "diagnostics_s": round(sum(diagnostics_s), 3),
        "diagnostics_share": round(sum(diagnostics_s) / wall, 4),
        "peak_rss_mb": peak_rss_mb(),
        "load_before": load_before,
        "load_after": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the result here")
    parser.add_argument("overrides", nargs="*", help="config overrides (none: the default run)")
    args = parser.parse_args()
    write_result(args.json, measure(args.overrides))


if __name__ == "__main__":
    main()
