"""Calibrated data copying and generalization entropy of decoded attractors.

The memorization coefficient (max cosine to the training set) has a high floor: unseen digits already
reach ~0.98 against the training digits. Here the threshold is calibrated on held-out images instead
(the data-copying idea of Meehan et al. 2020): an attractor "copies" when it is nearer to a training
image than 95% of held-out images are. The same rate for noise images is a floor a copy rate must beat.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..data import noise_images
from ..report import table
from .memorization import max_cosine

if TYPE_CHECKING:
    from ..audit import AuditContext
    from ..report import Report

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


# -- audit sections -------------------------------------------------------------------------------

def copying_section(ctx: "AuditContext", report: "Report") -> None:
    """Noise-image baseline and calibrated copy rate, merged into the ``memorization`` JSON key."""
    if ctx.train is None or len(ctx.decoded) == 0:
        return
    from .memorization import memorization_coefficient
    n_noise = max(len(ctx.decoded), min(256, len(ctx.train)))
    noise = noise_images(n_noise, ctx.train.shape[1:], seed=0)
    base = memorization_coefficient(noise, ctx.train)
    mem = dict(report.data.get("memorization") or {})
    mem.update(noise_baseline_mean=base["mean"], noise_baseline_std=base["std"])
    rows = [("noise images (floor)", len(noise), base["mean"], base["std"])]
    body = table(rows, ["images", "n", "max cosine to training set: mean", "std"])
    if ctx.heldout is not None and len(ctx.heldout):
        cal = calibrated_copying(ctx.decoded, ctx.train, ctx.heldout, noise, ctx.result.basin_sizes)
        mem.update(cal)
        body += table([("decoded attractors", cal["copy_rate"]), ("seeds (weighted by basin)", cal.get("copy_rate_seeds")),
                       ("held-out images (by construction)", cal["heldout_copy_rate"]),
                       ("noise images", cal["noise_copy_rate"])], ["images", "calibrated copy rate"])
        body += (f"<p class='muted'>Calibrated copy rate: the fraction of images whose cosine to their nearest "
                 f"training image exceeds {cal['copy_threshold_cosine']:.4f}, a level only "
                 f"{100 * COPY_QUANTILE:g}% of held-out images reach (Meehan et al. 2020). Raw cosine has a "
                 "high floor; this rate does not.</p>")
    report.add("Memorization baselines and calibrated copy rate", body, memorization=mem)


def generalization_entropy_section(ctx: "AuditContext", report: "Report") -> None:
    if len(ctx.decoded) == 0:
        return
    ent = generalization_entropy(ctx.decoded)
    data: dict[str, Any] = {"attractors": ent}
    rows = [("decoded attractors", ent["n_items"], ent["n_components"], ent["ratio"])]
    if ctx.train is not None and len(ctx.train) >= 2:
        # The count grows with the number of images: compare with as many training images.
        g = torch.Generator().manual_seed(0)
        sub = ctx.train[torch.randperm(len(ctx.train), generator=g)[:max(2, len(ctx.decoded))]]
        base = generalization_entropy(sub)
        data["train_baseline"] = base
        rows.append(("training images (same count)", base["n_items"], base["n_components"], base["ratio"]))
    body = table(rows, ["images", "n", f"singular vectors for {100 * VARIANCE_EXPLAINED:g}% of variance", "ratio"])
    body += ("<p class='muted'>Generalization entropy (the paper): the number of singular vectors of the "
             "centred decoded attractors needed to explain 90% of their variance.</p>")
    report.add("Generalization entropy", body, generalization_entropy=data)


__all__ = ["nearest_train_distance", "copy_threshold", "copy_rate", "calibrated_copying",
           "generalization_entropy", "copying_section", "generalization_entropy_section"]
