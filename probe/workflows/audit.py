"""The audit's computations: probe a model from noise (a resumable run in ``OUT/probe``) and gather
everything the report shows into an :class:`AuditContext`. Nothing here writes HTML; the report
(``report.audit``) renders the context.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentfield.adapters import Adapter

from ..analyses.dictionary import dictionary_test
from ..engine.latents import decode_unit
from ..engine.types import CONVERGED, MAX_STEPS
from ..rundir import ProbeConfig, ProbeResult, run_probe
from ..rundir.layout import audit_ood_dir, cache_root, probe_dir
from .ood import OODResult, export_scores, ood_benchmark, split_heldout

TRAJECTORY_SEEDS = 12
END_POINT_SAMPLE = 8  # decoded end points shown when no seed converged
AUDIT_MAX_IMAGES = 512  # the audit scores a seeded subset of each OOD set; `latentfield ood` has no cap


class AuditContext:
    """What the report may use. Images are (N, C, H, W) in [0, 1]; ``train`` / ``heldout`` may be None.

    ``order``: attractor ids, largest basin first (the report's one numbering); ``decoded``: the decoded
    attractors (K, C, H, W); ``trajectories``: the first seeds' recorded points (or None);
    ``dictionary``: the OMP dictionary test (when asked for); ``ood``: the OOD benchmark (when asked for);
    ``end_points``: when no seed converged, (seed indices (S,), decoded end points (S, C, H, W)) of the first
    seeds that stopped at max steps (not attractors: where the seeds happened to be), else None;
    ``converged_decoded``: every converged seed's decoded end point (M, C, H, W), one generated sample per
    seed for the data-copying test, when training and held-out images are known, else None.
    """

    def __init__(self, adapter: Adapter, result: ProbeResult, train: torch.Tensor | None,
                 heldout: torch.Tensor | None, out: Path, progress: bool = True, options: dict[str, Any] | None = None):
        self.adapter, self.result, self.train, self.heldout, self.out = adapter, result, train, heldout, out
        self.progress = progress
        self.options = options or {}
        self.order = result.basin_order()
        self.decoded = decode_unit(adapter, result.attractors)
        self.trajectories: dict[str, torch.Tensor] | None = None
        self.dictionary: dict[str, Any] | None = None
        self.ood: OODResult | None = None
        self.ood_sizes: tuple[int, int] = (0, 0)
        self.end_points: tuple[np.ndarray, torch.Tensor] | None = None
        self.converged_decoded: torch.Tensor | None = None


def gather(adapter: Adapter, out: str | Path, config: ProbeConfig | None = None, *,
           train: torch.Tensor | None = None, heldout: torch.Tensor | None = None, progress: bool = True,
           options: dict[str, Any] | None = None) -> AuditContext:
    """Probe ``adapter`` and compute what the report shows (see :func:`latentfield.probe.report.audit.audit`).

    ``train`` / ``heldout`` not given: a demo checkpoint's own reference sets, if it has them.
    """
    out = Path(out)
    known_train, known_heldout = reference_sets(adapter)
    train = known_train if train is None else train
    heldout = known_heldout if heldout is None else heldout
    cfg = config or ProbeConfig()
    result = run_probe(adapter, cfg, out=probe_dir(out), progress=progress)
    ctx = AuditContext(adapter, result, train, heldout, out, progress, options)
    if not len(result.attractors):
        seeds = np.flatnonzero(result.status == MAX_STEPS)[:END_POINT_SAMPLE]
        if len(seeds):
            ctx.end_points = (seeds, decode_unit(adapter, result.end_points[torch.as_tensor(seeds)]))
    if len(result.attractors) and train is not None and heldout is not None and len(heldout):
        ctx.converged_decoded = decode_unit(adapter, result.end_points[torch.as_tensor(result.status == CONVERGED)])
    if len(result.attractors) and cfg.init != "data":
        # seed i depends only on (seed, i): these are the main run's first trajectories, every step recorded
        n = min(TRAJECTORY_SEEDS, cfg.n_seeds)
        ctx.trajectories = run_probe(adapter, replace(cfg, n_seeds=n, record_every=1, verify=False, chunk_size=None),
                                     progress=False).trajectories
    if ctx.options.get("dictionary") and len(result.attractors):
        images = heldout if heldout is not None and len(heldout) else train
        if images is not None and len(images):
            ctx.dictionary = dictionary_test(adapter, result.attractors, images[:512])
    if ctx.options.get("ood") and train is not None:
        ctx.ood, ctx.ood_sizes = _ood(ctx, cfg)
    return ctx


def _ood(ctx: AuditContext, cfg: ProbeConfig) -> tuple[OODResult, tuple[int, int]]:
    """The OOD benchmark on seeded subsets, with every probe setting of the audit (stopping rule, solver,
    capture); scores exported to ``OUT/ood``."""
    if ctx.heldout is not None and len(ctx.heldout):
        fit, test = ctx.train, ctx.heldout
    else:
        fit, test = split_heldout(ctx.train)
    fit, test = _subset(fit, AUDIT_MAX_IMAGES), _subset(test, AUDIT_MAX_IMAGES)
    tests = {name: _subset(x, AUDIT_MAX_IMAGES) for name, x in ctx.options["ood"].items()}
    ood_dir = audit_ood_dir(ctx.out)
    res = ood_benchmark(ctx.adapter, fit, test, tests, cfg, progress=ctx.progress, cache=cache_root(ood_dir))
    export_scores(res, ood_dir)
    return res, (len(fit), len(test))


def _subset(x: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    if len(x) <= n:
        return x
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n].sort().values]


def reference_sets(adapter: Adapter) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Training and held-out images recorded with a bundled demo checkpoint, if any."""
    record = getattr(adapter, "training_record", None)
    if not record:
        return None, None
    from ..data import digits
    x_train, _ = digits("train")
    return x_train[record["train_indices"]], digits("test")[0]


__all__ = ["AuditContext", "gather", "reference_sets", "TRAJECTORY_SEEDS", "AUDIT_MAX_IMAGES", "END_POINT_SAMPLE"]
