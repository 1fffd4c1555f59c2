"""Accelerated fixed-point solvers for the probe engine (``iterate(..., solver=...)``).

Anderson acceleration (Walker & Ni 2011, the batched form of Bai et al.'s DEQ solvers) keeps the last
``m`` iterates x_i and their images f(x_i), and mixes them with weights alpha that minimise the
combined residual ||sum_i alpha_i (f(x_i) - x_i)|| subject to sum_i alpha_i = 1:

    x_next = sum_i alpha_i [beta f(x_i) + (1 - beta) x_i]

On a linear map this is GMRES on (I - J) x = b, so it converges where plain iteration crawls (rho
close to 1) and also where plain iteration diverges (rho > 1): it finds fixed points, not attractors.
Every end point of it should therefore be checked with :mod:`latentfield.probe.stability`.

Adaptive over-relaxation (``RelaxationSolver``) targets what Anderson cannot: on autoencoder maps most
of a plain trajectory is a slow, steady drift along the data manifold (successive steps point the same
way, cosine 0.95-1.0, at a nearly constant length), where residuals are too alike for Anderson's
least-squares mixing. Stretching each step, z + h (f(z) - z), covers that drift in fewer evaluations.

``SOLVERS`` maps each name to its class; :func:`make_solver` builds one from CLI-style options.
"""
from __future__ import annotations

import inspect
import math
from typing import Callable, Protocol

import torch

from .types import Map, State


class Solver(Protocol):
    """One step of a fixed-point solver over a batch. ``step`` returns the next iterate, the squared
    step norm used by the stopping rule (shape (B,)) and the updated per-seed state."""

    name: str

    def init_state(self, z: torch.Tensor) -> State: ...

    def step(self, f: Map, z: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor, State]: ...


class PlainSolver:
    """z_{t+1} = f(z_t): the paper's iteration."""

    name = "plain"

    def init_state(self, z: torch.Tensor) -> State:
        return {}

    def step(self, f: Map, z: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor, State]:
        z_next = f(z)
        return z_next, (z_next - z).flatten(1).pow(2).sum(1), state


