"""Experiment 6 (paper Fig. 1): the latent vector field of a k = 2 autoencoder, drawn.

A conv autoencoder with a 2-D bottleneck on the 1500 training digits. V(z) = f(z) - z on a grid as a
stream plot (``probe.field``), the attractors reached from N(0, I) seeds (each classified by the
spectral radius of the Jacobian, ``verify=True``), a few trajectories, and the decoded attractors
with the label and cosine of their nearest training digit.

    .venv/bin/python experiments/e6_field_2d.py --out docs/results/e6 [--smoke]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import finish, parse_args, save_png, train  # noqa: E402
from latentfield.probe.analyses.memorization import max_cosine  # noqa: E402
from latentfield.probe.data import digits  # noqa: E402
from latentfield.probe.workflows.train_demo import DemoRecipe  # noqa: E402
from latentfield.probe.analyses.field import auto_box, split_trajectories  # noqa: E402
from latentfield.probe.report.field_plot import field_figure  # noqa: E402
from latentfield.probe.engine.latents import decode_unit  # noqa: E402
from latentfield.probe.rundir import ProbeConfig, run_probe  # noqa: E402

FULL = dict(n_train=1500, epochs=20, n_seeds=256, max_steps=3000, n_paths=12, grid=60)
SMOKE = dict(n_train=64, epochs=1, n_seeds=8, max_steps=30, n_paths=3, grid=8)


def attractor_strip(images: torch.Tensor, captions: list[str]) -> object:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = max(1, len(images))
    fig, axes = plt.subplots(1, n, figsize=(1.1 * n, 1.4), squeeze=False)
    for ax, img, cap in zip(axes[0], images, captions):
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(cap, fontsize=7)
    for ax in axes[0]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def main(argv=None) -> None:
    args = parse_args("Experiment 6: 2-D vector field", argv)
    s = SMOKE if args.smoke else FULL
    recipe = DemoRecipe(bottleneck=2, n_train=s["n_train"], epochs=s["epochs"], latent_penalty=1e-3)
    adapter, record = train(recipe, progress=not args.quiet)
    res = run_probe(adapter, ProbeConfig(n_seeds=s["n_seeds"], tol=1e-6, max_steps=s["max_steps"],
                                         record_every=1, verify=True), progress=not args.quiet)
    kinds = [p["kind"] for p in res.stability["per_attractor"]]
    paths = split_trajectories(res.trajectories, s["n_paths"])
    # The box covers the training codes, the attractors and the drawn trajectories.
    x_train, y_train = digits("train")
    with torch.no_grad():
        codes = adapter.encode(x_train[:s["n_train"]]).numpy()
    box = auto_box(np.concatenate([codes, *paths, res.attractors.numpy().reshape(-1, 2)]), pad=0.05)
    with torch.no_grad():
        fig = field_figure(adapter.f, res.attractors, paths, kinds, box=box, grid=s["grid"],
                           title=f"V(z) = E(D(z)) - z, k = 2 digits autoencoder ({len(res.attractors)} attractors)")
    fig.axes[0].scatter(codes[:, 0], codes[:, 1], s=2, c="lightgray", zorder=1, label="training codes")
    fig.axes[0].legend(loc="lower right", fontsize=7)
    save_png(fig, args.out / "e6_field_2d.png")
    decoded = decode_unit(adapter, res.attractors)
    cos, idx = max_cosine(decoded, x_train[:s["n_train"]]) if len(decoded) else (torch.zeros(0), torch.zeros(0))
    rows = [{"attractor": i, "z0": float(a[0]), "z1": float(a[1]), "basin (seeds)": int(b), "kind": kinds[i],
             "spectral radius": res.stability["per_attractor"][i]["spectral_radius"],
             "nearest training digit": int(y_train[int(idx[i])]), "cosine to it": float(cos[i])}
            for i, (a, b) in enumerate(zip(res.attractors, res.basin_sizes))]
    save_png(attractor_strip(decoded, [f"#{r['attractor']} ({r['basin (seeds)']})" for r in rows]),
             args.out / "e6_attractors.png")
    summary = [{"seeds": len(res.status), **res.counts, "attractors": len(res.attractors),
                "median steps": float(np.median(res.steps)), "test MSE": record["test_mse"]}]
    finish(args, "e6_field_2d", {"probe": summary, "attractors": rows} if rows else {"probe": summary},
           {"settings": s, "box": list(box)})


if __name__ == "__main__":
    main()
