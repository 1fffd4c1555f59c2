"""``latentfield compare A B [C ...]``: attractor sets of several models in one space, with nulls."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from latentfield.adapters import Adapter

from latentfield.adapters import atomic
from ..analyses.compare import (MATCH_THRESHOLD, chamfer_similarity, heatmap_figure, matched_fraction, pairwise,
                                permutation_null, randomly_initialised)
from ..data import fit_to_shape
from latentfield.adapters.errors import UsageError
from ..latents import decode_unit, encode_unit
from ..report import write_figure
from ..run import cache_dir, run_probe
from .common import add_probe_args, image_shape, model_from_args, probe_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare the attractor sets of several models (Chamfer similarity, matched fraction)",
                       description="Probe each model from noise and compare attractor sets in a shared space: the "
                                   "latent space (models sharing one), raw pixels of decoded attractors, or the "
                                   "latents of a reference encoder (--embed). Each score comes with a null.")
    p.add_argument("models", nargs="+", help="two or more model specs")
    p.add_argument("--image-shape", type=image_shape, default=None, metavar="C,H,W", help="input size for all models")
    p.add_argument("--device", default=None, help="torch device (default cpu)")
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
    adapters = [model_from_args(args, spec=s) for s in args.models]
    if space == "latent" and len({tuple(a.latent_shape) for a in adapters}) > 1:
        raise UsageError("--space latent needs models with one latent shape; use --space pixels or --embed")
    embedder = model_from_args(args, spec=args.embed) if space == "embed" else None
    ref_shape = embedder.image_shape if embedder is not None else adapters[0].image_shape
    cfg = probe_config(args)

    def attractor_set(adapter: Adapter) -> np.ndarray:
        out = cache_dir(Path(args.out) / "cache", adapter, cfg) if args.out else None  # resumable
        res = run_probe(adapter, cfg, out=out, progress=not args.quiet)
        if len(res.attractors) == 0:
            raise UsageError(f"{adapter.name}: no seed converged; raise --max-steps or --tol")
        if space == "latent":
            return res.attractors.flatten(1).numpy()
        images = fit_to_shape(decode_unit(adapter, res.attractors), ref_shape)
        if embedder is None:
            return images.flatten(1).numpy()
        return encode_unit(embedder, images, 64).flatten(1).numpy()

    names = [a.name for a in adapters]
    sets = [attractor_set(a) for a in adapters]
    mats = pairwise(sets, args.threshold)
    pairs = []
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            row = {"a": names[i], "b": names[j], "chamfer": float(mats["chamfer"][i, j]),
                   "matched_fraction": float(mats["matched_fraction"][i, j])}
            if args.null in ("permute", "both"):
                row["null_permute"] = permutation_null(sets[i], sets[j], threshold=args.threshold)
            pairs.append(row)
    nulls = {}
    if args.null in ("random-init", "both"):
        for a, s in zip(adapters, sets):
            try:
                r = attractor_set(randomly_initialised(a, seed=args.seed))
            except (ValueError, UsageError) as e:
                nulls[a.name] = {"error": str(e)}
                continue
            nulls[a.name] = {"chamfer": chamfer_similarity(s, r), "matched_fraction": matched_fraction(s, r, args.threshold)}
    print(f"space: {space}; {', '.join(f'{n}: {len(s)} attractors' for n, s in zip(names, sets))}")
    for row in pairs:
        line = f"{row['a']} vs {row['b']}: Chamfer {row['chamfer']:.3f}, matched {row['matched_fraction']:.3f}"
        if "null_permute" in row:
            nl = row["null_permute"]
            line += f" (permutation null {nl['chamfer_mean']:.3f} +- {nl['chamfer_std']:.3f}, matched {nl['matched_mean']:.3f})"
        print(line)
    for n, v in nulls.items():
        if "chamfer" in v:
            print(f"{n} vs its random init: Chamfer {v['chamfer']:.3f}, matched {v['matched_fraction']:.3f}")
    if args.out:
        out = Path(args.out)
        atomic.write_json(out / "compare.json", {"space": space, "embed": args.embed, "models": names,
                                             "n_attractors": [len(s) for s in sets], "threshold": args.threshold,
                                             "chamfer": mats["chamfer"], "matched_fraction": mats["matched_fraction"],
                                             "pairs": pairs, "null_random_init": nulls})
        lines = ["a,b,chamfer,matched_fraction,null_chamfer_mean,null_chamfer_std"]
        for r in pairs:
            nl = r.get("null_permute", {})
            lines.append(f"{r['a']},{r['b']},{r['chamfer']:.6f},{r['matched_fraction']:.6f},"
                         f"{nl.get('chamfer_mean', '')},{nl.get('chamfer_std', '')}")
        atomic.write_text(out / "compare.csv", "\n".join(lines) + "\n")
        write_figure(heatmap_figure(mats["chamfer"], names, f"symmetric Chamfer similarity ({space})"), out / "heatmap.png")
        print(f"wrote {out}/compare.json, {out}/compare.csv, {out}/heatmap.png")
    return 0
