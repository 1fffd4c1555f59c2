"""Figures of the analyses (matplotlib, Agg backend). Each function returns a figure; ``html.figure_uri``
embeds it in a report, :func:`save_figure` writes it as a file (through ``rundir.output``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..rundir import output
from .html import figure_bytes


def _plt() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` in the format its suffix names (png when none; main process only, atomic) and
    close it. Returns ``path``."""
    path = Path(path)
    return output.write_bytes(path, figure_bytes(fig, path.suffix.lstrip(".").lower() or "png", dpi=dpi))


def basin_figure(sizes: np.ndarray) -> Any:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 2.4))
    ax.bar(np.arange(len(sizes)), sizes, color="#4c72b0")
    ax.set_xlabel("attractor (largest basin first)")
    ax.set_ylabel("seeds in basin")
    return fig


def heatmap_figure(matrix: np.ndarray, names: list[str], title: str) -> Any:
    plt = _plt()
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


def dictionary_figure(result: dict[str, Any]) -> Any:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    n = result["n_atoms"]
    ax.plot(n, result["mse_attractors"], "o-", label=f"attractors ({result['n_attractors']} atoms)")
    ax.plot(n, result["mse_random_basis"], "s--", label="random orthonormal basis")
    ax.axhline(result["mse_autoencoder"], color="gray", lw=1, ls=":", label="D(E(x)) (floor)")
    ax.set_xscale("log")
    ax.set_xlabel("atoms used by OMP")
    ax.set_ylabel("image MSE")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def dynamics_figure(rows: list[dict[str, Any]]) -> Any:
    plt = _plt()
    x = np.arange(len(rows))
    names = [r["name"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    series = [("n_attractors", "attractors (noise seeds)"), ("memorization_mean", "memorization coefficient"),
              ("chamfer_noise_data", "Chamfer(noise, data attractors)")]
    for ax, (key, label) in zip(axes, series):
        y = [np.nan if r[key] is None else r[key] for r in rows]
        ax.plot(x, y, "o-")
        ax.set_title(label, fontsize=9)
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
    fig.tight_layout()
    return fig


__all__ = ["save_figure", "basin_figure", "heatmap_figure", "dictionary_figure", "dynamics_figure"]
