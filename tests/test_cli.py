"""The command line before Hydra (vaelab.cli): its checks run, and fail, without loading torch or Lightning."""

from __future__ import annotations

import subprocess
import sys

from vaelab.cli import null_group_override

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
