"""Experiment 4: out-of-distribution detection from latent trajectories (paper Sec. 4.2).

An autoencoder trained on the 1500 training digits (k = 16). In-distribution attractors come from 500
training digits; the 297 held-out test digits are the in-distribution negatives; scikit-image's
``lfw_subset`` faces (resized to 32 x 32) and uniform-noise images are the OOD sets. Scores
(``probe.analyses.ood``; higher = more OOD): the paper's trajectory score beside the field magnitude,
steps, path length, KNN, Mahalanobis and reconstruction error. AUROC and FPR95 per method and set.
The trajectory score is computed with both in-distribution fit sets (``workflows.ood.FIT_SETS``):
``endpoints`` (the paper's: every end point, no de-duplication) and ``attractors`` (converged end points,
de-duplicated); the other scores do not depend on the fit set.

    .venv/bin/python experiments/e4_ood.py --out docs/results/e4 [--smoke] [--k K] [--latent-penalty P]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tempfile  # noqa: E402

import numpy as np  # noqa: E402

from common import finish, parse_args, save_png, train  # noqa: E402
from latentfield.probe.workflows.ood import FIT_SETS, METHODS, ProbeConfig, ood_benchmark  # noqa: E402
from latentfield.probe.data import digits, faces, fit_to_shape, noise_images  # noqa: E402
from latentfield.probe.workflows.train_demo import DemoRecipe  # noqa: E402

FULL = dict(k=16, n_train=1500, epochs=20, n_fit=500, n_in_test=297, n_ood=200, max_steps=3000)
SMOKE = dict(k=8, n_train=64, epochs=1, n_fit=32, n_in_test=16, n_ood=16, max_steps=30)


def figure(result, methods=("trajectory", "field", "knn", "mahalanobis", "reconstruction")) -> object:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(methods), figsize=(3 * len(methods), 2.8))
    for ax, m in zip(axes, methods):
        for name, sc in result.scores.items():
            v = np.asarray(sc[m], float)
            v = np.log10(np.maximum(v, 1e-12)) if m != "trajectory" else v
            ax.hist(v, bins=30, alpha=0.5, density=True, label=name)
        ax.set_title(m if m == "trajectory" else f"log10 {m}", fontsize=9)
        ax.set_yticks([])
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv=None) -> None:
    def extra(p) -> None:  # variants that test whether the trajectory score's failure depends on the model
        p.add_argument("--k", type=int, default=None, help=f"bottleneck (default {FULL['k']})")
        p.add_argument("--latent-penalty", type=float, default=1e-3, help="L2 penalty on the codes (default 1e-3)")
    args = parse_args("Experiment 4: OOD detection", argv, extra=extra)
    s = dict(SMOKE if args.smoke else FULL, latent_penalty=args.latent_penalty)
    s["k"] = args.k or s["k"]
    recipe = DemoRecipe(bottleneck=s["k"], n_train=s["n_train"], epochs=s["epochs"], latent_penalty=s["latent_penalty"])
    adapter, record = train(recipe, progress=not args.quiet)
    fit = digits("train")[0][:s["n_fit"]]
    in_test = digits("test")[0][:s["n_in_test"]]
    tests = {"faces": fit_to_shape(faces()[:s["n_ood"]], (1, 32, 32)),
             "noise": noise_images(s["n_ood"], (1, 32, 32), seed=1)}
    settings = ProbeConfig(tol=1e-6, max_steps=s["max_steps"], batch_size=256)
    with tempfile.TemporaryDirectory() as cache:  # one in-distribution probe run shared by both fit sets
        results = {fs: ood_benchmark(adapter, fit, in_test, tests, settings, progress=not args.quiet,
                                     cache=cache, fit_set=fs) for fs in FIT_SETS}
    res = results["endpoints"]
    def row(label: str, r, m: str) -> dict:
        return {"method": label, **{f"{t} {metric}": r.metrics[t][m][metric] for t in tests for metric in ("auroc", "fpr95")}}
    rows = [row(f"trajectory ({fs})", results[fs], "trajectory") for fs in FIT_SETS]
    rows += [row(m, res, m) for m in METHODS if m != "trajectory"]
    info = {fs: dict(r.info) for fs, r in results.items()}
    conv = [{"set": name, "n": len(sc["trajectory"]), "converged": float(np.mean(sc["converged"])),
             **{f"mean trajectory score ({fs})": float(np.mean(results[fs].scores[name]["trajectory"])) for fs in FIT_SETS},
             "median steps": float(np.median(sc["steps"]))}
            for name, sc in res.scores.items()]
    save_png(figure(res), args.out / "e4_ood.png")
    finish(args, "e4_ood", {"AUROC (higher better) and FPR95 (lower better), OOD = positive": rows,
                            "trajectories per set": conv},
           {"settings": s, "info": info, "test_mse": record["test_mse"]})


if __name__ == "__main__":
    main()
