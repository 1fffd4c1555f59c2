"""Batched fixed-point iteration of a latent map with per-seed stopping and active-set compaction.

The engine knows nothing about models: it iterates any ``f: (B, *shape) -> (B, *shape)``. Each seed
is stepped until its squared step ||z_{t+1} - z_t||^2 (summed over latent dimensions) falls below
``tol`` (the paper's rule ||f(z_{t+1}) - f(z_t)||^2 < tol), it reaches ``max_steps``, or it diverges.
Finished seeds leave the batch and pending seeds take their place, so a batch stays full and a
converged seed costs nothing more. A seed's trajectory depends only on its own start point.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .capture import PathBank
from .solvers import PlainSolver, Solver
from .types import CONVERGED, DIVERGED, MAX_STEPS, Map, State


@dataclass
class IterationResult:
    """End points (N, *shape), status (N,) int8 codes, steps (N,) f evaluations per seed, total evals;
    last_sq_step (N,) float64: the squared step ||f(z) - z||^2 each seed's own last step measured (what
    the stopping rule tested), telling a seed cut off by ``max_steps`` near a fixed point from one still
    travelling; captured_by (N,): the earlier seed whose path each seed joined (``capture``), -1 if none."""

    end: torch.Tensor
    status: np.ndarray
    steps: np.ndarray
    n_evals: int
    last_sq_step: np.ndarray
    captured_by: np.ndarray | None = None


Recorder = Callable[[np.ndarray, np.ndarray, torch.Tensor], None]
StepCallback = Callable[[int, float, int], None]


def iterate(f: Map, z0: torch.Tensor, *, tol: float = 1e-6, max_steps: int = 3000, batch_size: int = 256,
            max_norm: float = 1e6, solver: Solver | None = None, record_every: int = 0,
            recorder: Recorder | None = None, progress: Callable[[int], None] | None = None,
            capture: float = 0.0, on_step: StepCallback | None = None) -> IterationResult:
    """Iterate ``f`` from every row of ``z0`` (N, *shape) until each seed stops.

    ``record_every`` k > 0 calls ``recorder(seed_indices, steps, z)`` with the points at steps
    0, k, 2k, ... and the end point of each seed. ``progress(n)`` is called as n seeds finish;
    ``on_step(active, median_step, n_evals)`` after every step (seeds in the batch, their median step
    count, evaluations of f so far), so long seeds show movement before any of them finishes.

    ``capture`` r > 0: a seed i that comes within r ||p|| of a point p that an earlier seed j < i
    visited at the same step count or before stops there and ends as j ends (end point and status;
    its own evaluations are kept in ``steps``). Seeds that join a path already walked do not walk
    it again. The rule looks only at seeds j < i and their steps <= i's, which exist whatever the
    batch size, so results do not depend on it.
    """
    solver = solver or PlainSolver()
    f, z0 = _float32_state(f, z0)
    n = z0.shape[0]
    end = torch.empty_like(z0)
    status = np.full(n, MAX_STEPS, dtype=np.int8)
    steps = np.zeros(n, dtype=np.int32)
    last_sq = np.full(n, np.nan)
    n_evals, next_seed = 0, 0
    idx = torch.empty(0, dtype=torch.long)
    z = z0[:0]
    age = torch.empty(0, dtype=torch.long)
    state: State = {}
    bank = PathBank(capture) if capture > 0 else None
    captured_by = np.full(n, -1, dtype=np.int64)

    def refill() -> None:
        nonlocal idx, z, age, state, next_seed
        take = min(batch_size - len(idx), n - next_seed)
        if take <= 0:
            return
        new_idx = torch.arange(next_seed, next_seed + take)
        next_seed += take
        new_z = z0[new_idx]
        if bank is not None:
            bank.add(new_idx, torch.zeros(take, dtype=torch.long), new_z)
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
        if on_step:
            on_step(len(idx), float(age.float().median()), n_evals)
        sq_step = sq_step.cpu()  # per-seed bookkeeping (masks, ages, indices) is on the CPU; no-op there
        norms = z_next.flatten(1).norm(dim=1).cpu()
        finite = torch.isfinite(sq_step) & torch.isfinite(norms)
        diverged = ~finite | (norms > max_norm)
        converged = ~diverged & (sq_step < tol)
        done = diverged | converged | (age >= max_steps)
        if bank is not None:
            bank.add(idx, age, z_next)  # before the query: seeds j < i of this batch at this step count
            owner = bank.owner(idx, age, z_next, ~done)
            joined = owner >= 0
            captured_by[idx[joined].numpy()] = owner[joined].numpy()
            done = done | joined
        if record_every and recorder:
            rec = ((age % record_every) == 0) | done
            if rec.any():
                recorder(idx[rec].numpy(), age[rec].numpy().astype(np.int32), z_next[rec])
        if done.any():
            d_idx = idx[done].numpy()
            end[d_idx] = z_next[done]
            steps[d_idx] = age[done].numpy()
            last_sq[d_idx] = sq_step[done].double().cpu().numpy()
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
    for i in np.flatnonzero(captured_by >= 0):  # owners come first, so chains resolve in one pass
        end[i], status[i] = end[captured_by[i]], status[captured_by[i]]
    return IterationResult(end=end, status=status, steps=steps, n_evals=n_evals, last_sq_step=last_sq,
                           captured_by=captured_by if bank is not None else None)


def _float32_state(f: Map, z0: torch.Tensor) -> tuple[Map, torch.Tensor]:
    """A bfloat16/float16 map still iterates in float32: the state, squared steps, norms, the solvers'
    mixing and the end points are float32, and only f runs in low precision. Seeds given in low
    precision are cast back to it when f is evaluated (an adapter casts its input itself, so float32
    seeds work too). float32 and float64 maps pass through untouched."""
    if z0.dtype in (torch.bfloat16, torch.float16):
        low = z0.dtype
        return (lambda z: _widen(f(z.to(low)))), z0.float()
    return (lambda z: _widen(f(z))), z0


def _widen(z: torch.Tensor) -> torch.Tensor:
    return z.float() if z.dtype in (torch.bfloat16, torch.float16) else z
