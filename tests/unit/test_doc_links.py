"""Every link between the project's Markdown files leads somewhere: to a file that exists and, when
it names a section, to a heading of that file (by GitHub's anchors, which readers follow)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def markdown_files() -> list[Path]:
    """The project's Markdown files, wherever the tree sits: not those of tools' folders
    (``.venv``, ``.mutation``, ``.aws-sam``, build output)."""
    return sorted(
        path
        for path in ROOT.rglob("*.md")
        if not any(part.startswith(".") or part in ("build", "dist") for part in path.relative_to(ROOT).parts)
    )


def test_the_markdown_files_are_found() -> None:
    found = {str(path.relative_to(ROOT)) for path in markdown_files()}
    assert {"README.md", "docs/architecture.md", "layers/tenantscope/README.md"} <= found


def prose(text: str) -> str:
    """The text without code blocks: a link-shaped string in code is an example, not a link."""
    return FENCE.sub("", text)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: markup and punctuation dropped, lower case, blanks as '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(prose(path.read_text(encoding="utf-8"))):
        anchor = github_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        # GitHub numbers a repeated heading's anchor: x, x-1, x-2...
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def links(path: Path) -> list[str]:
    text = CODE_SPAN.sub("", prose(path.read_text(encoding="utf-8")))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def test_github_anchor_follows_githubs_rule() -> None:
    assert github_anchor("What is never logged, annotated or measured") == (
        "what-is-never-logged-annotated-or-measured"
    )
    assert github_anchor("From a shell: the `tenantscope` command") == "from-a-shell-the-tenantscope-command"
    assert github_anchor("[Moving](x.md) to OpenTelemetry") == "moving-to-opentelemetry"
    assert github_anchor("A -- B") == "a----b"


def test_repeated_headings_are_numbered(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Use\n\n## Use\n\n```\n# not a heading\n```\n", encoding="utf-8")
    assert anchors(page) == {"use", "use-1"}


def test_links_skip_code_and_other_sites(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "[a](a.md) `[b](b.md)` [c](https://example.com)\n```\n[d](d.md)\n```\n[e](#e)\n", encoding="utf-8"
    )
    assert links(page) == ["a.md", "#e"]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_link_leads_somewhere(path: Path) -> None:
    broken = []
    for target in links(path):
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no such heading in {destination.name}")
    assert not broken, broken