class AndersonSolver:
    """Batched, safeguarded Anderson acceleration with per-seed history.

    m: history size; beta: damping (1 = undamped mixing of the f values); lam: Tikhonov term of the
    least-squares solve, relative to the largest residual norm in the history; restart_factor: an
    accelerated step is rejected when its residual exceeds ``restart_factor`` times the previous one;
    the seed then takes the plain step f(x_prev) (already computed, so no extra evaluation) and its
    history restarts. ``step`` returns the squared residual ||f(z) - z||^2 at the current iterate,
    so the engine's stopping rule is the plain iteration's. One evaluation of f per step and seed.
    warmup: plain steps before mixing starts; patience: accelerated steps without a 10% gain on the
    best residual before the seed goes back to plain steps for another warm-up, whose length is
    multiplied by ``backoff`` at each such restart (1: always ``warmup``).

    State tensors have the batch as first axis (the engine compacts and refills them):
    ``x``/``fx`` (B, m, d) history, newest first; ``n`` (B,) valid entries; ``prev`` (B,) last
    accepted squared residual; ``plain`` (B,) whether the last step was a safeguard fallback.
    """

    name = "anderson"

    def __init__(self, m: int = 5, beta: float = 1.0, lam: float = 1e-6, restart_factor: float = 2.0,
                 warmup: int = 30, patience: int = 10, backoff: float = 1.0) -> None:
        for key, value in (("m", m), ("beta", beta), ("lam", lam), ("restart_factor", restart_factor),
                           ("warmup", warmup), ("patience", patience), ("backoff", backoff)):
            _check(key, value)
        self.m, self.beta, self.lam, self.restart_factor = m, beta, lam, restart_factor
        self.warmup, self.patience, self.backoff = warmup, patience, backoff

    def init_state(self, z: torch.Tensor) -> State:
        b, d = z.shape[0], z[0].numel()
        return {"x": z.new_zeros(b, self.m, d), "fx": z.new_zeros(b, self.m, d),
                "n": torch.zeros(b, dtype=torch.long, device=z.device),
                "prev": torch.full((b,), float("inf"), dtype=torch.float64, device=z.device),
                "plain": torch.zeros(b, dtype=torch.bool, device=z.device),
                "age": torch.zeros(b, dtype=torch.long, device=z.device),
                "best": torch.full((b,), float("inf"), dtype=torch.float64, device=z.device),
                "since": torch.zeros(b, dtype=torch.long, device=z.device),
                "wait": torch.full((b,), float(self.warmup), dtype=torch.float64, device=z.device)}

    def step(self, f: Map, z: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor, State]:
        shape = z.shape
        x = z.flatten(1)
        fx = f(z).flatten(1)
        r2 = (fx - x).double().pow(2).sum(1)
        hist_x, hist_f, n = state["x"], state["fx"], state["n"]
        # Safeguard: the last accelerated step made the residual grow -> go back to the plain step.
        # Stagnation (no 10% gain on the best residual for `patience` accelerated steps): the mixing is
        # wandering where no fixed point is near, so the seed goes back to plain steps for a warm-up.
        improved = r2 < 0.9 * state["best"]
        best = torch.where(improved, r2, state["best"])
        since = torch.where(improved, torch.zeros_like(state["since"]), state["since"] + 1)
        age, wait = state["age"], state["wait"]
        stalled = (age >= wait) & (since >= self.patience)
        wait = torch.where(stalled, wait * self.backoff, wait)
        age = torch.where(stalled, torch.zeros_like(age), age)
        best = torch.where(stalled, torch.full_like(best, float("inf")), best)
        since = torch.where(stalled, torch.zeros_like(since), since)
        warm = age < wait  # plain steps first: mixing far from any fixed point misleads
        reject = ~state["plain"] & ~warm & (n > 0) & (r2 > self.restart_factor * state["prev"])
        fallback = hist_f[:, 0].clone()  # f(x_prev), the plain step from the last accepted iterate
        keep = ~reject
        hist_x = torch.where(keep[:, None, None], torch.cat([x[:, None], hist_x[:, :-1]], 1), hist_x)
        hist_f = torch.where(keep[:, None, None], torch.cat([fx[:, None], hist_f[:, :-1]], 1), hist_f)
        n = torch.where(keep, (n + 1).clamp(max=self.m), torch.ones_like(n))  # rejected: keep x_prev only
        prev = torch.where(keep, r2, state["prev"])
        z_next = torch.where(reject[:, None], fallback, torch.where(warm[:, None], fx, self._mix(hist_x, hist_f, n)))
        new_state = {"x": hist_x, "fx": hist_f, "n": n, "prev": prev, "plain": reject | warm, "age": age + 1,
                     "best": best, "since": since, "wait": wait}
        return z_next.view(shape), r2.to(torch.promote_types(z.dtype, torch.float32)), new_state

    def _mix(self, hist_x: torch.Tensor, hist_f: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """Anderson weights per seed, alpha = G^-1 1 / (1^T G^-1 1) with G the residuals' Gram matrix."""
        b, m, _ = hist_x.shape
        res = (hist_f - hist_x).double()
        valid = torch.arange(m, device=n.device)[None] < n[:, None]  # (B, m)
        gram = res @ res.transpose(1, 2)
        eye = torch.eye(m, dtype=gram.dtype, device=gram.device)
        scale = gram.diagonal(dim1=1, dim2=2).amax(1).clamp_min(1e-300)[:, None, None]
        # Invalid history slots get an identity row/column and a zero right-hand side: weight 0.
        pair = valid[:, :, None] & valid[:, None, :]
        gram = torch.where(pair, gram + self.lam * scale * eye, eye.expand(b, m, m))
        y = torch.linalg.solve(gram, valid.to(gram.dtype)[..., None])[..., 0]
        total = y.sum(1, keepdim=True)
        plain = torch.zeros_like(y)
        plain[:, 0] = 1
        ok = torch.isfinite(y).all(1, keepdim=True) & (total.abs() > 1e-12 * y.abs().sum(1, keepdim=True))
        alpha = torch.where(ok, y / torch.where(ok, total, torch.ones_like(total)), plain)  # degenerate: plain
        mixed = self.beta * hist_f + (1 - self.beta) * hist_x if self.beta < 1 else hist_f
        return torch.einsum("bm,bmd->bd", alpha.to(mixed.dtype), mixed)


class RelaxationSolver:
    """Adaptive over-relaxation: z_next = z + h (f(z) - z), with a per-seed stretch h >= 1.

    h is multiplied by ``grow`` (up to ``h_max``) while successive residuals v = f(z) - z stay aligned
    (cosine > ``align``) and drops back to 1 (the plain step) as soon as they turn. A step whose squared
    residual exceeds ``restart_factor`` times the last accepted one is rejected: the seed takes the plain
    step f(x_prev) from the last accepted iterate (stored, no extra evaluation) with h = 1. A seed whose
    best residual has not improved by 10% in ``patience`` steps stops stretching for good and finishes
    with plain steps (a stretch that keeps overshooting can stall where plain iteration converges).

    With h >= 1 a fixed point is stable for the stretched step only if every eigenvalue lambda of J_f
    has |1 - h (1 - lambda)| < 1, which implies |lambda| < 1: unlike Anderson, this solver cannot
    converge onto a saddle (its end points are still verified, as for every accelerated solver).
    One evaluation of f per step and seed; ``step`` returns ||f(z) - z||^2, the plain stopping quantity.

    State (batch first): ``v`` (B, d) last accepted residual, ``fx`` (B, d) f at the last accepted
    iterate, ``prev`` (B,) its squared residual, ``h`` (B,) current stretch, ``have`` (B,) whether
    ``v``/``prev`` hold a previous step to compare with, ``best``/``since`` (B,) best squared residual and
    steps since it last improved by 10%, ``off`` (B,) stretching given up.
    """

    name = "relax"

    def __init__(self, h_max: float = 4.0, grow: float = 2.0, align: float = 0.9,
                 restart_factor: float = 4.0, patience: int = 50) -> None:
        for key, value in (("h_max", h_max), ("grow", grow), ("align", align), ("restart_factor", restart_factor),
                           ("patience", patience)):
            _check(key, value)
        self.h_max, self.grow, self.align, self.restart_factor = h_max, grow, align, restart_factor
        self.patience = patience

    def init_state(self, z: torch.Tensor) -> State:
        b, d = z.shape[0], z[0].numel()
        return {"v": z.new_zeros(b, d), "fx": z.new_zeros(b, d),
                "prev": torch.full((b,), float("inf"), dtype=torch.float64, device=z.device),
                "h": torch.ones(b, dtype=torch.float64, device=z.device),
                "have": torch.zeros(b, dtype=torch.bool, device=z.device),
                "best": torch.full((b,), float("inf"), dtype=torch.float64, device=z.device),
                "since": torch.zeros(b, dtype=torch.long, device=z.device),
                "off": torch.zeros(b, dtype=torch.bool, device=z.device)}

    def step(self, f: Map, z: torch.Tensor, state: State) -> tuple[torch.Tensor, torch.Tensor, State]:
        shape = z.shape
        x = z.flatten(1)
        fx = f(z).flatten(1)
        v = fx - x
        r2 = v.double().pow(2).sum(1)
        have = state["have"]
        improved = r2 < 0.9 * state["best"]
        best = torch.where(improved, r2, state["best"])
        since = torch.where(improved, torch.zeros_like(state["since"]), state["since"] + 1)
        off = state["off"] | (since >= self.patience)
        reject = have & ~off & (r2 > self.restart_factor * state["prev"])
        cos = torch.nn.functional.cosine_similarity(v.double(), state["v"].double(), dim=1)
        aligned = have & ~reject & ~off & (cos > self.align)
        h = torch.where(aligned, (state["h"] * self.grow).clamp(max=self.h_max), torch.ones_like(state["h"]))
        z_next = torch.where(reject[:, None], state["fx"], x + h[:, None].to(x.dtype) * v)
        keep = ~reject[:, None]
        new_state = {"v": torch.where(keep, v, state["v"]), "fx": torch.where(keep, fx, state["fx"]),
                     "prev": torch.where(reject, state["prev"], r2), "h": h, "have": ~reject,
                     "best": best, "since": since, "off": off}
        return z_next.view(shape), r2.to(torch.promote_types(z.dtype, torch.float32)), new_state


# Option -> (type, valid?, rule): CLI values arrive parsed as bool/int/float/str, so check both.
_RULES: dict[str, tuple[type, Callable[[float], bool], str]] = {
    "m": (int, lambda v: v >= 1, ">= 1"), "beta": (float, lambda v: 0 < v <= 1, "in (0, 1]"),
    "lam": (float, lambda v: v >= 0, ">= 0"), "restart_factor": (float, lambda v: v > 0, "> 0"),
    "warmup": (int, lambda v: v >= 0, ">= 0"), "patience": (int, lambda v: v >= 1, ">= 1"),
    "backoff": (float, lambda v: v >= 1, ">= 1"),
    "h_max": (float, lambda v: v >= 1, ">= 1"), "grow": (float, lambda v: v >= 1, ">= 1"),
    "align": (float, lambda v: -1 <= v <= 1, "in [-1, 1]"),
}


def _check(key: str, value: object) -> None:
    kind, valid, rule = _RULES[key]
    typed = not isinstance(value, bool) and isinstance(value, int if kind is int else (int, float))
    if not (typed and math.isfinite(value) and valid(value)):
        raise ValueError(f"{key} must be {'an integer' if kind is int else 'a number'} {rule}, got {value!r}")


SOLVERS: dict[str, Callable[..., Solver]] = {"plain": PlainSolver, "anderson": AndersonSolver,
                                             "relax": RelaxationSolver}


def make_solver(name: str, options: dict | None = None) -> Solver:
    """``SOLVERS[name](**options)``; ValueError with a one-line message for an unknown solver or option."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}: choose one of {', '.join(SOLVERS)}")
    known = [p for p in inspect.signature(SOLVERS[name]).parameters if p != "self"]
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
        raise ValueError(f"unknown option {', '.join(map(repr, unknown))} for solver {name!r}: "
                         + (f"choose from {', '.join(known)}" if known else "it takes no options"))
    return SOLVERS[name](**(options or {}))


__all__ = ["Solver", "PlainSolver", "AndersonSolver", "RelaxationSolver", "SOLVERS", "make_solver"]
