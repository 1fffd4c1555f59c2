"""Batched fixed-point iteration of a latent map with per-seed stopping and active-set compaction.

The engine knows nothing about models: it iterates any ``f: (B, *shape) -> (B, *shape)``. Each seed
is stepped until its squared step ||z_{t+1} - z_t||^2 (summed over latent dimensions) falls below
``tol`` (the paper's rule ||f(z_{t+1}) - f(z_t)||^2 < tol), it reaches ``max_steps``, or it diverges.
Finished seeds leave the batch and pending seeds take their place, so a batch stays full and a
converged seed costs nothing more. A seed's trajectory depends only on its own start point.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch

Map = Callable[[torch.Tensor], torch.Tensor]
State = dict[str, torch.Tensor]  # per-seed solver state; every tensor has the batch as first axis

CONVERGED, MAX_STEPS, DIVERGED = 0, 1, 2
STATUS_NAMES = ("converged", "max_steps", "diverged")


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


SOLVERS: dict[str, Callable[..., Solver]] = {"plain": PlainSolver}


@dataclass
class IterationResult:
    """End points (N, *shape), status (N,) int8 codes, steps (N,) f evaluations per seed, total evals."""

    end: torch.Tensor
    status: np.ndarray
    steps: np.ndarray
    n_evals: int


Recorder = Callable[[np.ndarray, np.ndarray, torch.Tensor], None]


def iterate(f: Map, z0: torch.Tensor, *, tol: float = 1e-6, max_steps: int = 3000, batch_size: int = 256,
            max_norm: float = 1e6, solver: Solver | None = None, record_every: int = 0,
            recorder: Recorder | None = None, progress: Callable[[int], None] | None = None) -> IterationResult:
    """Iterate ``f`` from every row of ``z0`` (N, *shape) until each seed stops.

    ``record_every`` k > 0 calls ``recorder(seed_indices, steps, z)`` with the points at steps
    0, k, 2k, ... and the end point of each seed. ``progress(n)`` is called as n seeds finish.
    """
    solver = solver or PlainSolver()
    n = z0.shape[0]
    end = torch.empty_like(z0)
    status = np.full(n, MAX_STEPS, dtype=np.int8)
    steps = np.zeros(n, dtype=np.int32)
    n_evals, next_seed = 0, 0
    idx = torch.empty(0, dtype=torch.long)
    z = z0[:0]
    age = torch.empty(0, dtype=torch.long)
    state: State = {}

    def refill() -> None:
        nonlocal idx, z, age, state, next_seed
        take = min(batch_size - len(idx), n - next_seed)
        if take <= 0:
            return
        new_idx = torch.arange(next_seed, next_seed + take)
        next_seed += take
        new_z = z0[new_idx]
        if record_every and recorder:
            recorder(new_idx.numpy(), np.zeros(take, dtype=np.int32), new_z)
        new_state = solver.init_state(new_z)
        idx, z = torch.cat([idx, new_idx]), torch.cat([z, new_z])
        age = torch.cat([age, torch.zeros(take, dtype=torch.long)])
        state = {k: torch.cat([state[k], v]) if k in state else v for k, v in new_state.items()}

    refill()
    while len(idx):
        z_next, sq_step, state = solver.step(f, z, state)
        n_evals += len(idx)
        age += 1
        norms = z_next.flatten(1).norm(dim=1)
        finite = torch.isfinite(sq_step) & torch.isfinite(norms)
        diverged = ~finite | (norms > max_norm)
        converged = ~diverged & (sq_step < tol)
        done = diverged | converged | (age >= max_steps)
        if record_every and recorder:
            rec = ((age % record_every) == 0) | done
            if rec.any():
                recorder(idx[rec].numpy(), age[rec].numpy().astype(np.int32), z_next[rec])
        if done.any():
            d_idx = idx[done].numpy()
            end[d_idx] = z_next[done]
            steps[d_idx] = age[done].numpy()
            status[d_idx] = np.where(diverged[done].numpy(), DIVERGED,
                                     np.where(converged[done].numpy(), CONVERGED, MAX_STEPS))
            keep = ~done
            idx, z, age = idx[keep], z_next[keep], age[keep]
            state = {k: v[keep] for k, v in state.items()}
            if progress:
                progress(len(d_idx))
            refill()
        else:
            z = z_next
    return IterationResult(end=end, status=status, steps=steps, n_evals=n_evals)


# Accelerated solvers live in their own module, which does not import this one (no cycle).
from .solvers import AndersonSolver, RelaxationSolver  # noqa: E402

SOLVERS["anderson"] = AndersonSolver
SOLVERS["relax"] = RelaxationSolver


def make_solver(name: str, options: dict | None = None) -> Solver:
    """``SOLVERS[name](**options)``; ValueError with a one-line message for an unknown solver or option."""
    import inspect

    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}: choose one of {', '.join(SOLVERS)}")
    known = [p for p in inspect.signature(SOLVERS[name]).parameters if p != "self"]
    unknown = sorted(set(options or {}) - set(known))
    if unknown:
        raise ValueError(f"unknown option {', '.join(map(repr, unknown))} for solver {name!r}: "
                         + (f"choose from {', '.join(known)}" if known else "it takes no options"))
    return SOLVERS[name](**(options or {}))
