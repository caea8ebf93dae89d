"""TensorBoard as a researcher sees it: a short run served by ``tensorboard --logdir`` (its HTTP data endpoints),
and the Scalars, Images and HParams views rendered by headless Chromium (scripts/tensorboard_browser_check.py).

The screenshot test is skipped with the reason when Chromium is absent (Debian: apt-get install -y chromium).
About a minute on 2 cores: `pytest -m browser tests/test_browser.py`.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "tensorboard_browser_check.py"
PLUGIN_VIEWS = ("scalars", "images", "hparams")
TB_ORANGE = (245, 124, 0)  # TensorBoard's header bar: a rendered TensorBoard page, not a browser error page


def _script():
    spec = importlib.util.spec_from_file_location("tensorboard_browser_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def check():
    if importlib.util.find_spec("tensorboard") is None:
        pytest.skip("tensorboard is not installed")
    return _script()


@pytest.fixture(scope="module")
def run_dir(check, tmp_path_factory):
    """A finished short run (the script's own TINY_RUN: a training curve and three validation evaluations)."""
    run = tmp_path_factory.mktemp("tb") / "run"
    done = subprocess.run(
        [shutil.which("vaelab-train") or "vaelab-train", *check.TINY_RUN, f"hydra.run.dir={run}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def served(check, run_dir):
    """What `tensorboard --logdir <run>` serves over HTTP: /data/runs, /data/plugins_listing, the scalars plugin's
    tags and points, the images plugin's tags, the hparams plugin's experiment and session groups."""
    with check.board(run_dir) as b:
        b.wait()
        return check.served(b)


def test_tensorboard_serves_run_scalars_and_hparams(served):
    data = served
    assert data["runs"], "no run served"
    for plugin in ("scalars", "images", "hparams"):
        assert plugin in data["plugins"], data["plugins"]
    tags = {tag for run_tags in data["scalars"].values() for tag in run_tags}
    for prefix in ("train/", "val/"):
        assert any(t.startswith(prefix) for t in tags), f"no {prefix} scalars among {sorted(tags)}"
    for run, run_tags in data["scalars"].items():
        for tag in ("train/loss", "train/kl", "val/kl"):
            assert run_tags.get(tag), (run, tag)  # served with at least one (step, value)
        assert len(run_tags["train/loss"]) >= 2, run_tags["train/loss"]  # a curve, not a point
    exp = data["hparams"]["experiment"]
    assert exp and exp["hparams"], data["hparams"]
    assert {"model/latent_dim", "optimizer/lr", "seed"} & set(exp["hparams"]), exp["hparams"][:20]
    assert any(m.startswith("final/") for m in exp["metrics"]), exp["metrics"]
    groups = data["hparams"]["session_groups"]
    assert groups and groups[0]["n_hparams"] > 0 and groups[0]["metrics"], groups


def test_tensorboard_scalars_have_no_findings(check, run_dir, served):
    """What the script finds wrong in the scalars (step axes, prefixes, collisions, validation curves that stop
    before training does); HParams and run-name remarks are left out."""
    scalar_findings = [f for f in check.findings(served, run_dir) if not f.startswith(("HParams", "run names"))]
    assert not scalar_findings, "\n".join(scalar_findings)


def _blank(png: Path) -> str | None:
    """Why the screenshot looks blank or is not TensorBoard, or None."""
    if png.stat().st_size < 10_000:
        return f"{png.stat().st_size} bytes"
    try:
        from PIL import Image, ImageStat
    except ImportError:
        return None
    with Image.open(png) as img:
        rgb = img.convert("RGB")
        if ImageStat.Stat(rgb.convert("L")).stddev[0] < 5:
            return "one colour"
        header = rgb.crop((0, 0, rgb.width, 40)).getcolors(rgb.width * 40) or []
        orange = sum(n for n, c in header if all(abs(a - b) < 30 for a, b in zip(c, TB_ORANGE, strict=True)))
        if orange < rgb.width * 40 // 4:
            return "no TensorBoard header bar (a browser error page?)"
        body = rgb.crop((0, 120, rgb.width, rgb.height))
        if len(body.getcolors(body.width * body.height) or []) < 20:
            return "an empty page body"
    return None


def test_browser_screenshots(check, run_dir, tmp_path):
    if check.find_chromium() is None:
        pytest.skip("Chromium not found (Debian: apt-get install -y chromium), so no browser check")
    out = tmp_path / "shots"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(run_dir), "--out", str(out), "--no-prefix-views"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    served = json.loads((out / "served.json").read_text())
    assert served["runs"] and any(t.startswith("train/") for t in next(iter(served["scalars"].values())))
    for view in PLUGIN_VIEWS:
        shot = served["screenshots"][view]
        png = Path(shot["png"])
        assert shot["ok"] and png.exists(), shot
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert _blank(png) is None, f"{view} screenshot: {_blank(png)} ({png})"
    assert "train/loss" in done.stdout and "screenshot scalars:" in done.stdout, done.stdout[-2000:]
    assert isinstance(served["findings"], list), served.keys()
