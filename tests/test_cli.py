"""The command line before Hydra (vaelab.cli): its checks run, and fail, without loading torch or Lightning."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from vaelab.cli import null_group_override
from vaelab.config import compose_config

LIGHT_MODULES = ("vaelab.cli", "vaelab.validation", "vaelab.run_dir", "vaelab.schedules", "vaelab.train")


def test_command_line_modules_load_without_torch_or_lightning():
    code = (
        f"import sys\nfor m in {LIGHT_MODULES!r}: __import__(m)\n"
        "print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_command_line_error_is_reported_before_torch_loads():
    code = (
        "import sys\nfrom vaelab.train import cli\nsys.argv = ['vaelab-train', 'kl_warmup=null']\n"
        "try:\n    cli()\nexcept SystemExit as exit:\n"
        "    print(exit.code, 'torch' in sys.modules, 'lightning' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "2 False False", proc.stderr
    assert proc.stderr.startswith("vaelab-train: error: kl_warmup=null: a config group cannot be set to null")


def test_null_for_a_config_group_says_what_to_write_instead():
    assert "kl_warmup.beta0=1" in null_group_override(["experiment=manifold_t1_cvae_std_prior", "kl_warmup=null"])
    assert "inference=<option>" in null_group_override(["inference=null"])
    assert null_group_override(["ckpt_path=null", "model.prior=standard", "kl_warmup=linear"]) is None


def test_a_config_error_is_reported_before_torch_loads(tmp_path):
    code = (
        "import sys\nfrom vaelab.train import cli\n"
        "sys.argv = ['vaelab-train', 'model.latent_dim=abc', 'hydra.run.dir=run']\n"
        "try:\n    cli()\nexcept SystemExit as exit:\n"
        "    print(exit.code, 'torch' in sys.modules, 'lightning' in sys.modules)"
    )
    env = {**os.environ, "VAELAB_LOG_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert proc.stdout.strip() == "2 False False", proc.stderr
    assert proc.stderr.startswith("vaelab-train: error: model.latent_dim='abc' must be an integer")


def test_help_gives_a_meaning_for_every_config_group_and_top_level_key():
    proc = subprocess.run([sys.executable, "-m", "vaelab.train", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import vaelab.conf

    conf = Path(vaelab.conf.__file__).parent
    groups = [p.name for p in conf.iterdir() if p.is_dir() and p.name not in ("hydra", "__pycache__")]
    keys = list(compose_config([]))
    for name in [*groups, *keys, "hydra/launcher"]:
        assert re.search(rf"^  {re.escape(name)}  +\S", proc.stdout, re.MULTILINE), f"--help has no line for {name}"


def test_the_summary_prints_every_final_metric_the_run_computed():
    from vaelab.cli import format_summary

    result = {
        "status": "completed",
        "wall_time_s": 3.0,
        "active_dims": 2,
        "active_units": 2,
        "per_dim_encoder_var": [1e-4, 1.0],
        "mcc": 0.912,
        "mi": 4.5,
        "iw_nll": 88.1,
        "mi_saturated": True,
        "probe_accuracy_linear": 0.93,
        "probe_accuracy_knn": 0.95,
        "probe_accuracy_mlp": 0.96,
        "group_active_dims": [2, 3],
        "run_dir": "x",
    }
    summary = format_summary(result)
    for text in (
        "mcc = 0.912",
        "mi = 4.5 nats (saturated",
        "iw_nll = 88.1 nats",
        "probe_accuracy_linear = 0.93",
        "probe_accuracy_knn = 0.95",
        "probe_accuracy_mlp = 0.96",
        "[2, 3]",
    ):
        assert text in summary
    assert "mcc" not in format_summary({k: v for k, v in result.items() if k != "mcc"})


def test_the_summary_warns_when_every_latent_dim_is_active_on_data_of_unknown_dimension():
    from vaelab.cli import format_summary

    result = {
        "status": "completed",
        "wall_time_s": 3.0,
        "active_dims": 2,
        "active_units": 2,
        "per_dim_encoder_var": [1e-4, 2e-4],
        "active_dims_saturated": True,
        "run_dir": "x",
    }
    warning = (
        "all 2 latent dims are active, so active_dims is a lower bound of the data's dimension; raise model.latent_dim"
    )
    assert warning in format_summary(result)
    assert "lower bound" not in format_summary({**result, "active_dims_saturated": False})
    # a known dimension the latent size matches: every dim active is the expected answer
    assert "lower bound" not in format_summary({**result, "true_manifold_dim": 2})
    assert "lower bound" not in format_summary({**result, "true_n_sources": 2})


def test_output_into_a_closed_pipe_ends_quietly():
    """`vaelab-train --help | head -1`: the reader goes away first; no traceback, the shell's exit code 141."""
    proc = subprocess.Popen(
        [shutil.which("vaelab-train") or "vaelab-train", "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # before anything was written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err, err
