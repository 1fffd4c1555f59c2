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
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..index import AttractorIndex
from .knn import PAPER_KNN_K, knn_mean_distance

if TYPE_CHECKING:
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

TRAJECTORY_METHODS = ("trajectory", "field", "steps", "path_length")
BASELINE_METHODS = ("knn", "knn_mean", "mahalanobis", "reconstruction")
METHODS = TRAJECTORY_METHODS + BASELINE_METHODS
MAHALANOBIS_MAX_DIM = 512


class TrajectoryScorer:
    """Accumulates the trajectory features of N seeds from their points, in any order of arrival.

    ``record(seeds, steps, z)`` takes seed indices (B,), step counts (B,) and points (B, *latent) (the
    engine's recorder signature, every step); points are consumed as they come, so memory is O(N D)
    whatever the trajectory lengths. ``index``: an L2 index of the in-distribution fit points; ``z0``
    (N, *latent): the start points.
    """

    def __init__(self, index: AttractorIndex, z0: torch.Tensor) -> None:
        if index.metric != "l2":
            raise ValueError("the trajectory score needs an L2 attractor index")
        n = len(z0)
        self.index = index
        self.dist_sum, self.count = np.zeros(n), np.zeros(n)
        self.path, self.field = np.zeros(n), np.zeros(n)
        self.last = z0.flatten(1).double().clone()

    def record(self, seeds: np.ndarray, steps: np.ndarray, z: torch.Tensor) -> None:
        zf = z.detach().flatten(1).double().cpu()
        d, _ = self.index.nearest_attractor(zf)
        np.add.at(self.dist_sum, seeds, d)
        np.add.at(self.count, seeds, 1)
        moved = steps > 0
        if moved.any():
            step_len = (zf[moved] - self.last[seeds[moved]]).norm(dim=1).numpy()
            self.path[seeds[moved]] += step_len
            first = steps[moved] == 1
            self.field[seeds[moved][first]] = step_len[first]
        self.last[seeds] = zf

    def scores(self) -> dict[str, np.ndarray]:
        """(N,) arrays ``trajectory``, ``field``, ``path_length``."""
        return {"trajectory": self.dist_sum / np.maximum(self.count, 1), "field": self.field.copy(),
                "path_length": self.path.copy()}


@dataclass
class Baselines:
    """The feature baselines fitted on in-distribution features (N, D): a cosine index for KNN (rank
    ``k``), a Ledoit-Wolf Gaussian (in a PCA subspace when D > ``MAHALANOBIS_MAX_DIM``)."""

    knn_index: AttractorIndex
    k: int
    features: np.ndarray
    gaussian: LedoitWolf
    projection: PCA | None


def fit_baselines(features: np.ndarray, k: int = 10) -> Baselines:
    """Fit the KNN and Mahalanobis baselines on in-distribution features (N, D)."""
    from sklearn.covariance import LedoitWolf  # lazy: keeps CLI start-up fast
    from sklearn.decomposition import PCA

    # A D x D covariance is out of reach for large latents (TAEF2 at 256 px: D = 32768); fit the
    # Gaussian in the leading principal subspace of the in-distribution features instead.
    projection = None
    if features.shape[1] > MAHALANOBIS_MAX_DIM:
        projection = PCA(n_components=min(MAHALANOBIS_MAX_DIM, len(features) - 1), random_state=0).fit(features)
    g = projection.transform(features) if projection is not None else features
    return Baselines(knn_index=AttractorIndex.build(features, "cosine"), k=min(k, len(features)), features=features,
                     gaussian=LedoitWolf().fit(g.astype(np.float64)), projection=projection)


def baseline_scores(features: np.ndarray, fitted: Baselines) -> dict[str, np.ndarray]:
    """``knn``, ``knn_mean`` and ``mahalanobis`` scores (N,) of encoder features (N, D)."""
    dcos, _ = fitted.knn_index.search(features, fitted.k)
    knn = np.sqrt(np.maximum(2.0 * dcos[:, -1], 0.0))  # L2 between unit vectors = sqrt(2 - 2 cos)
    g = fitted.projection.transform(features) if fitted.projection is not None else features
    return {"knn": knn, "knn_mean": knn_mean_distance(features, fitted.features, PAPER_KNN_K),
            "mahalanobis": fitted.gaussian.mahalanobis(g.astype(np.float64))}


def reconstruction_error(images: torch.Tensor, reconstructions: torch.Tensor) -> np.ndarray:
    """Per-image mean squared error (N,) between images and their reconstructions, both in [0, 1]."""
    return (reconstructions.float() - images.float()).pow(2).flatten(1).mean(1).numpy()


__all__ = ["TrajectoryScorer", "Baselines", "fit_baselines", "baseline_scores", "reconstruction_error", "METHODS",
           "TRAJECTORY_METHODS", "BASELINE_METHODS", "MAHALANOBIS_MAX_DIM"]
