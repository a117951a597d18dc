"""The README stays short and its Python example runs as written (on a generated
photo.png), as do those of docs/api.md; every relative link of README.md and docs/*.md
points to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import random_image
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


@pytest.mark.parametrize("page", [README, ROOT / "docs" / "api.md"], ids=lambda p: p.name)
def test_python_examples_run(page, tmp_path, monkeypatch):
    blocks = python_blocks(page)
    assert blocks, f"{page.name} has no Python example"
    monkeypatch.chdir(tmp_path)
    Image.fromarray(random_image(30, 40, seed=12)).save("photo.png")
    monkeypatch.setattr(Image.Image, "show", lambda self, *a, **k: None)  # no viewer in tests
    for code in blocks:
        exec(compile(code, page.name, "exec"), {})
    assert (tmp_path / "photo.bbc").exists()


def test_readme_is_short():
    """The README is the first screen and the way into docs/, under 8 KB."""
    assert len(README.read_bytes()) < 8 * 1024


def relative_links(page: Path) -> list[str]:
    """Targets of the page's Markdown links and images that are not URLs or anchors
    (code blocks and inline code left out)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_to_files(page):
    missing = [t for t in relative_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_readme_links_into_docs():
    assert {"docs/cli.md", "docs/api.md", "docs/performance.md", "docs/training.md",
            "docs/architecture.md", "docs/format.md"} <= set(relative_links(README))
