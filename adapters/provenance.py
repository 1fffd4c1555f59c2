"""Where a model's weights came from: which files a family reads, and their sha256.

An adapter's ``provenance`` names its source (a Hugging Face repo id and resolved commit, or a local
path) and the sha256 of every config and weight file it was built from. The fingerprint says *which
map* is audited (a hash of the tensors and options); the provenance says *which files* it came from,
so a report can be traced back to, and reproduced from, a repository commit or a file on disk.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .safe_load import PICKLE_SUFFIXES

# Config files the families read from a model folder (diffusers/transformers config, ViT-MAE's pixel
# statistics, a pipeline's index).
CONFIG_NAMES = ("config.json", "preprocessor_config.json", "model_index.json")
# The weight names diffusers and transformers load by default (single file or shards). Other
# ``.safetensors`` beside them are variants (``.fp16``), alternative formats or unrelated checkpoints.
_STANDARD_SAFE = re.compile(r"^(diffusion_pytorch_model|model)(-\d+-of-\d+)?\.safetensors$")
_STANDARD_PICKLE = re.compile(r"^(diffusion_pytorch_model|pytorch_model)(-\d+-of-\d+)?\.bin$")


@dataclass
class Selection:
    """The files of one model folder a family needs, as paths relative to the repository (or folder) root.

    ``pickle_only``: no safetensors weights in the folder, so ``weights`` are pickle files.
    """

    configs: list[str] = field(default_factory=list)
    weights: list[str] = field(default_factory=list)
    pickle_only: bool = False

    @property
    def files(self) -> list[str]:
        return self.configs + self.weights


def select_files(names: Iterable[str], folder: str = "") -> Selection:
    """Pick the config and weight files of ``folder`` from a listing of ``names`` (posix paths relative
    to the root). safetensors are preferred, and among them the names diffusers/transformers load
    (so an ``.fp16`` variant beside the full-precision file is not fetched); pickle files are chosen
    only when the folder has no safetensors at all (``pickle_only``). Nested folders are not read."""
    prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
    top = sorted(n[len(prefix):] for n in names if n.startswith(prefix) and "/" not in n[len(prefix):])
    safe = [n for n in top if n.endswith(".safetensors")]
    pickles = [n for n in top if n.endswith(PICKLE_SUFFIXES)]
    if safe:
        weights, index = [n for n in safe if _STANDARD_SAFE.match(n)] or safe, ".safetensors.index.json"
    else:
        weights, index = [n for n in pickles if _STANDARD_PICKLE.match(n)] or pickles, ".bin.index.json"
    configs = [n for n in top if n in CONFIG_NAMES or n.endswith(index)]
    return Selection([prefix + n for n in configs], [prefix + n for n in weights], pickle_only=not safe and bool(pickles))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def local_provenance(path: str | Path, files: Iterable[str | Path] | None = None) -> dict[str, Any] | None:
    """Provenance of a checkpoint on disk: ``{"path": absolute folder, "files": {name: sha256}}``.

    ``files`` (absolute, or relative to the folder) default to the weight and config files
    :func:`select_files` picks in a directory, or to the file itself. None when there is nothing to hash.
    """
    path = Path(path).expanduser().resolve()
    root = path if path.is_dir() else path.parent
    if files is None:
        if path.is_dir():
            files = select_files((p.name for p in path.iterdir() if p.is_file())).files
        else:
            files = [path.name]
    hashed = {}
    for f in files:
        p = root / f
        if p.is_file():
            hashed[p.relative_to(root).as_posix()] = sha256_file(p)
    return {"path": str(root), "files": hashed} if hashed else None
