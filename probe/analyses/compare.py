"""Comparing attractor sets: symmetric Chamfer similarity (the paper's measure) and matched fraction,
each read against a null.

Two sets A (Ka, D) and B (Kb, D) must live in one space: the shared latent space of two models, or
the embedding of their decoded attractors by one reference encoder (or raw pixels). Cosine similarity
throughout. Nulls: ``permute`` shuffles the coordinates of B's vectors (same values, no structure
shared with A); ``random-init`` (``workflows.compare``) is the attractor set of a randomly re-initialised
copy of the model.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

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


__all__ = ["chamfer_similarity", "matched_fraction", "permutation_null", "compare_sets", "pairwise",
           "MATCH_THRESHOLD"]
