"""The README's Python example runs as written (on a generated photo.png)."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import random_image
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no Python example"
    monkeypatch.chdir(tmp_path)
    Image.fromarray(random_image(30, 40, seed=12)).save("photo.png")
    monkeypatch.setattr(Image.Image, "show", lambda self, *a, **k: None)  # no viewer in tests
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "photo.bbc").exists()
