"""Shared fixtures: the real config, composed and shrunk for seconds-long runs."""

from __future__ import annotations

import inspect
import json
import re
import signal
from pathlib import Path

import pytest
import torch

from vaelab.config import compose_config

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout


def _has_cpp_compiler() -> bool:
    """Whether compile=true can build here (the check training runs before its first step)."""
    from vaelab.errors import ConfigError
    from vaelab.training_module import require_cpp_compiler

    try:
        require_cpp_compiler()
    except ConfigError:
        return False
    return True


HAS_CXX = _has_cpp_compiler()

# An easy case that recovers AD = 2 in a few seconds on one CPU thread.
EASY = [
    "data.manifold_dim=2",
    "data.ambient_dim=10",
    "data.n_samples=4000",
    "data.batch_size=256",
    "optimizer.lr=0.01",
    "trainer.max_epochs=150",
    "torch_threads=1",
    "callbacks.progress_bar=null",
]
# Shorter still, for checks of the run machinery rather than of the science.
SHORT = [
    *EASY,
    "trainer.max_epochs=20",
    "trainer.check_val_every_n_epoch=5",
    "callbacks.convergence.extend=false",
    "callbacks.diagnostics.every_n_epochs=5",
]


@pytest.fixture(autouse=True)
def _restore_torch_and_signals():
    """Runs change global state (threads, deterministic mode, Lightning's SIGINT handler): put it back."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    sigint = signal.getsignal(signal.SIGINT)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    signal.signal(signal.SIGINT, sigint)


@pytest.fixture
def make_cfg(tmp_path):
    """make_cfg(*overrides, name="run") -> the composed config with its run dir under tmp_path."""

    def make(*overrides: str, name: str = "run"):
        return compose_config(list(overrides), output_dir=tmp_path / name)

    return make


def read_metrics(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


# Test tiers: `pytest -m "not integration"` is the unit tier (under a minute on one CPU core); plain `pytest`
# runs both. A test is `integration` when it, a fixture it uses or a helper function it calls (those defined in
# this folder) assembles or trains whole runs (calls train...( / build...( / .fit(, or uses run overrides built on
# EASY / SHORT above), runs a command line end to end (a process: subprocess, the modules' _cli( / _start(
# helpers; or in process: a command's main([...])), reads the real data sets (SHARED_DATA: tens of MB) or
# composes a sweep of configs in a loop (compose_config(...) for ...).
# Whole modules say so with a module-level `pytestmark` (bench, reliability, the config snapshot).
INTEGRATION_SOURCE = re.compile(
    r"(?<![\w.])(train\w*|build\w*|_cli|_start)\(|\.fit\(|\bsubprocess\.|\b(SHORT|EASY)\b"
    r"|\bmain\(\[|\bSHARED(_DATA)?\b|\bcompose_config\([^()]*\)\s+for\b"
)
TESTS = Path(__file__).resolve().parent


def _names(code) -> set[str]:
    """The global names a code object and the comprehensions and lambdas inside it use."""
    return set(code.co_names).union(*(_names(c) for c in code.co_consts if inspect.iscode(c)))


_ANSWERS: dict = {}  # function -> whether it runs whole runs (None while being worked out: a cycle says no)


def _runs_whole_runs(fn) -> bool:
    """Whether `fn` (a test, fixture or helper defined in this folder) or a helper it calls matches the rule."""
    if fn not in _ANSWERS:
        _ANSWERS[fn] = None
        _ANSWERS[fn] = _check(fn)
    return bool(_ANSWERS[fn])


def _check(fn) -> bool:
    try:
        if TESTS not in Path(inspect.getsourcefile(fn) or "/").resolve().parents:
            return False
        if INTEGRATION_SOURCE.search(inspect.getsource(fn)):
            return True
    except (OSError, TypeError):
        return False
    code, names = getattr(fn, "__code__", None), getattr(fn, "__globals__", {})
    used = [names[name] for name in (_names(code) if code else ()) if name in names]
    if any(isinstance(v, list) and all(isinstance(s, str) for s in v) and set(EASY) <= set(v) for v in used):
        return True  # run overrides built on EASY / SHORT, e.g. a module's VAE = [*SHORT, ...]
    return any(inspect.isfunction(v) and _runs_whole_runs(v) for v in used)


def _is_integration(item: pytest.Function) -> bool:
    fixtures = [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
    return any(_runs_whole_runs(fn) for fn in (item.function, *fixtures))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if isinstance(item, pytest.Function) and _is_integration(item):
            item.add_marker(pytest.mark.integration)
