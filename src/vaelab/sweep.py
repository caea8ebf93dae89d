"""Multirun support: a check that requested Hydra plugins are installed, and the end-of-sweep report.

Kept free of torch/Lightning imports: it runs before every command and in Hydra's launcher process.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("vaelab")

# option name prefix -> (module that provides it, pip package)
PLUGINS = {
    "hydra/launcher=joblib": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher"),
    "hydra/launcher=submitit": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    "hydra/launcher=slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
    "hydra/sweeper=optuna": ("hydra_plugins.hydra_optuna_sweeper", "hydra-optuna-sweeper"),
    "hparams_search=": ("hydra_plugins.hydra_optuna_sweeper", "hydra-optuna-sweeper"),
}


def missing_plugin(argv: Sequence[str]) -> str | None:
    """A one-line message when an argument asks for a launcher/sweeper whose plugin is not installed."""
    for arg in argv:
        option = arg.lstrip("+")
        for prefix, (module, package) in PLUGINS.items():
            if option.startswith(prefix) and importlib.util.find_spec(module) is None:
                extra = "optuna" if "optuna" in package else "sweep"
                return (
                    f"{option} needs the Hydra plugin {package}, which is not installed; "
                    f"install it with: pip install 'vaelab[{extra}]'"
                )
    return None


def refused_jobs(sweep_dir: Path) -> list[Path]:
    """The job directories of `sweep_dir` whose job, in the sweep just run, found a run already there and was
    refused: Hydra wrote the job's ``.hydra/overrides.yaml`` after the run's metrics.json was last written (a
    job that runs writes its metrics.json afterwards). Both times come from one file system's clock."""
    refused = []
    for metrics in sorted(sweep_dir.glob("*/metrics.json")):
        saved = metrics.parent / ".hydra" / "overrides.yaml"
        if saved.is_file() and saved.stat().st_mtime_ns > metrics.stat().st_mtime_ns:
            refused.append(metrics.parent)
    return refused


class SweepReport(Callback):
    """At the end of a multirun: writes summary.csv/md (``vaelab-summarize``) into the sweep directory, prints
    it, and exits with code 1 and one line on stderr when any job did not complete (their results are kept;
    they are listed) or was refused because its directory already held a run (a sweep re-run into its own
    directory without skip_completed=true)."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from vaelab.summarize import summarize_dir

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            summary = summarize_dir(sweep_dir)
        except (ValueError, FileNotFoundError, OSError) as err:
            log.warning("vaelab: no sweep summary for %s: %s", sweep_dir, err)
            return
        print(summary.markdown())
        print(f"summary: {sweep_dir}/summary.md (vaelab-summarize {sweep_dir} --plot for figures)")
        problems = summary.problems()
        refused = [] if config.get("skip_completed") else refused_jobs(sweep_dir)
        said = []
        if refused:
            said.append(
                f"{len(refused)} of {len(summary.runs)} jobs were refused: their directories already hold runs, "
                "which vaelab never overwrites; run the sweep again with skip_completed=true to keep "
                "the completed jobs and run or continue only the others (or choose a new hydra.sweep.dir)"
            )
        if problems:
            said.append(
                f"{len(problems)} of {len(summary.runs)} jobs did not complete (listed above); "
                "the other jobs' results are kept"
            )
        if said:
            print("vaelab-train: " + "; ".join(said), file=sys.stderr)
            sys.exit(1)
