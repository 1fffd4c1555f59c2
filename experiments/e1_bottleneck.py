"""Experiment 1 (paper Fig. 2): memorization of the attractors against the bottleneck size k.

Conv autoencoders on the 1500 scikit-learn training digits (Adam, weight decay 1e-4, latent penalty
1e-3 as in the bundled demo recipes), one per k. For each: attractors from N(0, I) seeds, their
memorization coefficient (max cosine of the decoded attractor to the training set; mean and std), the
held-out and noise-image baselines, the calibrated copy rate, and the test reconstruction MSE.

    .venv/bin/python experiments/e1_bottleneck.py --out docs/results/e1 [--smoke]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from common import finish, memorization_row, noise_probe, parse_args, save_png, train, train_images  # noqa: E402
from latentfield.probe.data import digits  # noqa: E402
from latentfield.probe.workflows.train_demo import DemoRecipe  # noqa: E402

FULL = dict(ks=(2, 4, 8, 16, 32, 64), n_train=1500, epochs=20, n_seeds=128, max_steps=3000)
SMOKE = dict(ks=(2, 8), n_train=64, epochs=1, n_seeds=8, max_steps=30)


def figure(rows: list[dict]) -> object:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    k = np.array([r["k"] for r in rows])
    get = lambda key: np.array([np.nan if r[key] is None else r[key] for r in rows], float)  # noqa: E731
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    ax = axes[0]
    ax.errorbar(k, get("memorization_mean"), get("memorization_std"), fmt="o-", capsize=3, label="attractors")
    ax.errorbar(k, get("heldout_mean"), get("heldout_std"), fmt="s--", capsize=3, label="held-out digits")
    ax.set_ylabel("max cosine to training set")
    ax.set_title(f"memorization (noise images: {rows[0]['noise_mean']:.2f})", fontsize=9)
    ax.legend(fontsize=7)
    axes[1].plot(k, get("copy_rate"), "o-", label="attractors")
    axes[1].plot(k, get("copy_rate_seeds"), "^:", label="seeds (basin-weighted)")
    axes[1].axhline(0.05, color="gray", ls="--", lw=1, label="held-out (5% by construction)")
    axes[1].set_title("calibrated copy rate", fontsize=9)
    axes[1].legend(fontsize=7)
    axes[2].plot(k, get("test_mse"), "o-")
    axes[2].set_title("test reconstruction MSE", fontsize=9)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("bottleneck k")
    fig.tight_layout()
    return fig


def main(argv=None) -> None:
    args = parse_args("Experiment 1: memorization against the bottleneck", argv)
    s = SMOKE if args.smoke else FULL
    heldout = digits("test")[0]
    rows = []
    for k in s["ks"]:
        recipe = DemoRecipe(bottleneck=k, n_train=s["n_train"], epochs=s["epochs"], latent_penalty=1e-3)
        adapter, record = train(recipe, progress=not args.quiet)
        res = noise_probe(adapter, s["n_seeds"], s["max_steps"], progress=not args.quiet)
        row = {"k": k, **memorization_row(adapter, res, train_images(recipe), heldout),
               "test_mse": record["test_mse"], "train_mse": record["final_train_mse"]}
        rows.append(row)
        print(f"k={k}: {row['n_attractors']} attractors, memorization {row['memorization_mean']}, "
              f"test MSE {row['test_mse']:.4g}", flush=True)
    save_png(figure(rows), args.out / "e1_bottleneck.png")
    finish(args, "e1_bottleneck", {"memorization against bottleneck k": rows}, {"settings": s})


if __name__ == "__main__":
    main()
