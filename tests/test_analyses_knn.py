"""The paper's KNN baseline (mean distance to the K nearest in-distribution features), by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from latentfield.adapters import TorchAutoencoder
from latentfield.probe.analyses.knn import knn_mean_distance
from latentfield.probe.workflows.ood import METHODS, fit_in_distribution, score_images
from latentfield.probe.rundir import ProbeConfig


def test_mean_distance_on_a_line():
    ref = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]])
    q = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    # q0: neighbours at 0, 1, 2 -> (0 + 1 + 2) / 3; q1: 1, 1, 2 -> 4 / 3; q2: 2, sqrt(5), sqrt(13)
    want = [1.0, 4 / 3, (2 + 5 ** 0.5 + 13 ** 0.5) / 3]
    np.testing.assert_allclose(knn_mean_distance(q, ref, k=3), want, rtol=1e-6)
    # K beyond the set size is capped: mean over all four (the paper's K = 2000 on a small set)
    np.testing.assert_allclose(knn_mean_distance(q[:1], ref), [(1 + 0 + 2 + 6) / 4], rtol=1e-6)
    # normalised variant: unit vectors (1, 0) x3 and (0, 1) -> q0 sits on three of them at distance 0
    np.testing.assert_allclose(knn_mean_distance(q[:1], ref[1:], k=3, normalize=True), [0.0], atol=1e-6)
    with pytest.raises(ValueError):
        knn_mean_distance(q, ref, k=0)


def test_wired_into_the_ood_baselines():
    """Identity autoencoder on 4-pixel images: features are the pixels, so knn_mean is the closed form."""
    model = TorchAutoencoder(lambda x: x.flatten(1), lambda z: z.view(-1, 1, 2, 2), image_shape=(1, 2, 2))
    g = torch.Generator().manual_seed(0)
    fit = torch.rand(30, 1, 2, 2, generator=g)
    test = torch.rand(5, 1, 2, 2, generator=g)
    ind = fit_in_distribution(model, fit, ProbeConfig(tol=1e-6, max_steps=5))
    out = score_images(model, test, ind, ProbeConfig(tol=1e-6, max_steps=5)).methods(ind.fit_set)
    assert "knn_mean" in METHODS and {"knn", "knn_mean", "mahalanobis", "reconstruction"} <= set(out)
    d = torch.cdist(test.flatten(1).double(), fit.flatten(1).double())  # K = min(2000, 30) = all 30
    np.testing.assert_allclose(out["knn_mean"], d.mean(1).numpy(), rtol=1e-5)
    assert ind.baselines.k_mean == 30 and ind.baselines.notes() == [
        "knn_mean: the paper's K = 2000 exceeds the 30 in-distribution images; K = 30 used (the mean distance to "
        "all of them)"]
