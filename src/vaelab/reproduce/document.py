"""The results page of a study: where its numbers came from, and the hand-written analysis kept below MARKER.

``write_page`` replaces everything above MARKER and keeps what is below it, so a page can be regenerated from
the run files at any time without losing the analysis written under the tables.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from pathlib import Path

MARKER = "<!-- hand-written analysis below: kept when the tables above are regenerated -->"


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line: CPU, cores, GPUs (torch.cuda), OS, Python and torch versions."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0)]
    return (
        f"{cpu_name()}, {os.cpu_count()} cores; GPU: {', '.join(gpus) or 'none'}; {platform.platform()}; "
        f"Python {platform.python_version()}; torch {torch.__version__}"
    )


def git_commit() -> str:
    """HEAD of the checkout in the current directory, marked when tracked files have uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def provenance(invocation: str, commands: list[str], out: Path, table_only: bool, archived: str = "") -> str:
    """The page's last section: the command, each setting's vaelab-train command, commit, date, machine;
    archived: the lines saying which commits, dates and machines made the run files of `out` (an archive)."""
    where = "the runs'" if not table_only else "this page's; its tables come from run files that may be another's"
    listed = "\n".join(f"    {c}" for c in commands)
    runs = f"Runs: `{out}`" + (
        f" (the results archive, vaelab.reproduce.archive), archived from:\n\n{archived}" if archived else ""
    )
    return (
        f"### Provenance\n\nCommand: `{invocation}`  \nGit commit: {git_commit()}  \n"
        f"Date: {time.strftime('%Y-%m-%d %H:%M %Z')}  \nMachine ({where}): {machine()}  \n{runs}\n\n"
        f"The settings' commands (one resumable multirun each):\n\n{listed}\n"
    )


def write_page(path: Path, generated: str) -> None:
    """Writes `generated`, then MARKER, then whatever followed MARKER in the page already at `path`."""
    kept = path.read_text().partition(MARKER)[2] if path.is_file() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(generated.rstrip("\n") + f"\n\n{MARKER}" + (kept if kept else "\n"))
