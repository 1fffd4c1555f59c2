"""``latentfield field MODEL --out fig.png``: a picture of the latent dynamics.

2-D latents: stream plot of V(z) = f(z) - z with attractors (marked by stability) and trajectories.
Larger latents: trajectories projected on the top two principal components of the attractor set.
"""
from __future__ import annotations

import argparse

from ..data import load_images
from latentfield.adapters.errors import UsageError
from ..analyses.field import split_trajectories
from ..report.field_plot import check_figure_suffix, field_figure, save_figure
from ..rundir import run_probe
from .common import add_model_args, add_probe_args, model_from_args, probe_config


def _box(text: str) -> tuple[float, float, float, float]:
    try:
        box = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected XMIN,XMAX,YMIN,YMAX, got {text!r}") from None
    if len(box) != 4 or not (box[0] < box[1] and box[2] < box[3]):
        raise argparse.ArgumentTypeError(f"expected XMIN,XMAX,YMIN,YMAX with XMIN < XMAX and YMIN < YMAX, got {text!r}")
    return box  # type: ignore[return-value]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("field", help="plot the latent vector field f(z) - z, attractors and trajectories",
                       description="Stream plot of V(z) = f(z) - z for 2-D latents; PCA projection of "
                                   "trajectories on the attractor set for any latent.")
    add_model_args(p)
    add_probe_args(p, seeds=64)
    p.add_argument("--out", required=True, help="image file to write (.png, .pdf, .svg)")
    p.add_argument("--data", default=None, help="images for --init data")
    p.add_argument("--trajectories", type=int, default=12, metavar="N", help="trajectories drawn (default 12)")
    p.add_argument("--box", type=_box, default=None, metavar="XMIN,XMAX,YMIN,YMAX",
                   help="2-D latents: region of the stream plot (default: around the attractors and trajectories)")
    p.add_argument("--grid", type=int, default=40, help="2-D latents: grid points per axis (default 40)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.trajectories < 0 or args.grid < 2:
        raise UsageError("--trajectories must be >= 0 and --grid >= 2")
    check_figure_suffix(args.out)  # before the probe, not after it
    adapter = model_from_args(args)
    data = load_images(args.data, adapter.image_shape) if args.data else None
    # Every step of every seed, unless that would exceed ~20M recorded numbers (large latents).
    every = max(1, -(-args.seeds * args.max_steps * adapter.latent_dim // 20_000_000))
    cfg = probe_config(args, record_every=every)
    cfg.verify = True  # the markers show each attractor's kind
    result = run_probe(adapter, cfg, data=data, progress=not args.quiet)
    paths = split_trajectories(result.trajectories, args.trajectories) if result.trajectories else []
    if adapter.latent_dim != 2 and len(result.attractors) == 0 and not paths:
        raise UsageError(f"{adapter.name}: nothing to draw (no attractor found and no trajectories requested)")
    kinds = [p["kind"] for p in result.stability["per_attractor"]] if result.stability else None
    c = result.counts
    title = (f"{adapter.name}: {c['converged']}/{len(result.status)} seeds converged, "
             f"{len(result.attractors)} attractors ({cfg.solver})")
    fig = field_figure(adapter.f if adapter.latent_dim == 2 else None, result.attractors, paths, kinds,
                       box=args.box, grid=args.grid, title=title)
    out = save_figure(fig, args.out)
    s = result.stability or {}
    print(f"{title}; {s.get('n_attractor', 0)} verified attractors, {s.get('n_saddle_or_repeller', 0)} "
          f"saddles/repellers, {s.get('n_marginal', 0)} marginal")
    print(f"wrote {out}")
    return 0
