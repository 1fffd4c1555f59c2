"""The one writer of what a person reads: every file a workflow or report writes goes through here.

Under ``torchrun`` / ``accelerate launch`` every rank computes the same result and only the main process
writes it (:func:`latentfield.probe.rundir.distributed.is_main_process`); the check lives here and nowhere
else. Writes are atomic (``adapters.atomic``): a reader, or a resumed run, never sees a half-written file.
Chunks of a shared run are not written here: every rank writes its own (``rundir.store``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from latentfield.adapters import atomic

from .distributed import is_main_process


def write_json(path: str | Path, obj: Any) -> Path:
    """``obj`` as indented JSON at ``path`` (numpy / torch scalars and arrays become lists)."""
    if is_main_process():
        atomic.write_json(path, obj)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    if is_main_process():
        atomic.write_text(path, text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    if is_main_process():
        atomic.write_bytes(path, data)
    return Path(path)


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file (``metadata``: string key/values, e.g. the run key)."""
    if is_main_process():
        atomic.write_tensors(path, tensors, metadata)
    return Path(path)


__all__ = ["write_json", "write_text", "write_bytes", "write_tensors", "is_main_process"]
