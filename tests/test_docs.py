"""The README, docs/ and bench/README.md: every relative link leads to a file that exists, and
the README stays a page a user reads in minutes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_relative_link_resolves(page):
    links = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    local = [
        link.split("#")[0] for link in links if not link.startswith(("http://", "https://", "#", "mailto:"))
    ]
    missing = [link for link in local if link and not (page.parent / link).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to {missing}"


def test_the_readme_is_short_and_points_to_the_docs():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    for doc in sorted((ROOT / "docs").glob("*.md")):
        assert f"docs/{doc.name}" in text, f"the README does not point to docs/{doc.name}"
