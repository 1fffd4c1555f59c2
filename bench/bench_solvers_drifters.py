"""Where do the seeds that plain iteration leaves unconverged go? (demo:memorize, docs/benchmarks.md)

Probes 128 Gaussian seeds with plain iteration and with Anderson (defaults, tol 1e-6, 3000 steps),
finds the solution of Anderson nearest (cosine) to each unconverged plain end point, then continues
plain iteration from those end points and prints their distance to that solution and their squared
step at 1, 1000 and 5000 further steps.

Usage: .venv/bin/python bench/bench_solvers_drifters.py [--model demo:memorize] [--steps 5000]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from latentfield.adapters import load_adapter
from latentfield.probe.rundir import ProbeConfig, run_probe


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo:memorize")
    p.add_argument("--seeds", type=int, default=128)
    p.add_argument("--steps", type=int, default=5000)
    args = p.parse_args()
    torch.set_num_threads(1)
    adapter = load_adapter(args.model)
    plain = run_probe(adapter, ProbeConfig(n_seeds=args.seeds), progress=False)
    fast = run_probe(adapter, ProbeConfig(n_seeds=args.seeds, solver="anderson"), progress=False)
    info = fast.stability["per_attractor"]
    stuck = np.flatnonzero(plain.status != 0)
    print(f"plain: {len(stuck)}/{args.seeds} seeds unconverged")
    if not len(stuck):
        return
    unit = torch.nn.functional.normalize
    cos = unit(plain.end_points[stuck].flatten(1), dim=1) @ unit(fast.attractors.flatten(1), dim=1).T
    near = cos.max(1)
    for s, c, k in zip(stuck, near.values.tolist(), near.indices.tolist()):
        d = (plain.end_points[s] - fast.attractors[k]).norm().item()
        print(f"seed {s}: nearest Anderson solution {k} ({info[k]['kind']}, rho {info[k]['spectral_radius']:.3f}), "
              f"cosine {c:.4f}, distance {d:.3f}; Anderson took this seed to solution {fast.labels[s]}")
    z, target = plain.end_points[stuck].clone(), fast.attractors[near.indices]
    for t in range(1, args.steps + 1):
        z_next = adapter.f(z)
        if t in (1, 1000, args.steps):
            dist = (z - target).flatten(1).norm(dim=1)
            sq = (z_next - z).flatten(1).pow(2).sum(1)
            print(f"+{t - 1} plain steps: distance median {dist.median():.4f} max {dist.max():.4f}, "
                  f"squared step median {sq.median():.2e} max {sq.max():.2e}, below 1e-6: {int((sq < 1e-6).sum())}")
        z = z_next


if __name__ == "__main__":
    main()
