"""Comparing models: each model's attractor set from noise, mapped into one shared space, compared pairwise
(Chamfer similarity, matched fraction) and read against nulls (coordinate permutation, random init).

Spaces: ``latent`` (models sharing one latent space), ``pixels`` (decoded attractors, resized to the first
model's image shape) or ``embed`` (decoded attractors encoded by a reference encoder).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from latentfield.adapters import Adapter, load_adapter
from latentfield.adapters.errors import UsageError, WriteError

from ..analyses.compare import MATCH_THRESHOLD, chamfer_similarity, matched_fraction, pairwise, permutation_null
from ..data import fit_to_shape
from ..engine.latents import decode_unit, encode_unit
from ..rundir import ProbeConfig, cache_dir, output, run_probe

SPACES = ("pixels", "latent", "embed")
NULLS = ("permute", "random-init", "both")


@dataclass
class Comparison:
    """Attractor sets (one (K_i, D) array per model) in one space, pairwise scores and nulls."""

    space: str
    names: list[str]
    sets: list[np.ndarray]
    matrices: dict[str, np.ndarray]
    pairs: list[dict[str, Any]]
    threshold: float
    embed: str | None = None
    null_random_init: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"space": self.space, "embed": self.embed, "models": self.names,
                "n_attractors": [len(s) for s in self.sets], "threshold": self.threshold,
                "chamfer": self.matrices["chamfer"], "matched_fraction": self.matrices["matched_fraction"],
                "pairs": self.pairs, "null_random_init": self.null_random_init}


def attractor_set(adapter: Adapter, config: ProbeConfig, space: str, reference_shape: Sequence[int] | None,
                  embedder: Adapter | None = None, cache: Path | None = None, progress: bool = False) -> np.ndarray:
    """The model's attractors from ``config``'s seeds as vectors (K, D) of ``space``. With ``cache``, the probe
    is a resumable run below it."""
    out = cache_dir(cache, adapter, config) if cache is not None else None
    res = run_probe(adapter, config, out=out, progress=progress)
    if len(res.attractors) == 0:
        raise UsageError(f"{adapter.name}: no seed converged; raise `max_steps` or `tol`")
    if space == "latent":
        return res.attractors.flatten(1).numpy()
    images = fit_to_shape(decode_unit(adapter, res.attractors), reference_shape)
    if embedder is None:
        return images.flatten(1).numpy()
    return encode_unit(embedder, images, 64).flatten(1).numpy()


def compare_models(adapters: Sequence[Adapter | Any], config: ProbeConfig, space: str = "pixels",
                   embedder: Adapter | None = None, null: str = "permute", threshold: float = MATCH_THRESHOLD,
                   cache: str | Path | None = None, progress: bool = False, embed_spec: str | None = None) -> Comparison:
    """Probe every model and compare their attractor sets pairwise in ``space``, with ``null`` baselines."""
    if len(adapters) < 2:
        raise UsageError("compare needs at least two models")
    adapters = [load_adapter(a) for a in adapters]  # model objects and spec strings wrap as their family's adapter
    if space not in SPACES or null not in NULLS:
        raise UsageError(f"space must be one of {', '.join(SPACES)} and null one of {', '.join(NULLS)}")
    if space == "embed" and embedder is None:
        raise UsageError("space 'embed' needs a reference encoder (embed)")
    if space == "latent" and len({tuple(a.latent_shape) for a in adapters}) > 1:
        raise UsageError("space 'latent' needs models with one latent shape; use pixels or embed")
    cache = Path(cache) if cache is not None else None
    ref_shape = embedder.image_shape if embedder is not None else adapters[0].image_shape
    sets = [attractor_set(a, config, space, ref_shape, embedder, cache, progress) for a in adapters]
    names = [a.name for a in adapters]
    mats = pairwise(sets, threshold)
    pairs = []
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            row = {"a": names[i], "b": names[j], "chamfer": float(mats["chamfer"][i, j]),
                   "matched_fraction": float(mats["matched_fraction"][i, j])}
            if null in ("permute", "both"):
                row["null_permute"] = permutation_null(sets[i], sets[j], threshold=threshold)
            pairs.append(row)
    nulls: dict[str, dict[str, Any]] = {}
    if null in ("random-init", "both"):
        for a, s in zip(adapters, sets):
            try:
                r = attractor_set(randomly_initialised(a, seed=config.seed), config, space, ref_shape, embedder,
                                  cache, progress)
            except WriteError:
                raise  # a full disk stops the command; it is not this null's result
            except (ValueError, UsageError) as e:  # e.g. no seed of the random model converged
                nulls[a.name] = {"error": str(e)}
                continue
            nulls[a.name] = {"chamfer": chamfer_similarity(s, r), "matched_fraction": matched_fraction(s, r, threshold)}
    return Comparison(space, names, sets, mats, pairs, threshold, embed_spec, nulls)


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


def write_comparison(result: Comparison, out: str | Path) -> tuple[Path, Path]:
    """``compare.json`` (everything) and ``compare.csv`` (one row per pair) in ``out``."""
    out = Path(out)
    lines = ["a,b,chamfer,matched_fraction,null_chamfer_mean,null_chamfer_std"]
    for r in result.pairs:
        nl = r.get("null_permute", {})
        lines.append(f"{r['a']},{r['b']},{r['chamfer']:.6f},{r['matched_fraction']:.6f},"
                     f"{nl.get('chamfer_mean', '')},{nl.get('chamfer_std', '')}")
    json_path = output.write_json(out / "compare.json", result.to_json())
    return json_path, output.write_text(out / "compare.csv", "\n".join(lines) + "\n")


__all__ = ["Comparison", "attractor_set", "compare_models", "randomly_initialised", "write_comparison", "SPACES",
           "NULLS"]
