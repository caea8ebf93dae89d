"""The run's lines: one ``logging`` logger, ``vaelab``, whose records reach the console as plain lines and each
Hydra job's ``train.log`` with their time.

``install()`` (at the start of every job, after Hydra configured logging) gives the ``vaelab`` logger a
ConsoleHandler and keeps the other console handlers (Hydra's, on the root logger) from printing its records a
second time; Hydra's file handler (``<run dir>/train.log``) keeps them all. On the console a record is its
message alone, on stdout where Hydra's console handler printed them before (``extra=STDERR``: on stderr, as
vaelab-train's own errors and interruptions are), written around any open progress bar (write_line);
``extra=FILE_ONLY`` keeps a line out of the console (the run's settings, each validation result: train.log
holds them, the console stays short). Free of torch/Lightning imports.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

log = logging.getLogger("vaelab")

FILE_ONLY = {"console": False}  # log.info(..., extra=FILE_ONLY): train.log only
STDERR = {"stream": "stderr"}  # a line on stderr (vaelab-train's errors, an interruption)
_bars_printed = 0.0  # when an open progress bar last drew, as of the last line written here


def _is_vaelab(record: logging.LogRecord) -> bool:
    return record.name == "vaelab" or record.name.startswith("vaelab.")


class ConsoleHandler(logging.Handler):
    """vaelab's records on the console as their message alone (the stream looked up at each record, so a
    redirected or captured sys.stdout is followed)."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "console", True) is False:
            return
        try:
            name = getattr(record, "stream", None) or "stdout"
            write_line(self.format(record), getattr(sys, name))
        except Exception:
            self.handleError(record)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def write_line(text: str, stream: TextIO) -> None:
    """`text` as whole line(s) on `stream`, around any open progress bar (they are on stderr): on a terminal the
    bars are cleared and redrawn below it (tqdm.write); in a file (a sweep's or SLURM's log) the line starts on
    a line of its own, with no redrawing (no carriage returns)."""
    tqdm_module = sys.modules.get("tqdm")
    bars = list(getattr(getattr(tqdm_module, "tqdm", None), "_instances", ()) or ())
    if bars and _isatty(stream) and _isatty(sys.stderr):
        tqdm_module.tqdm.write(text, file=stream)
    else:
        global _bars_printed
        printed = max((getattr(b, "last_print_t", 0.0) for b in bars if not getattr(b, "disable", False)), default=0)
        after_bar = stream is sys.stderr and printed > _bars_printed  # a bar drew since: end its line first
        stream.write(("\n" if after_bar else "") + text + "\n")
        _bars_printed = max(_bars_printed, printed)
    stream.flush()


class NotVaelab(logging.Filter):
    """On the other console handlers: vaelab's records are the ConsoleHandler's."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _is_vaelab(record)


def _is_console(handler: logging.Handler) -> bool:
    return (
        isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
        and getattr(handler, "stream", None) in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    )


def install() -> None:
    """Idempotent: the ``vaelab`` logger at INFO with one ConsoleHandler, propagating to the root logger's file
    handlers (Hydra's train.log) while the root's console handlers leave its records out."""
    log.setLevel(logging.INFO)
    log.disabled = False
    if not any(isinstance(h, ConsoleHandler) for h in log.handlers):
        log.addHandler(ConsoleHandler())
    for handler in logging.getLogger().handlers:
        if _is_console(handler) and not any(isinstance(f, NotVaelab) for f in handler.filters):
            handler.addFilter(NotVaelab())
