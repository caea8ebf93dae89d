"""The run contract: ``<run_dir>/metrics.json``, one flat JSON object per run.

Written with status ``running`` when the run starts and rewritten atomically when it ends with ``completed``,
``failed`` (with ``error``), ``diverged`` or ``interrupted``, so a summary over a sweep can tell unfinished,
failed and finished runs apart. Final metrics use plain names (``active_dims``, ``gamma``, ``elbo`` ...);
per-dimension vectors are lists. ``read_metrics`` reads it back.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vaelab.errors import DivergenceError, RunInterrupted

STATUSES = ("running", "completed", "failed", "diverged", "interrupted")
# overrides that say how to run a job, not what it computes: not recorded, not in job directory names, not
# compared by vaelab-summarize
RUN_CONTROL_KEYS = ("ckpt_path", "resume", "skip_completed")


def _jsonable(value: Any) -> Any:
    """Non-finite floats become null (strict JSON); tuples become lists; tensors and numpy values plain."""
    if hasattr(value, "tolist"):  # torch / numpy scalars and arrays
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def is_rank_zero() -> bool:
    """False in the extra processes of a multi-process (DDP) run, which share the run directory."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) == 0


def read_metrics(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """A run directory's metrics.json, None when there is none, {"status": "unreadable"} when it is corrupt."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"status": "unreadable"}
    return data if isinstance(data, dict) else {"status": "unreadable"}


class RunRecord:
    """metrics.json of one run; ``update`` merges fields, ``finish`` sets the final status and wall time.
    Only the rank-zero process writes."""

    def __init__(self, directory: str | os.PathLike, exclusive: bool = False, **fields: Any):
        """exclusive: claim the directory atomically (FileExistsError when metrics.json already exists, e.g.
        written by another run that started at the same moment)."""
        self.path = Path(directory) / "metrics.json"
        self.writes = is_rank_zero()
        self.start = time.perf_counter()
        self.data: dict[str, Any] = {"status": "running", **fields}
        self._write(exclusive=exclusive)

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self._write()

    def finish(self, status: str, **fields: Any) -> dict[str, Any]:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {STATUSES}")
        self.data.update(fields, status=status, wall_time_s=round(time.perf_counter() - self.start, 3))
        self._write()
        return self.data

    def _write(self, exclusive: bool = False) -> None:
        """Writes a temporary file and moves it into place, so that a reader (or an interruption) never meets a
        partly written metrics.json; `exclusive` links it into place instead, which fails when one exists."""
        if not self.writes:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_jsonable(self.data), indent=2, allow_nan=False) + "\n")
        if not exclusive:
            os.replace(tmp, self.path)
            return
        try:
            os.link(tmp, self.path)
        except FileExistsError:
            tmp.unlink()
            raise
        except OSError:  # a file system without hard links: claim the name, then move the content into it
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            os.replace(tmp, self.path)
        else:
            tmp.unlink()


@contextmanager
def recording_failures(*records: RunRecord) -> Iterator[None]:
    """Records in every one of `records` how the block ended when it raised (``diverged`` with the divergence's
    details, ``interrupted``, ``failed``), then re-raises: a metrics.json says what happened, whatever it was."""
    try:
        yield
    except DivergenceError as err:
        for record in records:
            record.finish("diverged", error=str(err), **err.details)
        raise
    except RunInterrupted as err:
        for record in records:
            record.finish(
                "interrupted",
                error=str(err),
                checkpoint=err.checkpoint,
                interrupted_at_epoch=err.epoch,
                interrupted_at_step=err.step,
            )
        raise
    except (KeyboardInterrupt, SystemExit) as err:  # Ctrl-C reaches here as Lightning's SystemExit
        for record in records:
            record.finish("interrupted", error=type(err).__name__)
        raise
    except Exception as err:
        for record in records:
            record.finish("failed", error=f"{type(err).__name__}: {err}")
        raise
