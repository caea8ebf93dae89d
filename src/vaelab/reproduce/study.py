"""A study: its settings, its comparisons, its verdict and figures; ``page`` assembles its results page."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vaelab.reproduce import Runs, Setting
from vaelab.reproduce.table import Comparison, Row, failures

Summary = Callable[[Sequence[Setting], Runs, Sequence[Row]], tuple[list[str], bool]]
Sections = Callable[[Sequence[Setting], Runs], list[str]]
Figures = Callable[[Sequence[Setting], Runs, Path], list[Path]]


def verdict_counts(settings: Sequence[Setting], runs: Runs, rows: Sequence[Row]) -> tuple[list[str], bool]:
    """One line per table: how many of its rows pass, fail, are incomplete or not run; failed when any fails."""
    lines = []
    for name in dict.fromkeys(r.setting.table for r in rows):
        verdicts = [r.verdict for r in rows if r.setting.table == name and r.verdict != "-"]
        counts = ", ".join(
            f"{verdicts.count(v)} {v}" for v in ("pass", "FAIL", "incomplete", "not run") if verdicts.count(v)
        )
        lines.append(f"- **{name}**: {counts or 'no claim checked'}")
    return lines, any(r.verdict == "FAIL" for r in rows)


@dataclass
class Study:
    """name: the command's study word; title, about: the page's heading and its first paragraphs (what is
    compared, the pass rules); settings(full): every setting (full: the paper's sizes, for studies with
    `has_full`); comparisons: its tables; summary: the verdict lines and whether the study failed; sections:
    further Markdown sections; figures(settings, runs, folder): the PNGs it wrote there."""

    name: str
    title: str
    about: str
    settings: Callable[[bool], list[Setting]]
    comparisons: list[Comparison]
    figures: Figures
    summary: Summary = verdict_counts
    sections: Sections = field(default=lambda settings, runs: [])
    has_full: bool = True

    def tables(self) -> list[str]:
        """The tables (or halves) its settings belong to, in order."""
        return list(dict.fromkeys(s.table for s in self.settings(False)))

    def page(
        self,
        chosen: Sequence[Setting],
        runs: Runs,
        figures: Sequence[Path],
        page_dir: Path,
        provenance: str,
        smoke: bool,
    ) -> tuple[str, bool]:
        """The page's Markdown (heading, about, tables, verdict, failures, sections, figures, provenance) and
        whether the study failed."""
        rows_of = [(c, c.rows(chosen, runs)) for c in self.comparisons]
        rows = [r for _, found in rows_of for r in found]
        lines, failed = self.summary(chosen, runs, rows)
        failed_rows = failures(rows)
        heading = self.title + (" (SMOKE: plumbing only, its numbers mean nothing)" if smoke else "")
        parts = [f"## {heading}", self.about]
        parts += [c.markdown(found) for c, found in rows_of if found]
        parts.append(
            "### Verdict\n\n"
            + ("\n".join(lines) or "(nothing chosen)")
            + "\n\n**"
            + ("FAIL" if failed else "no failure")
            + "**"
        )
        parts.append("### Failures\n\n" + ("\n".join(f"- {f}" for f in failed_rows) if failed_rows else "None."))
        parts += self.sections(chosen, runs)
        if figures:
            parts.append(
                "### Figures\n\n" + "\n\n".join(f"![{f.stem}]({f.relative_to(page_dir).as_posix()})" for f in figures)
            )
        parts.append(provenance)
        return "\n\n".join(p.strip("\n") for p in parts) + "\n", failed
