"""Chamfer similarity, matched fraction and their nulls on sets with known answers."""
from __future__ import annotations

import numpy as np
import torch

from latentfield.probe.analyses.compare import chamfer_similarity, compare_sets, matched_fraction, pairwise
from latentfield.probe.workflows.compare import randomly_initialised


def _brute_chamfer(a: np.ndarray, b: np.ndarray) -> float:
    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    c = an @ bn.T
    return 0.5 * (c.max(1).mean() + c.max(0).mean())


def test_chamfer_and_matched_fraction_known_answers():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 20)).astype(np.float32)
    b = np.r_[a[:10] * 3.0, rng.normal(size=(25, 20))].astype(np.float32)  # 10 shared directions
    assert chamfer_similarity(a, a) == pytest_approx(1.0)
    assert chamfer_similarity(a, b) == pytest_approx(_brute_chamfer(a, b))
    assert chamfer_similarity(a, b) == pytest_approx(chamfer_similarity(b, a))
    assert matched_fraction(a, b, 0.99) == pytest_approx(20 / 65)  # 10 of A and 10 of B (of 30 + 35) find a match
    mats = pairwise([a, b, a])
    assert mats["chamfer"][0, 2] == pytest_approx(1.0) and mats["chamfer"][0, 1] < 1


def test_permutation_null_sits_below_a_true_match():
    rng = np.random.default_rng(1)
    centers = np.abs(rng.normal(size=(8, 64))) ** 3  # structured, non-negative (like images)
    a = centers + 0.05 * rng.normal(size=(8, 64))
    b = centers + 0.05 * rng.normal(size=(8, 64))
    res = compare_sets(a, b, n_perm=10)
    assert res["chamfer"] > res["null_permute"]["chamfer_mean"] + 3 * res["null_permute"]["chamfer_std"]
    assert res["matched_fraction"] == 1.0 and res["null_permute"]["matched_mean"] < 0.5
    assert res["chamfer_z"] > 3


def test_randomly_initialised_copy():
    from latentfield.adapters.demo import DemoAdapter, DemoAutoencoder
    torch.manual_seed(0)
    a = DemoAdapter(DemoAutoencoder(bottleneck=4, width=4))
    null = randomly_initialised(a, seed=1)
    assert null.fingerprint != a.fingerprint and null.latent_shape == a.latent_shape
    assert randomly_initialised(a, seed=1).fingerprint == null.fingerprint  # seeded
    x = torch.rand(2, 1, 32, 32)
    assert null.f(a.encode(x)).shape == (2, 4)


def pytest_approx(v):
    import pytest
    return pytest.approx(v, abs=1e-5)
