"""``latentfield train-demo``: train the demo checkpoints from scikit-learn digits, into ``--out``.

It never writes into the installed package: the bundled checkpoints stay what was shipped, and the
files written here load by path (``latentfield audit demo-checkpoints/demo_memorize.safetensors``).
"""
from __future__ import annotations

import argparse

DEFAULT_OUT = "demo-checkpoints"


def register(sub: argparse._SubParsersAction) -> None:
    from ..workflows.train_demo import RECIPES
    p = sub.add_parser("train-demo", help="train the demo autoencoders again (deterministic, minutes on CPU)",
                       description="Train the demo checkpoints (the bundled ones were made by this command) into "
                                   "--out; load them by path, e.g. latentfield audit "
                                   f"{DEFAULT_OUT}/demo_memorize.safetensors.")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"output folder (default: ./{DEFAULT_OUT}; never the installed package)")
    p.add_argument("--variant", action="append", choices=sorted(RECIPES), help="which checkpoint(s); default all")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..workflows.train_demo import RECIPES, write_demo_checkpoints
    variants = tuple(args.variant or RECIPES)
    for path in write_demo_checkpoints(args.out, variants, progress=not args.quiet):
        print(f"wrote {path} (+ {path.with_suffix('.json').name}: recipe and training indices); "
              f"load it by path: latentfield audit {path}")
    return 0
