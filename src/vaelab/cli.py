"""The ``vaelab-train`` command line before and after Hydra: argument checks and rewriting (plugins, ``group=null``,
``resume=``, an existing ``hydra.run.dir``), the overrides a job records, and the summary printed at the end.

Free of torch/Lightning imports: a command-line error is reported before they load (``vaelab.train.build`` loads
them).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from vaelab.errors import ConfigError, RunExistsError
from vaelab.run_dir import LAST_CKPT
from vaelab.run_record import RUN_CONTROL_KEYS, read_metrics
from vaelab.sweep import missing_plugin

GROUP_OFF_HINTS = {
    "kl_warmup": "where an experiment turned the warm-up on, kl_warmup.beta0=1 keeps the KL weight at 1 (no warm-up)"
}


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def overrides() -> list[str]:
    """The running job's command-line overrides, without those that only say how to run it (RUN_CONTROL_KEYS)."""
    task = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return [o for o in task if _override_key(o) not in RUN_CONTROL_KEYS]


def job_label() -> str:
    """``job <num> (<overrides>)``: a multirun job, in a log line."""
    job = HydraConfig.get().job
    return f"job {job.num} ({' '.join(overrides()) or 'no overrides'})"


def _option(argv: list[str], key: str) -> str | None:
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"{key}=")]
    return values[-1].strip("'\"") if values else None


def expand_resume(argv: list[str]) -> list[str]:
    """``resume=<run dir>``: the run's own overrides (``.hydra/overrides.yaml``) plus those given now (which
    replace saved ones with the same key), ``ckpt_path=<run dir>/checkpoints/last.ckpt`` and
    ``hydra.run.dir=<run dir>``, so the run continues in its directory. Raises ConfigError when the directory
    has no checkpoint or no saved config, or with -m."""
    resume = _option(argv, "resume")
    if resume is None:
        return argv
    if "-m" in argv or "--multirun" in argv:
        raise ConfigError(
            "resume= continues one run; to finish an interrupted sweep run it again with "
            "skip_completed=true hydra.sweep.dir=<sweep dir>"
        )
    run_dir = Path(resume).expanduser().resolve()
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not (run_dir / LAST_CKPT).is_file():
        raise ConfigError(
            f"resume={resume}: no {LAST_CKPT} in that directory (a run saves it when training "
            "starts); start the run again instead"
        )
    if not saved.is_file():
        raise ConfigError(
            f"resume={resume}: no .hydra/overrides.yaml in that directory, so its config is "
            "unknown; use ckpt_path=<checkpoint> with the run's overrides instead"
        )
    given = [a for a in argv if _override_key(a) not in ("resume", "ckpt_path", "hydra.run.dir")]
    keys = {_override_key(a) for a in given}
    own = [str(o) for o in OmegaConf.load(saved) or []]
    own = [o for o in own if _override_key(o) not in RUN_CONTROL_KEYS and _override_key(o) not in keys]
    return [*own, *given, f"resume='{run_dir}'", f"ckpt_path='{run_dir / LAST_CKPT}'", f"hydra.run.dir='{run_dir}'"]


def check_run_dir(argv: list[str]) -> None:
    """A ``hydra.run.dir`` that already holds a run is refused before Hydra writes its .hydra/ files there."""
    run_dir = _option(argv, "hydra.run.dir")
    if (
        run_dir is None
        or "-m" in argv
        or "--multirun" in argv
        or any(_option(argv, key) not in (None, "null", "false") for key in RUN_CONTROL_KEYS)
    ):
        return
    previous = read_metrics(run_dir)
    if previous is not None:
        raise RunExistsError(
            f"{run_dir} already holds a run (status {previous.get('status')}); vaelab never "
            f"overwrites a run: choose a new hydra.run.dir, or continue it with resume={run_dir}"
        )


def null_group_override(argv: list[str]) -> str | None:
    """``group=null`` for a config group (e.g. kl_warmup=null) is not a Hydra override (it fails with a bare
    ValueError); returns what to write instead, or None."""
    import vaelab.conf

    conf = Path(vaelab.conf.__file__).resolve().parent
    for arg in argv:
        key, _, value = arg.partition("=")
        if value.strip("'\"") == "null" and (conf / key.lstrip("+")).is_dir():
            group = key.lstrip("+")
            hint = GROUP_OFF_HINTS.get(
                group,
                "one an experiment turned on stays on (its values would be left "
                "without their class): use a run without that experiment",
            )
            return (
                f"{arg}: a config group cannot be set to null on the command line; pick one of its options "
                f"({group}=<option>), or leave it out; {hint}"
            )
    return None


def format_summary(result: dict[str, Any]) -> str:
    """A few lines for the terminal after a completed run: active dims, gamma, reconstruction error, where the
    files are."""
    truth = f" (manifold_dim = {result['true_manifold_dim']})" if "true_manifold_dim" in result else ""
    numbers = "   ".join(
        f"{k} = {result[k]:.4g}{unit}"
        for k, unit in (("gamma", ""), ("recon_mse", ""), ("elbo", " nats"), ("kl", " nats"))
        if k in result
    )
    lines = [
        f"vaelab: {result['status']} in {result['wall_time_s']:.1f} s",
        f"  active_dims = {result['active_dims']}{truth}   active_units = {result['active_units']}",
        f"  {numbers}",
        "  sorted encoder variances: " + " ".join(f"{v:.2g}" for v in sorted(result["per_dim_encoder_var"])),
    ]
    if "converged" in result:
        lines.append(f"  converged: {'yes' if result['converged'] else 'NO'} ({result['convergence']['reason']})")
    if result.get("gamma_at_floor"):
        lines.append("  warning: gamma reached model.gamma_floor; lower the floor or check the data")
    lines.append(f"  run dir: {result.get('run_dir')}  (metrics.json, checkpoints/, tensorboard/)")
    return "\n".join(lines)


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # outside training (where LastCheckpoint handles it) SIGTERM acts like Ctrl-C


def prepare_command_line() -> None:
    """Before Hydra parses ``sys.argv``: checks that a requested launcher/sweeper plugin is installed, expands
    ``resume=``, refuses to overwrite a run (a problem is one line on stderr and exit code 2), and makes SIGTERM
    act like Ctrl-C."""
    problem = missing_plugin(sys.argv[1:]) or null_group_override(sys.argv[1:])
    try:
        argv = expand_resume(sys.argv[1:])
        check_run_dir(argv)
    except ConfigError as err:
        problem = problem or str(err)
    if problem:
        print(f"vaelab-train: error: {problem}", file=sys.stderr)
        sys.exit(2)
    sys.argv[1:] = argv
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
