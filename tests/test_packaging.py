"""A wheel built from the checkout carries the shipped weights: installed into a fresh
virtual environment, `bbcodec encode` / `decode` work from an unrelated folder; the
weights are looked for in $BBCODEC_WEIGHTS too, and a missing one says where it looked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import random_image
from PIL import Image

from bbcodec.model import weights as wmod

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(tmp: Path) -> Path:
    """A wheel of a copy of the checkout (so that no build/ folder is left in it)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "bbcodec", src / "bbcodec", ignore=ignore)
    shutil.copytree(ROOT / "weights", src / "weights", ignore=ignore)
    dist = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(dist), str(src)], check=True, capture_output=True,
                   timeout=300)
    (wheel,) = dist.glob("bbcodec-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_holds_the_shipped_weights_and_their_sums(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sums = (ROOT / "weights" / "SHA256SUMS").read_text().split()[1::2]
    assert sums and {f"bbcodec/shipped_weights/{n}" for n in [*sums, "SHA256SUMS"]} <= names
    assert "bbcodec/cli.py" in names and "bbcodec/train/freeze.py" in names


def test_an_installed_wheel_encodes_and_decodes_from_any_folder(wheel, tmp_path):
    """A fresh venv, pip install of the wheel, commands run elsewhere (about 3 s, so not
    marked slow). numpy, Pillow... come from this environment (a path file), not from
    the package registry."""
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    py = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                    "--disable-pip-version-check", str(wheel)], check=True, capture_output=True, timeout=300)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # The dependencies of this environment, as a plain path (its .pth files, among them
    # the editable bbcodec, are not processed): the installed bbcodec comes first.
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "elsewhere"
    work.mkdir()
    Image.fromarray(random_image(20, 28, seed=3)).save(work / "in.png")
    env = {k: v for k, v in os.environ.items() if k not in ("BBCODEC_WEIGHTS", "PYTHONPATH")}
    bbc = env_dir / "bin" / "bbcodec"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(bbc), *args], cwd=work, env=env, capture_output=True, text=True, timeout=120)

    where = subprocess.run([str(py), "-c", "import bbcodec; print(bbcodec.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(site), where
    enc = run("encode", "in.png", "out.bbc", "-v")
    assert enc.returncode == 0, enc.stderr
    default = (ROOT / "weights" / "SHA256SUMS").read_text().split()[1]
    assert f"weights {default}" in enc.stderr
    dec = run("decode", "out.bbc", "rec.png")
    assert dec.returncode == 0, dec.stderr
    with Image.open(work / "rec.png") as im:
        assert im.size == (28, 20)
    info = run("info", "out.bbc")
    assert info.returncode == 0 and "not installed" not in info.stdout


def test_no_weights_says_where_it_looked(monkeypatch, tmp_path):
    missing, empty = tmp_path / "missing", tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setattr(wmod, "candidate_dirs", lambda: [missing, empty])
    with pytest.raises(wmod.WeightsError, match="no weights found") as e:
        wmod.default()
    assert f"{missing} (missing)" in str(e.value) and str(empty) in str(e.value) and "BBCODEC_WEIGHTS" in str(e.value)


def test_the_weights_folders_are_the_environment_then_the_package_then_the_checkout(monkeypatch, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("BBCODEC_WEIGHTS", f"{a}{os.pathsep}{b}")
    dirs = wmod.candidate_dirs()
    assert dirs[:2] == [a, b]
    assert dirs[2].name == "shipped_weights" and dirs[2].parent.name == "bbcodec"
    assert ROOT / "weights" in dirs
