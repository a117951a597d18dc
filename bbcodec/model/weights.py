"""Shipped weights: where they are, which hash each must have, verified loading.

A weights file is an .npz of integer networks (bbcodec.train.freeze) named
NAME-<sha256[:8]>.npz. A folder of weights lists its files in SHA256SUMS (the format of
`sha256sum`, first line = default model); every load checks the full hash against it
(files not listed, e.g. your own training runs, are checked against their name), and a
.bbc file names the weights that made it by the first 8 bytes of that hash. Folders are
searched in the order of candidate_dirs(): $BBCODEC_WEIGHTS, the weights packaged with
bbcodec (bbcodec/shipped_weights in a wheel), a checkout's weights/.

Each file says what it was tuned for in its meta record ("tune", model/tuning.py; files
without one were trained on MSE: "psnr"): --tune picks the first file of that tuning,
and the default is simply the first file, whatever its tuning.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import WeightsError
from .frozen import FrozenModel
from .layout import FAMILIES, read, read_meta
from .tuning import UNTUNED, check_tune

SUMS = "SHA256SUMS"
ENV_DIR = "BBCODEC_WEIGHTS"


@dataclass(frozen=True)
class Weights:
    name: str
    path: Path
    sha256: str
    model: FrozenModel

    @property
    def family_id(self) -> int:
        """The network family of the model: the model_id of the files it writes."""
        return self.model.family

    @property
    def prefix(self) -> bytes:
        return bytes.fromhex(self.sha256[:16])

    @property
    def tune(self) -> str:
        """What the weights were tuned for (TUNES)."""
        return str(self.model.info.get("tune", UNTUNED))


def candidate_dirs() -> list[Path]:
    """Folders where weights are looked for, in order, whether they exist or not: each
    folder of $BBCODEC_WEIGHTS (several separated by os.pathsep), then the weights that
    travel with the package (bbcodec/shipped_weights in an installed wheel), then the
    weights/ folder of a checkout (beside the bbcodec package, for editable installs)."""
    dirs: list[Path] = []
    for part in os.environ.get(ENV_DIR, "").split(os.pathsep):
        if part.strip():
            dirs.append(Path(part).expanduser())
    here = Path(__file__).resolve().parents[1]  # the bbcodec package
    dirs += [here / "shipped_weights", here.parent / "weights"]
    seen: set[Path] = set()
    out = []
    for d in dirs:
        key = d.resolve() if d.exists() else d
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def search_dirs() -> list[Path]:
    """The folders of candidate_dirs() that exist."""
    return [d for d in candidate_dirs() if d.is_dir()]


def _looked_in() -> str:
    return ", ".join(f"{d}{'' if d.is_dir() else ' (missing)'}" for d in candidate_dirs())


def registered(folder: Path) -> dict[str, str]:
    """File name -> SHA-256 from folder/SHA256SUMS, in file order."""
    try:
        lines = (folder / SUMS).read_text().splitlines()
    except (OSError, ValueError):  # missing, unreadable or not text
        return {}
    out = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and len(parts[0]) == 64:
            out[parts[1].lstrip("*")] = parts[0].lower()
    return out


def available() -> list[Path]:
    """Every weights file found, folder by folder in search order: in each folder the
    registered ones first (its default leading), then the others by name. The first is
    the default, so a folder named by $BBCODEC_WEIGHTS provides it."""
    out = []
    for d in search_dirs():
        sums = registered(d)
        out += [d / name for name in sums if (d / name).is_file()]
        out += [p for p in sorted(d.glob("*.npz")) if p.name not in sums]
    return out


@lru_cache(maxsize=8)
def load(path: Path) -> Weights:
    """Read, verify and build the integer model of one weights file."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"cannot read weights {path}: {e.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    expected = registered(path.parent).get(path.name)
    stem = path.stem.rsplit("-", 1)
    if expected is not None and digest != expected:
        raise WeightsError(f"weights {path} are corrupt (sha256 {digest[:16]}, expected {expected[:16]})")
    if expected is None and (len(stem) != 2 or not digest.startswith(stem[1])):
        raise WeightsError(f"weights {path} do not match the hash in their name")
    try:
        model = read(io.BytesIO(data))
    except MemoryError:
        raise WeightsError(f"weights {path}: not enough memory to load them") from None
    except Exception as e:  # any malformed array or metadata: unreadable weights, not a crash
        reason = " ".join(str(e).split()) or type(e).__name__
        raise WeightsError(f"weights {path} are unreadable: {reason}") from None
    return Weights(name=model.name, path=path, sha256=digest, model=model)


@lru_cache(maxsize=64)
def tune_of(path: Path) -> str:
    """The tuning a weights file's meta names, read without building its model (UNTUNED
    for files without one, or that cannot be read: load() will say what is wrong)."""
    import numpy as np

    try:
        with np.load(path) as arrays:
            return str(read_meta(arrays).get("tune", UNTUNED))
    except Exception:  # a broken file is refused, with its reason, when it is loaded
        return UNTUNED


def default(tune: str | None = None) -> Weights:
    """The first weights file found (available()), or with tune the first of that tuning."""
    check_tune(tune)
    files = available()
    if not files:
        raise WeightsError(f"no weights found (looked in: {_looked_in()}; set ${ENV_DIR} to a folder of weights)")
    if tune is None:
        return load(files[0])
    for path in files:
        if tune_of(path) == tune:
            return load(path)
    raise WeightsError(f"no weights tuned for {tune} found (looked in: {_looked_in()})")


def from_file(path: str | os.PathLike[str]) -> Weights:
    """The weights in one file (--weights FILE): verified against the SHA256SUMS beside it,
    or, when it is not listed there, against the hash in its name (NAME-<sha256[:8]>.npz)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"weights file {path}: no such file")
    return load(p.resolve())


def for_file(prefix: bytes, model_id: int) -> Weights:
    """The weights a .bbc header asks for (its weights_sha256 prefix and model_id): a
    known model family and an installed hash."""
    if model_id not in FAMILIES:
        known = ", ".join(f"{k} = {v}" for k, v in FAMILIES.items())
        raise WeightsError(f"unknown model id {model_id} (this decoder knows {known})")
    w = find(prefix)
    if w.family_id != model_id:
        raise WeightsError(f"weights {w.path.name} are of model id {w.family_id}, the file says {model_id}")
    return w


def find(prefix: bytes) -> Weights:
    """The installed weights whose SHA-256 starts with prefix (from a .bbc header)."""
    hexp = prefix.hex()
    for d in search_dirs():
        sums = registered(d)
        for path in [d / name for name in sums if (d / name).is_file()] + sorted(d.glob("*.npz")):
            listed = sums.get(path.name)
            if (listed is not None and listed.startswith(hexp)) or (listed is None and path.stem.endswith(hexp[:8])):
                w = load(path)
                if w.sha256.startswith(hexp):
                    return w
    raise WeightsError(f"this file needs weights with sha256 {hexp}..., which are not installed "
                       f"(looked in: {_looked_in()})")
