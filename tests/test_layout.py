"""The package's layout holds: imports run one way (model <- coding <- the tools around
them), and the numpy core never imports torch, Pillow, click or the tools."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bbcodec"

# What each folder may import of bbcodec (besides itself and errors.py, which imports nothing).
ALLOWED = {
    "model": set(),
    "coding": {"model"},
    "nn": {"model"},
}
FOREIGN = {"torch", "PIL", "click", "matplotlib", "scipy"}


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module, line) of every import in a module of the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = parts[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out += [(f"{mod}.{a.name}" if not node.module and node.level else mod, node.lineno) for a in node.names]
    return out


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_imports_run_one_way(folder):
    wrong = []
    for path in sorted((PACKAGE / folder).glob("*.py")):
        for mod, line in _imports(path):
            top = mod.split(".")[0]
            if top in FOREIGN and folder != "nn":
                wrong.append(f"{path.name}:{line} imports {mod}")
            if top == "bbcodec":
                sub = mod.split(".")[1] if "." in mod else ""
                if sub not in {folder, "errors"} | ALLOWED[folder]:
                    wrong.append(f"{path.name}:{line} imports {mod}")
    assert not wrong, wrong


def test_the_core_loads_no_torch_pillow_or_click_beyond_the_package_plugin():
    """Importing every module of model/ and coding/ loads neither torch nor click nor the
    tools (Pillow is loaded by `import bbcodec` itself, which registers its plugin)."""
    code = """
import importlib, pkgutil, sys
import bbcodec.coding, bbcodec.model
for pkg in (bbcodec.model, bbcodec.coding):
    for m in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(pkg.__name__ + "." + m.name)
loaded = [m for m in ("torch", "click", "bbcodec.cli", "bbcodec.files", "bbcodec.images", "bbcodec.nn", "bbcodec.train")
          if m in sys.modules]
assert not loaded, loaded
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
