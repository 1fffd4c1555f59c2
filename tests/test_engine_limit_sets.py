"""Limit sets of unconverged seeds on maps whose dynamics are known exactly: cycles, an invariant circle,
the Henon and logistic maps, a mixed map, a fixed point, drift and escape."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentfield.probe.engine import iterate
from latentfield.probe.engine.limit_sets import (classify_orbits, cycle_distance, group_limit_sets, same_cycle)
from latentfield.probe.engine.types import MAX_STEPS

TOL = 1e-6
HENON_LYAPUNOV = 0.41922  # a = 1.4, b = 0.3 (Sprott, "Chaos and Time-Series Analysis", 2003)
LOGISTIC_LYAPUNOV = math.log(2.0)  # r = 4, exact
GOLDEN = (math.sqrt(5) - 1) / 2


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cycle_map(perm: list[int], center: torch.Tensor, rho: float = 0.5):
    """f(z) = P(a_k + rho (z - a_k)), a_k the cycle point nearest z, a_{k+1} = P a_k, P the coordinate
    permutation ``perm``. The orbit of ``center`` under P is an attracting cycle of P's order p; J = rho P,
    so the multipliers of f^p are all rho^p. Returns (f, cycle points (p, d))."""
    pts = [center]
    while True:
        nxt = pts[-1][perm]
        if torch.equal(nxt, center):
            break
        pts.append(nxt)
    cyc = torch.stack(pts)

    def f(z: torch.Tensor) -> torch.Tensor:
        a = cyc[(z[:, None] - cyc[None]).pow(2).sum(-1).argmin(1)]
        return (a + rho * (z - a))[:, perm]
    return f, cyc


def spread_center(d: int) -> torch.Tensor:
    return torch.linspace(-2.0, 2.0, d, dtype=torch.float64) + 0.3


@pytest.mark.parametrize("period,dim", [(2, 4), (3, 8), (5, 6)])
def test_cycles_named_with_period_multipliers_and_one_set_across_phases(period, dim):
    perm = [(i + 1) % period if i < period else i for i in range(dim)]
    f, cyc = cycle_map(perm, spread_center(dim))
    assert len(cyc) == period
    # seeds around every point of the cycle: they settle on it at different phases
    z = cyc.repeat(3, 1) + 0.3 * torch.randn(3 * period, dim, generator=gen(period), dtype=torch.float64)
    res = classify_orbits(f, z, tol=TOL, jvp=f, n_lyapunov=200, n_blocks=4)
    assert res.kinds == ["cycle"] * len(z)
    assert {s.period for s in res.seeds} == {period}
    for s in res.seeds:
        assert s.multipliers_max == pytest.approx(0.5 ** period, rel=1e-6)
        assert s.stability == "attractor"
        assert cycle_distance(s.points, cyc) < 1e-6
    phases = {int(torch.cdist(s.points[:1], cyc).argmin()) for s in res.seeds}
    assert len(phases) == period  # the seeds really are at different phases
    sets, labels = group_limit_sets(res)
    assert len(sets) == 1 and sets[0].n_seeds == len(z) and (labels == 0).all()
    assert sets[0].kind == "cycle" and sets[0].period == period and sets[0].points.shape == (period, dim)
    assert sets[0].lyapunov_max == pytest.approx(math.log(0.5), rel=1e-6)  # ln(rho^p) / p


def test_issue_example_three_cycle_in_8d_after_the_engine_gives_up():
    """The issue's map: every seed is on the 3-cycle within 30 steps, the engine reports max_steps."""
    perm = [1, 2, 0, 4, 5, 3, 6, 7]
    f, cyc = cycle_map(perm, spread_center(8))
    z0 = 2.0 * torch.randn(16, 8, generator=gen(0), dtype=torch.float64)
    it = iterate(f, z0, tol=TOL, max_steps=30)
    assert (it.status == MAX_STEPS).all()
    res = classify_orbits(f, it.end, tol=TOL, settle=0, n_lyapunov=200, n_blocks=4)  # finite differences
    assert res.kinds == ["cycle"] * 16 and {s.period for s in res.seeds} == {3}
    assert res.seeds[0].multipliers_max == pytest.approx(0.125, rel=1e-4)
    assert res.n_evals <= 16 * 3 + 16 * 2 + 8 * 3 * 2 * 3  # period search, cycle points, one dense FD Jacobian
    sets, _ = group_limit_sets(res)
    assert [(s.kind, s.period, s.n_seeds) for s in sets] == [("cycle", 3, 16)]


def test_same_cycle_is_phase_free_and_tells_cycles_apart():
    _, cyc = cycle_map([1, 2, 0, 3], spread_center(4))
    assert same_cycle(cyc, cyc.roll(1, 0)) and same_cycle(cyc, cyc.roll(2, 0))
    assert not same_cycle(cyc, cyc.flip(0))  # the same points in reverse order is another cycle
    assert not same_cycle(cyc, cyc + 0.1)


