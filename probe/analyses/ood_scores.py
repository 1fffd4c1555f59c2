"""Out-of-distribution scores, as pure calculations over latents and features (higher = more OOD).

A test image x is encoded, z_0 = E(x), and iterated z_{t+1} = f(z_t) by the workflow
(``workflows.ood``), which feeds every trajectory point to a :class:`TrajectoryScorer`:

* ``trajectory``: the paper's score, mean over t = 0..T of min_k ||z_t - a_k|| (Euclidean, latent) to the
  in-distribution fit points a_k;
* ``field``: ||f(z_0) - z_0||, the field magnitude at the input (Theorem 1 ties f(z) - z to the score
  of the latent density, so it should grow where density is low);
* ``steps``: steps to converge; ``path_length``: sum_t ||z_{t+1} - z_t||;

and the baselines on the same features z_0 (:func:`fit_baselines`, :func:`baseline_scores`): ``knn``
(Sun et al. 2022: L2-normalised features, distance to the k-th nearest training feature), ``knn_mean``
(the paper's table: mean Euclidean distance to the K = min(2000, N) nearest training features,
``analyses.knn``), ``mahalanobis``
(one Gaussian, Ledoit-Wolf covariance, squared distance; in the top-512 PCA subspace when D > 512) and
``reconstruction`` (:func:`reconstruction_error`: per-image MSE of D(E(x)) against x, in [0, 1] pixels).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np
import torch

from ..index import AttractorIndex
from .knn import PAPER_KNN_K, effective_k, knn_mean_distance

if TYPE_CHECKING:
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

TRAJECTORY_METHODS = ("trajectory", "field", "steps", "path_length")
BASELINE_METHODS = ("knn", "knn_mean", "mahalanobis", "reconstruction")
METHODS = TRAJECTORY_METHODS + BASELINE_METHODS
MAHALANOBIS_MAX_DIM = 512


@dataclass(frozen=True)
class TrajectoryScores:
    """The trajectory scores of N inputs, (N,) each: ``distance`` maps each fit set's name to the paper's
    trajectory score against it (mean over t of the distance to the nearest fit point); ``field``
    (||f(z_0) - z_0||), ``path_length``; and, from the iteration, ``steps`` (float) and ``converged`` (bool)."""

    distance: dict[str, np.ndarray]
    field: np.ndarray
    path_length: np.ndarray
    steps: np.ndarray
    converged: np.ndarray


class TrajectoryScorer:
    """Accumulates the trajectory features of N seeds from their points, in any order of arrival.

    ``record(seeds, steps, z)`` takes seed indices (B,), step counts (B,) and points (B, *latent) (the
    engine's recorder signature, every step); points are consumed as they come, so memory is O(N D)
    whatever the trajectory lengths. ``indexes``: name -> L2 index of in-distribution fit points (each
    point's distance is measured to every one of them, in the one pass); ``z0`` (N, *latent): the start
    points.
    """

    def __init__(self, indexes: Mapping[str, AttractorIndex], z0: torch.Tensor) -> None:
        if not indexes or any(ix.metric != "l2" for ix in indexes.values()):
            raise ValueError("the trajectory score needs at least one L2 attractor index")
        n = len(z0)
        self.indexes = dict(indexes)
        self.dist_sum = {name: np.zeros(n) for name in self.indexes}
        self.count = np.zeros(n)
        self.path, self.field = np.zeros(n), np.zeros(n)
        self.last = z0.flatten(1).double().clone()

    def record(self, seeds: np.ndarray, steps: np.ndarray, z: torch.Tensor) -> None:
        zf = z.detach().flatten(1).double().cpu()
        for name, index in self.indexes.items():
            d, _ = index.nearest_attractor(zf)
            np.add.at(self.dist_sum[name], seeds, d)
        np.add.at(self.count, seeds, 1)
        moved = steps > 0
        if moved.any():
            step_len = (zf[moved] - self.last[seeds[moved]]).norm(dim=1).numpy()
            self.path[seeds[moved]] += step_len
            first = steps[moved] == 1
            self.field[seeds[moved][first]] = step_len[first]
        self.last[seeds] = zf

    def scores(self, steps: np.ndarray, converged: np.ndarray) -> TrajectoryScores:
        """The scores, with the iteration's ``steps`` (N,) and ``converged`` (N,) bool."""
        count = np.maximum(self.count, 1)
        return TrajectoryScores(distance={name: s / count for name, s in self.dist_sum.items()},
                                field=self.field.copy(), path_length=self.path.copy(),
                                steps=np.asarray(steps, dtype=np.float64), converged=np.asarray(converged, dtype=bool))


@dataclass
class Baselines:
    """The feature baselines fitted on in-distribution features (N, D): a cosine index for KNN (rank
    ``k``), the features themselves for the paper's mean-distance KNN (``k_mean`` nearest), a Ledoit-Wolf
    Gaussian (in a PCA subspace when D > ``MAHALANOBIS_MAX_DIM``). ``k_requested``: the rank asked for;
    ``k`` and ``k_mean`` are clamped to N (see :meth:`notes`)."""

    knn_index: AttractorIndex
    k: int
    features: np.ndarray
    gaussian: LedoitWolf
    projection: PCA | None
    k_requested: int = 0
    k_mean: int = PAPER_KNN_K

    def notes(self) -> list[str]:
        """One sentence per neighbour rank clamped to the number of in-distribution images (empty if none)."""
        n, out = len(self.features), []
        if self.k_requested > self.k:
            out.append(f"knn: k = {self.k_requested} exceeds the {n} in-distribution images; k = {self.k} used "
                       "(the distance to the farthest of them)")
        if self.k_mean < PAPER_KNN_K:
            out.append(f"knn_mean: the paper's K = {PAPER_KNN_K} exceeds the {n} in-distribution images; K = "
                       f"{self.k_mean} used (the mean distance to all of them)")
        return out


@dataclass(frozen=True)
class BaselineScores:
    """The feature baselines' scores (N,) each: ``knn``, ``knn_mean``, ``mahalanobis``."""

    knn: np.ndarray
    knn_mean: np.ndarray
    mahalanobis: np.ndarray


def fit_baselines(features: np.ndarray, k: int = 10) -> Baselines:
    """Fit the KNN and Mahalanobis baselines on in-distribution features (N, D); ``k`` >= 1 is the KNN
    rank, clamped to N (as the paper's K = 2000 is); :meth:`Baselines.notes` says when either was."""
    from sklearn.covariance import LedoitWolf  # lazy: keeps CLI start-up fast
    from sklearn.decomposition import PCA

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    # A D x D covariance is out of reach for large latents (TAEF2 at 256 px: D = 32768); fit the
    # Gaussian in the leading principal subspace of the in-distribution features instead.
    projection = None
    if features.shape[1] > MAHALANOBIS_MAX_DIM:
        projection = PCA(n_components=min(MAHALANOBIS_MAX_DIM, len(features) - 1), random_state=0).fit(features)
    g = projection.transform(features) if projection is not None else features
    return Baselines(knn_index=AttractorIndex.build(features, "cosine"), k=effective_k(k, len(features)),
                     features=features, gaussian=LedoitWolf().fit(g.astype(np.float64)), projection=projection,
                     k_requested=k, k_mean=effective_k(PAPER_KNN_K, len(features)))


def baseline_scores(features: np.ndarray, fitted: Baselines) -> BaselineScores:
    """The baselines' scores of encoder features (N, D)."""
    dcos, _ = fitted.knn_index.search(features, fitted.k)
    knn = np.sqrt(np.maximum(2.0 * dcos[:, -1], 0.0))  # L2 between unit vectors = sqrt(2 - 2 cos)
    g = fitted.projection.transform(features) if fitted.projection is not None else features
    return BaselineScores(knn=knn, knn_mean=knn_mean_distance(features, fitted.features, fitted.k_mean),
                          mahalanobis=fitted.gaussian.mahalanobis(g.astype(np.float64)))


def reconstruction_error(images: torch.Tensor, reconstructions: torch.Tensor) -> np.ndarray:
    """Per-image mean squared error (N,) between images and their reconstructions, both in [0, 1]."""
    return (reconstructions.float() - images.float()).pow(2).flatten(1).mean(1).numpy()


__all__ = ["TrajectoryScorer", "TrajectoryScores", "Baselines", "BaselineScores", "fit_baselines", "baseline_scores",
           "reconstruction_error", "METHODS", "TRAJECTORY_METHODS", "BASELINE_METHODS", "MAHALANOBIS_MAX_DIM"]
