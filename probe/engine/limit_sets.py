"""What a seed that did not converge settles on: a cycle, an invariant circle, a chaotic set, or nothing yet.

:func:`classify_orbits` takes the end points z (B, *latent) of seeds that ran to ``max_steps`` and spends a
bounded number of extra evaluations of f on each (all seeds of a chunk in one batch):

1. **Settle and period** (at most ``settle + max_period`` evaluations per seed): ``settle`` more steps, then
   from that base point x the smallest p <= ``max_period`` with ||f^p(x) - x||^2 < ``tol``. This is the
   engine's stopping rule applied to f^p, whose fixed points are the p-cycles of f, with the *same* ``tol``:
   near a cycle f^p(x) - x ~ (M - I) e (M the monodromy matrix, e the distance to the cycle point), so the
   test stops at the same distance sqrt(tol) / |1 - mu| from the cycle as the engine's rule does from a
   fixed point (``stability.stopping_error`` with the dominant multiplier mu). Scaling tol with p would
   only loosen that guarantee. p = 1 is a ``fixed_point`` (a seed that was only slow), p > 1 a ``cycle``;
   a periodic seed costs p - 1 more evaluations to collect its p points.
2. **Multipliers** (per distinct cycle, not per seed): the spectral radius of J of f^p at a cycle point
   (the same at every point of the cycle), with :class:`stability.JacobianOperator` on f^p: dense for
   <= ``DENSE_MAX`` dims (p * d products), otherwise ARPACK Arnoldi (at most p * ``ncv`` * (restarts + 1)
   products). A cycle is thus verified as a fixed point is: ``stability.classify`` of that radius. A
   repelling cycle (radius > 1 + ``stability.MARGIN``) is more likely a close return of an orbit that
   shadows it (chaotic orbits pass near their unstable cycles): such a seed goes on to step 3 and stays a
   cycle (a saddle or repeller) only if every point of its orbit sample is within ``tol`` (squared) of it.
3. **Lyapunov exponent, boundedness, recurrence** (``n_lyapunov`` steps, one JVP or three evaluations
   each, for seeds with no period): Benettin's method: a tangent vector (seeded, unit) is pushed along the
   orbit by J (``torch.func.jvp`` on ``jvp``, a differentiable f; otherwise central differences of f with a
   step ``fd_eps`` * max(sqrt(d), ||x||)) and renormalised every step; the logs of its growth are summed
   in float64 over ``n_blocks`` + 1 equal blocks, the first being the tangent's alignment (dropped).
   lambda = mean of the block means (natural log per step), err = their standard error.
   ``n_samples`` orbit points are kept.

The decision for a seed without a period, in this order:

- non-finite or ||x|| > ``max_norm`` anywhere: ``diverged`` (as in the engine; not a limit set);
- drifting: the centroids of the first and second half of the samples are further apart than
  ``DRIFT`` x the sample's diameter -> ``unresolved``, reason ``still settling`` when the mean step of the
  last block is under half that of the first block, else ``drifting``;
- not recurrent: the median distance of a second-half sample to its nearest first-half sample exceeds
  ``RECURRENCE`` x the diameter -> ``unresolved``, ``not recurrent``;
- otherwise (bounded and recurrent), with margin = ``k_sigma`` * err + ln(n)/n (n the steps in the blocks;
  ln(n)/n is the finite-time exponent of a tangent that grows only linearly, as on a sheared torus, so a
  smaller exponent cannot be told from polynomial growth in n steps): lambda > margin -> ``chaotic``;
  |lambda| <= margin -> ``quasi_periodic``; lambda < -margin -> ``unresolved``, ``still settling``
  (contracting, but no period <= ``max_period``: a slow fixed point or a longer cycle).

:func:`group_limit_sets` de-duplicates across seeds, phase-free (rules in its docstring). Everything is
deterministic: the tangent vectors come from a seeded generator, drawn for all seeds at once, so the
result does not depend on ``batch_size``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, eigs

from latentfield.adapters.errors import UsageError

from .stability import DENSE_MAX, JacobianOperator, classify
from .types import Map

KINDS = ("fixed_point", "cycle", "quasi_periodic", "chaotic", "unresolved")
DIVERGED = "diverged"  # a seed's kind only: escape to infinity is no limit set
MAX_PERIOD = 64
DRIFT = 0.25  # centroid shift between the sample's halves, in units of its diameter, that counts as drift
RECURRENCE = 0.1  # median nearest-neighbour distance second half -> first half, in diameters
SAME_SET = 2.0  # cross nearest-neighbour distance, in units of the samples' own spacing, for one set


@dataclass(frozen=True)
class SeedOrbit:
    """What one seed settles on.

    kind: one of ``KINDS`` or ``diverged``; period: p for cycles and fixed points (1), else None;
    lyapunov_max / lyapunov_err: the largest Lyapunov exponent and its standard error (natural log per
    step; for cycles ln(multipliers_max) / p with no error; None when not computed); multipliers_max: the
    spectral radius of J of f^p along the cycle; stability: ``stability.classify`` of it; reason: why a seed
    is ``unresolved``; points: the cycle (p, *latent) from the seed's own phase, or a sample of the orbit
    (S, *latent) in time order.
    """

    kind: str
    period: int | None
    lyapunov_max: float | None
    lyapunov_err: float | None
    multipliers_max: float | None
    stability: str | None
    reason: str | None
    points: torch.Tensor


@dataclass(frozen=True)
class OrbitClassification:
    """Per-seed results of :func:`classify_orbits`; n_evals: rows evaluated by f (a JVP counts as one)."""

    seeds: tuple[SeedOrbit, ...]
    n_evals: int

    @property
    def kinds(self) -> list[str]:
        return [s.kind for s in self.seeds]


@dataclass(frozen=True)
class LimitSet:
    """One limit set reached by ``n_seeds`` seeds (its basin share), fields as in :class:`SeedOrbit`.

    points: the cycle (p, *latent) or fixed point (1, *latent), a sample of the orbit (S, *latent) for
    quasi-periodic and chaotic sets, the members' last sampled points for ``unresolved`` (grouped by reason).
    lyapunov_max / lyapunov_err of a quasi-periodic or chaotic set: mean over its seeds, with the error of
    that mean (sqrt of the summed squared errors / n_seeds).
    """

    kind: str
    period: int | None
    lyapunov_max: float | None
    lyapunov_err: float | None
    multipliers_max: float | None
    points: torch.Tensor
    n_seeds: int
    reason: str | None = None
    stability: str | None = None


def classify_orbits(f: Map, z: torch.Tensor, *, tol: float, max_period: int = MAX_PERIOD, settle: int = 64,
                    n_lyapunov: int = 2000, n_blocks: int = 20, n_samples: int = 200, k_sigma: float = 3.0,
                    jvp: Map | None = None, fd_eps: float = 1e-3, max_norm: float = 1e6, multipliers: bool = True,
                    match_rtol: float = 1e-2, batch_size: int = 256, seed: int = 0) -> OrbitClassification:
    """Classify the limit set each row of ``z`` (B, *latent) settles on under the batched map ``f``.

    ``tol``: the engine's squared-step tolerance (summed over latent dims), applied to f^p. ``jvp``: a
    differentiable version of f (``Adapter.f_differentiable``) for exact Jacobian-vector products; None
    uses central finite differences of f. Extra evaluations per seed: at most ``settle + 2 * max_period``,
    plus ``n_lyapunov`` JVPs (or 3 * ``n_lyapunov`` evaluations) for seeds with no period, plus the
    multipliers once per distinct cycle (``multipliers=False`` skips them). ``batch_size`` seeds run together.
    """
    for name, value in (("max_period", max_period), ("n_blocks", n_blocks), ("n_samples", n_samples),
                        ("batch_size", batch_size)):
        if value < 1:
            raise UsageError(f"`{name}` must be at least 1, got {value}")
    if settle < 0:
        raise UsageError(f"`settle` must be >= 0, got {settle}")
    if n_lyapunov < 2 * (n_blocks + 1):
        raise UsageError(f"`n_lyapunov` must be at least 2 * (`n_blocks` + 1) = {2 * (n_blocks + 1)}, got {n_lyapunov}")
    if not tol > 0:
        raise UsageError(f"`tol` must be > 0, got {tol}")
    z = z.detach()
    count = [0]

    def fe(x: torch.Tensor) -> torch.Tensor:
        count[0] += len(x)
        with torch.no_grad():
            return f(x)

    d = z[0].numel() if len(z) else 0
    tangents = torch.randn(len(z), d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    cycles: list[tuple[torch.Tensor, float]] = []  # distinct cycles met so far and their multiplier radius
    rho_of = None
    if multipliers:
        def rho_of(points: torch.Tensor) -> float:
            for known, rho in cycles:
                if len(known) == len(points) and same_cycle(known, points, match_rtol):
                    return rho
            rho = cycle_multiplier(f, points[0], len(points), jvp=jvp, fd_eps=fd_eps, count=count)
            cycles.append((points, rho))
            return rho
    seeds: list[SeedOrbit] = []
    for start in range(0, len(z), batch_size):
        seeds += _classify_chunk(fe, jvp, rho_of, z[start:start + batch_size], tangents[start:start + batch_size],
                                 count, tol=tol, max_period=max_period, settle=settle, n_lyapunov=n_lyapunov,
                                 n_blocks=n_blocks, n_samples=n_samples, k_sigma=k_sigma, fd_eps=fd_eps,
                                 max_norm=max_norm, seed=seed)
    return OrbitClassification(seeds=tuple(seeds), n_evals=count[0])


def _escaped(x: torch.Tensor, max_norm: float) -> torch.Tensor:
    norms = x.flatten(1).norm(dim=1)
    return ~torch.isfinite(norms) | (norms > max_norm)


def _classify_chunk(fe: Map, jvp: Map | None, rho_of: Callable[[torch.Tensor], float] | None, x: torch.Tensor,
                    v: torch.Tensor, count: list[int], *, tol: float, max_period: int, settle: int, n_lyapunov: int,
                    n_blocks: int, n_samples: int, k_sigma: float, fd_eps: float, max_norm: float,
                    seed: int) -> list[SeedOrbit]:
    b = len(x)
    bad = _escaped(x, max_norm)
    for _ in range(settle):
        x = fe(x)
        bad |= _escaped(x, max_norm)
    base = x
    period = torch.zeros(b, dtype=torch.long)
    for p in range(1, max_period + 1):
        x = fe(x)
        bad |= _escaped(x, max_norm)
        sq = (x - base).flatten(1).double().pow(2).sum(1)
        period[(period == 0) & (sq < tol) & ~bad] = p
        if bool(((period > 0) | bad).all()):
            break
    out: list[SeedOrbit | None] = [None] * b
    cyc = torch.nonzero((period > 0) & ~bad).flatten()
    if len(cyc):  # the p points of each cycle, from its base point (p - 1 more steps)
        pts = [base[cyc]]
        for _ in range(int(period[cyc].max()) - 1):
            pts.append(fe(pts[-1]))
        orbit = torch.stack(pts, 1)  # (c, max p, *latent)
        for j, i in enumerate(cyc.tolist()):
            p = int(period[i])
            points = orbit[j, :p].clone()
            rho = rho_of(points) if rho_of is not None else None
            lyap = None if rho is None else (math.log(rho) / p if rho > 0 else -math.inf)
            out[i] = SeedOrbit("fixed_point" if p == 1 else "cycle", p, lyap, None, rho,
                               None if rho is None else classify(rho), None, points)
            if rho is not None and classify(rho) == "saddle_or_repeller":
                period[i] = 0  # a close return along a repelling cycle? kept only if the orbit stays on it
    rest = torch.nonzero((period == 0) & ~bad).flatten()
    if len(rest):
        lam, err, samples, step_ratio, still_bad = _benettin(fe, jvp, x[rest], v[rest], count, n_lyapunov, n_blocks,
                                                             n_samples, fd_eps, max_norm, seed)
        n_used = (n_lyapunov // (n_blocks + 1)) * n_blocks
        floor = math.log(n_used) / n_used
        for j, i in enumerate(rest.tolist()):
            l, e = float(lam[j]), float(err[j])
            if out[i] is not None and not still_bad[j]:  # a repelling cycle: did the orbit stay on it?
                cycle = out[i].points.flatten(1).double()
                gap = torch.cdist(samples[j].flatten(1).double(), cycle).min(1).values.pow(2).max()
                if float(gap) < tol:
                    continue
            if still_bad[j] or not math.isfinite(l):
                out[i] = SeedOrbit(DIVERGED, None, None, None, None, None, None, samples[j])
                continue
            kind, reason = _decide(l, e, samples[j], float(step_ratio[j]), k_sigma * e + floor)
            out[i] = SeedOrbit(kind, None, l, e, None, None, reason, samples[j])
    for i in torch.nonzero(bad).flatten().tolist():
        out[i] = SeedOrbit(DIVERGED, None, None, None, None, None, None, x[i:i + 1].clone())
    return out  # type: ignore[return-value]


def _decide(lam: float, err: float, sample: torch.Tensor, step_ratio: float, margin: float) -> tuple[str, str | None]:
    """The kind (and reason) of a bounded orbit without a period, by the rules of the module docstring."""
    s = sample.flatten(1).double()
    half = len(s) // 2
    first, second = s[:half], s[half:]
    diameter = float(torch.cdist(s, s).max())
    if diameter == 0:
        return "unresolved", "still settling"
    if float((second.mean(0) - first.mean(0)).norm()) > DRIFT * diameter:
        return "unresolved", "still settling" if step_ratio < 0.5 else "drifting"
    if float(torch.cdist(second, first).min(1).values.median()) > RECURRENCE * diameter:
        return "unresolved", "not recurrent"
    if lam > margin:
        return "chaotic", None
    if lam >= -margin:
        return "quasi_periodic", None
    return "unresolved", "still settling"


def _benettin(fe: Map, jvp: Map | None, x: torch.Tensor, v: torch.Tensor, count: list[int], n_steps: int,
              n_blocks: int, n_samples: int, fd_eps: float, max_norm: float, seed: int):
    """Largest Lyapunov exponent per row of x (b, *latent): (lambda (b,), err (b,), samples [(S, *latent)],
    last/first block mean step ratio (b,), escaped (b,) bool). ``v`` (b, d) float64: start tangents."""
    b, shape, d = len(x), x.shape[1:], x[0].numel()
    length = n_steps // (n_blocks + 1)
    total = length * (n_blocks + 1)
    # sample times drawn at random (seeded, sorted): a fixed stride can resonate with a rotation and
    # sample a circle in a few tight clusters
    times = np.sort(np.random.default_rng(seed).choice(total, size=min(n_samples, total), replace=False))
    take = np.zeros(total, dtype=bool)
    take[times] = True
    logs = torch.zeros(b, n_blocks + 1, dtype=torch.float64)
    steps = torch.zeros(b, 2, dtype=torch.float64)  # summed step norms of the first and last block
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-300)
    bad = _escaped(x, max_norm)
    samples = []
    for t in range(total):
        tangent = v.to(x.dtype).view(b, *shape)
        if jvp is not None:
            count[0] += b
            with warnings.catch_warnings():  # torch's first forward-AD call warns about scripting
                warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning)
                x_new, jv = torch.func.jvp(jvp, (x,), (tangent,))
            x_new, jv = x_new.detach(), jv.detach()
        else:
            h = (fd_eps * torch.clamp(x.flatten(1).norm(dim=1), min=math.sqrt(d))).view(b, *[1] * len(shape))
            both = fe(torch.cat([x, x + h * tangent, x - h * tangent]))
            x_new = both[:b]
            jv = (both[b:2 * b] - both[2 * b:]) / (2 * h)
        jv = jv.flatten(1).double()
        growth = jv.norm(dim=1)
        logs[:, t // length] += torch.log(growth.clamp_min(1e-300))
        v = jv / growth.clamp_min(1e-300)[:, None]
        block = t // length
        if block == 0 or block == n_blocks:
            steps[:, 0 if block == 0 else 1] += (x_new - x).flatten(1).double().norm(dim=1)
        x = x_new
        bad |= _escaped(x, max_norm)
        if take[t]:
            samples.append(x.detach().clone())
    means = logs[:, 1:] / length
    lam = means.mean(1)
    err = means.std(1) / math.sqrt(n_blocks) if n_blocks > 1 else torch.full_like(lam, float("inf"))
    ratio = steps[:, 1] / steps[:, 0].clamp_min(1e-300)
    stacked = torch.stack(samples, 1)  # (b, S, *latent)
    return lam.numpy(), err.numpy(), list(stacked.unbind(0)), ratio.numpy(), bad.numpy()


def cycle_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Phase-free distance of two p-cycles (p, *latent): min over rotations r of max_i ||a_i - b_(i+r)||.
    inf when the periods differ."""
    if len(a) != len(b):
        return math.inf
    p = len(a)
    dist = torch.cdist(a.flatten(1).double(), b.flatten(1).double())
    shift = (torch.arange(p)[None, :] + torch.arange(p)[:, None]) % p  # row r: b index of a_i under rotation r
    return float(dist[torch.arange(p)[None, :], shift].max(1).values.min())


