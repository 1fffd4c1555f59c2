"""``ProbeConfig``: how to probe (seeds, stopping rule, solver, de-duplication), the one configuration
every workflow iterates with. Each default is written here once; the CLI reads its defaults from it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from latentfield.adapters.errors import UsageError

from ..engine.seeds import INITS
from ..engine.solvers import SOLVERS, make_solver

# Fields that change how fast a run goes but not its result: a resumed run may change them.
RESULT_NEUTRAL = frozenset({"batch_size", "verify"})
AUTO_CHUNKS = 8  # chunk_size None: about this many chunks per run, so a killed run loses at most ~1/8 of it
CAPTURE_CHUNK = 1024  # capture compares seeds within a chunk: capture runs keep large chunks
# The most seeds one run takes. Assembly holds every seed in memory at once: its end point (latent size x 4
# bytes) and about 30 bytes of records (status, steps, last squared step, two labels), and
# attractors.safetensors stores every end point again. At 10**8 seeds of the demo's 16-dim latent that is
# 9 GB, and the run itself is 10**8 x steps evaluations of f (months for a small model on a CPU). More
# seeds: several runs with different ``seed`` (their seeds differ).
MAX_SEEDS = 10**8
MAX_END_POINT_BYTES = 64 * 2**30  # n_seeds x latent size x 4 bytes of float32 end points, at most 64 GiB


@dataclass
class ProbeConfig:
    """How to probe. Defaults are the paper's small-AE settings (tol 1e-6, 3000 steps).

    n_seeds, init (gaussian | uniform | orthogonal | data), seed, sigma / low, high: the seeds
    (``engine.seeds``). tol: stop when the squared step ||z(t+1) - z(t)||^2 (summed over latent
    dimensions) < tol; max_steps: step limit per seed; max_norm: a norm above it is divergence.
    batch_size: seeds evaluated together; chunk_size: seeds per resumable chunk (None: chosen from the
    run's size, see :meth:`chunk_seeds`). solver / solver_options: ``engine.solvers``. cos_threshold /
    euclid_rtol: de-duplication of end points into attractors. record_every: keep every k-th trajectory
    point. verify: classify attractors by the Jacobian's spectral radius (always on for accelerated solvers
    and capture). capture: > 0 stops a seed that joins an earlier seed's path (``engine.capture``).
    """

    n_seeds: int = 256
    init: str = "gaussian"
    seed: int = 0
    sigma: float = 1.0
    low: float = -1.0
    high: float = 1.0
    tol: float = 1e-6
    max_steps: int = 3000
    max_norm: float = 1e6
    batch_size: int = 256
    chunk_size: int | None = None
    solver: str = "plain"
    cos_threshold: float = 0.99
    euclid_rtol: float = 0.02
    record_every: int = 0
    verify: bool = False
    capture: float = 0.0
    solver_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"m": 5, "warmup": 30} for anderson

    @property
    def verified(self) -> bool:
        """Whether end points are stability-checked: asked for, or needed (acceleration and capture can
        land on points that are not attractors)."""
        return self.verify or self.solver != "plain" or bool(self.capture)

    def chunk_seeds(self) -> int:
        """Seeds per chunk: ``chunk_size``, or by default about 1/``AUTO_CHUNKS`` of the run (at least 8, at most a
        batch), so a small run is resumable too; capture runs keep ``CAPTURE_CHUNK`` (their rule looks within
        a chunk)."""
        if self.chunk_size is not None:
            return self.chunk_size
        if self.capture:
            return min(self.n_seeds, CAPTURE_CHUNK)
        return max(1, min(self.batch_size, max(8, -(-self.n_seeds // AUTO_CHUNKS))))

    def validate(self, latent_shape: tuple[int, ...] | None = None) -> None:
        """UsageError in one line, naming the parameter, for any setting that cannot run. With the model's
        ``latent_shape``, also the size of the end points the run would assemble (``MAX_END_POINT_BYTES``)."""
        if self.n_seeds <= 0:
            raise UsageError(f"number of seeds must be positive, got {self.n_seeds}")
        split = "split the work into runs with different `seed`"
        if self.n_seeds > MAX_SEEDS:
            raise UsageError(f"`n_seeds` is {self.n_seeds:,}, more than the {MAX_SEEDS:,} one run takes (its result "
                             f"holds every seed's end point in memory); {split}")
        if latent_shape:
            size = self.n_seeds * math.prod(latent_shape) * 4
            if size > MAX_END_POINT_BYTES:
                raise UsageError(f"`n_seeds` {self.n_seeds:,} x {math.prod(latent_shape):,} latent values x 4 bytes "
                                 f"is {size / 2**30:,.0f} GiB of end points, more than the "
                                 f"{MAX_END_POINT_BYTES // 2**30} GiB one run assembles in memory; {split}")
        for what, value in (("tolerance", self.tol), ("sigma", self.sigma)):
            if not value > 0:  # NaN too
                raise UsageError(f"{what} must be positive, got {value}")
            if not math.isfinite(value):  # tol inf: every seed would stop at once
                raise UsageError(f"{what} must be finite, got {value}")
        if not self.max_norm > 0:  # inf is allowed: no norm limit
            raise UsageError(f"max_norm must be positive, got {self.max_norm}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise UsageError(f"uniform seeds need finite low < high, got {self.low}, {self.high}")
        for what, value in (("max steps", self.max_steps), ("batch size", self.batch_size),
                            ("chunk size", self.chunk_seeds())):
            if value <= 0:
                raise UsageError(f"{what} must be positive, got {value}")
        if self.init not in INITS:
            raise UsageError(f"unknown init {self.init!r}: choose one of {', '.join(INITS)}")
        if self.solver not in SOLVERS:
            raise UsageError(f"unknown solver {self.solver!r}: choose one of {', '.join(SOLVERS)}")
        try:
            make_solver(self.solver, self.solver_options)
        except ValueError as e:
            raise UsageError(f"solver option: {e}") from None
        if self.record_every < 0:
            raise UsageError(f"record_every must be >= 0, got {self.record_every}")
        if not 0 <= self.capture < 1:
            raise UsageError(f"capture is a radius relative to a point's norm, in [0, 1); got {self.capture}")
        if not -1 <= self.cos_threshold <= 1:
            raise UsageError(f"cos_threshold is a cosine, in [-1, 1]; got {self.cos_threshold}")


__all__ = ["ProbeConfig", "RESULT_NEUTRAL", "MAX_SEEDS", "MAX_END_POINT_BYTES"]
