"""Shared pieces of the pretrained-model families (SD VAE, tiny AEs, ViT-MAE, RAE, trained decoders)."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from .base import Adapter, AdapterError
from .fingerprint import latentfield_version


def instance_of(obj: Any, package: str, class_names: Sequence[str]) -> bool:
    """Whether ``obj`` is an instance of a class named one of ``class_names`` from ``package`` (or of a
    subclass of one): an ``object`` hook's match, without importing ``package``."""
    return any(c.__name__ in class_names and c.__module__.split(".")[0] == package for c in type(obj).__mro__)


def object_name(obj: Any, options: dict[str, Any]) -> str:
    """The name of an in-memory model: ``options['name']``, else where it was loaded from (diffusers and
    transformers record ``name_or_path``), else its class; "(in memory)" says no file was read here."""
    if options.get("name"):
        return str(options["name"])
    cfg = getattr(obj, "config", None)
    origin = getattr(cfg, "_name_or_path", None) or (cfg.get("_name_or_path") if isinstance(cfg, dict) else None)
    return f"{origin or type(obj).__name__} (in memory)"


class FamilyAdapter(Adapter):
    """An adapter over one or more torch modules plus the options that change its map.

    ``options`` (JSON-able) enter the fingerprint with the family and latentfield's version, so two runs
    of the same weights with, say, scaled and unscaled latents never share a resumable run directory. ``clamp`` clips decoded images to
    ``value_range``: D(z) is then an image as it would be saved, and E only ever sees valid pixels.
    """

    family: str = "family"

    def __init__(self, modules: Sequence[nn.Module], *, name: str, options: dict[str, Any] | None = None,
                 clamp: bool = True) -> None:
        super().__init__()
        self._modules = list(modules)
        self.name = name
        self.clamp = bool(clamp)
        self.options = {"family": self.family, "clamp": self.clamp, **(options or {})}
        self.add_identity(family=self.family, latentfield=latentfield_version())  # options: an attribute
        self._eval()

    def modules(self) -> list[nn.Module]:
        return self._modules

    def _clamp(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(*self.value_range) if self.clamp else x

    def _check_image(self, x: torch.Tensor, multiple: int = 1) -> None:
        if x.ndim != 4:
            raise AdapterError(f"{self.name}: expected images (B, C, H, W), got shape {tuple(x.shape)}")
        if multiple > 1 and (x.shape[-1] % multiple or x.shape[-2] % multiple):
            raise AdapterError(f"{self.name}: image height and width must be multiples of {multiple}, "
                               f"got {tuple(x.shape[-2:])}")
