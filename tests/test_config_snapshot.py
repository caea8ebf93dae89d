"""Every experiment composes to the config recorded in tests/data/composed_configs.json.

A restructuring of conf/ or the code must not change what a run does. When a change is meant to, regenerate the
file (``python scripts/snapshot_configs.py``) and commit it with the change that explains it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("snapshot_configs", ROOT / "scripts" / "snapshot_configs.py")
snapshot_configs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(snapshot_configs)
RECORDED = json.loads(snapshot_configs.SNAPSHOT.read_text())
pytestmark = pytest.mark.integration  # composes every experiment: a sweep over conf/ (~0.4 s each)


def test_every_experiment_is_recorded():
    assert sorted(RECORDED) == sorted(name or "default" for name in snapshot_configs.experiments())


@pytest.mark.parametrize("experiment", snapshot_configs.experiments())
def test_experiment_composes_as_recorded(experiment):
    now = snapshot_configs.composed(experiment)
    recorded = RECORDED[experiment or "default"]
    changed = sorted(_differences(recorded, now))
    assert not changed, f"{experiment or 'default'}: these keys compose differently now: {changed[:20]}"


def _differences(a, b, prefix=""):
    """Dotted keys whose values differ between two nested containers."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a.keys() | b.keys():
            yield from _differences(a.get(key, "<absent>"), b.get(key, "<absent>"), f"{prefix}{key}.")
    elif a != b:
        yield prefix.rstrip(".")
