"""The engine's vocabulary: a latent map, per-seed solver state, and the three ways a seed can stop."""
from __future__ import annotations

from typing import Callable

import torch

Map = Callable[[torch.Tensor], torch.Tensor]  # (B, *shape) -> (B, *shape)
State = dict[str, torch.Tensor]  # per-seed solver state; every tensor has the batch as first axis

CONVERGED, MAX_STEPS, DIVERGED = 0, 1, 2
STATUS_NAMES = ("converged", "max_steps", "diverged")
