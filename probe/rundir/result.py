"""``ProbeResult``: what a probe found, per seed and per attractor, and its ``summary.json`` form."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from latentfield.adapters import Adapter
from latentfield.adapters.precision import dtype_name

from ..engine.attractors import basin_sizes, step_stats
from ..engine.types import CONVERGED, MAX_STEPS, STATUS_NAMES
from ..display import card
from .config import ProbeConfig
from .environment import environment


def basin_order(sizes: np.ndarray) -> np.ndarray:
    """Attractor ids (K,) by basin ``sizes`` (K,), largest first, ties by id: :meth:`ProbeResult.basin_order`
    where only the sizes are at hand (a saved index's sidecar)."""
    return np.argsort(-np.asarray(sizes), kind="stable")


def basin_ranks(sizes: np.ndarray) -> np.ndarray:
    """Each attractor's position (K,) in :func:`basin_order` (0 = the largest basin)."""
    order = basin_order(sizes)
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


@dataclass(repr=False)
class ProbeResult:
    """Outcome of a probe.

    end_points (N, *latent) float32: where each seed stopped; status (N,) int8 (0 converged, 1 max_steps,
    2 diverged); steps (N,) f evaluations per seed; last_sq_step (N,): the squared step of each seed's
    own last step (NaN when not known). attractors (K, *latent): de-duplicated converged end points
    (cosine > cos_threshold); labels (N,): attractor of each seed, -1 if not converged. The ``_euclid``
    twins use the relative Euclidean tolerance instead. run_key: the key of the run directory the result
    belongs to (None for in-memory runs). world_size: how many processes computed it (1 alone, N under
    ``torchrun`` / ``accelerate launch``; None when not known), recorded in ``summary.json``'s "versions".
    """

    config: ProbeConfig
    end_points: torch.Tensor
    status: np.ndarray
    steps: np.ndarray
    attractors: torch.Tensor
    labels: np.ndarray
    attractors_euclid: torch.Tensor
    labels_euclid: np.ndarray
    n_evals: int
    wall_time_s: float
    last_sq_step: np.ndarray | None = None
    adapter_info: dict[str, Any] = field(default_factory=dict)
    trajectories: dict[str, torch.Tensor] | None = None  # in-memory runs with record_every > 0
    captured_by: np.ndarray | None = None  # (N,) with capture > 0: the seed whose path each joined, -1 if none
    stability: dict[str, Any] | None = None  # verified runs: see engine.stability.stability_report
    run_key: str | None = None
    world_size: int | None = None

    @property
    def basin_sizes(self) -> np.ndarray:
        return basin_sizes(self.labels, len(self.attractors))

    def __repr__(self) -> str:
        c = self.counts
        return (f"ProbeResult({self.adapter_info.get('name', 'model')!r}: {c['converged']}/{len(self.status)} seeds "
                f"converged to {len(self.attractors)} attractors, {c['max_steps']} at max_steps, "
                f"{c['diverged']} diverged)")

    def _repr_html_(self) -> str:
        """Jupyter: the key numbers (no gallery: decoding needs the model; ``audit`` draws one)."""
        c, cfg = self.counts, self.config
        sizes = self.basin_sizes[self.basin_order()][:8].tolist()
        steps = step_stats(self.steps[self.status == CONVERGED])
        return card(f"ProbeResult: {self.adapter_info.get('name', 'model')}", [
            ("seeds", f"{len(self.status)} {cfg.init} (sigma {cfg.sigma:g}, seed {cfg.seed})"),
            ("stopping rule", f"squared step < {cfg.tol:g}, at most {cfg.max_steps} steps"),
            ("converged / max_steps / diverged", f"{c['converged']} / {c['max_steps']} / {c['diverged']}"),
            ("attractors (cosine > %g)" % cfg.cos_threshold, len(self.attractors)),
            ("largest basins (seeds)", ", ".join(map(str, sizes)) or "-"),
            ("steps to converge (median)", steps.get("median")),
            ("run key", (self.run_key or "in memory")[:16])])

    def basin_order(self) -> np.ndarray:
        """Attractor ids, largest basin first, ties by id: the one numbering of every report, table and
        file that ranks attractors (``#0`` is the largest basin)."""
        return basin_order(self.basin_sizes)

    @property
    def counts(self) -> dict[str, int]:
        return {name: int((self.status == code).sum()) for code, name in enumerate(STATUS_NAMES)}

    def unconverged(self) -> dict[str, Any] | None:
        """The seeds that ran to ``max_steps`` themselves (not by capture): how many, and how fast they
        still moved at the end, as squared step (the stopping rule's quantity) and step / ||z||."""
        cut = np.flatnonzero((self.status == MAX_STEPS) & (self.steps >= self.config.max_steps))
        if not len(cut):
            return None
        out: dict[str, Any] = {"n": int(len(cut)), "max_steps": self.config.max_steps, "tol": self.config.tol}
        known = cut[~np.isnan(self.last_sq_step[cut])] if self.last_sq_step is not None else cut[:0]
        if len(known):
            sq = self.last_sq_step[known]
            norm = self.end_points[known].flatten(1).double().norm(dim=1).clamp_min(1e-30).numpy()
            out |= {"sq_step_median": float(np.median(sq)), "sq_step_max": float(sq.max()),
                    "relative_step_median": float(np.median(np.sqrt(sq) / norm))}
        return out

    def summary(self) -> dict[str, Any]:
        conv = self.status == CONVERGED
        return {
            "run_key": self.run_key,
            "config": asdict(self.config),
            "adapter": self.adapter_info,
            "versions": environment(self.adapter_info.get("device"), self.adapter_info.get("dtype"), self.world_size),
            "n_seeds": len(self.status),
            "counts": self.counts,
            "n_attractors": len(self.attractors),
            "n_attractors_euclid": len(self.attractors_euclid),
            "basin_sizes": self.basin_sizes.tolist(),
            "basin_sizes_euclid": basin_sizes(self.labels_euclid, len(self.attractors_euclid)).tolist(),
            "steps_to_converge": step_stats(self.steps[conv]),
            "n_evals": self.n_evals,
            "wall_time_s": round(self.wall_time_s, 3),
        } | ({"unconverged": u} if (u := self.unconverged()) else {}) \
          | ({"stability": self.stability} if self.stability is not None else {}) \
          | (self.captured() if self.captured_by is not None else {})

    def captured(self) -> dict[str, Any]:
        """Capture's summary keys: ``n_captured`` (seeds that stopped on an earlier seed's path and took its
        end point), ``captured_status`` (their count per status, the status being their owner's) and
        ``basin_sizes_approximate`` (True when any seed was captured: a captured seed is counted in its
        owner's basin, which plain iteration may not agree with, docs/latent-dynamics.md "Path capture")."""
        cap = self.captured_by >= 0
        return {"n_captured": int(cap.sum()),
                "captured_status": {name: int((self.status[cap] == code).sum()) for code, name in enumerate(STATUS_NAMES)},
                "basin_sizes_approximate": bool(cap.any())}


def adapter_info(adapter: Adapter) -> dict[str, Any]:
    """The model a run belongs to, as recorded in its files (with its provenance: repo id, commit and the
    sha256 of each file read, when the adapter knows it)."""
    info = {"name": adapter.name, "fingerprint": adapter.fingerprint, "latent_shape": list(adapter.latent_shape),
            "image_shape": list(adapter.image_shape or ()), "value_range": list(adapter.value_range),
            "device": str(adapter.device), "dtype": dtype_name(adapter.dtype)}
    if getattr(adapter, "provenance", None) is not None:
        info["provenance"] = adapter.provenance
    return info


__all__ = ["ProbeResult", "adapter_info", "basin_order", "basin_ranks"]
