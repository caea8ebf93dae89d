"""Compose vaelab's config outside a ``vaelab-train`` process (tests, benchmarks, notebooks)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

MAX_JOB_DIRNAME = 200  # file systems allow 255 bytes per name


def job_dirname(num: int, overrides: str) -> str:
    """A multirun job's folder name, ``<num>_<overrides>``; past MAX_JOB_DIRNAME characters the overrides are cut
    and a hash of the whole string keeps the name unique and the same on every run of the sweep (the
    ``hydra.sweep.subdir`` resolver ``${vaelab_job_dir:${hydra.job.num},${hydra.job.override_dirname}}``)."""
    name = f"{num}_{overrides}"
    if len(name.encode()) <= MAX_JOB_DIRNAME:
        return name
    digest = hashlib.sha1(overrides.encode()).hexdigest()[:12]
    return name.encode()[: MAX_JOB_DIRNAME - 14].decode(errors="ignore") + f"~{digest}"


if not OmegaConf.has_resolver("vaelab_job_dir"):
    OmegaConf.register_new_resolver("vaelab_job_dir", lambda num, overrides: job_dirname(int(num), str(overrides)))


def compose_config(overrides: Sequence[str] = (), output_dir: str | os.PathLike | None = None) -> DictConfig:
    """The config `vaelab-train <overrides>` would run, with the run directory set to `output_dir`."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="vaelab.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # ${hydra:...} and the run's overrides, as in a real run
    with open_dict(cfg):
        del cfg["hydra"]  # a task never sees this node in a real run either
        if output_dir is not None:
            cfg.paths.output_dir = str(output_dir)
    return cfg