def same_cycle(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-2) -> bool:
    """One cycle at any phase: ``cycle_distance`` <= rtol x the larger norm of their points (the engine's
    relative Euclidean rule for end points, ``attractors.deduplicate``)."""
    scale = max(float(a.flatten(1).norm(dim=1).max()), float(b.flatten(1).norm(dim=1).max()), 1e-12)
    return cycle_distance(a, b) <= rtol * scale


def _spacing(x: torch.Tensor) -> float:
    """Median distance of a sample's points to their nearest other point."""
    dist = torch.cdist(x, x)
    dist.fill_diagonal_(math.inf)
    return float(dist.min(1).values.median())


def same_set(a: torch.Tensor, b: torch.Tensor, factor: float = SAME_SET) -> bool:
    """Two orbit samples (S, *latent) cover one set: the median distance from a point of either sample to the
    nearest point of the other is at most ``factor`` x the samples' own median nearest-neighbour spacing
    (two samples of one set interleave; of two sets, they stay a set's separation apart)."""
    x, y = a.flatten(1).double(), b.flatten(1).double()
    cross = torch.cdist(x, y)
    far = max(float(cross.min(1).values.median()), float(cross.min(0).values.median()))
    return far <= factor * max(_spacing(x), _spacing(y))


def _cycle_groups(seeds: Sequence[SeedOrbit], rtol: float) -> list[list[int]]:
    """Seeds on one cycle (fixed points included), in seed order."""
    groups: list[list[int]] = []
    for i, s in enumerate(seeds):
        if s.kind not in ("fixed_point", "cycle"):
            continue
        for g in groups:
            if seeds[g[0]].period == s.period and same_cycle(seeds[g[0]].points, s.points, rtol):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def cycle_multiplier(f: Map, point: torch.Tensor, period: int, *, jvp: Map | None = None, fd_eps: float = 1e-3,
                     ncv: int = 20, krylov_tol: float = 1e-3, max_restarts: int = 10,
                     count: list[int] | None = None) -> float:
    """Spectral radius of the Jacobian of f^period at ``point`` (*latent), a point of the cycle: its largest
    multiplier modulus. Exact JVPs through ``jvp`` (differentiable f), else central differences of f."""
    def power(g: Map) -> Map:
        def gp(x: torch.Tensor) -> torch.Tensor:
            for _ in range(period):
                x = g(x)
            return x
        return gp

    f_p = power(f)
    op = JacobianOperator(power(jvp) if jvp is not None else f_p, point, f_eval=f_p, fd_eps=fd_eps,
                          mode="autograd" if jvp is not None else "finite_differences")
    if op.d <= DENSE_MAX:
        eig = np.linalg.eigvals(op.dense().double().cpu().numpy())
    else:
        lin = op.linear_operator()
        v0 = np.random.default_rng(0).standard_normal(op.d)
        try:
            eig = eigs(lin, k=2, which="LM", v0=v0, ncv=min(ncv, op.d - 1), tol=krylov_tol, maxiter=max_restarts,
                       return_eigenvectors=False)
        except ArpackNoConvergence as e:
            eig = e.eigenvalues if len(e.eigenvalues) else np.array([np.nan])
    if count is not None:
        count[0] += op.n_products * period * (1 if op.mode == "autograd" else 2)
    return float(np.abs(eig).max())


