"""``load_adapter``: the one entry point from a model spec string to an :class:`Adapter`.

Spec forms, tried in this order:

* ``py:package.module:attr`` - an Adapter, or a callable returning an Adapter or an (encoder, decoder) pair;
* ``NAME`` or ``NAME:ARG`` - a registered loader (built-in, or from the ``latentfield.adapters``
  entry-point group of any installed package);
* a local file or directory - each family registers a detector for its checkpoint format;
* ``org/model`` - a Hugging Face id, resolved from the local cache only (families that support it).
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .base import Adapter, AdapterError, TorchAutoencoder, check_options

Loader = Callable[..., Adapter]


@dataclass(frozen=True)
class _Entry:
    name: str
    loader: Loader
    help: str


_NAMED: dict[str, _Entry] = {}
_PATHS: list[tuple[str, Callable[[Path], bool], Loader]] = []
_HUB: list[Loader] = []
_plugins_loaded = False


def register_adapter(name: str, help: str = "") -> Callable[[Loader], Loader]:
    """Register ``loader(arg, **options)`` for the specs ``NAME`` (arg None) and ``NAME:ARG``."""
    def deco(fn: Loader) -> Loader:
        _NAMED[name] = _Entry(name, fn, help)
        return fn
    return deco


def register_path_loader(name: str, detect: Callable[[Path], bool]) -> Callable[[Loader], Loader]:
    """Register ``loader(path, **options)`` for local files/directories that ``detect`` accepts."""
    def deco(fn: Loader) -> Loader:
        _PATHS.append((name, detect, fn))
        return fn
    return deco


def register_hub_resolver(fn: Loader) -> Loader:
    """Register ``resolver(repo_id, **options) -> Adapter | None`` for Hugging Face ids."""
    _HUB.append(fn)
    return fn


def _load_builtins() -> None:
    # Importing a family module registers its loaders; entry points add third-party ones.
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from . import _import_families
    _import_families()
    for ep in entry_points(group="latentfield.adapters"):
        if ep.name not in _NAMED:
            _NAMED[ep.name] = _Entry(ep.name, _lazy_entry_point(ep), f"plugin {ep.value}")


def _lazy_entry_point(ep: Any) -> Loader:
    def load(arg: str | None, **options: Any) -> Adapter:
        return _as_adapter(ep.load()(arg, **options), ep.name, options)
    return load


def accepted_forms() -> str:
    _load_builtins()
    names = ", ".join(sorted(_NAMED))
    return (f"a registered name ({names}), py:package.module:attr, "
            "a local checkpoint file or directory, or a Hugging Face id in the local cache")


def available_adapters() -> dict[str, str]:
    """Registered spec names and their one-line help."""
    _load_builtins()
    return {k: e.help for k, e in sorted(_NAMED.items())}


def load_adapter(spec: str | Adapter, *, image_shape: Sequence[int] | None = None,
                 device: str | None = None, **options: Any) -> Adapter:
    """Build an adapter from a spec string (see module docstring). Raises ``AdapterError``.

    ``image_shape`` (C, H, W) fixes the input size for adapters that need one (bare encoder/decoder
    pairs, or models that accept several resolutions). Extra ``options`` go to the family loader.
    """
    if isinstance(spec, Adapter):
        adapter = spec
    else:
        adapter = _resolve(str(spec), image_shape=image_shape, **options)
    if image_shape is not None and tuple(image_shape) != tuple(adapter.image_shape or ()):
        adapter.set_image_shape(image_shape)
    if device is not None:
        adapter.to(_check_device(device))
    return adapter


def _check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device that exists here; AdapterError in one line otherwise."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise AdapterError(f"unknown device {str(device)!r}: expected cpu, cuda, cuda:N or mps") from None
    usable = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}.get(dev.type)
    if usable is not None and not usable():
        raise AdapterError(f"device {str(device)!r} is not available on this machine "
                           f"(torch finds no {dev.type.upper()} device); use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise AdapterError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


# A spec ending like a weights file is a path, never a registered name or a hub id.
_WEIGHT_SUFFIXES = {".safetensors", ".pth", ".pt", ".bin", ".ckpt"}


def _resolve(spec: str, **options: Any) -> Adapter:
    _load_builtins()
    if spec.startswith("py:"):
        return _from_python(spec[3:], options)
    name, _, arg = spec.partition(":")
    if name in _NAMED and not os.path.exists(spec):
        return _NAMED[name].loader(arg or None, **options)
    path = Path(spec).expanduser()
    if path.exists():
        for _, detect, loader in _PATHS:
            if detect(path):
                return loader(path, **options)
        raise AdapterError(f"{spec}: {_unrecognised(path)}")
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1 or path.suffix in _WEIGHT_SUFFIXES:
        raise AdapterError(f"{spec}: no such checkpoint file or folder (give a local checkpoint file or directory, "
                           "or a Hugging Face id in the local cache)")
    if spec.count("/") == 1:
        for resolver in _HUB:
            adapter = resolver(spec, **options)
            if adapter is not None:
                return adapter
    raise AdapterError(f"unknown model {spec!r}: expected " + accepted_forms())


def _unrecognised(path: Path) -> str:
    """Why no family took ``path``, as precisely as a cheap look allows."""
    if path.is_file() and path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open
        try:
            with safe_open(str(path), "pt") as f:
                n = len(list(f.keys()))
        except (SafetensorError, OSError) as e:
            return f"not a valid safetensors file ({e})"
        return (f"a safetensors file of {n} tensors with no model configuration (a bare state dict?); "
                "build the model in your own module and pass py:module:attr")
    return "no adapter family recognises this checkpoint; expected " + accepted_forms()


def _from_python(target: str, options: dict[str, Any]) -> Adapter:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise AdapterError(f"py:{target}: expected py:package.module:attr")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise AdapterError(f"py:{target}: cannot import ({e})") from None
    check_options(options, (), f"py:{target}")
    if callable(obj) and not isinstance(obj, Adapter):
        obj = obj()
    return _as_adapter(obj, f"py:{target}", options)


def _as_adapter(obj: Any, name: str, options: dict[str, Any]) -> Adapter:
    if isinstance(obj, Adapter):
        return obj
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and all(callable(o) for o in obj):
        return TorchAutoencoder(obj[0], obj[1], image_shape=options.get("image_shape"), name=name)
    raise AdapterError(f"{name}: expected an Adapter or an (encoder, decoder) pair, got {type(obj).__name__}")
