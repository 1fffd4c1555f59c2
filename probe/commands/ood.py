"""``latentfield ood MODEL --in-dist DATA --test DATA [--test ...]``: OOD scores and their metrics."""
from __future__ import annotations

import argparse
from pathlib import Path

from latentfield.adapters.errors import UsageError

from ..data import load_images
from ..rundir.layout import cache_root
from ..workflows.ood import FIT_SETS, ood_benchmark, split_heldout, write_ood
from .common import add_model_args, add_solver_args, add_stopping_args, iteration_config, model_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ood", help="out-of-distribution scores from latent trajectories, beside KNN/Mahalanobis/reconstruction",
                       description="Iterate in-distribution images to attractors, score test images by their "
                                   "trajectories and by baselines; report AUROC, FPR95, AUPR-in/out per test set.")
    add_model_args(p)
    p.add_argument("--in-dist", required=True, help="in-distribution images the detector is fitted on (e.g. digits:train)")
    p.add_argument("--in-test", default=None,
                   help="held-out in-distribution images (negatives); default: a seeded 20%% split of --in-dist")
    p.add_argument("--test", action="append", required=True, metavar="DATA",
                   help="out-of-distribution set (repeatable): folder, array file, faces, noise, ...")
    p.add_argument("--limit", type=int, default=None, help="use at most this many images of each set")
    p.add_argument("--k", type=int, default=10, help="neighbour rank for the KNN baseline (default 10)")
    g = p.add_argument_group("iteration")
    add_stopping_args(g, "trajectory", "trajectories")
    add_solver_args(g, "trajectory")
    p.add_argument("--fit-set", choices=FIT_SETS, default="endpoints",
                   help="in-distribution points the trajectory score measures distance to: endpoints (default, the "
                        "paper: every trajectory's end point) or attractors (converged end points, de-duplicated)")
    p.add_argument("--out", default=None, help="directory for ood.json, scores.csv and scores.npz (and a cache: "
                   "an interrupted run resumes when rerun)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    adapter = model_from_args(args)
    shape = adapter.image_shape
    fit = load_images(args.in_dist, shape, limit=args.limit)
    test = load_images(args.in_test, shape, limit=args.limit) if args.in_test else None
    if test is None:
        fit, test = split_heldout(fit)
    tests = {}
    for src in args.test:
        name = Path(src).stem if Path(src).exists() else str(src)
        if name in tests:
            raise UsageError(f"two test sets are named {name!r}")
        tests[name] = load_images(src, shape, limit=args.limit or (256 if str(src).startswith("noise") else None))
    config = iteration_config(args)
    res = ood_benchmark(adapter, fit, test, tests, config, k=args.k, progress=not args.quiet,
                        cache=cache_root(args.out), fit_set=args.fit_set)
    data = res.to_json()
    print(f"{adapter.name}: {data['n_in_train']} in-distribution images -> {data['n_in_attractors']} attractors; "
          f"{data['n_in_test']} held-out in-distribution images")
    print(f"{'test set':<16} {'method':<14} {'AUROC':>7} {'FPR95':>7} {'AUPR-in':>8} {'AUPR-out':>8}")
    for t, per in res.metrics.items():
        for m, v in per.items():
            print(f"{t:<16} {m:<14} {v['auroc']:7.3f} {v['fpr95']:7.3f} {v['aupr_in']:8.3f} {v['aupr_out']:8.3f}")
    by_set = "; ".join(f"{fs} ({v['n_fit_points']} points): " + ", ".join(f"{t} {v[t]['auroc']:.3f}" for t in tests)
                       for fs, v in data["trajectory_by_fit_set"].items())
    print(f"trajectory AUROC by fit set (--fit-set {args.fit_set} above): {by_set}")
    for note in data["notes"]:  # a neighbour rank clamped to the data (also in ood.json)
        print(f"note: {note}")
    if args.out:
        print(f"wrote {', '.join(map(str, write_ood(res, args.out, adapter)))}")
    return 0
