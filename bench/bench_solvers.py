"""Solvers benchmark: plain iteration against the accelerated solvers (Anderson, relax), with verified attractors.

For each model: evaluations of f and wall time of both solvers from the same seeds, how many seeds
converge, how many distinct solutions each finds, how many are verified attractors (spectral radius
< 1), and how many verified attractors both find (cosine > 0.99). Verification time is reported apart.

Usage:
  .venv/bin/python bench/bench_solvers.py --model demo:memorize --seeds 128 --threads 1
  .venv/bin/python bench/bench_solvers.py --model /work/shared/weights/taef2 --image-shape 3,64,64 \
      --seeds 4 --tol 1e-5 --max-steps 500 --batch-size 4 --threads 1 [--solvers anderson --solver-option m=10]
  .venv/bin/python bench/bench_solvers.py --model demo:generalize --solvers plain,relax+capture --capture 0.1
Prints a markdown table row per solver for docs/benchmarks.md (and --json FILE for the raw numbers).
"end residual^2" is ||f(z) - z||^2 where each seed stopped: how close the unconverged seeds got.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from latentfield.adapters import load_adapter
from latentfield.probe.commands.common import key_value
from latentfield.probe.rundir import ProbeConfig, run_probe


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
    p.add_argument("--device", default=None, help="cpu (default) or cuda[:N], as latentfield --device")
    p.add_argument("--solver-option", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                   help="setting of the accelerated solvers (repeatable), as latentfield probe --solver-option")
    p.add_argument("--solvers", default="plain,anderson,relax",
                   help="comma-separated, e.g. relax to rerun one; NAME+capture adds path capture (--capture)")
    p.add_argument("--capture", type=float, default=0.1,
                   help="path capture radius of the NAME+capture rows (latentfield probe --capture; default 0.1)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    fast = {s.partition("+")[0] for s in args.solvers.split(",")} - {"plain"}
    if args.solver_option and len(fast) > 1:  # Anderson's and relax's options differ
        p.error(f"--solver-option applies to one accelerated solver; list one with --solvers (got {', '.join(fast)})")
    torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.image_shape.split(",")) if args.image_shape else None
    adapter = load_adapter(args.model, image_shape=shape, device=args.device)
    rows, found = {}, {}
    for solver in args.solvers.split(","):
        name, _, extra = solver.partition("+")
        if extra not in ("", "capture"):
            p.error(f"unknown row {solver!r}: expected NAME or NAME+capture")
        options = dict(args.solver_option) if name != "plain" else {}
        cfg = ProbeConfig(n_seeds=args.seeds, tol=args.tol, max_steps=args.max_steps, batch_size=args.batch_size,
                          solver=name, verify=True, solver_options=options, capture=args.capture if extra else 0.0)
        t0 = time.perf_counter()
        res = run_probe(adapter, cfg, progress=False)
        total = time.perf_counter() - t0  # res.wall_time_s is the iteration alone; the rest is verification
        kinds = [q["kind"] for q in res.stability["per_attractor"]]
        found[solver] = res.attractors[[k == "attractor" for k in kinds]].flatten(1).float()
        end = res.end_points.to(adapter.dtype)
        residual = torch.cat([(adapter.f(e) - e).flatten(1).double().pow(2).sum(1)
                              for e in end.split(args.batch_size)])  # ||f(z) - z||^2 where each seed stopped
        conv = res.status == 0
        rows[solver] = {"model": args.model, "solver": name + (f" + capture {cfg.capture:g}" if cfg.capture else ""),
                        "options": options, "seeds": args.seeds, "captured": res.summary().get("n_captured"),
                        "converged": res.counts["converged"], "n_evals": res.n_evals,
                        "evals_converged_seeds": int(res.steps[conv].sum()), "wall_s": round(res.wall_time_s, 2),
                        "solutions": len(res.attractors), "verified": len(found[solver]),
                        "saddles": kinds.count("saddle_or_repeller"), "marginal": kinds.count("marginal"),
                        "verify_s": round(total - res.wall_time_s, 2),
                        "steps_median": res.summary()["steps_to_converge"]["median"],
                        "end_residual_median": float(residual.median()), "end_residual_max": float(residual.max()),
                        "stability": res.stability, "converged_mask": conv, "steps": res.steps}
    for name, r in rows.items():
        r["verified_also_plain"] = overlap(found[name], found["plain"]) if "plain" in found else None
    print("| model | solver | converged | evals of f | evals on converged seeds | wall (s) | median steps | "
          "end residual^2 median / max | solutions | verified | saddles | marginal | verified also by plain | verify (s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows.values():
        print(f"| {r['model']} | {r['solver']} | {r['converged']}/{r['seeds']} | {r['n_evals']} | "
              f"{r['evals_converged_seeds']} | {r['wall_s']} | {r['steps_median']} | "
              f"{r['end_residual_median']:.2g} / {r['end_residual_max']:.2g} | {r['solutions']} | {r['verified']} | "
              f"{r['saddles']} | {r['marginal']} | {r['verified_also_plain']} | {r['verify_s']} |")
    for name in (n for n in rows if n != "plain" and "plain" in rows):
        ratio = rows["plain"]["n_evals"] / max(rows[name]["n_evals"], 1)
        both = rows["plain"]["converged_mask"] & rows[name]["converged_mask"]
        like = rows["plain"]["steps"][both].sum() / max(rows[name]["steps"][both].sum(), 1)
        print(f"\nplain / {name} evaluations: {ratio:.2f}x in total, {like:.2f}x on the {int(both.sum())} seeds both "
              f"converge; plain's verified attractors also found by {name}: "
              f"{overlap(found['plain'], found[name])}/{len(found['plain'])}; options: {rows[name]['options'] or 'defaults'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([{k: v for k, v in r.items() if k not in ("converged_mask", "steps")} for r in rows.values()],
                      fh, indent=1)


if __name__ == "__main__":
    main()
