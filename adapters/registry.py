"""``load_adapter``: the one entry point from a model spec string to an :class:`Adapter`.

Spec forms, tried in this order (:func:`parse_spec`):

* ``py:package.module:attr`` - an Adapter, or a callable returning an Adapter or an (encoder, decoder) pair;
* ``NAME`` or ``NAME:ARG`` - a registered loader (built-in, or from the ``latentfield.adapters``
  entry-point group of any installed package);
* a local file or directory - each family registers a detector for its checkpoint format;
* ``org/model[@revision]`` - a Hugging Face id: the local cache, else a download unless offline.

Objects already in memory are accepted too (:func:`load_adapter` with a model instead of a string): a
diffusers ``AutoencoderKL`` / ``AutoencoderTiny`` / ``AutoencoderRAE`` (e.g. ``pipe.vae``), a transformers
``ViTMAEForPreTraining``, or an ``(encoder, decoder)`` pair of modules or callables. Each maps to the same
family adapter, with the same options and fingerprint rules, as the model loaded from disk.

One registry holds every hook, of five kinds, each with its decorator: ``name`` (:func:`register_adapter`),
``path`` (:func:`register_path_loader`), ``config`` (:func:`register_config_family`, Hugging Face format
directories matched on their config.json), ``hub`` (:func:`register_hub_resolver`) and ``object``
(:func:`register_object_family`, model objects matched by their class). An entry point
that names a module (``plugin = "pkg.mod"``) is imported, so its decorators can register any kind; one
that names a callable (``plugin = "pkg.mod:load"``) is a ``name`` hook, loaded when first used.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .base import Adapter, TorchAutoencoder, check_options
from .errors import AdapterError, UsageError, first_line
from .fingerprint import code_identity
from .precision import check_supported, dtype_name, parse_dtype

Loader = Callable[..., Adapter]
KINDS = ("name", "path", "config", "hub", "object")


@dataclass(frozen=True)
class Hook:
    """One way to turn a spec into an adapter. ``match``: ``detect(path)`` for ``path`` hooks,
    ``match(config)`` for ``config`` hooks, ``match(obj)`` for ``object`` hooks, unused otherwise."""

    kind: str
    name: str
    loader: Loader
    match: Callable[[Any], bool] | None = None
    help: str = ""


_HOOKS: list[Hook] = []
_plugins_loaded = False


def _add(hook: Hook) -> Loader:
    global _HOOKS
    _HOOKS = [h for h in _HOOKS if not (h.kind == hook.kind and h.name == hook.name)] + [hook]
    return hook.loader


def hooks(kind: str) -> list[Hook]:
    """The registered hooks of one kind, in registration order (built-ins and plugins loaded first)."""
    if kind not in KINDS:
        raise ValueError(f"unknown hook kind {kind!r}: one of {', '.join(KINDS)}")
    _load_builtins()
    return [h for h in _HOOKS if h.kind == kind]


def register_adapter(name: str, help: str = "") -> Callable[[Loader], Loader]:
    """Register ``loader(arg, **options)`` for the specs ``NAME`` (arg None) and ``NAME:ARG``."""
    return lambda fn: _add(Hook("name", name, fn, help=help))


def register_path_loader(name: str, detect: Callable[[Path], bool]) -> Callable[[Loader], Loader]:
    """Register ``loader(path, **options)`` for local files/directories that ``detect`` accepts."""
    return lambda fn: _add(Hook("path", name, fn, detect))


def register_config_family(name: str, match: Callable[[dict[str, Any]], bool]) -> Callable[[Loader], Loader]:
    """Register ``loader(directory, config, **options)`` for HF-format directories whose config ``match``es."""
    return lambda fn: _add(Hook("config", name, fn, match))


def register_object_family(name: str, match: Callable[[Any], bool]) -> Callable[[Loader], Loader]:
    """Register ``loader(model, **options)`` for model objects already in memory that ``match`` accepts."""
    return lambda fn: _add(Hook("object", name, fn, match))


def register_hub_resolver(fn: Loader) -> Loader:
    """Register ``resolver(repo_id, **options) -> Adapter | None`` for Hugging Face ids."""
    return _add(Hook("hub", f"{fn.__module__}.{fn.__qualname__}", fn))


def _load_builtins() -> None:
    # Importing a family module registers its hooks; entry points add third-party ones.
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from . import _import_families
    _import_families()
    named = {h.name for h in _HOOKS if h.kind == "name"}
    for ep in entry_points(group="latentfield.adapters"):
        if ep.attr is None:  # a module: its decorators register hooks of any kind
            try:
                importlib.import_module(ep.value)
            except ImportError as e:
                raise AdapterError(f"adapter plugin {ep.name} ({ep.value}): cannot import ({e})") from None
        elif ep.name not in named:
            _add(Hook("name", ep.name, _lazy_entry_point(ep), help=f"plugin {ep.value}"))


def _lazy_entry_point(ep: Any) -> Loader:
    def load(arg: str | None, **options: Any) -> Adapter:
        return _as_adapter(ep.load()(arg, **options), ep.name, options)
    return load


def accepted_forms() -> str:
    names = ", ".join(sorted(h.name for h in hooks("name")))
    return (f"a registered name ({names}), py:package.module:attr, "
            "a local checkpoint file or directory, or a Hugging Face id (org/name[@revision])")


def available_adapters() -> dict[str, str]:
    """Registered spec names and their one-line help."""
    return {h.name: h.help for h in sorted(hooks("name"), key=lambda h: h.name)}


# A spec ending like a weights file is a path, never a registered name or a hub id.
_WEIGHT_SUFFIXES = {".safetensors", ".pth", ".pt", ".bin", ".ckpt"}


@dataclass(frozen=True)
class Spec:
    """A parsed model spec. ``kind``: ``python`` (``target`` = module:attr), ``name`` (``name``, ``arg``),
    ``path`` (an existing ``path``), ``missing-path`` (looks like a path, does not exist), ``hub``
    (``text`` = org/model) or ``unknown``."""

    kind: str
    text: str
    name: str = ""
    arg: str | None = None
    path: Path | None = None
    target: str = ""


def parse_spec(spec: str, names: Sequence[str] | None = None) -> Spec:
    """Classify ``spec`` by its form alone (nothing is loaded). ``names``: the registered names (default:
    every ``name`` hook)."""
    if spec.startswith("py:"):
        return Spec("python", spec, target=spec[3:])
    names = [h.name for h in hooks("name")] if names is None else names
    name, _, arg = spec.partition(":")
    if name in names and not os.path.exists(spec):
        return Spec("name", spec, name=name, arg=arg or None)
    path = Path(spec).expanduser()
    if path.exists():
        return Spec("path", spec, path=path)
    repo = spec.partition("@")[0]  # org/name@rev: the revision may hold slashes (refs/pr/1)
    if spec.startswith((".", "/", "~")) or repo.count("/") > 1 or path.suffix in _WEIGHT_SUFFIXES:
        return Spec("missing-path", spec, path=path)
    if repo.count("/") == 1:
        return Spec("hub", spec)
    return Spec("unknown", spec)


def load_adapter(spec: str | Path | Adapter | Any, *, image_shape: Sequence[int] | None = None,
                 device: str | None = None, dtype: str | torch.dtype | None = None, **options: Any) -> Adapter:
    """Build an adapter from a spec string or a model object (see module docstring). Raises ``AdapterError``.

    A model object is wrapped where it is: no copy, no file. Wrapping puts its modules in eval mode with
    ``requires_grad`` off (as loading from disk does), and, without ``device`` / ``dtype``, the adapter
    runs on the device and in the dtype the model's weights already have.

    ``image_shape`` (C, H, W) fixes the input size for adapters that need one (bare encoder/decoder
    pairs, or models that accept several resolutions). ``dtype`` (``float32``, ``bfloat16``, ``float16``;
    ``torch_dtype`` is accepted as an alias) casts the weights after loading: families load in float32
    and the adapter is moved with ``adapter.to(dtype=...)``, for every family alike. Extra ``options`` go
    to the family loader.
    """
    dtype = _requested_dtype(dtype, options.pop("torch_dtype", None))
    if isinstance(spec, Adapter):
        adapter = spec
    elif isinstance(spec, (str, Path)):
        adapter = _resolve(str(spec), image_shape=image_shape, **options)
    else:
        adapter = _from_object(spec, image_shape=image_shape, **options)
    if image_shape is not None and tuple(image_shape) != tuple(adapter.image_shape or ()):
        adapter.set_image_shape(image_shape)
    dev = _check_device(device) if device is not None else adapter.device
    if dtype is not None:
        check_supported(dtype, dev)
        _check_castable(adapter, dtype)
    if device is not None or dtype is not None:
        adapter.to(dev, dtype)
    return adapter


def _from_object(obj: Any, **options: Any) -> Adapter:
    """A model object in memory -> the adapter of its family (``object`` hooks), or a bare pair."""
    options.pop("local_files_only", None)  # nothing to download
    hook = next((h for h in hooks("object") if h.match(obj)), None)
    if hook is not None:
        adapter = hook.loader(obj, **options)
    elif _is_pair(obj):
        check_options(options, ("name",), "an (encoder, decoder) pair")
        adapter = _as_adapter(obj, options.get("name") or "encoder-decoder pair", options)
    else:
        raise AdapterError(f"cannot wrap a {type(obj).__module__}.{type(obj).__qualname__}: expected " + accepted_objects())
    _adopt_placement(adapter)
    return adapter


def accepted_objects() -> str:
    families = ", ".join(h.name for h in hooks("object"))
    return (f"a model spec string, an Adapter, a model object ({families}) "
            "or an (encoder, decoder) pair of modules or callables (with image_shape)")


def _is_pair(obj: Any) -> bool:
    return isinstance(obj, (tuple, list)) and len(obj) == 2 and all(callable(o) for o in obj)


def _adopt_placement(adapter: Adapter) -> None:
    """Run an in-memory model where its weights are: the device and floating dtype of its first parameter."""
    params = (p for m in adapter.modules() for p in m.parameters())
    first = next((p for p in params if p.is_floating_point()), None)
    if first is not None and (first.device != adapter.device or first.dtype != adapter.dtype):
        adapter.to(first.device, first.dtype)


def _check_castable(adapter: Adapter, dtype: torch.dtype) -> None:
    """A model that pins modules to float32 (diffusers/transformers ``_keep_in_fp32_modules``) would lose
    that under a plain cast: refuse rather than run it differently from its authors' intent."""
    kept = sorted({k for m in adapter.modules() for sub in m.modules()
                   for k in (getattr(sub, "_keep_in_fp32_modules", None) or ())})
    if kept and dtype != torch.float32:
        raise AdapterError(f"{adapter.name}: keeps {', '.join(kept)} in float32, which a {dtype_name(dtype)} cast "
                           "would not; run it in float32")


