"""Is a slow map converging, or travelling? Plain iteration traced step by step (docs/benchmarks.md).

Iterates f from Gaussian seeds (or encoded images with --data) with no stopping rule and prints, every
--every steps, medians over seeds of: the squared step ||f(z) - z||^2 (what the stopping rule tests),
||z||, the cosine between consecutive steps, and the straightness of the last window (net displacement
/ path length). A converging seed has a squared step that falls towards the tolerance; a seed that
keeps a large squared step with aligned steps (cosine near 1, high straightness) is travelling along
the latent space, where no accelerated solver has a fixed point to extrapolate to.

Usage:
  .venv/bin/python bench/bench_step_trace.py --model demo:memorize
  HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_step_trace.py --model ../shared/weights/taef2 \
      --image-shape 3,64,64 --seeds 2 --steps 4000 --every 500
"""
from __future__ import annotations

import argparse
import time

import torch

from latentfield.adapters import load_adapter
from latentfield.probe.data import load_images
from latentfield.probe.latents import encode_unit
from latentfield.probe.seeds import make_seeds


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
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.image_shape.split(",")) if args.image_shape else None
    adapter = load_adapter(args.model, image_shape=shape)
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


if __name__ == "__main__":
    main()
