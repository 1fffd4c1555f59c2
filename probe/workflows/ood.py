"""The OOD benchmark: fit on in-distribution images, score test sets, compute metrics, cache and export.

In-distribution images are iterated (a resumable probe run with ``init='data'``) and their trajectories'
end points become the fit points of the trajectory score. ``fit_set='endpoints'`` (the default) is the
paper's protocol: every end point, converged or stopped by ``max_steps``, no de-duplication (the paper
iterates the in-distribution images "until convergence reaches a tolerance or a maximum number of
iterations"). ``fit_set='attractors'`` keeps only converged end points, de-duplicated by cosine (the
attractor set). Test images are iterated with the same :class:`ProbeConfig` (stopping rule, solver,
capture) and scored by :mod:`latentfield.probe.analyses.ood_scores`. One iteration of a test set scores
its trajectories against both fit sets (:class:`SetScores`; written as ``trajectory_<fit set>``, with
``trajectory`` the chosen one), so the cached scores serve a later run with the other fit set.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from io import BytesIO
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from latentfield.adapters import Adapter
from latentfield.adapters.errors import UsageError

from ..analyses.ood_metrics import ood_metrics
from ..analyses.ood_scores import (METHODS, BaselineScores, Baselines, TrajectoryScorer, TrajectoryScores,
                                   baseline_scores, fit_baselines, reconstruction_error)
from ..data import images_sha256
from ..engine.iterate import iterate
from ..engine.latents import decode_unit, encode_unit
from ..engine.solvers import make_solver
from ..engine.types import CONVERGED
from ..index import AttractorIndex
from ..rundir import ProbeConfig, cache_dir, run_probe
from ..rundir import output
from ..rundir.layout import fit_cache, scores_file

FIT_SETS = ("endpoints", "attractors")
IN_TEST = "in-distribution"


@dataclass
class InDistribution:
    """What the detector learns from in-distribution images: the fit points (P, *latent) of the trajectory
    score (``fit_set``'s), the attractors (K, *latent), their encoder features (N, D) and the baselines.
    ``indexes``: an L2 index per fit set that has points (``attractors`` is missing when none converged);
    ``indexes[fit_set]`` holds ``fit_points``."""

    fit_points: torch.Tensor
    indexes: dict[str, AttractorIndex]
    attractors: torch.Tensor
    features: np.ndarray
    baselines: Baselines
    fit_set: str
    n_converged: int
    n_images: int


@dataclass(frozen=True)
class SetScores:
    """Every score of one image set, (N,) each: the trajectory scores (against every fit set, from one
    iteration), the feature baselines and the reconstruction error."""

    trajectory: TrajectoryScores
    baselines: BaselineScores
    reconstruction: np.ndarray

    def methods(self, fit_set: str) -> dict[str, np.ndarray]:
        """The written form (``OODResult.scores``, ``scores.npz``): each of ``METHODS`` (``trajectory``
        against ``fit_set``), ``converged``, and ``trajectory_<fit set>`` for every fit set."""
        t, b = self.trajectory, self.baselines
        out = {"trajectory": t.distance[fit_set], "field": t.field, "steps": t.steps, "path_length": t.path_length,
               "knn": b.knn, "knn_mean": b.knn_mean, "mahalanobis": b.mahalanobis,
               "reconstruction": self.reconstruction, "converged": t.converged}
        return out | {f"trajectory_{fs}": v for fs, v in t.distance.items()}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The cached form: :meth:`methods` without the fit-set choice (``trajectory``)."""
        fs = next(iter(self.trajectory.distance))
        return {k: v for k, v in self.methods(fs).items() if k != "trajectory"}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "SetScores":
        """Back from :meth:`to_arrays` (KeyError if a score is missing)."""
        distance = {k[len("trajectory_"):]: v for k, v in arrays.items() if k.startswith("trajectory_")}
        t = TrajectoryScores(distance=distance, field=arrays["field"], path_length=arrays["path_length"],
                             steps=arrays["steps"], converged=arrays["converged"])
        baselines = BaselineScores(arrays["knn"], arrays["knn_mean"], arrays["mahalanobis"])
        return cls(t, baselines, arrays["reconstruction"])


def fit_in_distribution(adapter: Adapter, images: torch.Tensor, config: ProbeConfig | None = None, k: int = 10,
                        progress: bool = False, cache: str | Path | None = None,
                        fit_set: str = "endpoints") -> InDistribution:
    """Iterate in-distribution ``images`` (N, C, H, W) in [0, 1] and fit the scores (see module doc).
    With ``cache``, the iteration is a resumable probe run in a directory below it (``cache_dir``).
    ``k`` (>= 1): the KNN baseline's neighbour rank, clamped to N (``baselines.notes()`` says so)."""
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
    return InDistribution(fit_points=points, indexes=indexes, attractors=result.attractors, features=feats,
                          baselines=fit_baselines(feats, k), fit_set=fit_set,
                          n_converged=int((result.status == CONVERGED).sum()), n_images=len(images))


def trajectory_scores(adapter: Adapter, z0: torch.Tensor, indexes: Mapping[str, AttractorIndex],
                      config: ProbeConfig | None = None,
                      progress: Callable[[int], None] | None = None) -> TrajectoryScores:
    """Iterate f from latents ``z0`` (N, *latent) with ``config``'s stopping rule, solver and capture, and
    score each trajectory against the fit points of every index in ``indexes`` (name -> L2 index)."""
    cfg = config or ProbeConfig()
    scorer = TrajectoryScorer(indexes, z0)
    res = iterate(adapter.f, z0.to(adapter.device, adapter.dtype), tol=cfg.tol, max_steps=cfg.max_steps,
                  batch_size=cfg.batch_size, max_norm=cfg.max_norm, solver=make_solver(cfg.solver, cfg.solver_options),
                  record_every=1, recorder=scorer.record, progress=progress, capture=cfg.capture)
    return scorer.scores(res.steps, res.status == CONVERGED)


def score_images(adapter: Adapter, images: torch.Tensor, ind: InDistribution, config: ProbeConfig | None = None,
                 progress: bool = False, desc: str = "ood") -> SetScores:
    """Every score of images (N, C, H, W) in [0, 1]: the trajectories against every fit set of ``ind``, the
    baselines and the reconstruction error."""
    cfg = config or ProbeConfig()
    z0 = encode_unit(adapter, images, cfg.batch_size)
    with tqdm(total=len(images), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        traj = trajectory_scores(adapter, z0, ind.indexes, cfg, progress=bar.update)
    return SetScores(traj, baseline_scores(z0.flatten(1).numpy(), ind.baselines),
                     reconstruction_error(images, decode_unit(adapter, z0, cfg.batch_size)))


@dataclass
class OODResult:
    """Per-sample scores per set (``scores[set][method]`` (N,), :meth:`SetScores.methods`: the form
    ``scores.npz`` holds) and metrics per test set and method. ``notes``: what the numbers need said with
    them (a neighbour rank clamped to the data)."""

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
    stopped; entries made for other inputs or settings are recomputed. ``k`` larger than ``in_train`` is
    clamped to it, and so is the paper's K = 2000 of ``knn_mean``: ``info["notes"]`` says so.
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

    def scored(name: str, x: torch.Tensor) -> SetScores:
        key = json.dumps({**base, "images": images_sha256(x)}, sort_keys=True, default=str)
        return _cached(scores_file(cache, name), key, lambda: score_images(adapter, x, ind, cfg, progress, name))

    sets = {IN_TEST: scored(IN_TEST, in_test)} | {name: scored(name, x) for name, x in tests.items()}
    scores = {name: sc.methods(fit_set) for name, sc in sets.items()}
    metrics = {name: {m: ood_metrics(scores[IN_TEST][m], scores[name][m]) for m in METHODS} for name in tests}
    ind_scores = sets[IN_TEST].trajectory.distance
    b = ind.baselines
    info = {"n_in_train": len(in_train), "n_in_test": len(in_test), "n_in_attractors": len(ind.attractors),
            "fit_set": fit_set, "n_fit_points": len(ind.fit_points), "in_train_converged": ind.n_converged,
            "knn_k": b.k, "knn_k_requested": b.k_requested, "knn_mean_k": b.k_mean, "notes": b.notes(),
            "n_test": {name: len(x) for name, x in tests.items()},
            "converged_fraction": {name: float(np.mean(sc.trajectory.converged)) for name, sc in sets.items()},
            # the same trajectories against each fit set (scored in the one iteration): both protocols at once
            "trajectory_by_fit_set": {fs: {"n_fit_points": len(ix), **{
                name: ood_metrics(ind_scores[fs], sets[name].trajectory.distance[fs]) for name in tests}}
                for fs, ix in ind.indexes.items()}}
    return OODResult(scores, metrics, info)


def _cached(path: Path | None, key: str, compute: Callable[[], SetScores]) -> SetScores:
    """``compute()``, or what an earlier call with the same ``key`` saved at ``path``."""
    if path is not None and path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                if "key" in z.files and str(z["key"]) == key:
                    return SetScores.from_arrays({name: z[name] for name in z.files if name != "key"})
        except (OSError, ValueError, KeyError):  # unreadable or incomplete: recomputed below
            pass
    scores = compute()
    if path is not None:  # every rank scores (same numbers); the writer keeps rank 0's
        output.write_bytes(path, _npz_bytes({**scores.to_arrays(), "key": np.array(key)}))
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
    return (output.write_text(out / "scores.csv", "\n".join(lines) + "\n"),
            output.write_bytes(out / "scores.npz", _npz_bytes(arrays)))


__all__ = ["InDistribution", "SetScores", "fit_in_distribution", "trajectory_scores", "score_images", "OODResult",
           "ood_benchmark", "split_heldout", "write_ood", "export_scores", "FIT_SETS", "IN_TEST", "METHODS"]