def _requested_dtype(dtype: Any, torch_dtype: Any) -> torch.dtype | None:
    """``dtype`` or its alias ``torch_dtype`` (the diffusers/transformers spelling), parsed; both only if equal."""
    parsed = [parse_dtype(d) for d in (dtype, torch_dtype) if d is not None]
    if len(parsed) == 2 and parsed[0] != parsed[1]:
        raise AdapterError(f"dtype {dtype_name(parsed[0])} and torch_dtype {dtype_name(parsed[1])} disagree: give one")
    return parsed[0] if parsed else None


def _check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device that exists here; AdapterError in one line otherwise."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise AdapterError(f"unknown device {str(device)!r}: expected cpu, cuda, cuda:N or mps") from None
    usable = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}.get(dev.type)
    if usable is not None and not usable():
        raise AdapterError(f"device {str(device)!r} is not available on this machine "
                           f"(torch finds no {dev.type.upper()} device); use `device` cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise AdapterError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def _resolve(spec: str, **options: Any) -> Adapter:
    parsed = parse_spec(spec)
    if parsed.kind != "hub":  # --offline: nothing else downloads, so the switch is moot
        options.pop("local_files_only", None)
    if parsed.kind == "python":
        return _from_python(parsed.target, options)
    if parsed.kind == "name":
        return next(h for h in hooks("name") if h.name == parsed.name).loader(parsed.arg, **options)
    if parsed.kind == "path":
        for hook in hooks("path"):
            if hook.match(parsed.path):
                adapter = hook.loader(parsed.path, **options)
                if adapter.provenance is None:
                    from .provenance import local_provenance
                    adapter.provenance = local_provenance(parsed.path)
                return adapter
        raise AdapterError(f"{spec}: {_unrecognised(parsed.path)}")
    if parsed.kind == "missing-path":
        raise AdapterError(f"{spec}: no such checkpoint file or folder (give a local checkpoint file or directory, "
                           "or a Hugging Face id org/name[@revision])")
    if parsed.kind == "hub":
        for hook in hooks("hub"):
            adapter = hook.loader(spec, **options)
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
        module = obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise AdapterError(f"py:{target}: cannot import ({e})") from None
    except Exception as e:  # the module itself raised (a syntax error, a failing top-level line)
        raise AdapterError(f"py:{target}: cannot import: {module_name} raised {first_line(e)}") from e
    check_options(options, (), f"py:{target}")
    if callable(obj) and not isinstance(obj, Adapter):
        try:
            obj = obj()
        except (AdapterError, UsageError):
            raise
        except Exception as e:
            raise AdapterError(f"py:{target}: calling {attr}() raised {first_line(e)}") from e
    adapter = _as_adapter(obj, f"py:{target}", options)
    # The code that runs enters the fingerprint: the spec's module file (the classes and functions it
    # reaches add their own files), and which attribute built the model.
    adapter.add_identity(py_target=target, py_module=code_identity(module.__name__))
    return adapter


def _as_adapter(obj: Any, name: str, options: dict[str, Any]) -> Adapter:
    if isinstance(obj, Adapter):
        return obj
    if _is_pair(obj):
        return TorchAutoencoder(obj[0], obj[1], image_shape=options.get("image_shape"), name=name)
    raise AdapterError(f"{name}: expected an Adapter or an (encoder, decoder) pair, got {type(obj).__name__}")
