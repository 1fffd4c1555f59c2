"""The OOD benchmark: fit on in-distribution images, score test sets, compute metrics, cache and export.

In-distribution images are iterated (a resumable probe run with ``init='data'``) and their trajectories'
end points become the fit points of the trajectory score. ``fit_set='endpoints'`` (the default) is the
paper's protocol: every end point, converged or stopped by ``max_steps``, no de-duplication (the paper
iterates the in-distribution images "until convergence reaches a tolerance or a maximum number of
iterations"). ``fit_set='attractors'`` keeps only converged end points, de-duplicated by cosine (the
attractor set). Test images are iterated with the same :class:`ProbeConfig` (stopping rule, solver,
capture) and scored by :mod:`latentfield.probe.analyses.ood_scores`. One iteration of a test set scores
its trajectories against both fit sets (``trajectory_<fit set>``; ``trajectory`` is the chosen one), so
the cached scores serve a later run with the other fit set.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from io import BytesIO
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from latentfield.adapters import Adapter, atomic
from latentfield.adapters.errors import UsageError

from ..analyses.ood_metrics import ood_metrics
from ..analyses.ood_scores import (METHODS, Baselines, TrajectoryScorer, baseline_scores, fit_baselines,
                                   reconstruction_error)
from ..data import images_sha256
from ..engine.iterate import iterate
from ..engine.latents import decode_unit, encode_unit
from ..engine.solvers import make_solver
from ..engine.types import CONVERGED
from ..index import AttractorIndex
from ..rundir import ProbeConfig, cache_dir, run_probe
from ..rundir.distributed import is_main_process
from ..rundir.layout import fit_cache, scores_file

FIT_SETS = ("endpoints", "attractors")
IN_TEST = "in-distribution"


@dataclass
class InDistribution:
    """What the detector learns from in-distribution images: the fit points (P, *latent) of the trajectory
    score in an L2 index, the attractors (K, *latent), their encoder features (N, D) and the baselines.
    ``indexes``: an L2 index per fit set that has points (``attractors`` is missing when none converged)."""

    fit_points: torch.Tensor
    index: AttractorIndex
    attractors: torch.Tensor
    features: np.ndarray
    baselines: Baselines
    fit_set: str
    n_converged: int
    n_images: int
    indexes: dict[str, AttractorIndex] = field(default_factory=dict)


def fit_in_distribution(adapter: Adapter, images: torch.Tensor, config: ProbeConfig | None = None, k: int = 10,
                        progress: bool = False, cache: str | Path | None = None,
                        fit_set: str = "endpoints") -> InDistribution:
    """Iterate in-distribution ``images`` (N, C, H, W) in [0, 1] and fit the scores (see module doc).
    With ``cache``, the iteration is a resumable probe run in a directory below it (``cache_dir``)."""
    cfg = replace(config or ProbeConfig(), init="data", record_every=0)
    if len(images) < 2:
        raise UsageError("in-distribution data needs at least 2 images")
    if k < 1:
        raise UsageError(f"k (the KNN baseline's neighbour rank) must be >= 1, got {k}")
    if fit_set not in FIT_SETS:
        raise UsageError(f"unknown fit set {fit_set!r}: choose one of {', '.join(FIT_SETS)}")
    out = cache_dir(cache, adapter, cfg, images) if cache is not None else None
    result = run_probe(adapter, cfg, out=out, data=images, progress=progress)
    if fit_set == "attractors" and len(result.attractors) == 0:
        raise UsageError(f"no in-distribution trajectory converged within max_steps {cfg.max_steps} "
                         f"(tolerance {cfg.tol:g}); raise `max_steps` or `tol`, or fit on every end point (`fit_set` endpoints)")
    finite = torch.isfinite(result.end_points.flatten(1)).all(1)
    sets = {"endpoints": result.end_points[finite], "attractors": result.attractors}
    points = sets[fit_set]
    if len(points) == 0:
        raise UsageError("every in-distribution trajectory diverged: there is nothing to fit on")
    indexes = {name: AttractorIndex.build(pts, "l2") for name, pts in sets.items() if len(pts)}
    feats = encode_unit(adapter, images, cfg.batch_size).flatten(1).numpy()
    return InDistribution(fit_points=points, index=indexes[fit_set], attractors=result.attractors,
                          features=feats, baselines=fit_baselines(feats, k), fit_set=fit_set,
                          n_converged=int((result.status == CONVERGED).sum()), n_images=len(images), indexes=indexes)


def trajectory_scores(adapter: Adapter, z0: torch.Tensor, index: AttractorIndex, config: ProbeConfig | None = None,
                      progress: Callable[[int], None] | None = None,
                      also: dict[str, AttractorIndex] | None = None) -> dict[str, np.ndarray]:
    """Iterate f from latents ``z0`` (N, *latent) with ``config``'s stopping rule, solver and capture, and
    score each trajectory against the fit points in ``index`` (metric ``l2``). Returns (N,) arrays:
    ``trajectory``, ``field``, ``steps``, ``path_length``, and ``converged`` (bool); for each ``also``
    entry NAME -> index, ``trajectory_NAME``: the same trajectories scored against that index."""
    cfg = config or ProbeConfig()
    scorers = {"": TrajectoryScorer(index, z0)} | {name: TrajectoryScorer(ix, z0) for name, ix in (also or {}).items()}

    def record(seeds: np.ndarray, steps: np.ndarray, z: torch.Tensor) -> None:
        for s in scorers.values():
            s.record(seeds, steps, z)

    res = iterate(adapter.f, z0.to(adapter.device, adapter.dtype), tol=cfg.tol, max_steps=cfg.max_steps,
                  batch_size=cfg.batch_size, max_norm=cfg.max_norm, solver=make_solver(cfg.solver, cfg.solver_options),
                  record_every=1, recorder=record, progress=progress, capture=cfg.capture)
    out = scorers.pop("").scores()
    out.update({f"trajectory_{name}": s.scores()["trajectory"] for name, s in scorers.items()})
    return {**out, "steps": res.steps.astype(np.float64), "converged": res.status == CONVERGED}


def score_images(adapter: Adapter, images: torch.Tensor, ind: InDistribution, config: ProbeConfig | None = None,
                 progress: bool = False, desc: str = "ood") -> dict[str, np.ndarray]:
    """All scores of ``METHODS`` (N,) for images (N, C, H, W) in [0, 1], plus ``converged`` and
    ``trajectory_<fit set>`` for every fit set of ``ind`` (``trajectory`` is ``ind.fit_set``'s)."""
    cfg = config or ProbeConfig()
    z0 = encode_unit(adapter, images, cfg.batch_size)
    with tqdm(total=len(images), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        others = {fs: ix for fs, ix in ind.indexes.items() if fs != ind.fit_set}  # the chosen one is ``trajectory``
        scores = trajectory_scores(adapter, z0, ind.index, cfg, progress=bar.update, also=others)
    scores[f"trajectory_{ind.fit_set}"] = scores["trajectory"]
    scores.update(baseline_scores(z0.flatten(1).numpy(), ind.baselines))
    scores["reconstruction"] = reconstruction_error(images, decode_unit(adapter, z0, cfg.batch_size))
    return scores


@dataclass
class OODResult:
    """Per-sample scores per set (``scores[set][method]`` (N,)) and metrics per test set and method."""

    scores: dict[str, dict[str, np.ndarray]]
    metrics: dict[str, dict[str, dict[str, float]]]  # test set -> method -> metric -> value
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON layout of the report's ``ood`` key: metric -> test set -> method -> value."""
        out: dict[str, Any] = {"methods": list(METHODS), **self.info}
        for m in ("auroc", "fpr95", "aupr_in", "aupr_out"):
            out[m] = {t: {meth: v[m] for meth, v in per.items()} for t, per in self.metrics.items()}
        out["mean_score"] = {name: {meth: float(np.mean(v)) for meth, v in sc.items() if meth in METHODS}
                             for name, sc in self.scores.items()}
        return out


def ood_benchmark(adapter: Adapter, in_train: torch.Tensor, in_test: torch.Tensor, tests: dict[str, torch.Tensor],
                  config: ProbeConfig | None = None, k: int = 10, progress: bool = False,
                  cache: str | Path | None = None, fit_set: str = "endpoints") -> OODResult:
    """Fit on ``in_train``, score ``in_test`` and every OOD set in ``tests`` (name -> images (N, C, H, W)
    in [0, 1]), and compute AUROC / FPR95 / AUPR-in / AUPR-out of each method for each test set.

    With ``cache`` (a directory), the fit is a resumable probe run below it and each set's scores are kept
    beside it (``rundir.layout``), so an interrupted benchmark rerun with the same inputs continues where it
    stopped; entries made for other inputs or settings are recomputed.
    """
    if not tests:
        raise UsageError("give at least one out-of-distribution test set")
    if IN_TEST in tests:
        raise UsageError(f"test set name {IN_TEST!r} is reserved")
    cfg = config or ProbeConfig()
    cache = Path(cache) if cache is not None else None
    ind = fit_in_distribution(adapter, in_train, cfg, k=k, progress=progress, cache=fit_cache(cache), fit_set=fit_set)
    settings = {f: v for f, v in asdict(cfg).items() if f not in ("n_seeds", "init", "seed", "verify")}
    # one entry serves every fit set: it holds trajectory_<fit set> for each; scores cached before a
    # method or a fit set was added are recomputed
    base = {"fingerprint": adapter.fingerprint, "settings": settings, "k": k, "fit": images_sha256(in_train),
            "fit_sets": sorted(ind.indexes), "methods": list(METHODS)}

    def scored(name: str, x: torch.Tensor) -> dict[str, np.ndarray]:
        key = json.dumps({**base, "images": images_sha256(x)}, sort_keys=True, default=str)
        sc = _cached(scores_file(cache, name), key,
                     lambda: {m: v for m, v in score_images(adapter, x, ind, cfg, progress, name).items()
                              if m != "trajectory"})
        return {**sc, "trajectory": sc[f"trajectory_{fit_set}"]}

    scores = {IN_TEST: scored(IN_TEST, in_test)}
    for name, x in tests.items():
        scores[name] = scored(name, x)
    metrics = {name: {m: ood_metrics(scores[IN_TEST][m], scores[name][m]) for m in METHODS} for name in tests}
    info = {"n_in_train": len(in_train), "n_in_test": len(in_test), "n_in_attractors": len(ind.attractors),
            "fit_set": fit_set, "n_fit_points": len(ind.fit_points), "in_train_converged": ind.n_converged,
            "knn_k": ind.baselines.k, "n_test": {name: len(x) for name, x in tests.items()},
            "converged_fraction": {name: float(np.mean(sc["converged"])) for name, sc in scores.items()},
            # the same trajectories against each fit set (scored in the one iteration): both protocols at once
            "trajectory_by_fit_set": {fs: {"n_fit_points": len(ix), **{
                name: ood_metrics(scores[IN_TEST][f"trajectory_{fs}"], scores[name][f"trajectory_{fs}"])
                for name in tests}} for fs, ix in ind.indexes.items()}}
    return OODResult(scores, metrics, info)


def _cached(path: Path | None, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``compute()``, or what an earlier call with the same ``key`` saved at ``path``."""
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                if "key" in z.files and str(z["key"]) == key:
                    return {name: z[name] for name in z.files if name != "key"}
        except (OSError, ValueError):  # unreadable: recomputed below
            pass
    scores = compute()
    if path is not None and is_main_process():  # every rank scores (same numbers); rank 0 keeps them
        atomic.write_bytes(path, _npz_bytes({**scores, "key": np.array(key)}))
    return scores


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def split_heldout(images: torch.Tensor, fraction: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random split of in-distribution images into (fit, held-out) when no held-out set is given."""
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    n_test = max(1, int(round(fraction * len(images))))
    return images[perm[n_test:]], images[perm[:n_test]]


def write_ood(result: OODResult, out: str | Path, adapter: Adapter) -> tuple[Path, Path, Path]:
    """``out/ood.json`` (the model, its fingerprint and :meth:`OODResult.to_json`) and the per-sample scores
    (:func:`export_scores`). Returns the three paths."""
    from ..rundir import output

    data = {"model": adapter.name, "fingerprint": adapter.fingerprint, **result.to_json()}
    return (output.write_json(Path(out) / "ood.json", data), *export_scores(result, out))


def export_scores(result: OODResult, out: str | Path) -> tuple[Path, Path]:
    """Write per-sample scores as ``scores.csv`` (set, index, converged, one column per method) and
    ``scores.npz`` (``<set>/<method>`` arrays)."""
    out = Path(out)
    lines = ["set,index,converged," + ",".join(METHODS)]
    arrays: dict[str, np.ndarray] = {}
    for name, sc in result.scores.items():
        for i in range(len(sc["trajectory"])):
            lines.append(f"{name},{i},{int(sc['converged'][i])}," + ",".join(f"{sc[m][i]:.8g}" for m in METHODS))
        for m, v in sc.items():
            arrays[f"{name}/{m}"] = np.asarray(v)
    if is_main_process():
        atomic.write_text(out / "scores.csv", "\n".join(lines) + "\n")
        atomic.write_bytes(out / "scores.npz", _npz_bytes(arrays))
    return out / "scores.csv", out / "scores.npz"


__all__ = ["InDistribution", "fit_in_distribution", "trajectory_scores", "score_images", "OODResult",
           "ood_benchmark", "split_heldout", "write_ood", "export_scores", "FIT_SETS", "IN_TEST", "METHODS"]
