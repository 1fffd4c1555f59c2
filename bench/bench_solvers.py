"""Solvers benchmark: plain iteration against the accelerated solvers (Anderson, relax), with verified attractors.

For each model: evaluations of f and wall time of both solvers from the same seeds, how many seeds
converge, how many distinct solutions each finds, how many are verified attractors (spectral radius
< 1), and how many verified attractors both find (cosine > 0.99). Verification time is reported apart.

Per-seed agreement with plain iteration (a set-level check cannot see a seed that changed basin): seed i
of a solver agrees when it ends with plain's status for seed i AND its end point lies within a relative
Euclidean distance of AGREE_RTOL = 0.02 of plain's end point for seed i (the tolerance that makes two
end points one Euclidean attractor, ``ProbeConfig.euclid_rtol``). Reported over all seeds, and apart
for captured and not-captured seeds of the capture rows.

Usage:
  .venv/bin/python bench/bench_solvers.py --model demo:memorize --seeds 128 --threads 1
  .venv/bin/python bench/bench_solvers.py --model /work/shared/weights/taef2 --image-shape 3,64,64 \
      --seeds 4 --tol 1e-5 --max-steps 500 --batch-size 4 --threads 1 [--solvers anderson --solver-option m=10]
  .venv/bin/python bench/bench_solvers.py --model demo:generalize --solvers plain,relax+capture --capture 0.1
  .venv/bin/python bench/bench_solvers.py --model demo:generalize --solvers plain,relax,relax+capture=0.05
Prints a markdown table row per solver for docs/benchmarks.md (and --json FILE for the raw numbers).
"end residual^2" is ||f(z) - z||^2 where each seed stopped: how close the unconverged seeds got.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
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


AGREE_RTOL = 0.02


def per_seed_agreement(ref_end: torch.Tensor, ref_status: np.ndarray, end: torch.Tensor, status: np.ndarray,
                       captured: np.ndarray | None = None, rtol: float = AGREE_RTOL) -> dict[str, tuple[int, int]]:
    """Seeds (N,) whose end point (N, ...) matches the reference run's for the same seed: same status and
    ||end_i - ref_end_i|| <= rtol ||ref_end_i||. Returns (agreeing, total) over ``all`` seeds, over the seeds
    the reference converged (``ref_converged``), and, with ``captured`` (N,) bool, over ``captured`` and
    ``not_captured`` seeds."""
    a, b = ref_end.flatten(1).double(), end.flatten(1).double()
    close = ((b - a).norm(dim=1) <= rtol * a.norm(dim=1)).numpy()
    ok = close & (np.asarray(status) == np.asarray(ref_status))
    groups = {"all": np.ones(len(ok), bool), "ref_converged": np.asarray(ref_status) == 0}
    if captured is not None:
        groups |= {"captured": np.asarray(captured, bool), "not_captured": ~np.asarray(captured, bool)}
    return {g: (int(ok[m].sum()), int(m.sum())) for g, m in groups.items()}


def _share(pair: tuple[int, int] | None) -> str:
    return "-" if not pair or not pair[1] else f"{pair[0]}/{pair[1]} ({100 * pair[0] / pair[1]:.1f}%)"


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
                   help="comma-separated, e.g. relax to rerun one; NAME+capture adds path capture (--capture), "
                        "NAME+capture=R with radius R")
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
        mode, _, radius = extra.partition("=")
        if mode not in ("", "capture") or (radius and not radius.replace(".", "", 1).isdigit()):
            p.error(f"unknown row {solver!r}: expected NAME, NAME+capture or NAME+capture=R (R a number)")
        capture = float(radius) if radius else args.capture if mode else 0.0
        options = dict(args.solver_option) if name != "plain" else {}
        cfg = ProbeConfig(n_seeds=args.seeds, tol=args.tol, max_steps=args.max_steps, batch_size=args.batch_size,
                          solver=name, verify=True, solver_options=options, capture=capture)
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
                        "stability": res.stability, "converged_mask": conv, "steps": res.steps,
                        "end": res.end_points, "status": res.status,
                        "captured_mask": res.captured_by >= 0 if res.captured_by is not None else None}
    for name, r in rows.items():
        r["verified_also_plain"] = overlap(found[name], found["plain"]) if "plain" in found else None
        if "plain" in rows:
            r["agreement"] = per_seed_agreement(rows["plain"]["end"], rows["plain"]["status"], r["end"], r["status"],
                                                r["captured_mask"])
    print("| model | solver | converged | evals of f | evals on converged seeds | wall (s) | median steps | "
          "end residual^2 median / max | solutions | verified | saddles | marginal | verified also by plain | verify (s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows.values():
        print(f"| {r['model']} | {r['solver']} | {r['converged']}/{r['seeds']} | {r['n_evals']} | "
              f"{r['evals_converged_seeds']} | {r['wall_s']} | {r['steps_median']} | "
              f"{r['end_residual_median']:.2g} / {r['end_residual_max']:.2g} | {r['solutions']} | {r['verified']} | "
              f"{r['saddles']} | {r['marginal']} | {r['verified_also_plain']} | {r['verify_s']} |")
    if "plain" in rows:
        print(f"\nSpeed-up and per-seed agreement with plain iteration (same status, end point within relative "
              f"Euclidean {AGREE_RTOL:g} of plain's):\n")
        print("| model | seeds | solver | evals saved, total | evals saved, seeds both converge | agree, all seeds | "
              "agree, seeds plain converged | agree, captured | agree, not captured |")
        print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for name in (n for n in rows if n != "plain" and "plain" in rows):
        r = rows[name]
        ratio = rows["plain"]["n_evals"] / max(r["n_evals"], 1)
        both = rows["plain"]["converged_mask"] & r["converged_mask"]
        like = rows["plain"]["steps"][both].sum() / max(r["steps"][both].sum(), 1)
        r["speedup_total"], r["speedup_both_converged"] = round(float(ratio), 3), round(float(like), 3)
        ag = r["agreement"]
        print(f"| {r['model']} | {r['seeds']} | {r['solver']} | {ratio:.2f}x | {like:.2f}x ({int(both.sum())}) | "
              f"{_share(ag['all'])} | {_share(ag['ref_converged'])} | {_share(ag.get('captured'))} | "
              f"{_share(ag.get('not_captured'))} |")
    for name in (n for n in rows if n != "plain" and "plain" in rows):
        print(f"plain's verified attractors also found by {name}: {overlap(found['plain'], found[name])}/"
              f"{len(found['plain'])}; options: {rows[name]['options'] or 'defaults'}")
    if args.json:
        with open(args.json, "w") as fh:
            skip = ("converged_mask", "steps", "end", "status", "captured_mask")
            json.dump([{k: v for k, v in r.items() if k not in skip} for r in rows.values()], fh, indent=1)


if __name__ == "__main__":
    main()
