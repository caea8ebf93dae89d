"""Evaluation progress (vaelab.diagnostics.base.Progress, EvalContext.progress): silent for short work, one
updating line on a terminal, a few whole lines elsewhere, nothing when the progress bar is off."""

from __future__ import annotations

import io

import torch

from vaelab.diagnostics.base import EvalContext, Progress, progress_mode, run_evaluators, slow_evaluators
from vaelab.models.gaussian import DiagonalGaussian


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _plain(monkeypatch, total=100, delay=2.0):
    clock = FakeClock()
    monkeypatch.setattr("vaelab.diagnostics.base.time.monotonic", clock)
    stream = io.StringIO()
    return clock, stream, Progress(total, "iw_nll (test)", "plain", unit="pt", delay=delay, stream=stream)


def test_short_work_prints_nothing(monkeypatch):
    clock, stream, progress = _plain(monkeypatch)
    for _ in range(10):
        clock.now += 0.19
        progress.update(10)
    progress.close()
    assert stream.getvalue() == "" and not progress.shown


def test_plain_mode_prints_a_few_whole_lines(monkeypatch):
    clock, stream, progress = _plain(monkeypatch, total=1000)
    with progress:
        for _ in range(1000):  # 1 s per point: 1000 s of work
            clock.now += 1.0
            progress.update(1)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert lines[0] == "vaelab: iw_nll (test): 2/1000 pt after 2 s, about 16.6 min left"
    assert lines[-1] == "vaelab: iw_nll (test): 1000/1000 pt in 1000.0 s"
    assert 3 <= len(lines) <= 8  # 2 s, 30 s, 60 s, 120 s, 240 s, 480 s, 960 s and the end


def test_tty_mode_is_one_updating_line_erased_at_the_end(monkeypatch):
    stream = io.StringIO()
    with Progress(10, "mi (val)", "tty", unit="pt", delay=0.0, stream=stream) as progress:
        for _ in range(10):
            progress.update(1)
    text = stream.getvalue()
    assert "mi (val)" in text and "/10 [" in text and "\n" not in text  # redrawn at most twice a second
    assert text.endswith("\r") and text.rstrip("\r").split("\r")[-1].strip() == ""  # erased at the end
    with Progress(10, "quick", "tty", delay=60.0, stream=(quiet := io.StringIO())) as progress:
        progress.update(10)
    assert quiet.getvalue() == ""


def test_off_and_modes():
    stream = io.StringIO()
    with Progress(10, "x", "off", delay=0.0, stream=stream) as progress:
        progress.update(10)
    assert stream.getvalue() == ""
    assert progress_mode(False, stream) == "off"
    assert progress_mode(True, stream) == "plain"  # StringIO is no terminal


def test_context_progress_and_durations():
    k = 2
    posterior = DiagonalGaussian(torch.zeros(4, k), torch.zeros(4, k))
    ctx = EvalContext(torch.nn.Linear(1, 1), "val", {"x": torch.zeros(4, 3)}, posterior, None, None, {}, 4)
    assert ctx.progress_mode == "off"
    progress = ctx.progress(4, "probe", unit="pt")
    assert progress.label == "probe (val)" and progress.mode == "off"

    class Slow:
        def evaluate(self, ctx):
            from vaelab.diagnostics.base import Evaluation

            return Evaluation(scalars={"x": 1.0})

    evaluation = run_evaluators({"slow": Slow()}, ctx)
    assert set(evaluation.durations) == {"slow"} and evaluation.results() == {"x": 1.0}
    assert slow_evaluators({"iw_nll": 9.14, "mi": 2.4, "kl": 0.1}) == "iw_nll 9.1 s, mi 2.4 s"
    assert slow_evaluators({"kl": 0.1}) == ""


def test_sa_refinement_counts_its_steps_in_the_posterior_pass(monkeypatch):
    from vaelab import evaluation
    from vaelab.data.spec import DataSpec
    from vaelab.models.gaussian_vae import GaussianVAE
    from vaelab.models.semi_amortized import SemiAmortized

    seen = []

    class Recording(Progress):
        def update(self, n=1):
            seen.append((self.label, self.unit, self.total, n))
            super().update(n)

    monkeypatch.setattr(evaluation, "Progress", Recording)
    torch.manual_seed(0)
    model = SemiAmortized(GaussianVAE(DataSpec("toy", (6,)), latent_dim=2), steps=3)
    evaluation.collect_posterior(model, {"x": torch.randn(10, 6)}, batch_size=4, progress_mode="off", split_name="val")
    # 3 chunks, each refining twice (encode, loss) for 3 steps: 18 SVI steps; the model lets go of the tracker
    assert len(seen) == 18 and seen[0][:3] == ("posterior pass with 3 SA refinement steps (val)", "SVI step", 18)
    assert model.progress is None
    seen.clear()
    evaluation.collect_posterior(model.base, {"x": torch.randn(10, 6)}, batch_size=4, split_name="val")
    assert [(label, n) for label, _, _, n in seen] == [
        ("posterior pass (val)", 4),
        ("posterior pass (val)", 4),
        ("posterior pass (val)", 2),
    ]
