"""Experiment 3 (paper Fig. 3): the attractor landscape across the checkpoints of one training run.

One autoencoder (k = 16, 128 training digits, 300 epochs: a run that ends memorizing), checkpoints at
roughly geometric epochs. Per checkpoint (as ``probe.analyses.dynamics.checkpoint_stats``): number of
attractors from N(0, I) seeds, their memorization coefficient against the training set, and the
symmetric Chamfer similarity (latent cosine) between the noise-started and the data-started
(training images) attractor sets; plus the calibrated copy rate and the test reconstruction MSE.

    .venv/bin/python experiments/e3_training_dynamics.py --out docs/results/e3 [--smoke]
"""
from __future__ import annotations

import copy
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import finish, parse_args, save_png, train, train_images  # noqa: E402
from latentfield.adapters.demo import DemoAdapter  # noqa: E402
from latentfield.probe.analyses.compare import chamfer_similarity  # noqa: E402
from latentfield.probe.analyses.copying import copy_rate, copy_threshold  # noqa: E402
from latentfield.probe.analyses.memorization import memorization_coefficient  # noqa: E402
from latentfield.probe.data import digits  # noqa: E402
from latentfield.probe.workflows.train_demo import DemoRecipe  # noqa: E402
from latentfield.probe.engine.latents import decode_unit  # noqa: E402
from latentfield.probe.rundir import ProbeConfig, run_probe  # noqa: E402

FULL = dict(k=16, n_train=128, epochs=300, batch_size=32, checkpoints=(1, 3, 10, 30, 100, 200, 300),
            n_seeds=128, max_steps=3000)
SMOKE = dict(k=8, n_train=32, epochs=3, batch_size=32, checkpoints=(1, 3), n_seeds=8, max_steps=30)


def figure(rows: list[dict], heldout_mean: float) -> object:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    e = np.array([r["epoch"] for r in rows])
    get = lambda key: np.array([np.nan if r[key] is None else r[key] for r in rows], float)  # noqa: E731
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.0))
    axes[0].plot(e, get("n_attractors"), "o-", label="noise seeds")
    axes[0].plot(e, get("n_data_attractors"), "s--", label="training images")
    axes[0].set_title("number of attractors", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].errorbar(e, get("memorization_mean"), get("memorization_std"), fmt="o-", capsize=3)
    axes[1].axhline(heldout_mean, color="gray", ls="--", lw=1, label="held-out digits")
    axes[1].set_title("memorization coefficient", fontsize=9)
    axes[1].legend(fontsize=7)
    axes[2].plot(e, get("copy_rate"), "o-")
    axes[2].axhline(0.05, color="gray", ls="--", lw=1)
    axes[2].set_title("calibrated copy rate", fontsize=9)
    axes[3].plot(e, get("chamfer_noise_data"), "o-")
    axes[3].set_title("Chamfer(noise, data attractors)", fontsize=9)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig


def main(argv=None) -> None:
    args = parse_args("Experiment 3: training dynamics", argv)
    s = SMOKE if args.smoke else FULL
    recipe = DemoRecipe(bottleneck=s["k"], n_train=s["n_train"], epochs=s["epochs"], batch_size=s["batch_size"],
                        latent_penalty=1e-3)
    snapshots: dict[int, torch.nn.Module] = {}

    def keep(epoch: int, model: torch.nn.Module) -> None:
        if epoch in s["checkpoints"]:
            snapshots[epoch] = copy.deepcopy(model).eval()

    train(recipe, progress=not args.quiet, on_epoch=keep)
    reference, heldout = train_images(recipe), digits("test")[0]
    config = ProbeConfig(n_seeds=s["n_seeds"], tol=1e-6, max_steps=s["max_steps"])
    heldout_mean = memorization_coefficient(heldout, reference)["mean"]
    threshold = copy_threshold(heldout, reference)
    rows = []
    for epoch, model in sorted(snapshots.items()):
        # What ``probe.analyses.dynamics.checkpoint_stats`` computes, plus the copy rate and test MSE
        # (inlined so the noise probe runs once per checkpoint).
        adapter = DemoAdapter(model, name=f"epoch {epoch}")
        noise = run_probe(adapter, config, progress=not args.quiet)
        data = run_probe(adapter, replace(config, init="data"), data=reference, progress=not args.quiet)
        decoded = decode_unit(adapter, noise.attractors)
        mem = memorization_coefficient(decoded, reference)
        both = len(noise.attractors) and len(data.attractors)
        with torch.no_grad():
            test_mse = float(torch.nn.functional.mse_loss(model(heldout), heldout))
        rows.append({"epoch": epoch, "n_attractors": len(noise.attractors), "n_data_attractors": len(data.attractors),
                     "converged_fraction": float(np.mean(noise.status == 0)),
                     "memorization_mean": mem["mean"], "memorization_std": mem["std"],
                     "copy_rate": copy_rate(decoded, reference, threshold),
                     "chamfer_noise_data": chamfer_similarity(noise.attractors, data.attractors) if both else None,
                     "test_mse": test_mse})
        print(f"epoch {epoch}: {rows[-1]}", flush=True)
    save_png(figure(rows, heldout_mean), args.out / "e3_training_dynamics.png")
    finish(args, "e3_training_dynamics", {"checkpoints of one training run": rows},
           {"settings": s, "heldout_memorization_mean": heldout_mean, "copy_threshold_cosine": 1.0 - threshold})


if __name__ == "__main__":
    main()
