"""The ``vaelab-train`` command line before and after Hydra: argument checks and rewriting (plugins, ``group=null``,
``resume=``, an existing ``hydra.run.dir``), the overrides a job records, and the summary printed at the end.

Free of torch/Lightning imports: a command-line error is reported before they load (``vaelab.build.build`` loads
them).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from vaelab.entry import INTERRUPTED, interrupted_before_job_line
from vaelab.errors import ConfigError, RunExistsError
from vaelab.run_dir import LAST_CKPT, existing_run_message
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
    replace saved ones with the same key) and ``hydra.run.dir=<run dir>``, so the run continues in its
    directory: from ``checkpoints/last.ckpt`` (``ckpt_path=``), or, for a run stopped before training saved
    one, from the start (``skip_completed=true``). Raises ConfigError for a directory without a saved config,
    a run that failed or completed without a checkpoint, or with -m."""
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
    has_ckpt = (run_dir / LAST_CKPT).is_file()
    if not saved.is_file():
        raise ConfigError(
            f"resume={resume}: no .hydra/overrides.yaml"
            + ("" if has_ckpt else f" and no {LAST_CKPT}")
            + " in that directory, so it holds no run to continue; "
            + (
                "use ckpt_path=<checkpoint> with the run's overrides instead"
                if has_ckpt
                else "give a run directory (outputs/runs/<date>/<time>_<name>)"
            )
        )
    status = (read_metrics(run_dir) or {}).get("status")
    if not has_ckpt and status not in (None, "interrupted", "running"):
        raise ConfigError(
            f"resume={resume}: the run {status} before training saved {LAST_CKPT}, so there is nothing to "
            "continue; fix the config and start a new run"
        )
    given = [a for a in argv if _override_key(a) not in ("resume", "ckpt_path", "hydra.run.dir", "skip_completed")]
    keys = {_override_key(a) for a in given}
    own = [str(o) for o in OmegaConf.load(saved) or []]
    own = [o for o in own if _override_key(o) not in RUN_CONTROL_KEYS and _override_key(o) not in keys]
    start = [f"ckpt_path='{run_dir / LAST_CKPT}'"] if has_ckpt else ["skip_completed=true"]  # no checkpoint: over
    return [*own, *given, f"resume='{run_dir}'", *start, f"hydra.run.dir='{run_dir}'"]


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
        raise RunExistsError(existing_run_message(run_dir, previous))


def continue_hint(output_dir: str, multirun: bool) -> str:
    """The command that continues a job stopped by a signal: in a sweep, the sweep again with skip_completed;
    otherwise resume= (which starts a run over when it stopped before training saved a checkpoint)."""
    if multirun:
        given = [a for a in sys.argv[1:] if _override_key(a) not in ("skip_completed", "hydra.sweep.dir") and a != "-m"]
        sweep_dir = HydraConfig.get().sweep.dir
        return (
            f"finish the sweep with: vaelab-train -m {' '.join(given)} skip_completed=true hydra.sweep.dir={sweep_dir}"
        )
    if (Path(output_dir) / LAST_CKPT).is_file():
        return f"continue with: vaelab-train resume={output_dir}"
    return f"nothing was trained yet; start it over with: vaelab-train resume={output_dir}"


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


FINAL_METRICS = (  # the evaluators' final numbers beyond the first lines, as metrics.json names them
    ("mcc", ""),
    ("mi", " nats"),
    ("iw_nll", " nats"),
    ("iw_ppl", ""),
    ("probe_accuracy_linear", ""),
    ("probe_accuracy_knn", ""),
    ("probe_accuracy_mlp", ""),
)


# ground truth that fixes the latent size a run needs (data on a known manifold, sources of known number): there
# every latent dim active is the expected answer, not a sign that the model ran out of dims
KNOWN_DIMENSION_KEYS = ("true_manifold_dim", "true_n_sources")


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
    evaluated = "   ".join(
        f"{k} = {result[k]:.4g}{unit}"
        + (" (saturated: near log N)" if k == "mi" and result.get("mi_saturated") else "")
        for k, unit in FINAL_METRICS
        if k in result
    )
    if "group_active_dims" in result:
        evaluated = f"group_active_dims = {result['group_active_dims']}   " + evaluated
    if evaluated:
        lines.append(f"  {evaluated.rstrip()}")
    if "converged" in result:
        lines.append(f"  converged: {'yes' if result['converged'] else 'NO'} ({result['convergence']['reason']})")
    if result.get("active_dims_saturated") and not any(k in result for k in KNOWN_DIMENSION_KEYS):
        k = len(result["per_dim_encoder_var"])
        lines.append(
            f"  warning: all {k} latent dims are active, so active_dims is a lower bound of the data's dimension; "
            "raise model.latent_dim"
        )
    if result.get("gamma_at_floor"):
        lines.append("  warning: gamma reached model.gamma_floor; lower the floor or check the data")
    where = f"TensorBoard: {result['tensorboard_dir']}" if result.get("tensorboard_dir") else "tensorboard/"
    lines.append(f"  run dir: {result.get('run_dir')}  (metrics.json, checkpoints/, {where})")
    return "\n".join(lines)


