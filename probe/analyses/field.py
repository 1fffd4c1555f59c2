"""The numbers behind pictures of the latent dynamics: the vector field V(z) = f(z) - z on a grid (2-D
latents), trajectories split per seed, and the attractor set's top two principal axes to project on.
Pure functions over tensors and arrays; the drawing is ``report.field_plot``.
"""
from __future__ import annotations


import numpy as np
import torch

from ..engine.types import Map

Box = tuple[float, float, float, float]  # (xmin, xmax, ymin, ymax) in latent units


def field_grid(f: Map, box: Box, n: int = 40, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """V(z) = f(z) - z on an n x n grid over ``box`` for a 2-D latent map.

    Returns xs (n,), ys (n,) and V (n, n, 2) with V[i, j] at (xs[j], ys[i]) (matplotlib's layout).
    """
    xs = np.linspace(box[0], box[1], n)
    ys = np.linspace(box[2], box[3], n)
    gx, gy = np.meshgrid(xs, ys)
    z = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1)).float()
    with torch.no_grad():
        fz = torch.cat([f(z[i:i + batch_size]).flatten(1).float().cpu() for i in range(0, len(z), batch_size)])
    if fz.shape[1] != 2:
        raise ValueError(f"the stream plot needs a 2-D latent, got {fz.shape[1]} dimensions")
    return xs, ys, (fz - z).numpy().reshape(n, n, 2)


def split_trajectories(trajectories: dict[str, torch.Tensor], max_seeds: int | None = None) -> list[np.ndarray]:
    """Recorded points ``{"seed", "step", "z"}`` (as from ``run_probe(record_every=k)``) -> one (T_i, d)
    array per seed, in step order, for the first ``max_seeds`` seeds."""
    seed, step, z = trajectories["seed"].numpy(), trajectories["step"].numpy(), trajectories["z"].flatten(1).numpy()
    out = []
    for s in np.unique(seed)[:max_seeds]:
        rows = np.flatnonzero(seed == s)
        out.append(z[rows[np.argsort(step[rows], kind="stable")]])
    return out


def pca_basis(attractors: torch.Tensor | np.ndarray, fallback: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and top-2 principal axes (2, d) of the attractor set (K, ...).

    With fewer than 3 attractors the set spans at most one direction, so ``fallback`` points (M, d), e.g.
    the trajectories, are added to fix the second axis.
    """
    from sklearn.decomposition import PCA

    a = np.asarray(attractors, dtype=np.float64).reshape(len(attractors), -1)
    pts = a if len(a) >= 3 or fallback is None else np.concatenate([a, np.asarray(fallback, np.float64)])
    if len(pts) < 2 or pts.shape[1] < 2:
        raise ValueError("need at least two points in two or more dimensions for a PCA projection")
    pca = PCA(n_components=2).fit(pts)
    return pca.mean_, pca.components_


def project(points: np.ndarray, mean: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Points (N, d) -> coordinates (N, 2) on the principal axes."""
    return (np.asarray(points, np.float64).reshape(len(points), -1) - mean) @ axes.T


def auto_box(points: np.ndarray, pad: float = 0.15) -> Box:
    """A box around 2-D points (N, 2), padded by ``pad`` of its size (and never degenerate)."""
    lo, hi = points.min(0), points.max(0)
    span = np.maximum(hi - lo, 1e-3 * max(1.0, float(np.abs(points).max())))
    lo, hi = lo - pad * span, hi + pad * span
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


__all__ = ["field_grid", "split_trajectories", "pca_basis", "project", "auto_box", "Box"]
