"""The documentation stays a guide: the README is short, keeps CI's test command, and every relative link in it
and under docs/ points to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_LIMIT = 15 * 1024  # bytes: the README is a guide; details live in docs/
# [text](target) and [text](target "title"); images too. Not code spans: they are removed first.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def relative_links(path: Path) -> list[str]:
    """The link targets of a Markdown file that point into the repository (no URLs, no anchors of the same
    page), without their #anchor."""
    text = CODE.sub("", path.read_text(encoding="utf-8"))
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http:, https:, mailto: ...; an anchor on the same page
        targets.append(target.split("#", 1)[0])
    return targets


def test_readme_is_short():
    size = README.stat().st_size
    assert size <= README_LIMIT, f"README.md is {size} bytes, over {README_LIMIT}: move details into docs/"


def test_readme_keeps_the_ci_test_command():
    """.ci/run runs the README's test command; the README must still show it, verbatim."""
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines() if "pytest" in line and not line.lstrip().startswith("#")]
    assert commands, ".ci/run no longer runs pytest"
    readme = README.read_text(encoding="utf-8")
    for command in commands:
        assert command in readme, f"README.md does not show .ci/run's test command {command!r}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    missing = [t for t in relative_links(path) if not (path.parent / t).exists()]
    assert not missing, f"{path.relative_to(ROOT)} links to missing files: {missing}"


def test_link_pattern_finds_links_outside_code():
    text = 'a [x](docs/a.md#b) [y](https://e.org) [z](#here) ![i](img.png "t") `[no](code.md)`'
    assert LINK.findall(CODE.sub("", text)) == ["docs/a.md#b", "https://e.org", "#here", "img.png"]
