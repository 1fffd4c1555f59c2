"""ViT-MAE (transformers ``ViTMAEForPreTraining``, e.g. facebook/vit-mae-base) as an autoencoder.

Images in [0, 1]; the adapter applies the checkpoint's pixel normalisation (``preprocessor_config.json``,
else ImageNet mean/std) inside encode and undoes it after decode. Latent = the encoder's output
tokens after its final LayerNorm, CLS token included (the decoder reads it): shape (1 + N, hidden)
with N = (H/p)(W/p) patches.

Traps handled here:

* Masking: the mask ratio is forced to 0 and the encoder is given ``noise = arange(N)``; with ratio 0
  but no ``noise`` transformers still *shuffles* the patches at random (argsort of uniform noise) and
  two calls of f differ. With the fixed noise, patch order is the identity and f is deterministic.
* ``norm_pix_loss`` checkpoints: the decoder predicts every patch standardised to zero mean and unit
  variance over its own pixels; the patch's mean and variance are not recoverable from z. The adapter
  (default ``norm_pix="standardized"``) reads those predictions as normalised pixels, i.e. every
  decoded patch has the dataset mean colour and unit contrast; a warning says so. ``norm_pix="refuse"``
  raises instead. Checkpoints without norm_pix_loss (the released facebook/vit-mae-* ones) are exact.
* Other image sizes: position embeddings of encoder and decoder are interpolated
  (``interpolate_pos_encoding``); H, W must be multiples of the patch size.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from .family import FamilyAdapter, instance_of, object_name
from .base import AdapterError, check_options
from .registry import register_config_family, register_object_family
from .safe_load import from_pretrained

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def pixel_stats(directory: Path, channels: int = 3) -> tuple[list[float], list[float]]:
    """(mean, std) per channel from a ``preprocessor_config.json``, else ImageNet's."""
    path = Path(directory) / "preprocessor_config.json"
    mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    if path.is_file():
        try:
            cfg = json.loads(path.read_text())
            mean, std = list(cfg.get("image_mean", mean)), list(cfg.get("image_std", std))
        except (OSError, json.JSONDecodeError):
            pass
    if len(mean) != channels:
        mean, std = (mean * channels)[:channels], (std * channels)[:channels]
    return [float(m) for m in mean], [float(s) for s in std]


