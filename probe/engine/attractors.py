"""Attractor sets from converged end points: de-duplication, basin sizes, convergence statistics."""
from __future__ import annotations

import numpy as np
import torch

BLOCK = 512


def _matches(block: torch.Tensor, reps: torch.Tensor, metric: str, threshold: float) -> torch.Tensor:
    """Boolean (len(block), len(reps)): which representatives each point merges with."""
    if metric == "cosine":
        a = torch.nn.functional.normalize(block, dim=1)
        b = torch.nn.functional.normalize(reps, dim=1)
        return a @ b.T > threshold
    if metric == "euclidean":  # relative: ||a - b|| <= rtol * max(||a||, ||b||)
        dist = torch.cdist(block, reps)
        scale = torch.maximum(block.norm(dim=1)[:, None], reps.norm(dim=1)[None, :]).clamp_min(1e-12)
        return dist <= threshold * scale
    raise ValueError(f"unknown metric {metric!r}")


def deduplicate(points: torch.Tensor, metric: str = "cosine", threshold: float = 0.99) -> tuple[np.ndarray, np.ndarray]:
    """Greedy de-duplication of points (M, ...) in their given order.

    A point joins the first representative it matches (cosine > ``threshold``, or relative Euclidean
    distance <= ``threshold``); otherwise it becomes a new representative. Returns (representative
    indices (K,), labels (M,) in [0, K)). Deterministic: the result depends only on the order of points.
    """
    x = points.flatten(1).double()
    m = x.shape[0]
    labels = np.full(m, -1, dtype=np.int64)
    reps: list[int] = []
    for start in range(0, m, BLOCK):
        block = x[start:start + BLOCK]
        if reps:  # vectorised against existing representatives
            hit = _matches(block, x[reps], metric, threshold)
            first = torch.where(hit.any(1), hit.float().argmax(1), torch.full((len(block),), -1))
            labels[start:start + len(block)] = first.numpy()
        n_old = len(reps)
        for j in np.flatnonzero(labels[start:start + len(block)] < 0):  # new ones, in order
            i = start + j
            new = reps[n_old:]
            if new:
                hit = _matches(x[i:i + 1], x[new], metric, threshold)[0]
                if hit.any():
                    labels[i] = n_old + int(hit.float().argmax())
                    continue
            labels[i] = len(reps)
            reps.append(i)
    return np.asarray(reps, dtype=np.int64), labels


def basin_sizes(labels: np.ndarray, n_attractors: int) -> np.ndarray:
    """Number of seeds per attractor (K,)."""
    return np.bincount(labels[labels >= 0], minlength=n_attractors)


def step_stats(steps: np.ndarray) -> dict[str, float | None]:
    """Median, 90th percentile and max of steps-to-converge (None when nothing converged)."""
    if len(steps) == 0:
        return {"median": None, "p90": None, "max": None}
    return {"median": float(np.median(steps)), "p90": float(np.percentile(steps, 90)), "max": int(steps.max())}
