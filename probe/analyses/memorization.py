"""Memorization coefficient (paper): max cosine similarity of each decoded attractor to the training set."""
from __future__ import annotations

import torch
import torch.nn.functional as F

BLOCK = 1024


def max_cosine(images: torch.Tensor, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of ``images`` (N, ...) the largest cosine similarity to ``reference`` (M, ...) and the
    index of that reference item. Images are compared as flattened pixel vectors. Returns (N,), (N,)."""
    if len(reference) == 0:
        raise ValueError("empty reference set")
    ref = F.normalize(reference.flatten(1).double(), dim=1)
    vals, idx = [], []
    for i in range(0, len(images), BLOCK):
        sim = F.normalize(images[i:i + BLOCK].flatten(1).double(), dim=1) @ ref.T
        v, j = sim.max(1)
        vals.append(v)
        idx.append(j)
    if not vals:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    return torch.cat(vals), torch.cat(idx)


def memorization_coefficient(decoded: torch.Tensor, train: torch.Tensor) -> dict[str, float | list[float]]:
    """Mean and std over attractors of max cosine(decoded attractor, training image); in [-1, 1].

    ``decoded`` (K, C, H, W) and ``train`` (M, C, H, W) in the same pixel range (we use [0, 1]).
    """
    v, _ = max_cosine(decoded, train)
    if len(v) == 0:
        return {"mean": None, "std": None, "per_item": []}
    return {"mean": float(v.mean()), "std": float(v.std(unbiased=False)), "per_item": v.tolist()}


def top_cosine(images: torch.Tensor, reference: torch.Tensor, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest cosine similarities of each of ``images`` (N, ...) to ``reference`` (M, ...),
    best first, and the reference indices: (N, min(k, M)) float64, (N, min(k, M)) long."""
    if len(reference) == 0:
        raise ValueError("empty reference set")
    k = min(k, len(reference))
    ref = F.normalize(reference.flatten(1).double(), dim=1)
    vals, idx = [torch.zeros(0, k, dtype=torch.float64)], [torch.zeros(0, k, dtype=torch.long)]
    for i in range(0, len(images), BLOCK):
        v, j = (F.normalize(images[i:i + BLOCK].flatten(1).double(), dim=1) @ ref.T).topk(k, dim=1)
        vals.append(v)
        idx.append(j)
    return torch.cat(vals), torch.cat(idx)
