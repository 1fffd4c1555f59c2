"""float32 vs bfloat16: f(z) throughput, and whether the two dtypes find the same attractors.

``throughput``: one f(z) = E(D(z)) per timed call, each model loaded through ``load_adapter(...,
dtype=...)``: TAEF2 (real weights, ../shared/weights/taef2) and the SD 1.x VAE architecture (random
weights, as in bench_adapters.py; forward cost does not depend on the weight values).

``attractors``: the same probe (same seeds, settings) run in both dtypes; counts of converged seeds and
attractors in each, and the cosine of attractor pairs matched one-to-one (Hungarian assignment on
cosine), plus how many seeds end at the same point (cosine > 0.99) in both.

Usage (nothing is downloaded):
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_dtype.py throughput [--device cpu] [--threads 2] [--repeats 5]
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_dtype.py attractors --model demo:generalize --seeds 128
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_dtype.py attractors --model ../shared/weights/taef2 \\
        --image-shape 3,16,16 --seeds 32 --tol 1e-5 --max-steps 2000
Prints markdown tables for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_adapters import TAEF2, sd_vae  # noqa: E402

from latentfield.adapters import load_adapter  # noqa: E402
from latentfield.probe.engine import CONVERGED  # noqa: E402
from latentfield.probe.rundir import ProbeConfig, run_probe  # noqa: E402

DTYPES = ("float32", "bfloat16")


def throughput(args: argparse.Namespace) -> None:
    print(f"device {args.device}, torch {torch.__version__}, {args.threads} threads, batch {args.batch}; "
          f"{args.repeats} timed calls per dtype after one warm-up, the two dtypes alternating (so load from "
          "other jobs hits both alike); best and median\n")
    print("| model | image | latent | float32 f(z) best / median (s) | bfloat16 f(z) best / median (s) | "
          "bfloat16 speed-up (best) |")
    print("|---|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        sd_spec, _ = sd_vae(Path(tmp))
        cases = [("TAEF2 (real weights)", str(TAEF2), s) for s in args.taef2_sizes] + \
                [("SD 1.x VAE architecture (random weights)", sd_spec, s) for s in args.sd_sizes]
        for what, spec, size in cases:
            models = {dt: load_adapter(spec, image_shape=(3, size, size), device=args.device, dtype=dt) for dt in DTYPES}
            z = torch.randn(args.batch, *models["float32"].latent_shape, generator=torch.Generator().manual_seed(0))
            sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
            times: dict[str, list[float]] = {dt: [] for dt in DTYPES}
            for r in range(args.repeats + 1):
                for dt in DTYPES:
                    t0 = time.perf_counter()
                    models[dt].f(z)
                    sync()
                    if r:  # the first round is the warm-up
                        times[dt].append(time.perf_counter() - t0)
            best = {dt: min(t) for dt, t in times.items()}
            med = {dt: float(np.median(t)) for dt, t in times.items()}
            print(f"| {what} | 3x{size}x{size} | {'x'.join(map(str, models['float32'].latent_shape))} | "
                  f"{best['float32']:.3f} / {med['float32']:.3f} | {best['bfloat16']:.3f} / {med['bfloat16']:.3f} | "
                  f"{best['float32'] / best['bfloat16']:.2f}x |", flush=True)


def match(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Cosines of the one-to-one pairing of rows of ``a`` and ``b`` that maximises their sum."""
    from scipy.optimize import linear_sum_assignment
    if not len(a) or not len(b):
        return np.zeros(0)
    cos = torch.nn.functional.normalize(a.flatten(1).double(), dim=1) @ \
        torch.nn.functional.normalize(b.flatten(1).double(), dim=1).T
    rows, cols = linear_sum_assignment(-cos.numpy())
    return cos.numpy()[rows, cols]


