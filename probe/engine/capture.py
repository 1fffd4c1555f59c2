"""Path capture for ``iterate(capture=r)``: every point visited so far, searched for a nearby earlier seed.

A seed i that comes within r ||p|| of a point p that an earlier seed j < i visited at the same step count
or before stops and ends as j ends. Only seeds j < i and steps <= i's are looked at, which exist whatever
the batch size, so results do not depend on it. Distances are computed per pair (no matmul shortcut), so
a capture decision cannot hinge on batch-shaped rounding.
"""
from __future__ import annotations

import torch


class PathBank:
    """Every point visited so far (seed, step count, z), searched for ``iterate``'s ``capture`` rule."""

    def __init__(self, capture: float) -> None:
        self.capture = capture
        self.z: list[torch.Tensor] = []
        self.seed: list[torch.Tensor] = []
        self.step: list[torch.Tensor] = []

    def add(self, seeds: torch.Tensor, steps: torch.Tensor, z: torch.Tensor) -> None:
        self.z.append(z.detach().flatten(1).double().cpu())
        self.seed.append(seeds.clone())
        self.step.append(steps.clone())

    def owner(self, seeds: torch.Tensor, steps: torch.Tensor, z: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        """(B,) the seed whose visited point lies nearest within the capture radius, -1 where none."""
        out = torch.full((len(seeds),), -1, dtype=torch.long)
        if not active.any():
            return out
        bz, bseed, bstep = torch.cat(self.z), torch.cat(self.seed), torch.cat(self.step)
        self.z, self.seed, self.step = [bz], [bseed], [bstep]  # keep one block
        q = z.detach().flatten(1).double().cpu()[active]
        d = torch.cdist(q, bz, compute_mode="donot_use_mm_for_euclid_dist")  # per pair: no batch-shaped rounding
        ok = (bseed[None] < seeds[active][:, None]) & (bstep[None] <= steps[active][:, None])
        ok &= d < self.capture * bz.norm(dim=1)[None]
        d = torch.where(ok, d, torch.full_like(d, float("inf")))
        best = d.argmin(1)
        out[active] = torch.where(ok.any(1), bseed[best], torch.full_like(best, -1))
        return out
