"""Diagnostics behind one interface: evaluators that each turn an evaluation context into results.

Every evaluator is a class whose constructor takes its settings and whose one method is::

    evaluate(ctx: EvalContext) -> Evaluation

``EvalContext`` (base.py) carries the model, the split's name and tensors, the posterior q(z|x) and prior of
every point and the loss terms from one pass of the model over the split (computed once, shared by all
evaluators), the evaluation batch size, the seed and a way to load another split. ``Evaluation`` separates
what goes where: ``scalars`` (metrics.json and every logger as ``<split>/<key>``), ``values`` (metrics.json
only: per-dim and per-group lists), ``logged`` (logger-only curves), ``histograms`` and ``images`` (TensorBoard
only; images drawn only when written). An evaluator returns an empty Evaluation where it does not apply (e.g.
MCC on data without true latents).

Which evaluators run is configuration: ``callbacks.diagnostics.evaluators`` in conf/callbacks/default.yaml
maps a name to a Hydra node (``_target_`` + settings); the Diagnostics callback (vaelab.callbacks) logs
whatever comes back. From the command line::

    callbacks.diagnostics.evaluators.iw_nll.samples=500                # a setting
    ~callbacks.diagnostics.evaluators.mcc                              # leave one out (or =null)
    callbacks.diagnostics.evaluators.probe={_target_:vaelab.diagnostics.probe.LabelProbe}  # add one

Adding a metric with a setting touches three files:

1. ``src/vaelab/diagnostics/<name>.py``: a class with the setting in its constructor (checked there, raising
   ConfigError that names ``callbacks.diagnostics.evaluators.<name>.<setting>``) and ``evaluate``; pure
   tensor maths may sit beside it or in vaelab.metrics when other code shares it;
2. ``conf/callbacks/default.yaml``: its node under ``diagnostics.evaluators`` (an experiment that changes the
   setting does so in its own YAML, as any experiment setting);
3. its test, e.g. ``tests/test_diagnostics.py``: an oracle case on a hand-built EvalContext.

Regenerate tests/data/composed_configs.json (``python scripts/snapshot_configs.py``): the new node is part of
every composed config.
"""

from vaelab.diagnostics.base import EvalContext, Evaluation, Evaluator, run_evaluators

__all__ = ["EvalContext", "Evaluation", "Evaluator", "run_evaluators"]