class ViTMAEAdapter(FamilyAdapter):
    """Images (B, C, H, W) in [0, 1] -> latents (B, 1 + N, hidden) and back."""

    family = "vit-mae"
    value_range = (0.0, 1.0)

    def __init__(self, model: torch.nn.Module, *, name: str, mean: Sequence[float], std: Sequence[float],
                 image_shape: Sequence[int] | None = None, norm_pix: str = "standardized", clamp: bool = True) -> None:
        cfg = model.config
        if norm_pix not in ("standardized", "refuse"):
            raise AdapterError(f"norm_pix must be 'standardized' or 'refuse', not {norm_pix!r}")
        if cfg.norm_pix_loss:
            if norm_pix == "refuse":
                raise AdapterError(f"{name}: trained with norm_pix_loss, its decoder predicts per-patch standardised "
                                   "pixels; pass norm_pix='standardized' to read them as normalised pixels")
            warnings.warn(f"{name}: norm_pix_loss checkpoint; decoded patches have the mean colour and unit "
                          "contrast (per-patch statistics are not recoverable from the latent)", stacklevel=2)
        super().__init__([model], name=name, clamp=clamp,
                         options={"norm_pix": norm_pix if cfg.norm_pix_loss else None, "mean": list(mean),
                                  "std": list(std)})
        cfg.mask_ratio = 0.0  # every patch is kept; with the fixed noise below, in order
        self.model, self.patch = model, int(cfg.patch_size)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.set_image_shape(image_shape or (cfg.num_channels, cfg.image_size, cfg.image_size))

    def set_image_shape(self, image_shape: Sequence[int]) -> None:
        c, h, w = (int(s) for s in image_shape)
        if c != self.model.config.num_channels or h % self.patch or w % self.patch:
            raise AdapterError(f"{self.name}: image shape must be ({self.model.config.num_channels}, H, W) with H, W "
                               f"multiples of the patch size {self.patch}, got {tuple(image_shape)}")
        self.image_shape = (c, h, w)
        self.latent_shape = (1 + (h // self.patch) * (w // self.patch), int(self.model.config.hidden_size))

    @property
    def _interpolate(self) -> bool:
        return tuple(self.image_shape[1:]) != (self.model.config.image_size,) * 2

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x)) / self.std.to(x)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check_image(x, self.patch)
        n = (x.shape[-2] // self.patch) * (x.shape[-1] // self.patch)
        noise = torch.arange(n, device=x.device, dtype=x.dtype).expand(x.shape[0], n)  # identity patch order
        out = self.model.vit(pixel_values=self._norm(x), noise=noise, interpolate_pos_encoding=self._interpolate)
        return out.last_hidden_state

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 3 or tuple(z.shape[1:]) != tuple(self.latent_shape):
            raise AdapterError(f"{self.name}: expected latents (B, {self.latent_shape[0]}, {self.latent_shape[1]}), "
                               f"got {tuple(z.shape)}")
        ids_restore = torch.arange(z.shape[1] - 1, device=z.device).expand(z.shape[0], -1)
        logits = self.model.decoder(z, ids_restore, interpolate_pos_encoding=self._interpolate).logits
        x = self.model.unpatchify(logits, tuple(self.image_shape[1:]))
        return self._clamp(x * self.std.to(x) + self.mean.to(x))


def _is_vit_mae(config: dict[str, Any]) -> bool:
    return config.get("model_type") == "vit_mae"


@register_config_family("vit-mae (transformers ViTMAEForPreTraining)", _is_vit_mae)
def load_vit_mae(path: Path, config: dict[str, Any], **options: Any) -> ViTMAEAdapter:
    check_options(options, ("name", "norm_pix", "clamp"), "ViT-MAE")
    from transformers import ViTMAEForPreTraining
    if "ViTMAEModel" in (config.get("architectures") or []) and "ViTMAEForPreTraining" not in config["architectures"]:
        raise AdapterError(f"{path}: a ViTMAEModel checkpoint has no decoder; use a ViTMAEForPreTraining "
                           "checkpoint or train one with latentfield train-decoder")
    model = from_pretrained(ViTMAEForPreTraining, path, dtype=torch.float32, mask_ratio=0.0)
    mean, std = pixel_stats(path, model.config.num_channels)
    return ViTMAEAdapter(model, name=options.get("name") or Path(path).name, mean=mean, std=std,
                         image_shape=options.get("image_shape"), norm_pix=options.get("norm_pix", "standardized"),
                         clamp=options.get("clamp", True))


@register_object_family("transformers ViTMAEForPreTraining",
                        lambda obj: instance_of(obj, "transformers", ("ViTMAEForPreTraining",)))
def wrap_vit_mae(model: torch.nn.Module, **options: Any) -> ViTMAEAdapter:
    """A ``ViTMAEForPreTraining`` already in memory. Its pixel statistics come from ``image_mean`` /
    ``image_std`` (e.g. ``processor.image_mean``), else ImageNet's, which the published MAE checkpoints use.
    Wrapping sets the model's ``config.mask_ratio`` to 0, as loading from disk does (every patch is kept)."""
    check_options(options, ("name", "norm_pix", "clamp", "image_mean", "image_std"), "ViT-MAE")
    c = model.config.num_channels
    mean = [float(m) for m in options.get("image_mean") or IMAGENET_MEAN]
    std = [float(s) for s in options.get("image_std") or IMAGENET_STD]
    if len(mean) != c or len(std) != c:
        raise AdapterError(f"image_mean and image_std need {c} values each, got {len(mean)} and {len(std)}")
    return ViTMAEAdapter(model, name=object_name(model, options), mean=mean, std=std,
                         image_shape=options.get("image_shape"), norm_pix=options.get("norm_pix", "standardized"),
                         clamp=options.get("clamp", True))