def hydra_error_line(err: BaseException, argv: list[str]) -> str:
    """Hydra's multi-line report of a composition error (an unknown key, a missing option, an unparsable
    override) as one line; an unknown key of a vaelab class's group lists the keys that class accepts."""
    text = str(err)
    unknown = re.match(r"Could not override '([^']+)'", text)
    if unknown:
        key = unknown.group(1)
        arg = next((a for a in argv if _override_key(a) == key), key)
        return f"{arg}: {_unknown_key_reason(key, arg, [a for a in argv if a != arg])}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    cause = err.__cause__
    if cause is not None and str(cause).strip() and not lines[-1].endswith(str(cause).strip().splitlines()[0]):
        lines.append(str(cause).strip().splitlines()[0])
    out: list[str] = []
    for line in lines:  # "Available options in 'model':" then one option per line -> one list
        if out and out[-1].endswith(":"):
            out[-1] += " " + line
        elif out and out[-1].rsplit(":", 1)[0].startswith("Available options") and ":" not in line:
            out[-1] += ", " + line
        elif line.startswith("Config search path"):
            break
        elif not line.startswith(("full_key:", "object_type=")):
            out.append(line)
    message = "; ".join(out)
    if type(err).__name__ == "InstantiationException":
        message += " (HYDRA_FULL_ERROR=1 shows the traceback)"
    return message


def _unknown_key_reason(key: str, arg: str, others: list[str]) -> str:
    """Why `key` cannot be set: the keys its config node has (for vaelab's classes: the arguments they take)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import DictConfig, open_dict

    from vaelab.config import compose_config
    from vaelab.validation import check_arguments

    parent, _, name = key.rpartition(".")
    try:
        cfg = compose_config([a for a in others if not a.startswith("-") and "," not in a])
    except Exception:  # the rest of the command line does not compose either: Hydra's words
        return f"the config has no key {key} (vaelab-train --cfg job prints the config)"
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig):
        return f"{parent} is not a group of keys"
    if not parent:
        keys = [k for k in cfg if k not in ("hydra",)]
        return f"the config has no top-level key {key}; they are: {', '.join(keys)} (vaelab-train --help)"
    try:  # the value the override itself would set (Hydra's grammar: 1000 an int, null None)
        value = OverridesParser.create().parse_overrides([arg])[0].value()
    except Exception:  # an override Hydra cannot parse: probe with its text
        value = arg.partition("=")[2]
    try:
        with open_dict(node):
            node[name] = value
        check_arguments(cfg, parent)
    except ConfigError as err:
        message = str(err)
        return message.partition(": ")[2] or message
    keys = ", ".join(k for k in node if k != name and not str(k).startswith("_"))
    return (
        f"{parent} has no key {name}; its keys are: {keys} "
        f"(+{key}=... adds an argument its class takes but the config does not list)"
    )


def run_reporting_errors(main: Callable[[], Any]) -> None:
    """Checks and rewrites the command line (prepare_command_line), then runs Hydra's `main` so that its
    composition errors (exit 2) and an interrupt before a job starts (exit 130) are one line on stderr;
    HYDRA_FULL_ERROR=1 set by the user shows Hydra's traceback instead."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    tracebacks = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises its errors to here rather than printing them
    try:
        prepare_command_line()
        main()
    except KeyboardInterrupt:
        print(interrupted_before_job_line(sys.argv[1:]), file=sys.stderr)
        sys.exit(INTERRUPTED)
    except (HydraException, OmegaConfBaseException) as err:
        if tracebacks:
            raise
        print(f"vaelab-train: error: {hydra_error_line(err, sys.argv[1:])}", file=sys.stderr)
        sys.exit(2)


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


def start_line(cfg: DictConfig, fields: dict[str, Any], ckpt_path: str | None) -> str:
    """The run's key settings in one line (train.log): directory, overrides, data, model, seed, length."""
    length = {k: cfg.trainer.get(k) for k in ("max_epochs", "max_steps") if cfg.trainer.get(k) not in (None, -1)}
    settings = {
        "data": fields.get("data"),
        "model": fields.get("model"),
        "latent_dim": fields.get("model_latent_dim"),
        "seed": cfg.seed,
        **{f"trainer.{k}": v for k, v in length.items()},
        "restarts": cfg.get("restarts", 1) if int(cfg.get("restarts", 1)) > 1 else None,
    }
    said = " ".join(f"{k}={v}" for k, v in settings.items() if v is not None)
    resumed = f"; resuming from {ckpt_path}" if ckpt_path else ""
    return f"run {cfg.paths.output_dir}: {said}; overrides: {' '.join(overrides()) or 'none'}{resumed}"


def member_line(result: dict[str, Any]) -> str:
    """One line for a seed-parallel member that did not complete (it diverged alone; the others went on)."""
    seed, status, error, where = (result.get(k, "") for k in ("seed", "status", "error", "run_dir"))
    return f"vaelab: seed {seed}: {status}: {error} [{where}]"
