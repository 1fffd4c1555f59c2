"""Comparing attractor sets: symmetric Chamfer similarity (the paper's measure) and matched fraction,
each read against a null.

Two sets A (Ka, D) and B (Kb, D) must live in one space: the shared latent space of two models, or
the embedding of their decoded attractors by one reference encoder (or raw pixels). Cosine similarity
throughout. Nulls: ``permute`` shuffles the coordinates of B's vectors (same values, no structure
shared with A); ``random-init`` is the attractor set of a randomly re-initialised copy of the model.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from latentfield.adapters import Adapter

from ..index import AttractorIndex, as_matrix

MATCH_THRESHOLD = 0.9


def _nearest_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each row of a, the largest cosine to any row of b (exact FAISS inner-product search)."""
    d, _ = AttractorIndex.build(b, "cosine").nearest_attractor(a)
    return 1.0 - d


def chamfer_similarity(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Symmetric Chamfer similarity in [-1, 1]: the mean over A of its best cosine in B, averaged with
    the same from B to A. 1 = every attractor of each set has an exact direction match in the other."""
    a, b = as_matrix(a), as_matrix(b)
    return float(0.5 * (_nearest_cos(a, b).mean() + _nearest_cos(b, a).mean()))


def matched_fraction(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray,
                     threshold: float = MATCH_THRESHOLD) -> float:
    """Fraction of all Ka + Kb attractors whose best cosine in the other set exceeds ``threshold``."""
    a, b = as_matrix(a), as_matrix(b)
    hits = np.r_[_nearest_cos(a, b) > threshold, _nearest_cos(b, a) > threshold]
    return float(hits.mean())


def permutation_null(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, n_perm: int = 20,
                     seed: int = 0, threshold: float = MATCH_THRESHOLD) -> dict[str, float]:
    """Chamfer similarity and matched fraction of A against B with B's coordinates shuffled (one random
    permutation per draw): mean and std over ``n_perm`` draws."""
    a, b = as_matrix(a), as_matrix(b)
    rng = np.random.default_rng(seed)
    ch, mf = [], []
    for _ in range(n_perm):
        bp = np.ascontiguousarray(b[:, rng.permutation(b.shape[1])])
        ch.append(chamfer_similarity(a, bp))
        mf.append(matched_fraction(a, bp, threshold))
    return {"chamfer_mean": float(np.mean(ch)), "chamfer_std": float(np.std(ch)),
            "matched_mean": float(np.mean(mf)), "matched_std": float(np.std(mf))}


def compare_sets(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray, n_perm: int = 20,
                 threshold: float = MATCH_THRESHOLD, seed: int = 0) -> dict[str, Any]:
    """Chamfer similarity and matched fraction of A vs B, with the permutation null and its z-score."""
    ch, mf = chamfer_similarity(a, b), matched_fraction(a, b, threshold)
    null = permutation_null(a, b, n_perm, seed, threshold)
    z = (ch - null["chamfer_mean"]) / null["chamfer_std"] if null["chamfer_std"] > 0 else None
    return {"chamfer": ch, "matched_fraction": mf, "threshold": threshold, "null_permute": null, "chamfer_z": z}


def pairwise(sets: list[np.ndarray], threshold: float = MATCH_THRESHOLD) -> dict[str, np.ndarray]:
    """(N, N) matrices of Chamfer similarity and matched fraction between N attractor sets."""
    n = len(sets)
    ch, mf = np.eye(n), np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            ch[i, j] = ch[j, i] = chamfer_similarity(sets[i], sets[j])
            mf[i, j] = mf[j, i] = matched_fraction(sets[i], sets[j], threshold)
    return {"chamfer": ch, "matched_fraction": mf}


def randomly_initialised(adapter: Adapter, seed: int = 0) -> Adapter:
    """A copy of ``adapter`` whose torch modules are re-initialised (``reset_parameters``) with ``seed``:
    same architecture, no training, the null model for comparisons."""
    if not adapter.modules():
        raise ValueError(f"{adapter.name}: no torch modules to re-initialise")
    null = copy.deepcopy(adapter)
    torch.manual_seed(seed)
    for m in null.modules():
        for sub in m.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
    null._fingerprint = None
    null.name = f"{adapter.name} (random init)"
    return null


def heatmap_figure(matrix: np.ndarray, names: list[str], title: str) -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * n, 1.0 + 0.8 * n))
    im = ax.imshow(matrix, vmin=min(0.0, float(matrix.min())), vmax=1.0, cmap="viridis")
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] < 0.6 else "black")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


__all__ = ["chamfer_similarity", "matched_fraction", "permutation_null", "compare_sets", "pairwise",
           "randomly_initialised", "heatmap_figure", "MATCH_THRESHOLD"]
