"""TensorBoard's own reader (EventAccumulator) on a short run: one step axis (optimizer steps), one value per tag
and step, every tag under a split prefix, a training curve and a validation point at the end of training."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import EASY
from vaelab.train import train

PREFIXES = ("train/", "val/", "test/", "final/", "model/")
# 4 optimizer steps per epoch (400 training points, batches of 100), 12 epochs = 48 steps: fewer than
# trainer.log_every_n_steps (50). The validation loop and the diagnostics both run after epochs 5 and 10 (steps
# 20, 40); the diagnostics also after the last epoch (step 48).
TINY = [
    *EASY,
    "data.n_samples=500",
    "data.batch_size=100",
    "trainer.max_epochs=12",
    "trainer.check_val_every_n_epoch=5",
    "callbacks.diagnostics.every_n_epochs=5",
    "callbacks.convergence.extend=false",
    "logger=[tensorboard,csv]",
]
FINAL_STEP = 48


def _written(run_dir: Path) -> dict[str, list[int]]:
    """Every scalar point as written: tag -> steps, event file after event file, nothing merged or purged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert files, list(run_dir.iterdir())
    written: dict[str, list[int]] = {}
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0}, purge_orphaned_data=False)
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            written.setdefault(tag, []).extend(e.step for e in acc.Scalars(tag))
    return written


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from vaelab.config import compose_config

    run_dir = tmp_path_factory.mktemp("tb") / "run"
    result = train(compose_config(TINY, output_dir=run_dir))
    assert result["status"] == "completed" and result["steps"] == FINAL_STEP, result
    return run_dir, result


def test_every_tag_has_increasing_steps_once_each(tiny_run):
    written = _written(tiny_run[0])
    for tag, steps in written.items():
        assert all(a < b for a, b in zip(steps, steps[1:], strict=False)), f"{tag}: steps written {steps}"
        assert max(steps) <= FINAL_STEP, (tag, steps)  # optimizer steps, not another counter


def test_tag_set_prefixes_and_one_step_axis(tiny_run):
    written = _written(tiny_run[0])
    unprefixed = sorted(t for t in written if not t.startswith(PREFIXES))
    assert not unprefixed, unprefixed  # no "epoch", no "encoder_var/dim_000", no "hp_metric"
    train = written["train/loss"]
    assert len(train) >= 2 and train == list(range(4, FINAL_STEP + 1, 4)), train  # one point per epoch
    for tag in ("train/kl", "train/lr", "model/gamma"):
        assert written[tag] == train, tag
    # the validation loop's terms and the diagnostics on one axis, ending where training ends
    for tag in ("val/loss", "val/recon_nll", "val/kl", "val/active_dims", "val/encoder_var/dim_000"):
        assert written[tag] == [20, 40, FINAL_STEP], (tag, written[tag])
    val_tags = [t for t in written if t.startswith("val/")]
    assert all(written[t][-1] == FINAL_STEP for t in val_tags), {t: written[t] for t in val_tags}
    # the test split and the final report: once, at the last optimizer step
    for tag in ("test/loss", "test/active_dims", "test/encoder_var/dim_019", "final/active_dims", "final/elbo"):
        assert written[tag] == [FINAL_STEP], (tag, written[tag])
    assert "encoder_var/dim_000" not in written and "epoch" not in written


def test_served_points_match_and_hparams_leave_out_paths(tiny_run):
    """What TensorBoard serves (the directory read as one run) keeps every point written; the HParams table has
    the config without class paths and folders, and the final metrics."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir, result = tiny_run
    written = _written(run_dir)
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    for tag, steps in written.items():
        assert [e.step for e in acc.Scalars(tag)] == steps, tag
    assert acc.Scalars("final/active_dims")[-1].value == result["active_dims"]
    assert acc.Scalars("test/kl")[-1].value == pytest.approx(result["kl"], rel=1e-6)  # metrics.json's number
    plugin = acc.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/session_start_info"])
    names = set(session.session_start_info.hparams)
    noise = sorted(n for n in names if n.endswith(("_target_", "_partial_", "dirpath", "_dir", "_path")))
    assert not noise, noise
    assert {"model/latent_dim", "optimizer/lr", "seed", "trainer/max_epochs"} <= names
    assert session.session_start_info.hparams["model/class"].string_value == "GaussianVAE"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/experiment"])
    assert "final/active_dims" in {m.name.tag for m in experiment.experiment.metric_infos}


def test_csv_logger_one_row_value_per_tag_and_step(tiny_run):
    """The CSV logger gets the same: each tag once per step (validation loop and diagnostics after one epoch)."""
    import csv

    rows = list(csv.DictReader((tiny_run[0] / "csv" / "metrics.csv").open()))
    seen: dict[str, list[int]] = {}
    for row in rows:
        for key, value in row.items():
            if value and key != "step":
                seen.setdefault(key, []).append(int(row["step"]))
    assert "epoch" not in seen
    assert sorted(seen["val/loss"]) == [20, 40, FINAL_STEP] and sorted(seen["val/kl"]) == [20, 40, FINAL_STEP]


def test_one_value_per_step_logger_keeps_the_first():
    from vaelab.loggers import OneValuePerStep

    class Sink:
        def __init__(self):
            self.rows = []

        def log_metrics(self, metrics, step=None):
            self.rows.append((step, dict(metrics)))

    class Logger(OneValuePerStep, Sink):
        pass

    logger = Logger()
    logger.log_metrics({"val/loss": 1.0}, step=5)
    logger.log_metrics({"val/loss": 2.0, "val/kl": 0.5}, step=5)  # val/loss again at 5: left out
    logger.log_metrics({"val/loss": 3.0}, step=4)  # a step back: left out
    logger.log_metrics({"val/loss": 4.0}, step=6)
    logger.log_metrics({"x": 1.0})  # no step: passed on
    assert logger.rows == [(5, {"val/loss": 1.0}), (5, {"val/kl": 0.5}), (6, {"val/loss": 4.0}), (None, {"x": 1.0})]
