"""A comparison: rows from the run files -> a Markdown table with a verdict per row.

A ``Column`` turns (setting, runs) into one cell; a ``Comparison`` is a titled table over the settings it
selects, its columns followed by the verdict of each setting's rule. The cell helpers here are the ones the
studies share: mean ± std over seeds, values per seed, convergence per seed, jobs and seconds per run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vaelab.reproduce import Runs, Setting
from vaelab.summarize import RunResult

Cell = Callable[[Setting, Runs], str]


@dataclass
class Column:
    header: str
    cell: Cell


@dataclass
class Row:
    """One judged row: its setting, its cells (the comparison's columns, then the verdict) and why it failed."""

    setting: Setting
    cells: list[str]
    verdict: str
    why: str


@dataclass
class Comparison:
    """One table: a row per shown setting that `select` picks (in the settings' order), the `columns`, then
    the verdict of the setting's rule ("-" without one); `note` is printed under the table."""

    title: str
    columns: list[Column]
    note: str = ""
    select: Callable[[Setting], bool] = lambda setting: True

    def rows(self, settings: Sequence[Setting], runs: Runs) -> list[Row]:
        rows = []
        for setting in (s for s in settings if s.row and self.select(s)):
            verdict, why = setting.rule(setting, runs) if setting.rule else ("-", "")
            rows.append(Row(setting, [c.cell(setting, runs) for c in self.columns] + [verdict], verdict, why))
        return rows

    def markdown(self, rows: Sequence[Row]) -> str:
        table = markdown_table([c.header for c in self.columns] + ["verdict"], [r.cells for r in rows])
        return f"### {self.title}\n\n{table}" + (f"\n\n{self.note}" if self.note else "")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table; a "|" inside a cell (e.g. the label c=|Au|^0.5) is escaped."""

    def line(cells: Sequence) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def mean_std(values: Sequence[float]) -> str:
    """'mean ± std' (ddof 1) of the values, one value alone, '-' for none."""
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {statistics.stdev(values):.2g}"


def number(value: float | None, digits: str = "g") -> str:
    """An integer-valued number without decimals, others with `digits` (a format spec such as ".3f")."""
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else format(value, digits)


def run_cell(run: RunResult | None, keys: Sequence[str], digits: str = "g") -> str:
    """One seed's values of `keys` joined by "/" ("?" for a missing one); "·" not run; else the job's status."""
    if run is None:
        return "·"
    if run.status != "completed":
        return run.status
    return "/".join(number(run.metrics.get(k), digits) for k in keys)


def converged_cell(run: RunResult | None) -> str:
    """y / n / ? (no verdict recorded) for a completed run, "-" for another status, "·" not run."""
    if run is None:
        return "·"
    return {True: "y", False: "n", None: "?"}[run.converged] if run.status == "completed" else "-"


def label(setting: Setting, runs: Runs) -> str:
    return setting.label


def expected(setting: Setting, runs: Runs) -> str:
    return setting.expected


def table_name(setting: Setting, runs: Runs) -> str:
    return setting.table


def stat(key: str) -> Cell:
    """mean ± std of `key` over the completed seeds."""
    return lambda setting, runs: mean_std(list(runs.values(setting, key).values()))


def per_seed(*keys: str, digits: str = "g", sep: str = ", ") -> Cell:
    """Each seed's values of `keys` (run_cell), in seed order."""
    return lambda setting, runs: sep.join(run_cell(r, keys, digits) for r in runs.by_seed(setting).values())


def converged(setting: Setting, runs: Runs) -> str:
    return ", ".join(converged_cell(r) for r in runs.by_seed(setting).values())


def jobs(setting: Setting, runs: Runs) -> str:
    """completed / seeds."""
    return f"{len(runs.completed(setting))}/{len(setting.seeds)}"


def seconds(setting: Setting, runs: Runs) -> str:
    """Mean wall seconds per completed run."""
    times = list(runs.values(setting, "wall_time_s").values())
    return f"{statistics.fmean(times):.0f}" if times else "-"


STANDARD_TAIL = [Column("converged", converged), Column("jobs", jobs), Column("s/run", seconds)]


def failures(rows: Sequence[Row]) -> list[str]:
    """'[table] label: why' for every failed row, once (a setting judged in two tables, e.g. the skip study's
    metrics and probe tables, fails with one reason)."""
    return list(dict.fromkeys(f"[{r.setting.table}] {r.setting.label}: {r.why}" for r in rows if r.verdict == "FAIL"))
