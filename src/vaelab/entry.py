"""The console scripts' first code, before Python loads Hydra, torch and Lightning (about a second): a Ctrl-C
while they load ends in one line and exit code 130, as one at any later point does (vaelab.cli, vaelab.train).
While a library loads, the signal is held (``signals_held``) and acted on once it has loaded: an exception
raised inside a library's import can leave it half-initialised (numpy then recurses on its next attribute
look-up) or end the process from C++ (torch's pybind11: ``terminate called``, exit code 134).

Only the interpreter's own start-up (the first ~0.1 s, before this module runs) is out of reach: a Ctrl-C
there ends with Python's message.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

INTERRUPTED = 128 + signal.SIGINT  # the exit code of every interrupted vaelab-train (130)
BROKEN_PIPE = 128 + signal.SIGPIPE  # its output's reader went away, as a shell pipeline reports it (141)


def interrupted_before_job_line(argv: list[str]) -> str:
    """What ``vaelab-train`` says when Ctrl-C (or SIGTERM) stops it before a job started: nothing was written."""
    if "-m" in argv or "--multirun" in argv:
        return (
            "vaelab-train: interrupted before a job started; finish the sweep by running it again with "
            "skip_completed=true hydra.sweep.dir=<its dir>"
        )
    return "vaelab-train: interrupted before a job started; nothing was written: run the command again"


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM arriving inside the block are acted on when it ends, by the handlers that were in place
    before it (the first signal only: one is enough to stop)."""
    held: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:
            handler = previous[held[0]]
            if callable(handler):
                handler(held[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(held[0])


def load_libraries() -> None:
    """Imports Lightning (and so torch and numpy) with SIGINT and SIGTERM held; called once the config has been
    checked, so that a config error is still reported before they load."""
    with signals_held():
        import lightning  # noqa: F401


def train() -> None:
    """``vaelab-train``: vaelab.train.cli, with a Ctrl-C (or SIGTERM) while the modules load reported in one
    line."""
    signal.signal(signal.SIGTERM, _terminate)  # as vaelab.cli.prepare_command_line sets it again
    try:
        with signals_held():
            from vaelab.train import cli
    except KeyboardInterrupt:
        print(interrupted_before_job_line(sys.argv[1:]), file=sys.stderr)
        sys.exit(INTERRUPTED)
    try:
        cli()
    except BrokenPipeError:  # the reader of stdout went away (`vaelab-train --help | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit must not fail too
        sys.exit(BROKEN_PIPE)
