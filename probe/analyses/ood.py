"""Out-of-distribution detection from latent trajectories, with the usual baselines beside it.

In-distribution images are iterated to their attractors (the paper's "in-distribution attractors").
A test image x is encoded, z_0 = E(x), and iterated z_{t+1} = f(z_t) until it converges; its scores
(all "higher = more OOD"):

* ``trajectory``: the paper's score, mean over t = 0..T of min_k ||z_t - a_k|| (Euclidean, latent);
* ``field``: ||f(z_0) - z_0||, the field magnitude at the input (Theorem 1 ties f(z) - z to the score
  of the latent density, so it should grow where density is low);
* ``steps``: steps to converge; ``path_length``: sum_t ||z_{t+1} - z_t||;

and the baselines on the same features z_0: ``knn`` (Sun et al. 2022: L2-normalised features,
distance to the k-th nearest training feature), ``knn_mean`` (the paper's table: mean Euclidean distance to
the K = min(2000, N) nearest training features, ``knn.py``), ``mahalanobis`` (one Gaussian, Ledoit-Wolf covariance,
squared distance; in the top-512 PCA subspace when D > 512) and ``reconstruction`` (per-image MSE
of D(E(x)) against x, in [0, 1] pixels).
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from latentfield.adapters import Adapter

from latentfield.adapters import atomic
from ..engine import CONVERGED, iterate
from ..data import images_sha256
from latentfield.adapters.errors import UsageError
from ..index import AttractorIndex
from ..latents import encode_unit
from ..run import ProbeConfig, cache_dir, run_probe
from .knn import PAPER_KNN_K, knn_mean_distance
from .metrics import ood_metrics

if TYPE_CHECKING:
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA


TRAJECTORY_METHODS = ("trajectory", "field", "steps", "path_length")
BASELINE_METHODS = ("knn", "knn_mean", "mahalanobis", "reconstruction")
METHODS = TRAJECTORY_METHODS + BASELINE_METHODS
MAHALANOBIS_MAX_DIM = 512


@dataclass
class IterationSettings:
    """Stopping rule for every trajectory here (the paper's small-AE defaults)."""

    tol: float = 1e-6
    max_steps: int = 3000
    batch_size: int = 256


@dataclass
class InDistribution:
    """What the detector learns from in-distribution images: their attractors (K, *latent) in an L2
    index, their encoder features (N, D), and the fitted baselines."""

    attractors: torch.Tensor
    index: AttractorIndex
    features: np.ndarray
    knn_index: AttractorIndex
    gaussian: LedoitWolf
    k: int
    projection: PCA | None  # features are reduced before the Gaussian fit when D > MAHALANOBIS_MAX_DIM
    n_converged: int
    n_images: int


def fit_in_distribution(adapter: Adapter, images: torch.Tensor, settings: IterationSettings | None = None,
                        k: int = 10, cos_threshold: float = 0.99, progress: bool = False,
                        cache: str | Path | None = None) -> InDistribution:
    """Iterate in-distribution ``images`` (N, C, H, W) in [0, 1] to attractors and fit the baselines.
    With ``cache``, the iteration is a resumable probe run in a directory below it (``cache_dir``)."""
    s = settings or IterationSettings()
    if len(images) < 2:
        raise UsageError("in-distribution data needs at least 2 images")
    if k < 1:
        raise UsageError(f"k (the KNN baseline's neighbour rank) must be >= 1, got {k}")
    cfg = ProbeConfig(init="data", tol=s.tol, max_steps=s.max_steps, batch_size=s.batch_size,
                      cos_threshold=cos_threshold)
    out = cache_dir(cache, adapter, cfg, images) if cache is not None else None
    result = run_probe(adapter, cfg, out=out, data=images, progress=progress)
    if len(result.attractors) == 0:
        raise UsageError(f"no in-distribution trajectory converged within {s.max_steps} steps "
                         f"(tolerance {s.tol:g}); raise --max-steps or --tol")
    from sklearn.covariance import LedoitWolf  # lazy: keeps CLI start-up fast
    from sklearn.decomposition import PCA

    feats = encode_unit(adapter, images, s.batch_size).flatten(1).numpy()
    # A D x D covariance is out of reach for large latents (TAEF2 at 256 px: D = 32768); fit the
    # Gaussian in the leading principal subspace of the in-distribution features instead.
    projection = None
    if feats.shape[1] > MAHALANOBIS_MAX_DIM:
        projection = PCA(n_components=min(MAHALANOBIS_MAX_DIM, len(feats) - 1), random_state=0).fit(feats)
    g_feats = projection.transform(feats) if projection is not None else feats
    return InDistribution(attractors=result.attractors, index=AttractorIndex.build(result.attractors, "l2"),
                          features=feats, knn_index=AttractorIndex.build(feats, "cosine"),
                          gaussian=LedoitWolf().fit(g_feats.astype(np.float64)), k=min(k, len(feats)),
                          projection=projection,
                          n_converged=int((result.status == CONVERGED).sum()), n_images=len(images))


def trajectory_scores(adapter: Adapter, z0: torch.Tensor, index: AttractorIndex,
                      settings: IterationSettings | None = None,
                      progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Iterate f from latents ``z0`` (N, *latent) and score each trajectory against the attractors in
    ``index`` (built with metric ``l2``). Points are consumed as they are produced, so memory stays
    O(N D) whatever the trajectory lengths. Returns (N,) arrays: ``trajectory``, ``field``, ``steps``,
    ``path_length``, and ``converged`` (bool)."""
    if index.metric != "l2":
        raise ValueError("the trajectory score needs an L2 attractor index")
    s = settings or IterationSettings()
    n = len(z0)
    dist_sum, count = np.zeros(n), np.zeros(n)
    path, fieldm = np.zeros(n), np.zeros(n)
    last = z0.flatten(1).double().clone()

    def record(seeds: np.ndarray, steps: np.ndarray, z: torch.Tensor) -> None:
        zf = z.detach().flatten(1).double().cpu()
        d, _ = index.nearest_attractor(zf)
        np.add.at(dist_sum, seeds, d)
        np.add.at(count, seeds, 1)
        moved = steps > 0
        if moved.any():
            step_len = (zf[moved] - last[seeds[moved]]).norm(dim=1).numpy()
            path[seeds[moved]] += step_len
            first = steps[moved] == 1
            fieldm[seeds[moved][first]] = step_len[first]
        last[seeds] = zf

    res = iterate(adapter.f, z0.to(adapter.device, adapter.dtype), tol=s.tol, max_steps=s.max_steps,
                  batch_size=s.batch_size, record_every=1, recorder=record, progress=progress)
    return {"trajectory": dist_sum / np.maximum(count, 1), "field": fieldm, "steps": res.steps.astype(np.float64),
            "path_length": path, "converged": res.status == CONVERGED}


def baseline_scores(adapter: Adapter, images: torch.Tensor, features: np.ndarray, ind: InDistribution,
                    batch_size: int = 256) -> dict[str, np.ndarray]:
    """KNN (two forms), Mahalanobis and reconstruction scores (N,) of ``images`` with encoder ``features`` (N, D)."""
    dcos, _ = ind.knn_index.search(features, ind.k)
    knn = np.sqrt(np.maximum(2.0 * dcos[:, -1], 0.0))  # L2 between unit vectors = sqrt(2 - 2 cos)
    g_feats = ind.projection.transform(features) if ind.projection is not None else features
    maha = ind.gaussian.mahalanobis(g_feats.astype(np.float64))
    rec = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].float()
        y = adapter.to_unit(adapter.decode(adapter.encode(adapter.from_unit(x)))).float().cpu()
        rec.append((y - x).pow(2).flatten(1).mean(1).numpy())
    return {"knn": knn, "knn_mean": knn_mean_distance(features, ind.features, PAPER_KNN_K), "mahalanobis": maha,
            "reconstruction": np.concatenate(rec) if rec else np.zeros(0)}


def score_images(adapter: Adapter, images: torch.Tensor, ind: InDistribution,
                 settings: IterationSettings | None = None, progress: bool = False, desc: str = "ood") -> dict[str, np.ndarray]:
    """All scores of ``METHODS`` (N,) for images (N, C, H, W) in [0, 1], plus ``converged``."""
    s = settings or IterationSettings()
    z0 = encode_unit(adapter, images, s.batch_size)
    with tqdm(total=len(images), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        scores = trajectory_scores(adapter, z0, ind.index, s, progress=bar.update)
    scores.update(baseline_scores(adapter, images, z0.flatten(1).numpy(), ind, s.batch_size))
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


IN_TEST = "in-distribution"


def ood_benchmark(adapter: Adapter, in_train: torch.Tensor, in_test: torch.Tensor, tests: dict[str, torch.Tensor],
                  settings: IterationSettings | None = None, k: int = 10, progress: bool = False,
                  cache: str | Path | None = None) -> OODResult:
    """Fit on ``in_train``, score ``in_test`` and every OOD set in ``tests`` (name -> images (N, C, H, W)
    in [0, 1]), and compute AUROC / FPR95 / AUPR-in / AUPR-out of each method for each test set.

    With ``cache`` (a directory), the fit is a resumable probe run below ``cache/fit`` and each set's
    scores are kept in ``cache/scores``, so an interrupted benchmark rerun with the same inputs
    continues where it stopped; entries made for other inputs or settings are recomputed.
    """
    if not tests:
        raise UsageError("give at least one out-of-distribution test set")
    if IN_TEST in tests:
        raise UsageError(f"test set name {IN_TEST!r} is reserved")
    s = settings or IterationSettings()
    cache = Path(cache) if cache is not None else None
    ind = fit_in_distribution(adapter, in_train, s, k=k, progress=progress, cache=cache / "fit" if cache else None)
    base = {"fingerprint": adapter.fingerprint, "settings": asdict(s), "k": k, "fit": images_sha256(in_train),
            "methods": list(METHODS)}  # scores cached before a method was added are recomputed

    def scored(name: str, x: torch.Tensor) -> dict[str, np.ndarray]:
        key = json.dumps({**base, "images": images_sha256(x)}, sort_keys=True)
        path = cache / "scores" / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.npz" if cache else None
        return _cached(path, key, lambda: score_images(adapter, x, ind, s, progress, name))

    scores = {IN_TEST: scored(IN_TEST, in_test)}
    for name, x in tests.items():
        scores[name] = scored(name, x)
    metrics = {name: {m: ood_metrics(scores[IN_TEST][m], scores[name][m]) for m in METHODS} for name in tests}
    info = {"n_in_train": len(in_train), "n_in_test": len(in_test), "n_in_attractors": len(ind.attractors),
            "in_train_converged": ind.n_converged, "knn_k": ind.k,
            "n_test": {name: len(x) for name, x in tests.items()},
            "converged_fraction": {name: float(np.mean(sc["converged"])) for name, sc in scores.items()}}
    return OODResult(scores, metrics, info)


def _cached(path: Path | None, key: str, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``compute()``, or what an earlier call with the same ``key`` saved at ``path``."""
    if path is not None and path.exists():
        with np.load(path, allow_pickle=False) as z:
            if "key" in z.files and str(z["key"]) == key:
                return {name: z[name] for name in z.files if name != "key"}
    scores = compute()
    if path is not None:
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
    atomic.write_text(out / "scores.csv", "\n".join(lines) + "\n")
    atomic.write_bytes(out / "scores.npz", _npz_bytes(arrays))
    return out / "scores.csv", out / "scores.npz"


__all__ = ["IterationSettings", "InDistribution", "fit_in_distribution", "trajectory_scores", "baseline_scores",
           "score_images", "OODResult", "ood_benchmark", "split_heldout", "export_scores", "METHODS",
           "encode_unit"]
