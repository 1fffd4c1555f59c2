"""Fingerprints: a sha256 that names what an adapter computes, not only its weights.

A run directory, a FAISS index or a cached analysis is reused only for the adapter whose fingerprint
it records, so the fingerprint must change whenever the map f(z) = E(D(z)) can change. It covers

* every parameter and buffer of every module (persistent or not, any dtype, 0-dim included);
* the module tree: each submodule's name, class path, ``training`` flag, plain attributes (numbers,
  strings, tuples, dicts, tensors, functions) and forward hooks;
* the code: each class or function is identified by where it comes from. latentfield's own code by
  latentfield's version, an installed package's by its name and version, and any other file (a user
  module loaded through ``py:``) by the sha256 of its contents, plus, for plain functions, their
  source, default values, closure values and the module-level values they name;
* the adapter's image and latent shapes, value range and dtype, its own plain attributes, and what
  its loader adds with :meth:`Adapter.add_identity` (the ``py:`` spec's file, a family's options).

It never uses ``repr`` of arbitrary objects (which holds memory addresses), so it is the same in
every process. What it cannot see is listed in docs/reliability.md.
"""
from __future__ import annotations

import argparse
import enum
import functools
import hashlib
import inspect
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from .base import Adapter

VERSION = "latentfield-fingerprint/2"
MAX_DEPTH = 4  # nesting of plain attributes described; deeper objects are named by their class only
MAX_ITEMS = 10_000  # longer containers are described by their type and length only
# Metadata that records where a model was loaded from, not what it computes (attribute or dict key).
VOLATILE = frozenset({"_name_or_path", "name_or_path", "_commit_hash", "transformers_version", "_diffusers_version"})
_MODULE_INTERNALS = frozenset(nn.Module().__dict__) | {"training"}
_NAMESPACES = (types.SimpleNamespace, argparse.Namespace)  # plain settings holders, described by attributes
# The adapter's own bookkeeping, parts described separately (modules(), shapes), and its name and file.
_ADAPTER_INTERNALS = frozenset({"_fingerprint", "_identity", "_device", "_dtype", "_modules", "image_shape",
                                "latent_shape", "value_range", "name", "path", "provenance"})


