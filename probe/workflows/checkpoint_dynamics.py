"""Checkpoint dynamics: how the attractor landscape changes across the checkpoints of one training run.

Per checkpoint: the number of attractors reached from Gaussian seeds, the memorization coefficient of
their decoded images against the training set, and the symmetric Chamfer similarity (latent space,
cosine) between the noise-started and the data-started attractor sets. Early in training the two sets
differ; a memorizing model pulls both onto copies of training images.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from latentfield.adapters import Adapter
from latentfield.adapters.errors import UsageError

from ..analyses.compare import chamfer_similarity
from ..analyses.memorization import memorization_coefficient
from ..data import fit_to_shape
from ..engine.latents import decode_unit
from ..rundir import ProbeConfig, cache_dir, output, run_probe


def checkpoint_stats(adapter: Adapter, reference: torch.Tensor, config: ProbeConfig,
                     n_data: int = 256, progress: bool = False, cache: str | Path | None = None) -> dict[str, Any]:
    """Statistics of one checkpoint. ``reference`` (M, C, H, W) in [0, 1]: the training images (the
    first ``n_data`` also seed the data-started probe). ``config``: the noise probe. With ``cache``,
    both probes are resumable run directories below it (``cache_dir``)."""
    if adapter.image_shape and tuple(reference.shape[1:]) != tuple(adapter.image_shape):
        reference = fit_to_shape(reference, adapter.image_shape)  # a checkpoint with its own input size
    seeds = reference[:n_data]
    data_cfg = replace(config, init="data", record_every=0, verify=False)

    def where(cfg: ProbeConfig, x: torch.Tensor | None = None) -> Path | None:
        return cache_dir(cache, adapter, cfg, x) if cache is not None else None

    noise = run_probe(adapter, config, out=where(config), progress=progress)
    data = run_probe(adapter, data_cfg, out=where(data_cfg, seeds), data=seeds, progress=progress)
    mem = memorization_coefficient(decode_unit(adapter, noise.attractors), reference)
    both = len(noise.attractors) and len(data.attractors)
    return {"name": adapter.name, "n_attractors": len(noise.attractors), "n_data_attractors": len(data.attractors),
            "converged_fraction": float(np.mean(noise.status == 0)),
            "memorization_mean": mem["mean"], "memorization_std": mem["std"],
            "chamfer_noise_data": chamfer_similarity(noise.attractors, data.attractors) if both else None}


def training_dynamics(adapters: Sequence[Adapter], reference: torch.Tensor, config: ProbeConfig | None = None,
                      n_data: int = 256, progress: bool = False,
                      on_checkpoint: Callable[[int, dict[str, Any]], None] | None = None,
                      cache: str | Path | None = None) -> list[dict[str, Any]]:
    """:func:`checkpoint_stats` for each checkpoint, in the given (training) order. The checkpoints must
    share one latent shape (they are one model at several times); UsageError otherwise."""
    shapes = {tuple(a.latent_shape) for a in adapters}
    if len(shapes) > 1:
        raise UsageError("dynamics compares checkpoints of one model, which share one latent shape; got "
                         + ", ".join(f"{a.name}: {tuple(a.latent_shape)}" for a in adapters))
    config = config or ProbeConfig()
    rows = []
    for i, a in enumerate(adapters):
        rows.append(checkpoint_stats(a, reference, config, n_data, progress, cache))
        if on_checkpoint:
            on_checkpoint(i, rows[-1])
    return rows


def write_dynamics(rows: list[dict[str, Any]], out: str | Path, checkpoints: Sequence[str],
                   reference: str) -> Path:
    """``out/dynamics.json``: the checkpoint specs as given (training order), the reference images' name and
    the rows of :func:`training_dynamics`. Returns its path."""
    return output.write_json(Path(out) / "dynamics.json",
                             {"checkpoints": list(checkpoints), "reference": str(reference), "rows": rows})


__all__ = ["checkpoint_stats", "training_dynamics", "write_dynamics"]
