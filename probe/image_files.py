"""Images to files and bytes: tensors in [0, 1] as PIL images, PNG bytes and PNG grids (atomic writes)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentfield.adapters import atomic


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def to_pil(x: torch.Tensor, size: int | None = None) -> Image.Image:
    """One image (C, H, W) in [0, 1] -> PIL, optionally upscaled (nearest) so the long side is ``size``."""
    arr = (x.detach().float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
    img = Image.fromarray(arr[0] if arr.shape[0] == 1 else np.moveaxis(arr[:3], 0, -1))
    if size and max(img.size) < size:
        scale = size / max(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.NEAREST)
    return img


def grid_png(images: torch.Tensor, ncol: int = 8, size: int = 64) -> bytes | None:
    """Images (N, C, H, W) in [0, 1] as the PNG bytes of one grid; None for no image."""
    tiles = [to_pil(x, size).convert("RGB") for x in images]
    if not tiles:
        return None
    w, h = tiles[0].size
    rows = (len(tiles) + ncol - 1) // ncol
    grid = Image.new("RGB", (min(ncol, len(tiles)) * (w + 2), rows * (h + 2)), "white")
    for i, t in enumerate(tiles):
        grid.paste(t, ((i % ncol) * (w + 2), (i // ncol) * (h + 2)))
    return png_bytes(grid)


def save_grid(images: torch.Tensor, path: str | Path, ncol: int = 8, size: int = 64) -> None:
    """Save images (N, C, H, W) in [0, 1] as one PNG grid (:func:`grid_png`)."""
    png = grid_png(images, ncol, size)
    if png is not None:
        atomic.write_bytes(path, png)


__all__ = ["png_bytes", "to_pil", "grid_png", "save_grid"]