def rotation_map(contraction: float = 0.5):
    """(x, y, w): the radius is attracted to the circle r = 1 (r < 1.5) or r = 2 (r >= 1.5), the angle
    advances by 2 pi times the golden mean, w contracts. Largest Lyapunov exponent: 0."""
    c, s = math.cos(2 * math.pi * GOLDEN), math.sin(2 * math.pi * GOLDEN)

    def f(z: torch.Tensor) -> torch.Tensor:
        x, y, w = z.unbind(1)
        r = torch.sqrt(x * x + y * y)
        target = torch.where(r < 1.5, torch.ones_like(r), 2 * torch.ones_like(r))
        scale = (target + contraction * (r - target)) / r
        return torch.stack([scale * (c * x - s * y), scale * (s * x + c * y), 0.3 * w], 1)
    return f


def test_irrational_rotation_is_quasi_periodic_with_zero_exponent_and_circles_grouped():
    f = rotation_map()
    g = gen(3)
    angle = 2 * math.pi * torch.rand(8, generator=g, dtype=torch.float64)
    radius = torch.cat([torch.full((5,), 0.8), torch.full((3,), 2.4)]).double()
    z = torch.stack([radius * angle.cos(), radius * angle.sin(), torch.randn(8, generator=g, dtype=torch.float64)], 1)
    res = classify_orbits(f, z, tol=TOL, jvp=f, n_lyapunov=1000, n_blocks=10, n_samples=100)
    assert res.kinds == ["quasi_periodic"] * 8
    for s in res.seeds:
        n = (1000 // 11) * 10
        assert abs(s.lyapunov_max) <= 3 * s.lyapunov_err + math.log(n) / n
    sets, labels = group_limit_sets(res)
    assert [(s.kind, s.n_seeds) for s in sets] == [("quasi_periodic", 5), ("quasi_periodic", 3)]
    assert labels.tolist() == [0] * 5 + [1] * 3
    radii = [float(s.points[:, :2].norm(dim=1).mean()) for s in sets]
    assert radii == pytest.approx([1.0, 2.0], abs=1e-6)


def henon(z: torch.Tensor) -> torch.Tensor:
    x, y = z.unbind(1)
    return torch.stack([1 - 1.4 * x * x + y, 0.3 * x], 1)


def test_henon_is_chaotic_with_the_published_exponent_and_one_set():
    z = torch.tensor([0.1, 0.1], dtype=torch.float64) + 0.05 * torch.randn(4, 2, generator=gen(4), dtype=torch.float64)
    res = classify_orbits(henon, z, tol=TOL, jvp=henon, n_lyapunov=2000)
    assert res.kinds == ["chaotic"] * 4
    for s in res.seeds:
        assert s.lyapunov_max > 3 * s.lyapunov_err
        assert abs(s.lyapunov_max - HENON_LYAPUNOV) <= 4 * s.lyapunov_err
    sets, _ = group_limit_sets(res)
    assert len(sets) == 1 and sets[0].kind == "chaotic" and sets[0].n_seeds == 4
    assert abs(sets[0].lyapunov_max - HENON_LYAPUNOV) <= 4 * sets[0].lyapunov_err
    assert sets[0].lyapunov_err < 0.05


def test_logistic_r4_by_finite_differences_is_chaotic_with_ln2():
    def logistic(x: torch.Tensor) -> torch.Tensor:
        return 4.0 * x * (1.0 - x)

    z = 0.1 + 0.8 * torch.rand(4, 1, generator=gen(5), dtype=torch.float64)
    res = classify_orbits(logistic, z, tol=TOL, n_lyapunov=2000)  # no jvp: central differences
    assert res.kinds == ["chaotic"] * 4
    for s in res.seeds:
        assert abs(s.lyapunov_max - LOGISTIC_LYAPUNOV) <= 4 * s.lyapunov_err
    sets, _ = group_limit_sets(res)
    assert len(sets) == 1 and abs(sets[0].lyapunov_max - LOGISTIC_LYAPUNOV) <= 4 * sets[0].lyapunov_err


def test_close_return_along_a_repelling_cycle_is_not_a_cycle():
    """Logistic r = 4: the 2-cycle (5 +- sqrt 5) / 8 has multiplier -4, the fixed point 3/4 has -2."""
    def logistic(x: torch.Tensor) -> torch.Tensor:
        return 4.0 * x * (1.0 - x)

    a = (5 - math.sqrt(5)) / 8
    z = torch.tensor([[a + 1e-5], [0.75]], dtype=torch.float64)  # 3/4 is a float fixed point: it stays there
    res = classify_orbits(logistic, z, tol=TOL, settle=0, n_lyapunov=400, n_blocks=4)
    assert res.kinds == ["chaotic", "fixed_point"]
    assert res.seeds[1].stability == "saddle_or_repeller"
    assert res.seeds[1].multipliers_max == pytest.approx(2.0, rel=1e-4)
    unverified = classify_orbits(logistic, z[:1], tol=TOL, settle=0, n_lyapunov=400, n_blocks=4, multipliers=False)
    assert unverified.kinds == ["cycle"] and unverified.seeds[0].period == 2  # what the period test alone says


def mixed_map():
    """z0 < 0: contraction to (-1, +-1, 0, 0) by the sign of z1 (two fixed points, J = 0.5 I); z0 >= 0: the
    3-cycle of coordinates 1-3 around (1, ...). Each region is invariant, so the basins are known."""
    perm = [0, 2, 3, 1]
    cyc_f, cyc = cycle_map(perm, torch.tensor([1.0, 2.0, -1.0, 0.5], dtype=torch.float64))
    q_up = torch.tensor([-1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    q_down = torch.tensor([-1.0, -1.0, 0.0, 0.0], dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:
        q = torch.where(z[:, 1:2] > 0, q_up, q_down)
        return torch.where(z[:, :1] < 0, q + 0.5 * (z - q), cyc_f(z))
    return f, cyc, q_up, q_down


def test_mixed_map_fixed_points_and_cycle_with_basin_shares():
    f, cyc, q_up, q_down = mixed_map()
    z = torch.randn(24, 4, generator=gen(6), dtype=torch.float64)
    res = classify_orbits(f, z, tol=TOL, jvp=f, n_lyapunov=200, n_blocks=4)
    on_cycle = z[:, 0] >= 0
    up = ~on_cycle & (z[:, 1] > 0)
    assert res.kinds == ["cycle" if c else "fixed_point" for c in on_cycle.tolist()]
    sets, labels = group_limit_sets(res)
    expected = {("cycle", 3, 0): int(on_cycle.sum()), ("fixed_point", 1, 1): int(up.sum()),
                ("fixed_point", 1, -1): int((~on_cycle & ~up).sum())}
    got = {(s.kind, s.period, 0 if s.kind == "cycle" else int(torch.sign(s.points[0, 1]))): s.n_seeds for s in sets}
    assert got == expected and min(expected.values()) > 0
    assert [s.n_seeds for s in sets] == sorted((s.n_seeds for s in sets), reverse=True)
    assert torch.allclose(sets[[s.kind for s in sets].index("cycle")].points.abs().sum(1), cyc.abs().sum(1), atol=1e-4)
    for s in sets:
        assert s.multipliers_max == pytest.approx(0.5 ** s.period, rel=1e-6)
    for k, s in enumerate(sets):  # labels point at the right set
        assert (np.asarray(res.kinds)[labels == k] == s.kind).all()


def test_fixed_point_slow_seed_is_period_one_with_its_multiplier():
    c = torch.tensor([0.5, -1.0, 2.0, 0.0, 1.0], dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:
        return c + 0.9 * (z - c)

    z = c + torch.randn(3, 5, generator=gen(7), dtype=torch.float64)
    for jvp in (f, None):
        res = classify_orbits(f, z, tol=TOL, jvp=jvp, n_lyapunov=200, n_blocks=4)
        assert res.kinds == ["fixed_point"] * 3 and {s.period for s in res.seeds} == {1}
        assert res.seeds[0].multipliers_max == pytest.approx(0.9, rel=1e-4)
        sets, _ = group_limit_sets(res)
        assert len(sets) == 1 and torch.allclose(sets[0].points[0], c, atol=1e-2)


def test_drift_settling_and_escape():
    step = torch.tensor([0.01, 0.0, 0.0], dtype=torch.float64)
    z = torch.randn(2, 3, generator=gen(8), dtype=torch.float64)
    res = classify_orbits(lambda x: x + step, z, tol=TOL, n_lyapunov=400, n_blocks=4)
    assert res.kinds == ["unresolved"] * 2 and {s.reason for s in res.seeds} == {"drifting"}
    slow = classify_orbits(lambda x: 0.995 * x, 3 + z, tol=TOL, n_lyapunov=400, n_blocks=4)
    assert slow.kinds == ["unresolved"] * 2 and {s.reason for s in slow.seeds} == {"still settling"}
    away = classify_orbits(lambda x: 2 * x, z, tol=TOL, n_lyapunov=100, n_blocks=4)
    assert away.kinds == ["diverged"] * 2
    sets, labels = group_limit_sets(list(res.seeds) + list(slow.seeds) + list(away.seeds))
    assert [(s.kind, s.reason, s.n_seeds) for s in sets] == [("unresolved", "drifting", 2),
                                                             ("unresolved", "still settling", 2)]
    assert labels.tolist() == [0, 0, 1, 1, -1, -1]


def test_results_do_not_depend_on_batch_size():
    z = torch.tensor([0.1, 0.1], dtype=torch.float64) + 0.05 * torch.randn(3, 2, generator=gen(9), dtype=torch.float64)
    a = classify_orbits(henon, z, tol=TOL, jvp=henon, n_lyapunov=300, n_blocks=4)
    b = classify_orbits(henon, z, tol=TOL, jvp=henon, n_lyapunov=300, n_blocks=4, batch_size=1)
    assert [s.lyapunov_max for s in a.seeds] == pytest.approx([s.lyapunov_max for s in b.seeds], rel=1e-9)
