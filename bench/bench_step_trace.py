"""Is a slow map converging, or travelling? Plain iteration traced step by step (docs/benchmarks.md).

Iterates f from Gaussian seeds (or encoded images with --data) with no stopping rule and prints, every
--every steps, medians over seeds of: the squared step ||f(z) - z||^2 (what the stopping rule tests),
||z||, the cosine between consecutive steps, and the straightness of the last window (net displacement
/ path length). A converging seed has a squared step that falls towards the tolerance; a seed that
keeps a large squared step with aligned steps (cosine near 1, high straightness) is travelling along
the latent space, where no accelerated solver has a fixed point to extrapolate to.

With --spectrum (latents up to 512 dims) it then prints the eigenvalues of J_f at each seed's last
point: how many directions f contracts hard (|lambda| < 0.2), the largest |lambda|, and the largest
step h for which z + h (f(z) - z) (relax's over-relaxation, explicit Euler on dz/dt = f(z) - z) is
stable in every direction, min over eigenvalues of -2 Re(lambda - 1) / |lambda - 1|^2.

Usage:
  .venv/bin/python bench/bench_step_trace.py --model demo:memorize
  HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_step_trace.py --model ../shared/weights/taef2 \
      --image-shape 3,64,64 --seeds 2 --steps 4000 --every 500
  HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_step_trace.py --model ../shared/weights/taef2 \
      --image-shape 3,16,16 --seeds 4 --steps 300 --every 100 --spectrum
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from latentfield.adapters import load_adapter
from latentfield.probe.data import load_images
from latentfield.probe.engine.latents import encode_unit
from latentfield.probe.engine.seeds import make_seeds
from latentfield.probe.engine.stability import JacobianOperator

SPECTRUM_MAX_DIM = 512  # dense Jacobians: d jvps per point


def spectrum_row(adapter, z: torch.Tensor) -> str:
    """Eigenvalues of the dense J_f at one flat point z (d,), summarised as a markdown row."""
    op = JacobianOperator(adapter.f_differentiable, z.view(adapter.latent_shape), f_eval=adapter.f)
    lam = np.linalg.eigvals(op.dense().double().cpu().numpy())
    mu = lam - 1
    stable = mu.real < 0
    h_max = float(np.min(-2 * mu.real[stable] / np.abs(mu[stable]) ** 2)) if stable.any() else float("nan")
    return (f"| {np.mean(np.abs(lam) < 0.2):.2f} | {np.median(np.abs(lam)):.3f} | {np.abs(lam).max():.3f} | "
            f"{int((~stable).sum())} | {h_max:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="demo:memorize")
    p.add_argument("--image-shape", default=None)
    p.add_argument("--seeds", type=int, default=4, help="Gaussian seeds (ignored with --data)")
    p.add_argument("--data", default=None, help="start from these images' encodings (latentfield's DATA forms)")
    p.add_argument("--limit", type=int, default=4, help="images taken from --data")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default=None, help="cpu (default) or cuda[:N], as latentfield --device")
    p.add_argument("--spectrum", action="store_true", help=f"eigenvalues of J_f at the last points (d <= {SPECTRUM_MAX_DIM})")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.image_shape.split(",")) if args.image_shape else None
    adapter = load_adapter(args.model, image_shape=shape, device=args.device)
    if args.data:
        z = encode_unit(adapter, load_images(args.data, adapter.image_shape, limit=args.limit))
    else:
        z = make_seeds("gaussian", range(args.seeds), adapter.latent_shape)
    z = z.to(adapter.device, adapter.dtype).flatten(1)
    seeds = "encoded images from " + args.data if args.data else "Gaussian seeds"
    print(f"{args.model}, latent {tuple(adapter.latent_shape)}, {len(z)} {seeds}; medians over seeds\n")
    print("| step | squared step | norm | cos(consecutive steps) | straightness of the window | wall (s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    f = lambda v: adapter.f(v.view(len(v), *adapter.latent_shape)).flatten(1)  # noqa: E731
    prev, start, path, t0 = None, z, torch.zeros(len(z), device=z.device), time.perf_counter()
    with torch.no_grad():
        for step in range(1, args.steps + 1):
            d = f(z) - z
            cos = torch.nn.functional.cosine_similarity(d, prev) if prev is not None else torch.ones(len(z))
            z, prev, path = z + d, d, path + d.norm(dim=1)
            if step % args.every == 0:
                straight = (z - start).norm(dim=1) / path.clamp_min(1e-30)
                print(f"| {step} | {d.pow(2).sum(1).median():.3g} | {z.norm(dim=1).median():.3g} | "
                      f"{cos.median():.3f} | {straight.median():.3f} | {time.perf_counter() - t0:.0f} |", flush=True)
                start, path = z, torch.zeros_like(path)
    if args.spectrum:
        if z.shape[1] > SPECTRUM_MAX_DIM:
            p.error(f"--spectrum forms dense Jacobians: latents up to {SPECTRUM_MAX_DIM} dims, this one has {z.shape[1]}")
        print(f"\nJ_f at the last points (step {args.steps})\n")
        print("| share of abs(lambda) < 0.2 | median abs(lambda) | max abs(lambda) | directions with Re(lambda) >= 1 "
              "| largest stable relax step h |")
        print("|---:|---:|---:|---:|---:|")
        for row in z:
            print(spectrum_row(adapter, row))


if __name__ == "__main__":
    main()
