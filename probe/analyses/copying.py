"""Calibrated data copying and generalization entropy of decoded attractors.

The memorization coefficient (max cosine to the training set) has a high floor: unseen digits already
reach ~0.98 against the training digits. Here the threshold is calibrated on held-out images instead
(the data-copying idea of Meehan et al. 2020): an attractor "copies" when it is nearer to a training
image than 95% of held-out images are. The same rate for noise images is a floor a copy rate must beat.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .memorization import max_cosine

COPY_QUANTILE = 0.05
VARIANCE_EXPLAINED = 0.90


def nearest_train_distance(images: torch.Tensor, train: torch.Tensor) -> np.ndarray:
    """Cosine distance 1 - max cos of each image (N, C, H, W) to its nearest training image: (N,)."""
    return (1.0 - max_cosine(images, train)[0]).numpy()


def copy_threshold(heldout: torch.Tensor, train: torch.Tensor, quantile: float = COPY_QUANTILE) -> float:
    """The ``quantile`` of held-out images' distance to the training set: only that fraction of unseen
    images come this close to a training image."""
    if len(heldout) == 0:
        raise ValueError("empty held-out set")
    return float(np.quantile(nearest_train_distance(heldout, train), quantile))


def copy_rate(images: torch.Tensor, train: torch.Tensor, threshold: float,
              weights: np.ndarray | None = None) -> float | None:
    """Fraction of ``images`` strictly nearer to a training image than ``threshold`` (cosine distance);
    ``weights`` (N,) weights each image (e.g. basin sizes). None for an empty set."""
    if len(images) == 0:
        return None
    hit = nearest_train_distance(images, train) < threshold
    w = np.ones(len(hit)) if weights is None else np.asarray(weights, dtype=np.float64)
    return float((hit * w).sum() / max(w.sum(), 1e-12))


def calibrated_copying(decoded: torch.Tensor, train: torch.Tensor, heldout: torch.Tensor,
                       noise: torch.Tensor | None = None, basin_sizes: np.ndarray | None = None,
                       quantile: float = COPY_QUANTILE) -> dict[str, Any]:
    """Copy rates of decoded attractors (K, C, H, W), held-out images and noise images against ``train``.

    All images in [0, 1]. The held-out rate is ``quantile`` by construction (up to ties), so it reads
    as the false-copy rate of unseen data. Returns a JSON-ready dict.
    """
    thr = copy_threshold(heldout, train, quantile)
    out: dict[str, Any] = {"copy_quantile": quantile, "copy_threshold_cosine": 1.0 - thr,
                           "copy_rate": copy_rate(decoded, train, thr),
                           "heldout_copy_rate": copy_rate(heldout, train, thr)}
    if basin_sizes is not None and len(decoded):
        out["copy_rate_seeds"] = copy_rate(decoded, train, thr, weights=basin_sizes)
    if noise is not None:
        out["noise_copy_rate"] = copy_rate(noise, train, thr)
    return out


def generalization_entropy(images: torch.Tensor, explained: float = VARIANCE_EXPLAINED) -> dict[str, Any]:
    """The paper's generalization entropy: how many singular vectors of the (centred, flattened)
    images (N, ...) explain ``explained`` of their variance. A set of copies of few training images
    needs few; a rich prior needs many. Also returns the ratio to N and the explained-variance curve."""
    x = images.flatten(1).double()
    n = len(x)
    if n < 2:
        return {"n_components": n, "n_items": n, "ratio": None, "explained_variance_ratio": []}
    s = torch.linalg.svdvals(x - x.mean(0))
    var = s.pow(2)
    if float(var.sum()) <= 0:
        return {"n_components": 0, "n_items": n, "ratio": 0.0, "explained_variance_ratio": []}
    ratio = (var / var.sum()).numpy()
    k = int(np.searchsorted(np.cumsum(ratio), explained - 1e-12) + 1)
    return {"n_components": k, "n_items": n, "ratio": k / n, "explained": explained,
            "explained_variance_ratio": ratio[:min(len(ratio), 64)].round(6).tolist()}


__all__ = ["nearest_train_distance", "copy_threshold", "copy_rate", "calibrated_copying",
           "generalization_entropy"]
