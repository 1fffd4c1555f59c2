"""Solvers benchmark: plain iteration against Anderson acceleration, with verified attractors.

For each model: evaluations of f and wall time of both solvers from the same seeds, how many seeds
converge, how many distinct solutions each finds, how many are verified attractors (spectral radius
< 1), and how many verified attractors both find (cosine > 0.99). Verification time is reported apart.

Usage:
  .venv/bin/python bench/bench_solvers.py --model demo:memorize --seeds 128 --tol 1e-6 --max-steps 3000
  .venv/bin/python bench/bench_solvers.py --model /work/shared/weights/taef2 --image-shape 3,64,64 \
      --seeds 16 --tol 1e-5 --max-steps 500
Prints a markdown table row per solver for docs/benchmarks.md (and --json FILE for the raw numbers).
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from latentfield.adapters import load_adapter
from latentfield.probe.run import ProbeConfig, run_probe


def overlap(a: torch.Tensor, b: torch.Tensor, threshold: float = 0.99) -> int:
    """How many rows of ``a`` have a row of ``b`` with cosine > threshold."""
    if not len(a) or not len(b):
        return 0
    cos = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
    return int((cos.max(1).values > threshold).sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo:memorize")
    p.add_argument("--image-shape", default=None)
    p.add_argument("--seeds", type=int, default=128)
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--max-steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.image_shape.split(",")) if args.image_shape else None
    adapter = load_adapter(args.model, image_shape=shape)
    rows, found = {}, {}
    for solver in ("plain", "anderson"):
        cfg = ProbeConfig(n_seeds=args.seeds, tol=args.tol, max_steps=args.max_steps, batch_size=args.batch_size,
                          solver=solver, verify=True)
        t0 = time.perf_counter()
        res = run_probe(adapter, cfg, progress=False)
        total = time.perf_counter() - t0  # res.wall_time_s is the iteration alone; the rest is verification
        kinds = [q["kind"] for q in res.stability["per_attractor"]]
        found[solver] = res.attractors[[k == "attractor" for k in kinds]].flatten(1).float()
        rows[solver] = {"model": args.model, "solver": solver, "seeds": args.seeds, "converged": res.counts["converged"],
                        "n_evals": res.n_evals, "wall_s": round(res.wall_time_s, 2), "solutions": len(res.attractors),
                        "verified": len(found[solver]), "saddles": kinds.count("saddle_or_repeller"),
                        "marginal": kinds.count("marginal"), "verify_s": round(total - res.wall_time_s, 2),
                        "steps_median": res.summary()["steps_to_converge"]["median"],
                        "stability": res.stability}
    rows["anderson"]["verified_also_plain"] = overlap(found["anderson"], found["plain"])
    rows["plain"]["verified_also_plain"] = len(found["plain"])
    ratio = rows["plain"]["n_evals"] / max(rows["anderson"]["n_evals"], 1)
    print("| model | solver | converged | evals of f | wall (s) | median steps | solutions | verified | "
          "saddles | marginal | verified also by plain | verify (s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows.values():
        print(f"| {r['model']} | {r['solver']} | {r['converged']}/{r['seeds']} | {r['n_evals']} | {r['wall_s']} | "
              f"{r['steps_median']} | {r['solutions']} | {r['verified']} | {r['saddles']} | {r['marginal']} | "
              f"{r['verified_also_plain']} | {r['verify_s']} |")
    print(f"\nplain / anderson evaluations: {ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(list(rows.values()), fh, indent=1)


if __name__ == "__main__":
    main()
