"""``latentfield compare A B [C ...]``: attractor sets of several models in one space, with nulls."""
from __future__ import annotations

import argparse
from pathlib import Path

from latentfield.adapters.errors import UsageError

from ..analyses.compare import MATCH_THRESHOLD
from ..report.figures import heatmap_figure, save_figure
from ..rundir.layout import cache_root
from ..workflows.compare import compare_models, write_comparison
from .common import add_model_args, add_probe_args, model_from_args, probe_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare the attractor sets of several models (Chamfer similarity, matched fraction)",
                       description="Probe each model from noise and compare attractor sets in a shared space: the "
                                   "latent space (models sharing one), raw pixels of decoded attractors, or the "
                                   "latents of a reference encoder (--embed). Each score comes with a null.")
    add_model_args(p, "models", nargs="+", spec_help="two or more model specs; each may carry its own settings, "
                   "SPEC[image_shape=C,H,W,KEY=VALUE,...] (quote it in the shell), which win over the model flags")
    p.add_argument("--space", choices=("pixels", "latent", "embed"), default=None,
                   help="where to compare: pixels of decoded attractors (default), latent (models must share "
                        "a latent space), embed (needs --embed)")
    p.add_argument("--embed", default=None, metavar="SPEC", help="reference encoder whose latents embed decoded attractors")
    p.add_argument("--null", choices=("permute", "random-init", "both"), default="permute",
                   help="null model: coordinate permutation (default), randomly re-initialised models, or both")
    p.add_argument("--threshold", type=float, default=MATCH_THRESHOLD, help="cosine for a match (default 0.9)")
    p.add_argument("--out", default=None, help="directory for compare.json, compare.csv and heatmap.png "
                   "(and the probe runs: an interrupted compare resumes when rerun)")
    add_probe_args(p, seeds=256)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if len(args.models) < 2:
        raise UsageError("compare needs at least two models")
    if not -1 <= args.threshold <= 1:
        raise UsageError(f"--threshold is a cosine, in [-1, 1]; got {args.threshold}")
    space = args.space or ("embed" if args.embed else "pixels")
    if space == "embed" and not args.embed:
        raise UsageError("--space embed needs --embed SPEC (a reference encoder)")
    if args.embed and space != "embed":
        raise UsageError(f"--embed is only used with --space embed, not --space {space}")
    adapters = [model_from_args(args, spec=s, per_model=True) for s in args.models]
    if space == "latent" and len({tuple(a.latent_shape) for a in adapters}) > 1:
        raise UsageError("--space latent needs models with one latent shape; use --space pixels or --embed")
    embedder = model_from_args(args, spec=args.embed, per_model=True) if space == "embed" else None
    res = compare_models(adapters, probe_config(args), space, embedder, args.null, args.threshold,
                         cache=cache_root(args.out), progress=not args.quiet, embed_spec=args.embed)
    print(f"space: {space}; {', '.join(f'{n}: {len(s)} attractors' for n, s in zip(res.names, res.sets))}")
    for row in res.pairs:
        line = f"{row['a']} vs {row['b']}: Chamfer {row['chamfer']:.3f}, matched {row['matched_fraction']:.3f}"
        if "null_permute" in row:
            nl = row["null_permute"]
            line += f" (permutation null {nl['chamfer_mean']:.3f} +- {nl['chamfer_std']:.3f}, matched {nl['matched_mean']:.3f})"
        print(line)
    for n, v in res.null_random_init.items():
        if "chamfer" in v:
            print(f"{n} vs its random init: Chamfer {v['chamfer']:.3f}, matched {v['matched_fraction']:.3f}")
    if args.out:
        written = [*write_comparison(res, args.out), save_figure(heatmap_figure(
            res.matrices["chamfer"], res.names, f"symmetric Chamfer similarity ({space})"), Path(args.out) / "heatmap.png")]
        print(f"wrote {', '.join(map(str, written))}")
    return 0
