"""Adaptive over-relaxation (``--solver relax``): speed on a drift, safeguard, no saddles, demo agreement.

Per-seed state across batch sizes is tested with Anderson's in test_engine_solvers.py."""
from __future__ import annotations

import pytest
import torch

from latentfield.adapters import load_adapter
from latentfield.probe.engine import CONVERGED, SOLVERS, iterate, make_solver
from latentfield.probe.rundir import ProbeConfig, run_probe
from latentfield.probe.engine.seeds import make_seeds
from latentfield.probe.engine.solvers import RelaxationSolver

from test_engine_solvers import SADDLE_CENTER, affine_map, saddle_map, vector_map, verified


def slow_drift(d: int = 12, slow: float = 0.99):
    """f(z) = A z + b, A = Q diag(slow, 0.6 .. 0.9) Q^T: a slow drift along one direction, the others
    contracting. Every stretch h <= 4 keeps the fast modes stable (|1 - h (1 - 0.6)| < 1)."""
    g = torch.Generator().manual_seed(2)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    spec = torch.cat([torch.tensor([slow], dtype=torch.float64), torch.linspace(0.6, 0.9, d - 1, dtype=torch.float64)])
    return affine_map(q, spec, torch.randn(d, generator=g, dtype=torch.float64))


def test_relax_is_registered_and_stretches_a_slow_drift():
    assert SOLVERS["relax"] is RelaxationSolver
    f, a = slow_drift()
    z0 = make_seeds("gaussian", range(16), (12,))
    plain = iterate(f, z0, tol=1e-10, max_steps=5000)
    fast = iterate(f, z0, tol=1e-10, max_steps=5000, solver=RelaxationSolver())
    assert (plain.status == CONVERGED).all() and (fast.status == CONVERGED).all()
    assert fast.n_evals * 3 < plain.n_evals  # the slow mode contracts at 1 - 4 (1 - 0.99) = 0.96, not 0.99
    torch.testing.assert_close(fast.end, a.expand(16, -1), atol=1e-3, rtol=0)


def test_a_residual_jump_takes_the_stored_plain_step():
    solver, f = RelaxationSolver(), (lambda v: 0.8 * v)
    z = torch.tensor([[4.0, -2.0]])
    state = solver.init_state(z)
    z1, r2, state = solver.step(f, z, state)
    torch.testing.assert_close(r2, torch.tensor([0.8]))  # ||f(x0) - x0||^2 = 0.2^2 (16 + 4)
    torch.testing.assert_close(z1, f(z))  # first step: nothing to compare with, h = 1
    z2, _, state = solver.step(f, z1, state)
    assert float(state["h"][0]) == 2.0  # the residual kept its direction: the stretch doubles
    torch.testing.assert_close(z2, z1 + 2 * (f(z1) - z1))
    state["prev"] = torch.tensor([1e-4], dtype=torch.float64)  # pretend the last residual was tiny
    z3, _, state = solver.step(f, z2, state)
    torch.testing.assert_close(z3, f(z1))  # rejected: back to the stored plain step from z1, no evaluation
    assert not bool(state["have"][0]) and float(state["h"][0]) == 1.0


def test_relax_does_not_land_on_the_saddle():
    # Anderson finds the saddle of this map (test_engine_solvers); a stretch h >= 1 cannot stabilise it.
    adapter = vector_map(saddle_map, 4)
    res = run_probe(adapter, ProbeConfig(n_seeds=24, init="uniform", low=-0.05, high=0.05, tol=1e-12,
                                         solver="relax"), progress=False)  # verified by default
    st = res.summary()["stability"]
    assert res.counts["converged"] == 24 and st["n_saddle_or_repeller"] == 0 and st["n_attractor"] == 2
    y = sorted(verified(res)[:, 2].round().tolist())
    assert y == [-1.0, 1.0] and not torch.isclose(res.attractors, SADDLE_CENTER).all(1).any()


def test_options_are_checked():
    with pytest.raises(ValueError, match="h_max must be a number >= 1"):
        make_solver("relax", {"h_max": 0.5})
    with pytest.raises(ValueError, match="unknown option 'm' for solver 'relax'"):
        make_solver("relax", {"m": 5})
    assert make_solver("relax", {"grow": 1.5, "align": 0.8}).align == 0.8


def test_plain_and_relax_agree_on_the_demo_verified_attractors():
    adapter = load_adapter("demo:generalize")  # bundled with the package: missing is a failure, not a skip
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = dict(n_seeds=16, tol=1e-6, max_steps=400)
        plain = run_probe(adapter, ProbeConfig(**cfg, verify=True), progress=False)
        fast = run_probe(adapter, ProbeConfig(**cfg, solver="relax"), progress=False)
    finally:
        torch.set_num_threads(before)
    a, b = verified(plain), verified(fast)
    assert len(a) >= 1 and fast.counts["converged"] == plain.counts["converged"] == 16
    cos = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    assert (cos.max(1).values > 0.99).all() and (cos.max(0).values > 0.99).all()  # the same verified set
    assert fast.summary()["stability"]["n_saddle_or_repeller"] == 0
    assert fast.n_evals * 1.5 < plain.n_evals
