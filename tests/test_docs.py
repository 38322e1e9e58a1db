"""The documentation's shape (issue 29): a short README, relative links that resolve, every CLI
option documented in docs/cli.md, and packaging metadata pip installs without a deprecation warning."""

from __future__ import annotations

import math
import re
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
MAX_README_LINES, MAX_PARAGRAPH_LINES, WIDTH = 200, 8, 100

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def prose_lines(text: str) -> list[str]:
    """The text with fenced code blocks, HTML comments and tables blanked out (line numbers kept)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            out.append("")
            continue
        hidden = fenced or line.lstrip().startswith(("|", "<!--")) or line.startswith("#")
        out.append("" if hidden else line)
    return out


def paragraphs(text: str) -> list[tuple[int, int]]:
    """(first line number, length in lines of WIDTH characters) of each prose paragraph; a list item
    starts a paragraph of its own."""
    found, start, length = [], None, 0
    for number, line in enumerate([*prose_lines(text), ""], 1):
        item = re.match(r"\s*([-*]|\d+\.)\s", line)
        if (not line.strip() or item) and start is not None:
            found.append((start, length))
            start, length = None, 0
        if line.strip():
            start = number if start is None else start
            length += max(1, math.ceil(len(line) / WIDTH))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading.strip()).lower()
    text = "".join(ch for ch in text if ch in " -_" or unicodedata.category(ch)[0] in "LN")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        if fenced or not (m := re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)):
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative link outside code (fenced blocks, `code spans`)."""
    out, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced or line.lstrip().startswith("<!--"):
            continue
        # a code span inside a link's text ([`x.md`](x.md)) leaves the link; one around a link hides it
        for m in LINK.finditer(re.sub(r"`[^`]*`", "", line)):
            target = m.group(1) or m.group(2)
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                out.append((number, target))
    return out


def test_readme_is_at_most_200_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines (at most {MAX_README_LINES})"


def test_no_readme_paragraph_is_longer_than_8_lines():
    long = [(n, size) for n, size in paragraphs(README.read_text()) if size > MAX_PARAGRAPH_LINES]
    assert not long, f"README.md paragraphs longer than {MAX_PARAGRAPH_LINES} lines (line, lines): {long}"


def test_the_paragraph_measure_counts_wrapped_lines():
    text = "word " * 200 + "\n\n- one\n- two\n\n```\n" + "code\n" * 20 + "```\n"
    assert paragraphs(text) == [(1, 10), (3, 1), (4, 1)]  # 1000 characters = 10 lines; code is not prose


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_page_starts_with_a_title_and_what_it_covers(page):
    lines = [ln for ln in page.read_text().splitlines() if ln.strip()]
    assert lines[0].startswith("# "), f"{page.name}: no title"
    assert not lines[1].startswith(("#", "|", "```")), f"{page.name}: no sentence saying what it covers"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve_to_files_and_headings(page):
    broken = []
    for number, target in relative_links(page):
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{page.name}:{number}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{page.name}:{number}: {target} (no heading #{anchor} in {dest.name})")
    assert not broken, "\n".join(broken)


def test_the_link_check_catches_a_missing_file_and_a_missing_heading(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## The `vlsa train` command (short)\n")
    page.write_text("# P\n\n[a](other.md#the-vlsa-train-command-short) [b](gone.md) [c](other.md#nope)\n"
                    "`[x](in-code.md)` [web](https://example.org)\n```\n[y](fenced.md)\n```\n")
    assert relative_links(page) == [(3, "other.md#the-vlsa-train-command-short"), (3, "gone.md"), (3, "other.md#nope")]
    assert "the-vlsa-train-command-short" in anchors(tmp_path / "other.md")


def _cli_sections() -> dict[str, str]:
    text = (ROOT / "docs" / "cli.md").read_text()
    parts = re.split(r"^## `vlsa (\w+)`\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1].split("\n## ", 1)[0] for i in range(1, len(parts), 2)}


def test_cli_md_names_every_command_and_every_option_in_its_section():
    from vlsa.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    sections = _cli_sections()
    missing = []
    for name, command in sub.choices.items():
        if name not in sections:
            missing.append(f"no section for vlsa {name}")
            continue
        for action in command._actions:
            for option in action.option_strings:
                if option.startswith("--") and option != "--help" and option not in sections[name]:
                    missing.append(f"vlsa {name} {option}")
            if not action.option_strings and action.choices and action.dest not in ("help",):
                missing += [f"vlsa {name} {c}" for c in action.choices if str(c) not in sections[name]]
    assert not missing, "docs/cli.md does not name: " + ", ".join(missing)


def test_pyproject_licence_is_an_spdx_string_with_a_setuptools_that_reads_it():
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is Python 3.11+")
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"  # a table here is deprecated by setuptools
    assert not any(c.startswith("License ::") for c in meta["project"].get("classifiers", []))  # PEP 639
    requires = " ".join(meta["build-system"]["requires"])
    minimum = re.search(r"setuptools>=(\d+)", requires)
    assert minimum and int(minimum.group(1)) >= 77, requires  # 77.0: the first to accept SPDX strings


def test_every_packaged_config_is_named_by_train_help_and_cli_md():
    from vlsa.cli import build_parser

    configs = sorted(p.stem for p in (ROOT / "src" / "vlsa" / "configs").glob("*.yaml"))
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    help_text = next(a.help for a in sub.choices["train"]._actions if "--config" in a.option_strings)
    cli_md = (ROOT / "docs" / "cli.md").read_text()
    assert [c for c in configs if c not in help_text] == []
    assert [c for c in configs if f"`{c}`" not in _cli_sections()["train"] or f"`{c}.yaml`" not in cli_md] == []