def tensor_bytes(t: torch.Tensor) -> bytes:
    """The raw bytes of a tensor on the CPU (any dtype, 0-dim included)."""
    t = t.detach()
    if t.layout != torch.strided:
        t = t.to_dense()
    if t.is_quantized:
        t = t.int_repr()
    t = t.to("cpu").resolve_conj().resolve_neg().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def values_sha256(x: torch.Tensor) -> str:
    """SHA-256 (64 hex digits) of a tensor's values as float32: names a set of images or seeds that a
    resumable job was given (the same values in another dtype or device hash alike)."""
    return hashlib.sha256(x.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()


def fingerprint_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 over tensor names, shapes, dtypes and bytes, in name order."""
    h = hashlib.sha256()
    for name, t in sorted(named, key=lambda kv: kv[0]):
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(tensor_bytes(t))
    return h.hexdigest()


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


# -- where code comes from ------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def latentfield_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("latentfield")
    except PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=None)
def _distribution_version(top: str) -> str:
    from importlib.metadata import PackageNotFoundError, packages_distributions, version
    try:
        return f"{top}=={version(top)}"
    except (PackageNotFoundError, ValueError):
        pass
    for dist in packages_distributions().get(top, []):  # import name differs from the distribution's (slow: once)
        try:
            return f"{dist}=={version(dist)}"
        except PackageNotFoundError:
            continue
    return f"{top}==unknown"


@functools.lru_cache(maxsize=None)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's contents (cached while its size and mtime stay the same)."""
    st = Path(path).stat()
    return _file_sha256(str(path), st.st_mtime_ns, st.st_size)


def code_identity(module_name: str | None) -> str:
    """Where the code of a Python module comes from: ``latentfield==V``, ``package==V`` for installed
    packages and the standard library, ``sha256:...`` of the file for anything else."""
    if not module_name:
        return "unknown"
    top = module_name.split(".")[0]
    if top == "latentfield":
        return f"latentfield=={latentfield_version()}"
    if top in sys.stdlib_module_names:
        return f"python=={sys.version.split()[0]}"
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if not file:
        return f"{module_name}: no source file"
    path = Path(file).resolve()
    if {"site-packages", "dist-packages"} & set(path.parts):  # an installed package (editable ones are files)
        return _distribution_version(top)
    try:
        return "sha256:" + file_sha256(path)
    except OSError:
        return f"{module_name}: source file unreadable"


def is_user_code(obj: Any) -> bool:
    """Whether a class or callable comes from a file of its own (hashed), not latentfield or a package."""
    while isinstance(obj, (functools.partial, types.MethodType)):
        obj = obj.func if isinstance(obj, functools.partial) else obj.__func__
    module = obj.__module__ if isinstance(obj, (type, types.FunctionType)) else type(obj).__module__
    return code_identity(module).startswith("sha256:")


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def class_identity(cls: type) -> str:
    """Class path and code identity of a class and its bases (up to ``object``/``nn.Module``)."""
    parts = [f"{class_path(c)}@{code_identity(c.__module__)}" for c in cls.__mro__
             if c not in (object, nn.Module)]
    return "class " + ",".join(parts)


# -- describing values ------------------------------------------------------------------------------

class _Describer:
    """Turns values into stable strings; modules and objects are described once per fingerprint."""

    def __init__(self) -> None:
        self.memo: dict[int, str] = {}
        self.keep: list[Any] = []  # keeps described objects alive, so no id is reused meanwhile

    def _once(self, obj: Any, make: Any) -> str:
        key = id(obj)
        if key in self.memo:
            return self.memo[key]
        self.memo[key] = "<cycle>"
        self.keep.append(obj)
        self.memo[key] = out = make()
        return out

    def value(self, v: Any, depth: int = 0) -> str:
        if v is None or isinstance(v, (bool, int, float, complex, str)) and not isinstance(v, enum.Enum):
            return repr(v) if not isinstance(v, str) or len(v) < 4096 else "str:" + _sha(v)
        if isinstance(v, enum.Enum):
            return f"{class_path(type(v))}.{v.name}"
        if isinstance(v, (bytes, bytearray)):
            return "bytes:" + _sha(bytes(v))
        if isinstance(v, (torch.dtype, torch.device, torch.Size, torch.memory_format, torch.layout)):
            return f"{type(v).__name__}:{v}"
        if isinstance(v, torch.Tensor):
            return f"tensor:{tuple(v.shape)}:{v.dtype}:{_sha(tensor_bytes(v))}"
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                return "ndarray[object]:" + self.value(v.tolist(), depth + 1)
            return f"ndarray:{v.shape}:{v.dtype}:{_sha(np.ascontiguousarray(v).tobytes())}"
        if isinstance(v, np.generic):
            return f"{type(v).__name__}:{v.item()!r}"
        if isinstance(v, nn.Module):
            return self.module(v)
        if isinstance(v, type):
            return class_identity(v)
        if isinstance(v, types.ModuleType):
            return f"module {v.__name__}@{code_identity(v.__name__)}"
        if depth >= MAX_DEPTH:
            return f"<{class_path(type(v))}>"
        if isinstance(v, (tuple, list, set, frozenset, dict)):
            return self._container(v, depth)
        if callable(v):
            return self.callable(v, depth)
        return self._once(v, lambda: self._object(v, depth))

    def _container(self, v: Any, depth: int) -> str:
        name = class_path(type(v))
        if len(v) > MAX_ITEMS:
            return f"{name}[{len(v)} items]"
        if isinstance(v, dict):
            items = sorted(f"{self.value(k, depth + 1)}:{self.value(x, depth + 1)}" for k, x in v.items()
                           if not (isinstance(k, str) and k in VOLATILE))
        else:
            items = [self.value(x, depth + 1) for x in v]
            if isinstance(v, (set, frozenset)):
                items.sort()
        return f"{name}[{', '.join(items)}]"

    def _object(self, v: Any, depth: int) -> str:
        attrs = getattr(v, "__dict__", None)
        # Standard-library objects (loggers, locks, threads) hold process state, not model settings.
        stdlib = type(v).__module__.split(".")[0] in sys.stdlib_module_names and not isinstance(v, _NAMESPACES)
        if not isinstance(attrs, dict) or stdlib:
            return f"<{class_identity(type(v))}>"
        return f"<{class_identity(type(v))} {self.attributes(attrs, depth + 1, private=is_user_code(type(v)))}>"

    def attributes(self, attrs: dict[str, Any], depth: int, skip: Iterable[str] = (), private: bool = True) -> str:
        """``{name=value, ...}`` in name order. ``private=False`` leaves out ``_names``: libraries keep
        bookkeeping there that they set lazily (on the first forward, say), which must not move the fingerprint."""
        skip = VOLATILE | set(skip)
        return "{" + ", ".join(f"{k}={self.value(attrs[k], depth)}" for k in sorted(attrs)
                               if k not in skip and (private or not k.startswith("_"))) + "}"

    # -- code ---------------------------------------------------------------------------------------
    def callable(self, fn: Any, depth: int = 0) -> str:
        if isinstance(fn, nn.Module):
            return self.module(fn)
        if isinstance(fn, functools.partial):
            return (f"partial({self.callable(fn.func, depth + 1)}, {self.value(fn.args, depth + 1)}, "
                    f"{self.value(fn.keywords, depth + 1)})")
        if isinstance(fn, types.MethodType):
            return f"method {self.callable(fn.__func__, depth + 1)} of {self.value(fn.__self__, depth + 1)}"
        if isinstance(fn, types.FunctionType):
            return self._once(fn, lambda: self._function(fn, depth))
        if isinstance(fn, (types.BuiltinFunctionType, types.BuiltinMethodType, types.MethodWrapperType,
                           types.WrapperDescriptorType, types.MethodDescriptorType)) or not hasattr(fn, "__dict__"):
            module = getattr(fn, "__module__", None) or type(fn).__module__
            qual = getattr(fn, "__qualname__", None) or type(fn).__qualname__
            return f"builtin {module}.{qual}@{code_identity(module)}"
        return self._once(fn, lambda: self._object(fn, depth))  # a callable object: its class and attributes

    def _function(self, fn: types.FunctionType, depth: int) -> str:
        code = code_identity(fn.__module__)
        head = f"function {fn.__module__}.{fn.__qualname__}@{code}"
        if not code.startswith("sha256:"):  # library code: its version names it
            return head
        try:
            source = _sha(inspect.getsource(fn))
        except (OSError, TypeError):
            source = "code:" + _code_digest(fn.__code__)
        parts = [head, f"source={source}", f"defaults={self.value(fn.__defaults__, depth + 1)}",
                 f"kwdefaults={self.value(fn.__kwdefaults__, depth + 1)}"]
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                parts.append(f"closure {name}={self.value(cell.cell_contents, depth + 1)}")
            except ValueError:  # an empty cell
                parts.append(f"closure {name}=<empty>")
        for name in sorted(_global_names(fn.__code__)):
            if name in fn.__globals__:
                parts.append(f"global {name}={self.value(fn.__globals__[name], depth + 1)}")
        return " ".join(parts)

    # -- modules -------------------------------------------------------------------------------------
    def module(self, m: nn.Module) -> str:
        return self._once(m, lambda: "module:" + self._module(m))

    def _module(self, m: nn.Module) -> str:
        h = hashlib.sha256()
        for name, sub in m.named_modules():
            skip = set(getattr(sub, "fingerprint_exclude", ())) | _MODULE_INTERNALS
            user = is_user_code(type(sub))
            h.update(f"{name}|{class_identity(type(sub))}|training={sub.training}|"
                     f"{self.attributes(sub.__dict__, 0, skip, private=user)}\n".encode())
            for kind in ("_forward_pre_hooks", "_forward_hooks"):
                for hook in getattr(sub, kind, {}).values():
                    if is_user_code(hook):  # a library's own hooks belong to its version (and come lazily)
                        h.update(f"{kind} {self.callable(hook, 1)}\n".encode())
        tensors = [*m.named_parameters(), *(("buffer:" + k, v) for k, v in m.named_buffers())]
        h.update(fingerprint_tensors(tensors).encode())
        return h.hexdigest()


def _global_names(code: types.CodeType) -> set[str]:
    """Names a code object (and the functions nested in it) looks up as globals."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _code_digest(code: types.CodeType) -> str:
    """For functions whose source cannot be read: their bytecode, constants and names."""
    def const(c: Any) -> str:
        if isinstance(c, types.CodeType):
            return _code_digest(c)
        if isinstance(c, frozenset):  # set order follows string hashing, which differs per process
            return "frozenset" + repr(sorted(map(repr, c)))
        return repr(c)
    return _sha(code.co_code + repr(([const(c) for c in code.co_consts], code.co_names, code.co_varnames)).encode())


def describe_callable(fn: Any) -> str:
    """A stable description of a callable (function, bound method, partial, module, callable object)."""
    return _Describer().callable(fn)


def adapter_fingerprint(adapter: "Adapter") -> str:
    """The fingerprint of an adapter (see the module docstring)."""
    d = _Describer()
    h = hashlib.sha256()
    shape = tuple(None if s is None else tuple(int(v) for v in s) for s in (adapter.image_shape, adapter.latent_shape))
    shape += (tuple(float(v) for v in adapter.value_range), str(adapter.dtype))
    h.update(f"{VERSION}\n{class_identity(type(adapter))}\nshapes={shape!r}\n".encode())
    for i, m in enumerate(adapter.modules()):
        h.update(f"modules[{i}]={d.module(m)}\n".encode())
    skip = _ADAPTER_INTERNALS | set(getattr(adapter, "fingerprint_exclude", ()))
    h.update(f"attributes={d.attributes(getattr(adapter, '__dict__', {}), 0, skip)}\n".encode())
    identity = getattr(adapter, "_identity", None) or {}
    h.update(f"identity={d.value(identity)}\n".encode())
    return h.hexdigest()
