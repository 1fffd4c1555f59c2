"""Safe weight loading: safetensors first, pickle only through ``torch.load(weights_only=True)``.

A pickle-based checkpoint (``.pth``/``.bin``/``.pt``/``.ckpt``) can run arbitrary code when it is
unpickled. ``weights_only=True`` restricts unpickling to tensors and plain containers; anything else
is refused here with one :class:`AdapterError` line (the CLI prints it, nothing runs).
Hugging Face loaders are always called with ``trust_remote_code=False`` and ``local_files_only=True``
(a Hub id is downloaded before, by :mod:`.hub_download`, which refuses pickle-only repositories
unless ``allow_pickle=True``).
"""
from __future__ import annotations

import pickle
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from .base import AdapterError
from .errors import first_line

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFE_SUFFIXES = (".safetensors",)
# Keyword arguments for every ``from_pretrained`` call: no network, no code from the checkpoint.
HF_SAFE_KWARGS: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}


def load_state_dict(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a flat ``name -> tensor`` dict from a safetensors or (restricted) pickle file.

    Common wrappers (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped. Tensors keep their
    stored dtype (callers cast). Raises ``AdapterError`` for unreadable or unsafe files.
    """
    path = Path(path)
    if not path.is_file():
        raise AdapterError(f"{path}: no such weights file")
    if path.suffix in SAFE_SUFFIXES:
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device=str(map_location))
        except Exception as e:  # header/format errors from the Rust reader
            raise AdapterError(f"{path}: not a readable safetensors file ({first_line(e)})") from None
    obj = torch_load_safe(path, map_location)
    for key in ("state_dict", "model", "module", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise AdapterError(f"{path}: expected a state dict of tensors, got {type(obj).__name__}")
    return dict(obj)


def torch_load_safe(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)`` with unsafe or broken pickles turned into ``AdapterError``."""
    path = Path(path)
    try:
        return torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise AdapterError(
            f"{path}: refused to load: the pickle holds objects other than tensors, which could run code "
            f"({first_line(e)}); convert trusted weights to .safetensors") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise AdapterError(f"{path}: cannot read weights ({first_line(e)})") from None


def from_pretrained(cls: Any, path: str | Path, **kwargs: Any) -> Any:
    """``cls.from_pretrained(path)`` offline, without remote code, in float32; errors as one line.

    diffusers takes ``torch_dtype``, transformers ``dtype``; pass the right one in ``kwargs``.
    """
    is_model = (isinstance(cls, type) and issubclass(cls, torch.nn.Module)) or cls.__name__.startswith("AutoModel")
    if cls.__module__.startswith("diffusers") and not any(Path(path).glob("*.safetensors")):
        # Pickle weights only (already checked by check_pickles): ask for them directly, or diffusers
        # logs an error for the missing safetensors file before it falls back.
        kwargs.setdefault("use_safetensors", False)
    try:
        with _quiet_hf_logs():
            out = cls.from_pretrained(str(path), **HF_SAFE_KWARGS, **kwargs,
                                      **({"output_loading_info": True} if is_model else {}))
    except (OSError, ValueError, RuntimeError, KeyError, AttributeError, TypeError) as e:
        # AttributeError/TypeError: version skew between diffusers and transformers model classes.
        raise AdapterError(f"{path}: cannot load {cls.__name__} ({first_line(e)})") from None
    # The libraries fill weights a checkpoint lacks with random values and only log a warning; an audit
    # of a partly random model would be silently wrong, so refuse it.
    if not is_model:
        return out
    model, info = out
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise AdapterError(f"{path}: the checkpoint has no weights for {len(missing)} parameters of "
                           f"{cls.__name__} (e.g. {missing[0]}); refusing to audit a partly random model")
    return model


@contextmanager
def _quiet_hf_logs() -> Iterator[None]:
    """Silence the libraries' info/warning chatter (accelerate hints, load reports) during one load."""
    import logging
    loggers = [logging.getLogger(n) for n in ("diffusers", "transformers")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging  # its weight-loading progress bar
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()


def check_pickles(directory: str | Path) -> None:
    """Refuse a Hugging Face directory whose pickle weight files are unsafe, before a library opens them.

    Only pickle files without a safetensors sibling are checked (libraries prefer safetensors). The
    check loads onto the ``meta`` device, so no tensor data is read.
    """
    directory = Path(directory)
    has_safe = any(directory.glob("*.safetensors"))
    if has_safe:
        return
    for p in sorted(directory.iterdir()):
        if p.suffix in PICKLE_SUFFIXES and p.is_file():
            torch_load_safe(p, map_location="meta")
