"""Jacobian stability of fixed points on maps whose spectra are known in closed form."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from latentfield.adapters import TorchAutoencoder
from latentfield.probe.rundir import ProbeConfig, load_result, run_probe
from latentfield.probe.engine.stability import analyze_fixed_point, classify, predict_steps, stopping_error, verify_fixed_points


def vector_map(fn, dim: int, name: str = "analytic") -> TorchAutoencoder:
    """An adapter whose latent map is ``fn`` on (B, dim) vectors: E flattens, D applies fn."""
    return TorchAutoencoder(lambda x: x.flatten(1), lambda z: fn(z).view(-1, 1, 1, dim), image_shape=(1, 1, dim),
                            name=name)


def non_normal_matrix(d: int, radius: float, seed: int = 0) -> torch.Tensor:
    """S D S^-1 with a dominant complex pair radius * exp(+-0.7i) and the rest in [-0.6, 0.6] * radius.

    S is far from orthogonal, so ||A||_2 > rho(A): the radius and the Lipschitz constant differ.
    """
    g = torch.Generator().manual_seed(seed)
    s = torch.eye(d, dtype=torch.float64) + 0.4 * torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d) * 3
    blk = torch.zeros(d, d, dtype=torch.float64)
    c, sn = radius * math.cos(0.7), radius * math.sin(0.7)
    blk[0, 0] = blk[1, 1] = c
    blk[0, 1], blk[1, 0] = -sn, sn
    blk[2:, 2:] = torch.diag(torch.linspace(-0.6, 0.6, d - 2, dtype=torch.float64) * radius)
    return s @ blk @ torch.linalg.inv(s)


def affine_adapter(a: torch.Tensor, seed: int = 1) -> tuple[TorchAutoencoder, torch.Tensor]:
    """f(z) = A z + b and its fixed point (I - A)^-1 b."""
    b = torch.randn(len(a), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z_star = torch.linalg.solve(torch.eye(len(a), dtype=torch.float64) - a, b)
    af, bf = a.float(), b.float()
    return vector_map(lambda z: z @ af.T + bf, len(a)), z_star.float()


@pytest.mark.parametrize("d, method", [(12, "dense"), (400, "krylov")])
def test_linear_map_radius_and_lipschitz_within_one_percent(d, method):
    a = non_normal_matrix(d, 0.9)
    adapter, z_star = affine_adapter(a)
    s = verify_fixed_points(adapter, z_star[None])[0]
    true_lip = float(torch.linalg.matrix_norm(a, 2))
    assert true_lip > 1.05  # the test map is genuinely non-normal
    assert s.method == method
    assert abs(s.spectral_radius - 0.9) < 0.009
    assert abs(s.lipschitz - true_lip) < 0.01 * true_lip
    assert abs(abs(np.angle(s.dominant_eigenvalue)) - 0.7) < 0.01  # the complex pair itself, not a real mode
    assert s.kind == "attractor" and s.residual < 1e-3
    assert s.n_products < (d + 1 if method == "dense" else 200)  # tens of products, not d


def test_classification_of_repeller_and_marginal_points():
    for radius, kind in [(1.25, "saddle_or_repeller"), (1.0, "marginal"), (0.5, "attractor")]:
        adapter, z_star = affine_adapter(non_normal_matrix(80, radius, seed=3))
        s = verify_fixed_points(adapter, z_star[None])[0]
        assert abs(s.spectral_radius - radius) < 0.01 * radius
        assert s.kind == kind
    assert classify(float("nan")) == "saddle_or_repeller"
    assert classify(1.005) == "marginal" and classify(0.98) == "attractor" and classify(1.02) == "saddle_or_repeller"


def test_non_differentiable_map_falls_back_to_finite_differences():
    # D goes through numpy, which autograd cannot follow.
    a = non_normal_matrix(100, 0.8, seed=5)
    an, bn = a.float().numpy(), torch.randn(100, generator=torch.Generator().manual_seed(2)).numpy()
    adapter = vector_map(lambda z: torch.from_numpy(z.detach().numpy() @ an.T + bn), 100)
    z_star = torch.from_numpy(np.linalg.solve(np.eye(100) - a.numpy(), bn)).float()
    s = verify_fixed_points(adapter, z_star[None])[0]
    assert s.method == "finite_differences"
    assert abs(s.spectral_radius - 0.8) < 0.008
    assert 0.8 * 0.99 <= s.lipschitz <= float(torch.linalg.matrix_norm(a, 2)) * 1.01  # a lower bound here


def test_detached_graph_is_detected():
    # A map that silently detaches: jvp returns zeros, the finite-difference check must catch it.
    adapter = vector_map(lambda z: 0.7 * z.detach() + 1.0, 8)
    s = analyze_fixed_point(adapter.f_differentiable, torch.full((8,), 1 / 0.3), f_eval=adapter.f)
    assert s.method == "finite_differences" and abs(s.spectral_radius - 0.7) < 0.007


def test_predicted_steps_follow_the_measured_steps():
    # Symmetric contraction with dominant eigenvalue 0.9: the asymptotic law log(eps/e0)/log(rho) holds.
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))
    a = q @ torch.diag(torch.tensor([0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.2, -0.3, -0.4], dtype=torch.float64)) @ q.T
    adapter, z_star = affine_adapter(a)
    res = run_probe(adapter, ProbeConfig(n_seeds=32, tol=1e-10, verify=True), progress=False)
    st = res.summary()["stability"]
    assert set(st) == {"n_attractor", "n_saddle_or_repeller", "n_marginal", "per_attractor", "n_euclid_attractor",
                       "n_euclid_saddle_or_repeller", "n_euclid_marginal", "n_clusters_with_non_attractor",
                       "n_hidden_non_attractor", "per_euclid", "verify_cost"}
    assert st["n_euclid_attractor"] == 1 and st["verify_cost"]["euclid_points_analysed"] == 0  # one point, reused
    assert (st["n_attractor"], st["n_saddle_or_repeller"], st["n_marginal"]) == (1, 0, 0)
    (p,) = st["per_attractor"]
    assert set(p) == {"spectral_radius", "lipschitz", "kind", "predicted_steps", "measured_steps_median"}
    assert abs(p["predicted_steps"] - p["measured_steps_median"]) < 0.1 * p["measured_steps_median"]
    assert predict_steps(1.2, 1.0, 1e-3) is None and predict_steps(0.5, 1e-4, 1e-3) == 0.0
    assert stopping_error(1e-6, 0.9) == pytest.approx(1e-3 / 0.1)


def test_verified_summary_is_saved_and_loaded(tmp_path):
    adapter, _ = affine_adapter(non_normal_matrix(6, 0.7, seed=2))
    res = run_probe(adapter, ProbeConfig(n_seeds=8, verify=True), out=tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["stability"] == res.summary()["stability"]
    assert load_result(tmp_path / "run").stability == saved["stability"]
    plain = run_probe(adapter, ProbeConfig(n_seeds=8), progress=False)
    assert plain.stability is None and "stability" not in plain.summary()
