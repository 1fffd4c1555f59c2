"""Pictures of the latent dynamics (matplotlib, Agg): the stream plot of V(z) = f(z) - z for 2-D latents
with attractors (marked by stability kind) and trajectories, or trajectories projected on the top two
principal components of the attractor set for any latent. The numbers come from ``analyses.field``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from latentfield.adapters.errors import UsageError

from ..analyses.field import Box, auto_box, field_grid, pca_basis, project
from ..engine.types import Map
from . import figures

KIND_MARKERS = {"attractor": ("o", "tab:red"), "saddle_or_repeller": ("X", "black"), "marginal": ("^", "tab:orange")}


def _draw_points(ax, xy: np.ndarray, kinds: Sequence[str] | None) -> None:
    kinds = list(kinds) if kinds is not None else ["attractor"] * len(xy)
    for kind, (marker, color) in KIND_MARKERS.items():
        sel = [i for i, k in enumerate(kinds) if k == kind]
        if sel:
            ax.scatter(xy[sel, 0], xy[sel, 1], marker=marker, c=color, s=60, edgecolors="white", linewidths=0.8,
                       zorder=5, label=f"{kind.replace('_', ' ')} ({len(sel)})")


def _draw_trajectories(ax, paths: Sequence[np.ndarray]) -> None:
    for i, p in enumerate(paths):
        ax.plot(p[:, 0], p[:, 1], "-", color="tab:blue", lw=0.9, alpha=0.7, zorder=3,
                label="trajectories" if i == 0 else None)
        ax.plot(p[:1, 0], p[:1, 1], ".", color="tab:blue", ms=4, zorder=4)


def plot_stream(ax, xs: np.ndarray, ys: np.ndarray, v: np.ndarray, attractors: np.ndarray | None = None,
                kinds: Sequence[str] | None = None, paths: Sequence[np.ndarray] = ()) -> None:
    """Stream plot of V on ``ax`` (from :func:`field_grid`), attractors (K, 2) and trajectories (T_i, 2)."""
    import matplotlib.colors as mcolors

    speed = np.linalg.norm(v, axis=2)
    norm = mcolors.LogNorm(vmin=max(float(speed.min()), 1e-6 * float(speed.max()), 1e-12),
                           vmax=max(float(speed.max()), 1e-12))
    strm = ax.streamplot(xs, ys, v[..., 0], v[..., 1], color=np.maximum(speed, norm.vmin), norm=norm,
                         cmap="viridis", density=1.3, linewidth=0.8, arrowsize=0.8)
    ax.figure.colorbar(strm.lines, ax=ax, label="||f(z) - z||")
    _draw_trajectories(ax, paths)
    if attractors is not None and len(attractors):
        _draw_points(ax, np.asarray(attractors).reshape(len(attractors), 2), kinds)
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")


def plot_projected(ax, paths: Sequence[np.ndarray], attractors: np.ndarray, kinds: Sequence[str] | None = None,
                   mean: np.ndarray | None = None, axes: np.ndarray | None = None) -> None:
    """Trajectories (T_i, d) and attractors (K, d) projected on the attractor set's top-2 PCs."""
    a = np.asarray(attractors, np.float64).reshape(len(attractors), -1)
    if mean is None or axes is None:
        mean, axes = pca_basis(a, np.concatenate(list(paths)) if len(paths) else None)
    _draw_trajectories(ax, [project(p, mean, axes) for p in paths])
    if len(a):
        _draw_points(ax, project(a, mean, axes), kinds)
    ax.set_xlabel("PC 1 of the attractors")
    ax.set_ylabel("PC 2 of the attractors")


def check_figure_suffix(out: str | Path) -> None:
    """UsageError unless matplotlib can write a figure in the format ``out``'s suffix names."""
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    suffix = Path(out).suffix.lower().lstrip(".")
    if suffix not in formats:
        what = f"a .{suffix} file" if suffix else "a file without a suffix"
        raise UsageError(f"{out}: cannot write a figure as {what}; end the name in .png, .pdf or .svg")


def save_figure(fig, out: str | Path) -> Path:
    """Write ``fig`` (format from the suffix, 120 dpi; :func:`figures.save_figure`) and close it."""
    return figures.save_figure(fig, out, dpi=120)


def field_figure(f: Map | None, attractors: torch.Tensor, paths: Sequence[np.ndarray],
                 kinds: Sequence[str] | None = None, box: Box | None = None, grid: int = 40, title: str = ""):
    """A figure: the stream plot of V when the latent is 2-D (``f`` given), else the PCA projection."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    a = attractors.flatten(1).float().cpu().numpy() if len(attractors) else np.zeros((0, 0))
    dim = paths[0].shape[1] if len(paths) else a.shape[1]
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    if dim == 2 and f is not None:
        pts = np.concatenate([*paths, a.reshape(-1, 2)]) if len(paths) or len(a) else np.zeros((1, 2))
        xs, ys, v = field_grid(f, box or auto_box(pts), grid)
        plot_stream(ax, xs, ys, v, a.reshape(-1, 2), kinds, paths)
    else:
        plot_projected(ax, paths, a, kinds)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    ax.set_title(title, fontsize=10)
    return fig


__all__ = ["plot_stream", "plot_projected", "field_figure", "save_figure", "check_figure_suffix", "KIND_MARKERS"]
