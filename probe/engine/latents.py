"""Batched conversions between images in [0, 1] and an adapter's latents, on CPU in float32.

Every analysis compares images in [0, 1] and latents on CPU; these two loops are the only place that
moves data through ``from_unit``/``encode`` and ``decode``/``to_unit`` in batches.
"""
from __future__ import annotations

import torch

from latentfield.adapters import Adapter


def encode_unit(adapter: Adapter, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Images (N, C, H, W) in [0, 1] -> latents (N, *latent) on CPU, float32."""
    if len(images) == 0:
        return torch.zeros(0, *adapter.latent_shape)
    return torch.cat([adapter.encode(adapter.from_unit(images[i:i + batch_size])).float().cpu()
                      for i in range(0, len(images), batch_size)])


def decode_unit(adapter: Adapter, z: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Latents (K, *latent) -> images in [0, 1] (K, C, H, W) on CPU, float32."""
    if len(z) == 0:
        return torch.zeros((0, *(adapter.image_shape or (1, 1, 1))))
    return torch.cat([adapter.to_unit(adapter.decode(z[i:i + batch_size])).float().cpu()
                      for i in range(0, len(z), batch_size)])


__all__ = ["encode_unit", "decode_unit"]