def attractors(args: argparse.Namespace) -> None:
    shape = tuple(int(v) for v in args.image_shape.split(",")) if args.image_shape else None
    cfg = ProbeConfig(n_seeds=args.seeds, tol=args.tol, max_steps=args.max_steps, batch_size=args.batch_size)
    name = args.label or args.model
    print(f"{name}, {args.seeds} Gaussian seeds, tol {args.tol:g}, max {args.max_steps} steps; "
          f"torch {torch.__version__}, {args.threads} threads\n")
    print("| model | dtype | converged | median steps | attractors (cos 0.99) | evals | last squared step median "
          "(unconverged) | wall (s) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|", flush=True)
    res, models = {}, {}
    for dt in DTYPES:
        adapter = models[dt] = load_adapter(args.model, image_shape=shape, device=args.device, dtype=dt)
        t0 = time.perf_counter()
        tol = args.tol_bfloat16 if dt == "bfloat16" and args.tol_bfloat16 else args.tol
        r = res[dt] = run_probe(adapter, replace(cfg, tol=tol), progress=False)
        s, u = r.summary(), r.unconverged()
        sq = f"{u['sq_step_median']:.3g}" if u and "sq_step_median" in u else "-"
        print(f"| {name} | {dt} | {s['counts']['converged']}/{s['n_seeds']} | {s['steps_to_converge']['median']} | "
              f"{s['n_attractors']} | {s['n_evals']} | {sq} | {time.perf_counter() - t0:.1f} |", flush=True)
    a, b = res["float32"], res["bfloat16"]
    cos = match(a.attractors, b.attractors)
    both = (a.status == CONVERGED) & (b.status == CONVERGED)
    seed_cos = torch.nn.functional.cosine_similarity(a.end_points.flatten(1).double(),
                                                     b.end_points.flatten(1).double(), dim=1).numpy()
    nan = float("nan")
    print(f"\nmatched attractor pairs: {len(cos)}; cosine min / median {cos.min() if len(cos) else nan:.4f} / "
          f"{np.median(cos) if len(cos) else nan:.4f}; pairs above 0.99: {int((cos > 0.99).sum())}")
    print(f"seeds converged in both dtypes: {int(both.sum())}; of these ending at the same point (cosine > 0.99): "
          f"{int((seed_cos[both] > 0.99).sum())}; end-point cosine median "
          f"{np.median(seed_cos[both]) if both.any() else nan:.4f}; over all seeds (converged or not) "
          f"{np.median(seed_cos):.4f}")
    if len(a.attractors) and args.floor_steps:
        sq, cos_end = floor(models["bfloat16"], a.attractors, args.floor_steps)
        print(f"bfloat16 map started on the {len(a.attractors)} float32 attractors, {args.floor_steps} steps: squared step "
              f"over the last half median {np.median(sq):.3g}, max {sq.max():.3g}; cosine of the end point to its "
              f"float32 attractor min {cos_end.min():.4f}")


def floor(model, points: torch.Tensor, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Iterate ``model.f`` (float32 state) from ``points`` for ``steps`` steps: the squared steps of the last
    half (the noise floor of the stopping rule there) and the cosine of each end point to its start."""
    z, sq = points.float().to(model.device), []
    for t in range(steps):
        z_next = model.f(z).float()
        if t >= steps // 2:
            sq.append((z_next - z).flatten(1).pow(2).sum(1).cpu())
        z = z_next
    cos = torch.nn.functional.cosine_similarity(z.flatten(1).cpu().double(), points.flatten(1).double(), dim=1)
    return torch.cat(sq).numpy(), cos.numpy()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--taef2-sizes", type=int, nargs="*", default=[64, 256])
    t.add_argument("--sd-sizes", type=int, nargs="*", default=[64, 128])
    t.add_argument("--batch", type=int, default=1)
    t.add_argument("--repeats", type=int, default=5)
    a = sub.add_parser("attractors")
    a.add_argument("--model", default="demo:generalize")
    a.add_argument("--label", default=None, help="model name in the table")
    a.add_argument("--image-shape", default=None, metavar="C,H,W")
    a.add_argument("--seeds", type=int, default=128)
    a.add_argument("--tol", type=float, default=1e-6)
    a.add_argument("--max-steps", type=int, default=3000)
    a.add_argument("--batch-size", type=int, default=128)
    a.add_argument("--tol-bfloat16", type=float, default=None, help="another tolerance for the bfloat16 run")
    a.add_argument("--floor-steps", type=int, default=200,
                   help="steps of the bfloat16 map from the float32 attractors, to measure its squared-step floor")
    for q in (t, a):
        q.add_argument("--device", default="cpu")
        q.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    (throughput if args.what == "throughput" else attractors)(args)


if __name__ == "__main__":
    main()
