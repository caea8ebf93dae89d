"""A seed-parallel run's resumable state: one file for all members, ``<paths.output_dir>/checkpoints/last.ckpt``
(where ``vaelab-train resume=<run dir>`` looks), saved at epoch boundaries as a single run saves its own.

It holds the stacked parameters, the optimizer and scheduler states, the loop's counters and every member's
state (random stream, status, divergence record, validation history, convergence extensions), so a resumed run
continues every member bit-identically. ``Interruptions`` turns SIGINT/SIGTERM into a save at the end of the
current epoch, as ``vaelab.callbacks.LastCheckpoint`` does for a single run.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import torch

KIND = "vaelab.seed_parallel"  # marks the file as a seed-parallel checkpoint
MEMBER_FIELDS = ("status", "divergence", "last_finite_loss", "last_logged", "last_logged_step", "gamma_floor_step")
VIEW_FIELDS = ("global_step", "current_epoch", "max_epochs", "max_steps")


def loop_state(loop: Any) -> dict[str, Any]:
    """Everything `loop` (a SeedParallelLoop) needs to continue, as one torch-saveable dict."""
    return {
        "kind": KIND,
        "seeds": [m.seed for m in loop.members],
        "stacked": loop.stacked.state_dict(),
        "optimizer": loop.optimizer.state_dict(),
        "scheduler": loop.scheduler.state_dict() if loop.scheduler is not None else None,
        "loop": {
            "epoch": loop.epoch,
            "global_step": loop.global_step,
            "max_epochs": loop.max_epochs,
            "max_steps": loop.max_steps,
            "frozen": loop.frozen.clone(),
            "frozen_values": loop.frozen_values.clone(),
        },
        "members": [
            {
                "noise": m.noise.get_state(),
                **{k: getattr(m, k) for k in MEMBER_FIELDS},
                "view": {k: getattr(m.view, k) for k in VIEW_FIELDS},
                "diagnostics": m.diagnostics.state_dict(),
                "convergence": None
                if m.convergence is None
                else {"extensions": m.convergence.extensions, "base_epochs": m.convergence.base_epochs},
            }
            for m in loop.members
        ],
    }


def load_loop_state(loop: Any, state: dict[str, Any]) -> None:
    """Restores `state` (from ``loop_state``) into a freshly built `loop` over the same seeds, before ``fit``."""
    loop.stacked.load_state_dict(state["stacked"])
    loop.optimizer.load_state_dict(state["optimizer"])
    counters = state["loop"]
    loop.epoch, loop.global_step = counters["epoch"], counters["global_step"]
    loop.max_epochs, loop.max_steps = counters["max_epochs"], counters["max_steps"]
    loop.frozen.copy_(counters["frozen"])
    loop.frozen_values.copy_(counters["frozen_values"])
    if state["scheduler"] is not None:
        loop.scheduler.load_state_dict(state["scheduler"])
    for member, saved in zip(loop.members, state["members"], strict=True):
        member.noise.set_state(saved["noise"])
        for key in MEMBER_FIELDS:
            setattr(member, key, saved[key])
        for key in VIEW_FIELDS:
            setattr(member.view, key, saved["view"][key])
        member.diagnostics.load_state_dict(saved["diagnostics"])
        if saved["convergence"] is not None:  # the limits it raised are the loop's own max_epochs / max_steps
            member.convergence.extensions = list(saved["convergence"]["extensions"])
            member.convergence.base_epochs = saved["convergence"]["base_epochs"]


def read(path: str | Path, seeds: list[int]) -> dict[str, Any]:
    """The state saved at `path`; ValueError unless it is a seed-parallel checkpoint of `seeds`."""
    state = torch.load(path, weights_only=False)
    if not isinstance(state, dict) or state.get("kind") != KIND:
        raise ValueError(f"{path} is not a seed-parallel checkpoint")
    if state["seeds"] != seeds:
        raise ValueError(f"{path} holds seeds {state['seeds']}, not {seeds}")
    return state


def save(loop: Any, path: Path) -> None:
    """Writes the loop's state to `path` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(loop_state(loop), tmp)
    os.replace(tmp, path)


class Interruptions:
    """While active (a context manager, main thread only): the first SIGINT/SIGTERM is recorded in ``received``
    ((name, number)) for the loop to save and stop at the end of the epoch; a second one stops at once
    (KeyboardInterrupt)."""

    def __init__(self, path: Path):
        self.path = path
        self.received: tuple[str, int] | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Interruptions:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = (signal.Signals(signum).name, signum)
        print(
            f"vaelab: {self.received[0]} received: finishing this epoch and saving {self.path} (send it again to "
            "stop at once, without saving)",
            file=sys.stderr,
            flush=True,
        )
