"""The adapter protocol: an autoencoder seen as an encode/decode pair.

The probe engine only ever talks to this interface, so any model family can be audited once it
provides ``encode`` and ``decode`` on batched tensors.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from .errors import AdapterError, ModelError, UsageError, first_line
from .fingerprint import adapter_fingerprint, fingerprint_tensors  # noqa: F401 (re-exported)

Shape = tuple[int, ...]


def check_options(options: Mapping[str, Any], allowed: Iterable[str], family: str) -> None:
    """Refuse options a family does not read: a mistyped ``--model-option`` must not pass silently."""
    allowed = set(allowed) | {"image_shape"}  # load_adapter passes the input size to every family
    unknown = sorted(k for k, v in options.items() if k not in allowed and v is not None)
    if unknown:
        raise AdapterError(f"{family}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                           f"(this family takes: {', '.join(sorted(allowed))})")


class Adapter:
    """Base class: an encoder E and decoder D over batched tensors.

    Subclasses implement ``_encode`` and ``_decode`` and set ``name``, ``image_shape`` (C, H, W),
    ``latent_shape`` (per sample, no batch axis) and ``value_range`` (the pixel range the model
    expects, e.g. (0, 1) or (-1, 1)). ``encode``/``decode`` run without autograd; the map whose
    dynamics we study is ``f(z) = encode(decode(z))``. A model that raises, or returns anything but a
    tensor batch of the expected shape, surfaces as one :class:`ModelError`. ``provenance`` (set by the loaders): where the
    weights came from, ``{"repo_id", "revision", "commit", "subfolder", "files"}`` for a Hugging Face id
    or ``{"path", "files"}`` for local files, ``files`` mapping each file read to its sha256.

    ``fingerprint_exclude``: attribute names (of the adapter) that do not change the map, left out of
    the fingerprint (``name`` and ``path`` always are).
    """

    name: str = "adapter"
    image_shape: Shape | None = None
    latent_shape: Shape | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    provenance: dict[str, Any] | None = None
    fingerprint_exclude: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._device = torch.device("cpu")
        self._dtype = torch.float32
        self._fingerprint: tuple[Any, str] | None = None
        self._identity: dict[str, Any] = {}

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
        """Images (B, C, H, W) in ``value_range`` -> latents (B, *latent_shape). Raises ModelError."""
        return self._call("encode", self._encode, x.to(self._device, self._dtype), self.image_shape, self.latent_shape)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, *latent_shape) -> images (B, C, H, W) in ``value_range``. Raises ModelError."""
        return self._call("decode", self._decode, z.to(self._device, self._dtype), self.latent_shape, self.image_shape)

    def _call(self, what: str, fn: Callable[[torch.Tensor], Any], x: torch.Tensor, in_shape: Shape | None,
              out_shape: Shape | None) -> torch.Tensor:
        """``fn(x)``, with the model's failures turned into one ModelError. The output must be a tensor with
        x's batch size and, when x has the expected per-sample shape ``in_shape``, of shape ``out_shape``
        (models that take several sizes may map other inputs to other sizes). Shape compares only: cheap."""
        kind = "images" if what == "encode" else "latents"
        try:
            y = fn(x)
        except (UsageError, AdapterError, ModelError):
            raise
        except Exception as e:
            hint = "; lower --batch-size" if isinstance(e, torch.OutOfMemoryError) else ""
            raise ModelError(f"{self.name}: {what} failed on {kind} {tuple(x.shape)}: {first_line(e)}{hint}") from e
        if not isinstance(y, torch.Tensor):
            raise ModelError(f"{self.name}: {what} of {kind} {tuple(x.shape)} returned a {type(y).__module__}."
                             f"{type(y).__qualname__}, not a torch.Tensor")
        if y.ndim == 0 or y.shape[0] != x.shape[0] or (  # torch.Size compares with tuples (not lists)
                out_shape is not None and y.shape[1:] != tuple(out_shape) and in_shape is not None
                and x.shape[1:] == tuple(in_shape)):
            expected = f"a batch of {x.shape[0]}" if y.ndim == 0 or y.shape[0] != x.shape[0] else \
                f"{(x.shape[0], *out_shape)}"
            raise ModelError(f"{self.name}: {what} of {kind} {tuple(x.shape)} returned shape {tuple(y.shape)}, "
                             f"expected {expected}")
        return y

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
        """sha256 of what defines the map: weights and buffers, module classes and their plain attributes,
        the code's source (or package versions), shapes and dtype (``fingerprint.py``; docs/reliability.md).
        Two adapters with the same fingerprint define the same map. Computed once, and again when the
        shapes or dtype change; set ``_fingerprint = None`` after changing weights in place."""
        key = (self.image_shape, self.latent_shape, tuple(self.value_range), self.dtype)
        cached = getattr(self, "_fingerprint", None)
        if cached is None or cached[0] != key:
            self._fingerprint = cached = (key, adapter_fingerprint(self))
        return cached[1]

    def add_identity(self, **parts: Any) -> None:
        """Record more of what decides this adapter's map, as plain values (e.g. the sha256 of the file a
        ``py:`` spec was loaded from, a family and its options); they enter the fingerprint."""
        self._identity = {**getattr(self, "_identity", {}), **parts}
        self._fingerprint = None

    @property
    def latent_dim(self) -> int:
        n = 1
        for s in self.latent_shape or ():
            n *= s
        return n

    def set_image_shape(self, image_shape: Sequence[int]) -> None:
        """Fix the image shape (for adapters that accept several) and infer ``latent_shape``."""
        self.image_shape = tuple(int(s) for s in image_shape)
        self.latent_shape = None  # inferred below, not checked against the previous size
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
