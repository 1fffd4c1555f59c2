"""Stable Diffusion style KL autoencoders (diffusers ``AutoencoderKL``; also ``AutoencoderKLFlux2``).

Images in [-1, 1]; latents (latent_channels, H/8, W/8) for the usual 4-stage configs.

* Encode returns the posterior **mean** by default, so f is deterministic. ``sample=True`` draws
  from the posterior with a generator re-seeded on every call (``sample_seed``): still a
  deterministic map, but a different one.
* ``scaling_factor``/``shift_factor``: by default the latent is the *raw* VAE latent, exactly what
  ``vae.encode(x).latent_dist.mean`` returns. Raw coordinates depend only on the weights, so
  attractors of checkpoints that share a latent space (sd-vae-ft-mse vs ft-ema vs the original
  SD 1.x VAE) are directly comparable, and the tolerance means the same thing for all of them.
  ``scale_latents=True`` uses the diffusion model's coordinates (z - shift) * scale instead; both
  choices enter the fingerprint.
* Any H, W divisible by the downsampling factor works; the default is the config's ``sample_size``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from .family import FamilyAdapter, instance_of, object_name
from .base import AdapterError, check_options
from .registry import register_config_family, register_object_family
from .safe_load import from_pretrained

KL_CLASSES = ("AutoencoderKL", "AutoencoderKLFlux2")


class KLVAEAdapter(FamilyAdapter):
    """Adapter over a diffusers KL autoencoder. Images (B, C, H, W) in [-1, 1]; latents (B, c, H/f, W/f)."""

    family = "sd-vae"
    value_range = (-1.0, 1.0)

    def __init__(self, vae: torch.nn.Module, *, name: str, image_shape: Sequence[int] | None = None,
                 sample: bool = False, sample_seed: int = 0, scale_latents: bool = False,
                 clamp: bool = True) -> None:
        cfg = vae.config
        if scale_latents and type(vae).__name__ != "AutoencoderKL":
            raise AdapterError(f"{name}: scale_latents is only defined for AutoencoderKL; {type(vae).__name__} "
                               "latents are normalised by its pipeline (patchify + batch-norm statistics)")
        self.scale = float(getattr(cfg, "scaling_factor", 1.0) or 1.0) if scale_latents else 1.0
        self.shift = float(getattr(cfg, "shift_factor", 0.0) or 0.0) if scale_latents else 0.0
        super().__init__([vae], name=name, clamp=clamp, options={
            "sample": sample, "sample_seed": sample_seed if sample else None, "scale_latents": scale_latents})
        self.vae, self.sample, self.sample_seed = vae, bool(sample), int(sample_seed)
        self.downsample = 2 ** (len(cfg.block_out_channels) - 1)
        size = int(cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0])
        self.set_image_shape(image_shape or (cfg.in_channels, size, size))

    def set_image_shape(self, image_shape: Sequence[int]) -> None:
        c, h, w = (int(s) for s in image_shape)
        if c != self.vae.config.in_channels or h % self.downsample or w % self.downsample:
            raise AdapterError(f"{self.name}: image shape must be ({self.vae.config.in_channels}, H, W) with H, W "
                               f"multiples of {self.downsample}, got {tuple(image_shape)}")
        if type(self.vae).__name__ != "AutoencoderKL":
            return super().set_image_shape((c, h, w))
        # Fully convolutional: the latent shape follows from the strides, no encode needed.
        self.image_shape = (c, h, w)
        self.latent_shape = (self.vae.config.latent_channels, h // self.downsample, w // self.downsample)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        self._check_image(x, self.downsample)
        dist = self.vae.encode(x).latent_dist
        if self.sample:
            g = torch.Generator(device=x.device).manual_seed(self.sample_seed)
            z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=g, device=x.device, dtype=x.dtype)
        else:
            z = dist.mean
        return (z - self.shift) * self.scale

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._clamp(self.vae.decode(z / self.scale + self.shift).sample)


def _is_kl(config: dict[str, Any]) -> bool:
    return config.get("_class_name") in KL_CLASSES


@register_config_family("sd-vae (diffusers AutoencoderKL)", _is_kl)
def load_kl_vae(path: Path, config: dict[str, Any], **options: Any) -> KLVAEAdapter:
    check_options(options, OPTIONS, config["_class_name"])
    import diffusers
    cls = getattr(diffusers, config["_class_name"])
    vae = from_pretrained(cls, path, torch_dtype=torch.float32)
    return kl_vae_adapter(vae, Path(path).name, options)


OPTIONS = ("name", "sample", "sample_seed", "scale_latents", "clamp")


@register_object_family("diffusers AutoencoderKL", lambda obj: instance_of(obj, "diffusers", KL_CLASSES))
def wrap_kl_vae(vae: torch.nn.Module, **options: Any) -> KLVAEAdapter:
    """A KL autoencoder already in memory (e.g. ``pipe.vae``)."""
    check_options(options, OPTIONS, type(vae).__name__)
    return kl_vae_adapter(vae, object_name(vae, options), options)


def kl_vae_adapter(vae: torch.nn.Module, name: str, options: dict[str, Any]) -> KLVAEAdapter:
    return KLVAEAdapter(vae, name=options.get("name") or name, image_shape=options.get("image_shape"),
                        sample=bool(options.get("sample", False)), sample_seed=int(options.get("sample_seed", 0)),
                        scale_latents=bool(options.get("scale_latents", False)), clamp=options.get("clamp", True))

