"""The probe engine on analytic maps whose answers are known in closed form."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentfield.adapters import TorchAutoencoder
from latentfield.probe.engine.attractors import deduplicate
from latentfield.probe.engine import CONVERGED, DIVERGED, MAX_STEPS, iterate
from latentfield.probe.rundir import ProbeConfig, run_probe
from latentfield.probe.engine.seeds import make_seeds


def vector_map(fn, dim: int) -> TorchAutoencoder:
    """An adapter whose latent map is ``fn`` on (B, dim) vectors: E flattens, D applies fn."""
    return TorchAutoencoder(lambda x: x.flatten(1), lambda z: fn(z).view(-1, 1, 1, dim), image_shape=(1, 1, dim),
                            name="analytic")


def test_linear_contraction_reaches_its_known_fixed_point():
    # f(z) = A z + b with spectral radius 0.5 has the unique fixed point (I - A)^-1 b.
    g = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    a = (q @ torch.diag(torch.tensor([0.5, 0.4, 0.3, -0.2, 0.1, -0.45], dtype=torch.float64)) @ q.T).float()
    b = torch.randn(6, generator=g)
    expected = torch.linalg.solve(torch.eye(6) - a, b)
    res = run_probe(vector_map(lambda z: z @ a.T + b, 6), ProbeConfig(n_seeds=40, sigma=3.0, tol=1e-10), progress=False)
    assert res.counts["converged"] == 40
    assert len(res.attractors) == 1 and len(res.attractors_euclid) == 1
    torch.testing.assert_close(res.attractors[0].flatten(), expected, atol=1e-4, rtol=0)
    assert res.basin_sizes.tolist() == [40]
    # Each step shrinks the error by at most 0.5: steps are bounded by log(tol)/log(0.5) + a margin.
    assert res.steps.max() < math.log(1e-10 / 1e4) / math.log(0.5)


def test_two_basins_with_known_fractions():
    # f(z) = tanh(3 z) in 1-D: stable points +-0.995, unstable 0; a seed's basin is the sign of its start.
    n = 400
    res = run_probe(vector_map(lambda z: torch.tanh(3 * z), 1), ProbeConfig(n_seeds=n, init="uniform", low=-1.0,
                                                                           high=3.0, euclid_rtol=0.01), progress=False)
    assert res.counts["converged"] == n
    z_star = torch.tensor(1.0, dtype=torch.float64)
    for _ in range(200):  # the positive root of tanh(3 z) = z, in float64
        z_star = torch.tanh(3 * z_star)
    found = np.sort(res.attractors.flatten().numpy())
    np.testing.assert_allclose(found, [-float(z_star), float(z_star)], atol=1e-4)
    seeds = make_seeds("uniform", range(n), (1, 1, 1), 0, low=-1.0, high=3.0).flatten()
    pos = int(np.flatnonzero(res.attractors.flatten().numpy() > 0)[0])
    assert ((res.labels == pos) == (seeds > 0).numpy()).all()
    assert abs(res.basin_sizes[pos] / n - 0.75) < 0.07  # uniform on [-1, 3]: 3/4 of seeds are positive


def test_diverging_map_is_reported_as_diverged_never_as_attractor():
    res = run_probe(vector_map(lambda z: 2.0 * z + 1.0, 3), ProbeConfig(n_seeds=10, max_norm=1e4), progress=False)
    assert res.counts == {"converged": 0, "max_steps": 0, "diverged": 10}
    assert len(res.attractors) == 0 and (res.labels == -1).all()
    assert res.steps.max() < 20  # norm 1e4 is passed after ~14 doublings


def test_non_finite_values_count_as_diverged():
    out = iterate(lambda z: torch.log(z - 10.0), torch.ones(4, 2), max_steps=50)
    assert (out.status == DIVERGED).all() and (out.steps == 1).all()


def test_two_cycle_is_never_reported_as_converged():
    # f(z) = -z alternates between z0 and -z0 forever.
    res = run_probe(vector_map(lambda z: -z, 4), ProbeConfig(n_seeds=8, max_steps=200), progress=False)
    assert res.counts["max_steps"] == 8 and res.counts["converged"] == 0
    assert len(res.attractors) == 0 and (res.steps == 200).all()


def test_active_set_compaction_spends_evaluations_only_on_unfinished_seeds():
    # z -> 0.5 z: a seed of norm r needs about log2(r^2 / tol)/2 steps; far seeds take longer.
    z0 = torch.cat([torch.full((10, 2), 1e-3), torch.full((10, 2), 1e3)])
    out = iterate(lambda z: 0.5 * z, z0, tol=1e-12, batch_size=20)
    assert (out.status == CONVERGED).all()
    assert out.steps[:10].max() < out.steps[10:].min()
    assert out.n_evals == int(out.steps.sum())  # no evaluation is spent on a finished seed


def test_max_steps_status_and_step_counts():
    out = iterate(lambda z: 0.999 * z, torch.ones(3, 5), tol=1e-30, max_steps=7)
    assert (out.status == MAX_STEPS).all() and (out.steps == 7).all()


def test_deduplication_cosine_merges_scaled_copies_but_euclidean_does_not():
    a = torch.tensor([[1.0, 0.0], [2.0, 0.0], [1.001, 0.0], [0.0, 1.0]])
    reps, labels = deduplicate(a, "cosine", 0.99)
    assert reps.tolist() == [0, 3] and labels.tolist() == [0, 0, 0, 1]
    reps, labels = deduplicate(a, "euclidean", 0.02)
    assert reps.tolist() == [0, 1, 3] and labels.tolist() == [0, 1, 0, 2]


@pytest.mark.parametrize("init", ["gaussian", "uniform", "orthogonal"])
def test_seeds_depend_only_on_seed_and_index(init):
    full = make_seeds(init, range(0, 700), (3, 4), seed=5)
    part = make_seeds(init, range(600, 700), (3, 4), seed=5)
    torch.testing.assert_close(full[600:], part, rtol=0, atol=0)
    assert not torch.equal(make_seeds(init, range(10), (3, 4), seed=6), full[:10])


def test_orthogonal_seeds_are_orthogonal_with_gaussian_norm():
    s = make_seeds("orthogonal", range(12), (12,), seed=0, sigma=2.0)
    gram = s @ s.T
    torch.testing.assert_close(gram, torch.eye(12) * 4.0 * 12, atol=1e-3, rtol=1e-4)
