"""Compact HTML for notebooks: the ``_repr_html_`` of the results a user touches (probe result, audit
result, attractor index). A small table of key numbers, optional sentences and an image strip; images
are embedded as PNG data URIs, so a saved notebook shows them on GitHub. No files, no figures.
"""
from __future__ import annotations

import base64
import html
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .image_files import png_bytes, to_pil

_STYLE = ("font-family:system-ui,sans-serif;font-size:13px;border-left:3px solid #4c72b0;padding:.3em .8em;"
          "margin:.3em 0")


def cell(v: Any) -> str:
    """A table cell, in notebooks and reports alike: None and NaN read "-", floats with 4 significant digits
    (78.0 -> "78")."""
    if v is None:
        return "-"
    if isinstance(v, (float, np.floating)):
        return "-" if np.isnan(v) else f"{v:.4g}"
    return str(v)


def image_strip(images: torch.Tensor, captions: Sequence[str] = (), size: int = 64) -> str:
    """Images (N, C, H, W) in [0, 1] side by side, each with an optional caption, embedded."""
    tiles = []
    for i, x in enumerate(images):
        uri = "data:image/png;base64," + base64.b64encode(png_bytes(to_pil(x, size))).decode()
        cap = f"<div style='font-size:11px;text-align:center'>{html.escape(captions[i])}</div>" if i < len(captions) else ""
        tiles.append(f"<div style='display:inline-block;margin:2px'><img src='{uri}' "
                     f"style='image-rendering:pixelated;width:{size}px'>{cap}</div>")
    return f"<div>{''.join(tiles)}</div>"


def card(title: str, rows: Iterable[tuple[str, Any]], sentences: Sequence[str] = (), images: str = "") -> str:
    """One result as a small HTML card: bold title, sentences (e.g. a verdict), a two-column table, images."""
    body = "".join(f"<p style='margin:.3em 0'>{html.escape(s)}</p>" for s in sentences)
    table = "".join(f"<tr><td style='text-align:left;padding-right:1em'>{html.escape(k)}</td>"
                    f"<td style='text-align:right'>{html.escape(cell(v))}</td></tr>" for k, v in rows)
    return (f"<div style='{_STYLE}'><b>{html.escape(title)}</b>{body}"
            f"<table style='border-collapse:collapse;margin:.3em 0'>{table}</table>{images}</div>")


__all__ = ["card", "image_strip", "cell"]