def group_limit_sets(orbits: OrbitClassification | Sequence[SeedOrbit], *, match_rtol: float = 1e-2,
                     same_set_factor: float = SAME_SET) -> tuple[list[LimitSet], np.ndarray]:
    """De-duplicate the seeds' limit sets, phase-free; returns (sets, labels (B,), -1 for diverged seeds).

    - fixed points and cycles: one set when their periods agree and :func:`same_cycle` holds (any phase);
    - quasi-periodic and chaotic: one set when the kinds agree and :func:`same_set` holds for the samples;
    - unresolved: one entry per reason.
    Seeds join the first set they match, in seed order; sets come largest basin first (ties: first seed).
    """
    seeds = list(orbits.seeds if isinstance(orbits, OrbitClassification) else orbits)
    labels = np.full(len(seeds), -1, dtype=np.int64)
    groups: list[list[int]] = _cycle_groups(seeds, match_rtol)
    for i, s in enumerate(seeds):
        if s.kind in ("quasi_periodic", "chaotic"):
            for g in groups:
                r = seeds[g[0]]
                if r.kind == s.kind and same_set(r.points, s.points, same_set_factor):
                    g.append(i)
                    break
            else:
                groups.append([i])
    reasons: dict[str | None, list[int]] = {}
    for i, s in enumerate(seeds):
        if s.kind == "unresolved":
            reasons.setdefault(s.reason, []).append(i)
    groups += list(reasons.values())
    groups.sort(key=lambda g: (-len(g), g[0]))
    sets = []
    for k, g in enumerate(groups):
        labels[g] = k
        sets.append(_limit_set([seeds[i] for i in g]))
    return sets, labels


def _limit_set(members: list[SeedOrbit]) -> LimitSet:
    rep = members[0]
    if rep.kind in ("quasi_periodic", "chaotic"):
        lam = float(np.mean([m.lyapunov_max for m in members]))
        err = float(math.sqrt(sum(m.lyapunov_err ** 2 for m in members)) / len(members))
        return LimitSet(rep.kind, None, lam, err, None, rep.points, len(members))
    if rep.kind == "unresolved":
        pts = torch.stack([m.points[-1] for m in members[:len(rep.points)]])
        return LimitSet("unresolved", None, None, None, None, pts, len(members), reason=rep.reason)
    return LimitSet(rep.kind, rep.period, rep.lyapunov_max, None, rep.multipliers_max, rep.points, len(members),
                    stability=rep.stability)


__all__ = ["KINDS", "DIVERGED", "MAX_PERIOD", "SeedOrbit", "OrbitClassification", "LimitSet", "classify_orbits",
           "group_limit_sets", "cycle_multiplier", "cycle_distance", "same_cycle", "same_set"]
