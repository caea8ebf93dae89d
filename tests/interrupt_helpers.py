"""Test doubles that press Ctrl-C at a chosen moment of a run (tests/test_interrupts.py, in a vaelab-train
process whose PYTHONPATH holds this folder)."""

from __future__ import annotations

import os
import signal

import lightning as L

from vaelab.diagnostics.base import EvalContext, Evaluation


def _ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


class CtrlCAtFitStart(L.Callback):
    """SIGINT inside Lightning's fit, before the first step (before LastCheckpoint's handler is in place)."""

    def on_fit_start(self, trainer, pl_module):
        _ctrl_c()


class CtrlCOnTest:
    """An evaluator that presses Ctrl-C when the final (test split) evaluation reaches it."""

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        if ctx.split_name == "test":
            _ctrl_c()
        return Evaluation()


class Quiet:
    """CtrlCOnTest's twin that does nothing (a resumed run keeps the evaluator key, without the Ctrl-C)."""

    def evaluate(self, ctx: EvalContext) -> Evaluation:
        return Evaluation()
