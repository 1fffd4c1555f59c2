"""The adapter protocol: an autoencoder seen as an encode/decode pair.

The probe engine only ever talks to this interface, so any model family can be audited once it
provides ``encode`` and ``decode`` on batched tensors.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from .errors import AdapterError

Shape = tuple[int, ...]


def check_options(options: Mapping[str, Any], allowed: Iterable[str], family: str) -> None:
    """Refuse options a family does not read: a mistyped ``--model-option`` must not pass silently."""
    allowed = set(allowed) | {"image_shape"}  # load_adapter passes the input size to every family
    unknown = sorted(k for k, v in options.items() if k not in allowed and v is not None)
    if unknown:
        raise AdapterError(f"{family}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                           f"(this family takes: {', '.join(sorted(allowed))})")


def fingerprint_tensors(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """sha256 over parameter names, shapes, dtypes and bytes, in name order."""
    h = hashlib.sha256()
    for name, t in sorted(named, key=lambda kv: kv[0]):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class Adapter:
    """Base class: an encoder E and decoder D over batched tensors.

    Subclasses implement ``_encode`` and ``_decode`` and set ``name``, ``image_shape`` (C, H, W),
    ``latent_shape`` (per sample, no batch axis) and ``value_range`` (the pixel range the model
    expects, e.g. (0, 1) or (-1, 1)). ``encode``/``decode`` run without autograd; the map whose
    dynamics we study is ``f(z) = encode(decode(z))``. ``provenance`` (set by the loaders): where the
    weights came from, ``{"repo_id", "revision", "commit", "subfolder", "files"}`` for a Hugging Face id
    or ``{"path", "files"}`` for local files, ``files`` mapping each file read to its sha256.
    """

    name: str = "adapter"
    image_shape: Shape | None = None
    latent_shape: Shape | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    provenance: dict[str, Any] | None = None

    def __init__(self) -> None:
        self._device = torch.device("cpu")
        self._dtype = torch.float32
        self._fingerprint: str | None = None

    # -- to implement ---------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _decode(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def modules(self) -> list[nn.Module]:
        """The torch modules holding the weights (used for eval mode, device moves, fingerprint)."""
        return []

    # -- public API ------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in ``value_range`` -> latents (B, *latent_shape)."""
        return self._encode(x.to(self._device, self._dtype))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, *latent_shape) -> images (B, C, H, W) in ``value_range``."""
        return self._decode(z.to(self._device, self._dtype))

    @torch.no_grad()
    def f(self, z: torch.Tensor) -> torch.Tensor:
        """The latent map f(z) = E(D(z)), shape preserving."""
        return self.encode(self.decode(z))

    def f_differentiable(self, z: torch.Tensor) -> torch.Tensor:
        """f(z) with autograd on, for Jacobian-vector products (``torch.func.jvp``/``vjp``).

        ``encode``/``decode`` run under ``no_grad``, which blocks reverse-mode transforms. Adapters
        whose ``_encode``/``_decode`` are not differentiable make the stability code fall back to
        finite differences of ``f``.
        """
        return self._encode(self._decode(z.to(self._device, self._dtype)))

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> the model's ``value_range``."""
        lo, hi = self.value_range
        return x * (hi - lo) + lo

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Images in the model's ``value_range`` -> [0, 1] (clamped)."""
        lo, hi = self.value_range
        return ((x - lo) / (hi - lo)).clamp(0, 1)

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "Adapter":
        """Move the weights; ``dtype`` casts them (``load_adapter(..., dtype=)`` checks the device supports it)."""
        if device is not None:
            self._device = torch.device(device)
        if dtype is not None and dtype != self._dtype:
            self._dtype = dtype
            self._fingerprint = None  # the weights' bytes changed: the fingerprint names the map as it runs
        for m in self.modules():
            # nn.Module.to itself: diffusers' override warns on every dtype cast about modules to keep in
            # float32 (``_keep_in_fp32_modules``); load_adapter refuses low precision for models that have any.
            nn.Module.to(m, device=self._device, dtype=self._dtype)
        return self

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the weights and ``encode``/``decode`` run in (float32 unless cast)."""
        return self._dtype

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights: two adapters with the same fingerprint define the same map."""
        if self._fingerprint is None:
            named = []
            for i, m in enumerate(self.modules()):
                named += [(f"{i}.{k}", v) for k, v in m.state_dict().items()]
            self._fingerprint = fingerprint_tensors(named)
        return self._fingerprint

    @property
    def latent_dim(self) -> int:
        n = 1
        for s in self.latent_shape or ():
            n *= s
        return n

    def set_image_shape(self, image_shape: Sequence[int]) -> None:
        """Fix the image shape (for adapters that accept several) and infer ``latent_shape``."""
        self.image_shape = tuple(int(s) for s in image_shape)
        x = torch.full((1, *self.image_shape), 0.5)
        self.latent_shape = tuple(self.encode(self.from_unit(x)).shape[1:])

    def _eval(self) -> None:
        for m in self.modules():
            m.eval()
            m.requires_grad_(False)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, image_shape={self.image_shape}, "
                f"latent_shape={self.latent_shape}, value_range={self.value_range})")


class TorchAutoencoder(Adapter):
    """Wrap any encoder/decoder pair (nn.Modules or plain callables) as an adapter.

    ``image_shape`` may be omitted and set later with ``set_image_shape`` (e.g. from the data a
    command is given); ``latent_shape`` is then inferred from one encode.
    """

    def __init__(self, encoder: Callable[[torch.Tensor], torch.Tensor],
                 decoder: Callable[[torch.Tensor], torch.Tensor], *,
                 image_shape: Sequence[int] | None = None, value_range: tuple[float, float] = (0.0, 1.0),
                 name: str = "torch-autoencoder") -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.name, self.value_range = name, tuple(value_range)
        self._eval()
        if image_shape is not None:
            self.set_image_shape(image_shape)

    def modules(self) -> list[nn.Module]:
        return [m for m in (self.encoder, self.decoder) if isinstance(m, nn.Module)]

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    @property
    def fingerprint(self) -> str:
        if not self.modules():  # plain callables carry no weights we can hash
            return hashlib.sha256(f"{self.encoder!r}|{self.decoder!r}".encode()).hexdigest()
        return super().fingerprint
