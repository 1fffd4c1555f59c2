"""``latentfield dynamics CKPT [CKPT ...] --reference DATA``: attractors across training checkpoints."""
from __future__ import annotations

import argparse
from pathlib import Path

from latentfield.adapters.errors import UsageError

from ..data import load_images
from ..report.figures import dynamics_figure, save_figure
from ..rundir.layout import cache_root
from ..workflows.checkpoint_dynamics import training_dynamics, write_dynamics
from .common import add_model_args, add_probe_args, model_from_args, probe_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dynamics", help="attractor count, memorization and noise/data Chamfer across checkpoints",
                       description="For each checkpoint of one training run (in training order): attractors from "
                                   "noise, their memorization coefficient against --reference, and the Chamfer "
                                   "similarity of noise-started and data-started attractor sets.")
    add_model_args(p, "checkpoints", nargs="+", spec_help="checkpoint specs or paths, in training order; each may "
                   "carry its own settings, SPEC[image_shape=C,H,W,KEY=VALUE,...] (quote it in the shell), which win "
                   "over the model flags; all must share one latent shape")
    p.add_argument("--reference", required=True, help="training images (folder, array file, digits:train, ...)")
    p.add_argument("--n-data", type=int, default=256, help="reference images used as data seeds (default 256)")
    p.add_argument("--out", default=None, help="directory for dynamics.json and dynamics.png "
                   "(and the probe runs: an interrupted run resumes when rerun)")
    add_probe_args(p, seeds=256)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.n_data < 1:
        raise UsageError(f"--n-data must be >= 1, got {args.n_data}")
    adapters = [model_from_args(args, spec=s, per_model=True) for s in args.checkpoints]
    reference = load_images(args.reference, adapters[0].image_shape)
    rows = training_dynamics(adapters, reference, probe_config(args), n_data=args.n_data, progress=not args.quiet,
                             on_checkpoint=lambda i, r: print(
                                 f"{r['name']}: {r['n_attractors']} attractors, memorization "
                                 f"{_f(r['memorization_mean'])}, Chamfer(noise, data) {_f(r['chamfer_noise_data'])}"),
                             cache=cache_root(args.out))
    if args.out:
        written = [write_dynamics(rows, args.out, args.checkpoints, args.reference),
                   save_figure(dynamics_figure(rows), Path(args.out) / "dynamics.png")]
        print(f"wrote {' and '.join(map(str, written))}")
    return 0


def _f(v) -> str:
    return "-" if v is None else f"{v:.3f}"
