"""Engine benchmarks: (a) overhead of run_probe over bare f(z) = E(D(z)) calls, (b) active-set compaction.

Usage: .venv/bin/python bench/bench_engine.py [--model demo:generalize] [--threads 2]
Prints markdown tables for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from latentfield.adapters import load_adapter
from latentfield.probe.engine import CONVERGED
from latentfield.probe.rundir import ProbeConfig, run_probe
from latentfield.probe.engine.seeds import make_seeds


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def overhead(adapter, batch: int, steps: int) -> tuple[float, float]:
    """Probe with a tolerance no seed meets (every seed runs ``steps`` steps) vs the same bare calls."""
    z0 = make_seeds("gaussian", range(batch), adapter.latent_shape, 0)
    cfg = ProbeConfig(n_seeds=batch, batch_size=batch, tol=1e-30, max_steps=steps)

    def bare() -> None:
        z = z0
        for _ in range(steps):
            z = adapter.f(z)

    t_bare = best_of(bare)
    t_probe = best_of(lambda: run_probe(adapter, cfg, progress=False))
    return t_bare, t_probe


def compaction(adapter, n: int, batch: int, max_steps: int) -> dict[str, float]:
    """run_probe (finished seeds leave the batch) vs a naive loop stepping all seeds until the last stops."""
    cfg = ProbeConfig(n_seeds=n, batch_size=batch, max_steps=max_steps)
    t0 = time.perf_counter()
    res = run_probe(adapter, cfg, progress=False)
    t_probe = time.perf_counter() - t0
    last = int(res.steps.max())
    z = make_seeds("gaussian", range(n), adapter.latent_shape, 0)
    t0 = time.perf_counter()
    for _ in range(last):  # naive: every seed is stepped until the slowest one is done
        z = torch.cat([adapter.f(z[i:i + batch]) for i in range(0, n, batch)])
    t_naive = time.perf_counter() - t0
    return {"evals_probe": res.n_evals, "evals_naive": n * last, "time_probe": t_probe, "time_naive": t_naive,
            "converged": int((res.status == CONVERGED).sum()), "median_steps": float(np.median(res.steps))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="demo:generalize")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    adapter = load_adapter(args.model)
    print(f"model {adapter.name}, latent {adapter.latent_shape}, torch threads {args.threads}\n")
    print("| batch | steps | bare f calls (s) | run_probe (s) | overhead |\n|---|---|---|---|---|")
    for batch, steps in ((256, 200), (64, 400), (16, 800)):
        t_bare, t_probe = overhead(adapter, batch, steps)
        print(f"| {batch} | {steps} | {t_bare:.3f} | {t_probe:.3f} | {100 * (t_probe / t_bare - 1):+.1f}% |")
    c = compaction(adapter, n=512, batch=256, max_steps=3000)
    print("\n| seeds | converged | median steps | evals (compaction) | evals (naive) | time (compaction) | time (naive) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| 512 | {c['converged']} | {c['median_steps']:.0f} | {c['evals_probe']} | {c['evals_naive']} | "
          f"{c['time_probe']:.2f} s | {c['time_naive']:.2f} s |")


if __name__ == "__main__":
    main()
