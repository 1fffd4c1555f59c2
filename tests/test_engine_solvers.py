"""Anderson acceleration against plain iteration: speed, per-seed independence, saddles, demo agreement."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentfield.adapters import TorchAutoencoder, load_adapter
from latentfield.probe.engine import CONVERGED, SOLVERS, iterate
from latentfield.probe.rundir import ProbeConfig, run_probe
from latentfield.probe.engine.seeds import make_seeds
from latentfield.probe.engine.solvers import AndersonSolver, RelaxationSolver


def vector_map(fn, dim: int) -> TorchAutoencoder:
    return TorchAutoencoder(lambda x: x.flatten(1), lambda z: fn(z).view(-1, 1, 1, dim), image_shape=(1, 1, dim),
                            name="analytic")


def affine_map(basis: torch.Tensor, spectrum: torch.Tensor, b: torch.Tensor):
    """f(z) = A z + b with A = basis diag(spectrum) basis^-1 (float64 in, float32 map); returns (f, z*)."""
    a = basis @ torch.diag(spectrum) @ torch.linalg.inv(basis)
    z_star = torch.linalg.solve(torch.eye(len(b), dtype=torch.float64) - a, b).float()
    af, bf = a.float(), b.float()
    return (lambda z: z @ af.T + bf), z_star


def slow_contraction(d: int = 16, rho: float = 0.97):
    """f(z) = A z + b, A non-normal with spectrum in [-0.5, rho]: plain iteration crawls at rate rho."""
    g = torch.Generator().manual_seed(1)
    s = torch.eye(d, dtype=torch.float64) + 0.3 * torch.randn(d, d, generator=g, dtype=torch.float64)
    return affine_map(s, torch.linspace(-0.5, rho, d, dtype=torch.float64),
                      torch.randn(d, generator=g, dtype=torch.float64))


def test_anderson_is_registered_and_needs_far_fewer_evaluations():
    assert SOLVERS["anderson"] is AndersonSolver
    f, z_star = slow_contraction()
    z0 = make_seeds("gaussian", range(16), (16,))
    plain = iterate(f, z0, tol=1e-8, max_steps=3000)
    fast = iterate(f, z0, tol=1e-8, max_steps=3000, solver=AndersonSolver())
    assert (plain.status == CONVERGED).all() and (fast.status == CONVERGED).all()
    assert fast.n_evals * 3 < plain.n_evals
    torch.testing.assert_close(fast.end, z_star.expand(16, -1), atol=1e-3, rtol=1e-4)  # |z*| ~ 100


@pytest.mark.parametrize("solver", [AndersonSolver, RelaxationSolver])
def test_solver_state_survives_compaction_and_refill(solver):
    # Per-seed state: a seed's path must not depend on which other seeds share its batch.
    f = lambda z: torch.tanh(1.5 * z + 0.3 * z.roll(1, 1))  # noqa: E731 - nonlinear, couples coordinates
    z0 = make_seeds("gaussian", range(23), (5,), seed=4)
    ref = iterate(f, z0, tol=1e-8, max_steps=300, solver=solver(), batch_size=64)
    small = iterate(f, z0, tol=1e-8, max_steps=300, solver=solver(), batch_size=4)
    np.testing.assert_array_equal(ref.steps, small.steps)
    np.testing.assert_array_equal(ref.status, small.status)
    torch.testing.assert_close(ref.end, small.end, atol=1e-6, rtol=0)
    conv = ref.status == CONVERGED
    assert conv.sum() >= 15 and len(set(ref.steps[conv].tolist())) > 5  # seeds leave the batch at different times
    if solver is AndersonSolver:
        assert (ref.steps[conv] > AndersonSolver().warmup).sum() >= 5  # ... after the mixing has started


def test_safeguard_takes_the_plain_step_when_the_residual_grows():
    # f(z) = 0.5 z: from x0 the stored plain step f(x0) is the fallback when an extrapolation gets worse.
    solver = AndersonSolver(warmup=0, restart_factor=1.0)
    z = torch.tensor([[4.0, -2.0]])
    state = solver.init_state(z)
    z1, r2, state = solver.step(lambda v: 0.5 * v, z, state)
    torch.testing.assert_close(r2, torch.tensor([5.0]))  # ||f(x0) - x0||^2 = 4 + 1
    state["prev"] = torch.tensor([1e-3], dtype=torch.float64)  # pretend the last residual was tiny
    z2, _, state = solver.step(lambda v: 0.5 * v, z1, state)
    torch.testing.assert_close(z2, 0.5 * z)  # rejected: back to f(x0), no extra evaluation
    assert bool(state["plain"][0]) and int(state["n"][0]) == 1


SADDLE_CENTER = torch.tensor([1.0, -1.0, 0.0, 1.0])


def saddle_map(z: torch.Tensor) -> torch.Tensor:
    """Around c = (1, -1, 0, 1): contractions 0.5, -0.3, 0.8 and y -> y + 0.05 y (1 - y^2) on the third axis.

    Fixed points c + (0, 0, y, 0) for y in {-1, 0, 1}: y = +-1 attract (rho 0.9), y = 0 is a saddle
    (eigenvalue 1.05). Plain iteration leaves the saddle; Anderson, a root finder, can land on it.
    """
    u = z - SADDLE_CENTER
    y = u[:, 2]
    return SADDLE_CENTER + torch.stack([0.5 * u[:, 0], -0.3 * u[:, 1], y + 0.05 * y * (1 - y * y), 0.8 * u[:, 3]], 1)


def test_anderson_finds_the_saddle_and_the_classifier_rejects_it():
    adapter = vector_map(saddle_map, 4)
    cfg = dict(n_seeds=24, init="uniform", low=-0.05, high=0.05, tol=1e-12)
    plain = run_probe(adapter, ProbeConfig(**cfg, verify=True), progress=False)
    fast = run_probe(adapter, ProbeConfig(**cfg, solver="anderson"), progress=False)  # verified by default
    assert plain.counts["converged"] == fast.counts["converged"] == 24
    assert plain.summary()["stability"]["n_saddle_or_repeller"] == 0
    st = fast.summary()["stability"]
    kinds = [p["kind"] for p in st["per_attractor"]]
    assert st["n_attractor"] == 2 and st["n_saddle_or_repeller"] >= 1
    saddles = fast.attractors[[k == "saddle_or_repeller" for k in kinds]]
    torch.testing.assert_close(saddles, SADDLE_CENTER.expand_as(saddles), atol=1e-3, rtol=0)
    radius = [p["spectral_radius"] for p, k in zip(st["per_attractor"], kinds) if k == "saddle_or_repeller"]
    assert all(abs(r - 1.05) < 0.0105 for r in radius)
    good = fast.attractors[[k == "attractor" for k in kinds]]
    assert sorted(good[:, 2].round().tolist()) == [-1.0, 1.0]
    assert fast.n_evals < plain.n_evals


def verified(result) -> torch.Tensor:
    kinds = [p["kind"] for p in result.stability["per_attractor"]]
    return result.attractors[[k == "attractor" for k in kinds]].flatten(1)


@pytest.fixture
def one_thread():
    # Two threads on a loaded 2-core machine made this test 10-30x slower (OpenMP threads wait on each other).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_plain_and_anderson_agree_on_the_demo_verified_attractors(one_thread):
    adapter = load_adapter("demo:memorize")  # bundled with the package: missing is a failure, not a skip
    cfg = dict(n_seeds=12, tol=1e-6, max_steps=300)
    plain = run_probe(adapter, ProbeConfig(**cfg, verify=True), progress=False)
    fast = run_probe(adapter, ProbeConfig(**cfg, solver="anderson"), progress=False)
    a, b = verified(plain), verified(fast)
    assert len(a) >= 1
    cos = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    assert (cos.max(1).values > 0.99).all()  # every verified attractor of plain iteration is found by Anderson
    # Anderson's other verified attractors are attractors of plain iteration too: it stays there.
    extra = b[cos.max(0).values <= 0.99]
    if len(extra):
        z = extra.clone()
        for _ in range(50):
            z = adapter.f(z)
        assert (torch.nn.functional.cosine_similarity(z, extra) > 0.99).all()
    assert fast.counts["converged"] >= plain.counts["converged"] - 1
    assert fast.n_evals < plain.n_evals
    assert math.isfinite(fast.summary()["stability"]["per_attractor"][0]["spectral_radius"])
