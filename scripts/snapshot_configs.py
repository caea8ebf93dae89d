"""Writes tests/data/composed_configs.json: the config every experiment (and the default run) composes to.

tests/test_config_snapshot.py compares today's composition with this file, so that a restructuring of conf/
or of the code cannot change what a run does without someone regenerating the file on purpose:
    python scripts/snapshot_configs.py
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from vaelab.config import compose_config

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "tests" / "data" / "composed_configs.json"


def experiments() -> list[str]:
    """``""`` (the default run) and every file under conf/experiment, by name."""
    return ["", *sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))]


def composed(experiment: str) -> dict:
    """The unresolved config of ``vaelab-train experiment=<experiment>`` (paths as interpolations, not values)."""
    cfg = compose_config([f"experiment={experiment}"] if experiment else [])
    return OmegaConf.to_container(cfg, resolve=False)


def main() -> None:
    snapshot = {name or "default": composed(name) for name in experiments()}
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(json.dumps(snapshot, indent=1, sort_keys=True) + "\n")
    print(f"wrote {SNAPSHOT} ({len(snapshot)} configs)")


if __name__ == "__main__":
    main()
