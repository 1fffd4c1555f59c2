"""Experiment 2 (paper Fig. 14): memorization of the attractors against the training-set size.

Fixed bottleneck k = 16; seeded subsets of the 1500 training digits, from 32 images to all of them.
Every model gets the same number of gradient steps (so small sets are seen for many epochs, as in a
fixed training budget). Memorization is measured against each model's own training subset; the
held-out baseline is the test digits against that same subset.

    .venv/bin/python experiments/e2_train_size.py --out docs/results/e2 [--smoke]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from common import finish, memorization_row, noise_probe, parse_args, save_png, train, train_images  # noqa: E402
from latentfield.probe.data import digits  # noqa: E402
from latentfield.probe.workflows.train_demo import DemoRecipe  # noqa: E402

FULL = dict(k=16, sizes=(32, 64, 128, 256, 512, 1500), steps=600, n_seeds=128, max_steps=3000)
SMOKE = dict(k=8, sizes=(16, 32), steps=4, n_seeds=8, max_steps=30)


def recipe_for(n: int, s: dict) -> DemoRecipe:
    batch = min(64, n)
    steps_per_epoch = -(-n // batch)
    return DemoRecipe(bottleneck=s["k"], n_train=n, epochs=max(1, round(s["steps"] / steps_per_epoch)),
                      batch_size=batch, latent_penalty=1e-3)


def figure(rows: list[dict]) -> object:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = np.array([r["n_train"] for r in rows])
    get = lambda key: np.array([np.nan if r[key] is None else r[key] for r in rows], float)  # noqa: E731
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    axes[0].errorbar(n, get("memorization_mean"), get("memorization_std"), fmt="o-", capsize=3, label="attractors")
    axes[0].errorbar(n, get("heldout_mean"), get("heldout_std"), fmt="s--", capsize=3, label="held-out digits")
    axes[0].plot(n, get("noise_mean"), "x:", color="gray", label="noise images")
    axes[0].set_ylabel("max cosine to training set")
    axes[0].set_title("memorization", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].plot(n, get("copy_rate"), "o-", label="attractors")
    axes[1].plot(n, get("copy_rate_seeds"), "^:", label="seeds (basin-weighted)")
    axes[1].axhline(0.05, color="gray", ls="--", lw=1, label="held-out (5%)")
    axes[1].set_title("calibrated copy rate", fontsize=9)
    axes[1].legend(fontsize=7)
    axes[2].plot(n, get("test_mse"), "o-", label="test")
    axes[2].plot(n, get("train_mse"), "s--", label="train (last epoch)")
    axes[2].set_title("reconstruction MSE", fontsize=9)
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("training images")
    fig.tight_layout()
    return fig


def main(argv=None) -> None:
    args = parse_args("Experiment 2: memorization against training-set size", argv)
    s = SMOKE if args.smoke else FULL
    heldout = digits("test")[0]
    rows = []
    for n in s["sizes"]:
        recipe = recipe_for(n, s)
        adapter, record = train(recipe, progress=not args.quiet)
        res = noise_probe(adapter, s["n_seeds"], s["max_steps"], progress=not args.quiet)
        row = {"n_train": n, "epochs": recipe.epochs, **memorization_row(adapter, res, train_images(recipe), heldout),
               "test_mse": record["test_mse"], "train_mse": record["final_train_mse"]}
        rows.append(row)
        print(f"n={n}: {row['n_attractors']} attractors, memorization {row['memorization_mean']}, "
              f"copy rate {row['copy_rate']}", flush=True)
    save_png(figure(rows), args.out / "e2_train_size.png")
    finish(args, "e2_train_size", {f"memorization against training-set size (k = {s['k']})": rows}, {"settings": s})


if __name__ == "__main__":
    main()
