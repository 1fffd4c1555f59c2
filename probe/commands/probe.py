"""``latentfield probe MODEL --seeds N --out DIR``: the engine alone."""
from __future__ import annotations

import argparse

from ..data import load_images
from ..report.messages import describe_captured, describe_unconverged
from ..rundir import run_probe
from .common import add_model_args, add_probe_args, model_from_args, probe_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("probe", help="iterate seeds to attractors and save them (resumable)",
                       description="Iterate f(z) = E(D(z)) from seeds to attractors; rerun to resume.")
    add_model_args(p)
    add_probe_args(p)
    p.add_argument("--out", required=True, help="run directory (created; a rerun resumes it)")
    p.add_argument("--data", default=None, help="images for --init data (folder, .npy/.npz/.safetensors, digits, faces)")
    p.add_argument("--record-every", type=int, default=0, metavar="K", help="save every K-th trajectory point")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="seeds per resumable chunk (default: about 1/8 of the run, at least 8, at most a batch; "
                        "1024 with --capture): a killed run loses at most one chunk")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    adapter = model_from_args(args)
    data = load_images(args.data, adapter.image_shape) if args.data else None
    cfg = probe_config(args, record_every=args.record_every, chunk_size=args.chunk_size)
    result = run_probe(adapter, cfg, out=args.out, data=data, progress=not args.quiet)
    s = result.summary()
    c = s["counts"]
    print(f"{adapter.name}: {s['n_seeds']} seeds -> {c['converged']} converged, {c['max_steps']} max_steps, "
          f"{c['diverged']} diverged; {s['n_attractors']} attractors (cosine), "
          f"{s['n_attractors_euclid']} (euclidean); {s['n_evals']} evaluations of f")
    for note in (describe_unconverged(s), describe_captured(s)):
        if note:
            print(note)
    print(f"wrote {args.out}/attractors.safetensors and {args.out}/summary.json")
    return 0
