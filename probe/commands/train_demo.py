"""``latentfield train-demo``: rebuild the bundled demo checkpoints from scikit-learn digits."""
from __future__ import annotations

import argparse

from latentfield.adapters.demo import WEIGHTS_DIR


def register(sub: argparse._SubParsersAction) -> None:
    from ..workflows.train_demo import RECIPES
    p = sub.add_parser("train-demo", help="retrain the bundled demo autoencoders (deterministic, minutes on CPU)",
                       description="Train the demo checkpoints; the committed ones were made by this command.")
    p.add_argument("--out", default=str(WEIGHTS_DIR), help=f"output folder (default: the bundled {WEIGHTS_DIR})")
    p.add_argument("--variant", action="append", choices=sorted(RECIPES), help="which checkpoint(s); default all")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..workflows.train_demo import RECIPES, write_demo_checkpoints
    variants = tuple(args.variant or RECIPES)
    for path in write_demo_checkpoints(args.out, variants, progress=not args.quiet):
        print(f"wrote {path} (+ {path.with_suffix('.json').name}: recipe and training indices)")
    return 0
