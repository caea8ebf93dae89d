"""Compose vaelab's config outside a ``vaelab-train`` process (tests, benchmarks, notebooks)."""
from __future__ import annotations

import os
from collections.abc import Sequence

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict


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
