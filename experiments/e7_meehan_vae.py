"""Experiment 7: the three uses of latentfield on real pretrained weights nobody here trained.

The MNIST VAEs of Meehan, Chaudhuri and Dasgupta (AISTATS 2020), latent d = 10, 30, 50, loaded by the
worked example ``docs/examples/meehan_vae.py`` (posterior mean as encoder, decoder + sigmoid):

* data-free priors: the same N(0, I) seeds on each model, every attractor stability-verified
  (``ProbeConfig(verify=True)``), a gallery of decoded attractors per model, largest basin first;
* digit classes: a classifier trained on scikit-learn's digits (``digit_classifier.py``) labels the
  decoded attractors: which classes each prior covers, with what share of the seeds;
* comparing models: the decoded attractor sets compared in pixel space (Chamfer similarity, matched
  fraction, coordinate-permutation null; ``probe.analyses.compare``);
* auditing: OOD detection with scikit-learn's digits in MNIST's 28 x 28 layout as in-distribution
  against faces and uniform noise, every score of ``probe.analyses.ood``.

MNIST itself is not on this machine, so scikit-learn's digits stand in for data wherever data is needed.

    .venv/bin/python experiments/e7_meehan_vae.py --out docs/results/e7 [--smoke] [--weights DIR]
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "docs" / "examples"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import meehan_vae  # noqa: E402
from common import finish, parse_args, save_png  # noqa: E402
from digit_classifier import DigitClassifier, sklearn_digits  # noqa: E402
from latentfield.adapters import AdapterError  # noqa: E402
from latentfield.probe.analyses.compare import compare_sets  # noqa: E402
from latentfield.probe.workflows.ood import IN_TEST, METHODS, ood_benchmark  # noqa: E402
from latentfield.probe.data import faces, fit_to_shape, noise_images  # noqa: E402
from latentfield.probe.engine.latents import decode_unit, encode_unit  # noqa: E402
from latentfield.probe.engine.types import CONVERGED  # noqa: E402
from latentfield.probe.rundir import ProbeConfig, ProbeResult, run_probe  # noqa: E402

FULL = dict(dims=(10, 30, 50), n_seeds=1024, max_steps=3000, tol=1e-6, n_classifier=1500, n_fit=1500,
            n_in_test=297, n_ood=200, gallery=48, n_perm=20)
SMOKE = dict(dims=(10, 30), n_seeds=16, max_steps=200, tol=1e-6, n_classifier=300, n_fit=48,
             n_in_test=16, n_ood=16, gallery=8, n_perm=3)
IMAGE_SHAPE = (1, 28, 28)
CONFIDENT = 0.5  # a label counts as confident when the classifier gives it at least this probability


def by_basin(result: ProbeResult) -> np.ndarray:
    """Attractor indices, largest basin first (ties: order of discovery)."""
    return np.argsort(-result.basin_sizes, kind="stable")


def prior_row(d: int, res: ProbeResult, recon_mse: float) -> dict:
    """Counts, basins, convergence and stability of one probe from N(0, I) seeds."""
    conv = res.status == CONVERGED
    share = res.basin_sizes / max(1, conv.sum())
    cum = np.cumsum(np.sort(share)[::-1])
    nz = share[share > 0]
    kinds = [p["kind"] for p in res.stability["per_attractor"]]
    rho = np.array([p["spectral_radius"] for p in res.stability["per_attractor"]])
    verified = np.isin(res.labels, np.flatnonzero(np.array(kinds) == "attractor"))
    u = res.unconverged() or {}
    return {"d": d, "seeds": len(res.status), **res.counts, "attractors": len(res.attractors),
            "attractors (euclidean)": len(res.attractors_euclid),
            "verified attractor": kinds.count("attractor"), "saddle or repeller": kinds.count("saddle_or_repeller"),
            "marginal": kinds.count("marginal"), "seeds on verified attractors": float(verified.mean()),
            "largest basin share": float(share.max()) if len(share) else None,
            "effective basins": float(np.exp(-(nz * np.log(nz)).sum())) if len(nz) else None,
            "basins for 90% of seeds": int(np.searchsorted(cum, 0.9) + 1) if len(cum) else None,
            "median steps": float(np.median(res.steps[conv])) if conv.any() else None,
            "max spectral radius": float(rho.max()) if len(rho) else None,
            "unconverged relative step": u.get("relative_step_median"), "digit MSE D(E(x))": recon_mse}


def class_row(d: int, basins: np.ndarray, labels: np.ndarray, prob: np.ndarray) -> dict:
    """Which digit classes the decoded attractors cover, and the share of converged seeds per class.
    ``basins`` (K,) seeds per attractor, ``labels`` (K,) and ``prob`` (K, 10) the classifier's output.
    Shares count confident labels only (probability >= CONFIDENT); the rest is ``uncertain``."""
    total = max(1, int(basins.sum()))
    conf = prob.max(1) >= CONFIDENT if len(prob) else np.zeros(0, bool)
    row = {"d": d, "classes covered": len(set(labels[conf].tolist())),
           "classes covered (any label)": len(set(labels.tolist())), "attractors": len(basins),
           "confident attractors": int(conf.sum())}
    for c in range(10):
        row[str(c)] = float(basins[conf & (labels == c)].sum() / total)
    row["uncertain"] = float(basins[~conf].sum() / total)
    return row


def gallery(images: torch.Tensor, captions: list[str], title: str) -> object:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = 12
    rows = max(1, -(-len(images) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(0.95 * cols, 1.12 * rows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, cap in zip(axes.flat, images, captions):
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(cap, fontsize=6.5)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def compare_figure(class_rows: list[dict], names: list[str], chamfer: np.ndarray, null: float) -> object:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.2), gridspec_kw={"width_ratios": [1.6, 1]})
    ax = axes[0]
    bottom = np.zeros(len(class_rows))
    cmap = plt.get_cmap("tab10")
    for c in [*map(str, range(10)), "uncertain"]:
        v = np.array([r[c] for r in class_rows])
        ax.barh(names, v, left=bottom, color="lightgray" if c == "uncertain" else cmap(int(c)), label=c)
        for i, (b, w) in enumerate(zip(bottom, v)):
            if w > 0.04:
                ax.text(b + w / 2, i, "?" if c == "uncertain" else c, ha="center", va="center", fontsize=7,
                        color="black" if c == "uncertain" else "white")
        bottom += v
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"share of converged N(0, I) seeds by digit label of their attractor (? = probability < {CONFIDENT})")
    ax.legend(ncol=11, fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False)
    ax = axes[1]
    ax.imshow(chamfer, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{chamfer[i, j]:.3f}", ha="center", va="center", fontsize=7,
                    color="white" if chamfer[i, j] < 0.6 else "black")
    ax.set_title(f"Chamfer similarity of decoded attractors\n(pixels; permutation null {null:.2f})", fontsize=8)
    fig.tight_layout()
    return fig


def ood_figure(results: dict[int, object]) -> object:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sets = ("faces", "noise")
    fig, axes = plt.subplots(1, len(sets), figsize=(9.5, 2.9), sharey=True)
    width = 0.8 / len(results)
    for ax, name in zip(axes, sets):
        for i, (d, res) in enumerate(results.items()):
            v = [res.metrics[name][m]["auroc"] for m in METHODS]
            ax.bar(np.arange(len(METHODS)) + (i - (len(results) - 1) / 2) * width, v, width, label=f"d = {d}")
        ax.axhline(0.5, color="gray", lw=1, ls="--")
        ax.set_xticks(range(len(METHODS)), METHODS, rotation=30, ha="right", fontsize=7)
        ax.set_title(f"digits (in) vs {name}: AUROC", fontsize=9)
        ax.set_ylim(0, 1.02)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def rows_priors(models: dict, classifier: DigitClassifier, test_x: torch.Tensor, s: dict, args) -> tuple:
    """Probe each model from the same seeds, label its decoded attractors, draw its gallery.
    Returns (prior rows, class rows, decoded attractors per d (largest basin first), per-attractor details)."""
    prior_rows, class_rows, decoded, details = [], [], {}, {}
    for d, model in models.items():
        recon_mse = float((decode_unit(model, encode_unit(model, test_x)) - test_x).pow(2).mean())
        config = ProbeConfig(n_seeds=s["n_seeds"], tol=s["tol"], max_steps=s["max_steps"], verify=True)
        res = run_probe(model, config, progress=not args.quiet)
        order = by_basin(res)
        images = decode_unit(model, res.attractors[torch.from_numpy(order)])
        labels, prob = classifier.predict(images)
        basins = res.basin_sizes[order]
        per = [res.stability["per_attractor"][k] for k in order]
        prior_rows.append(prior_row(d, res, recon_mse))
        class_rows.append(class_row(d, basins, labels, prob))
        decoded[d] = images
        details[f"d{d}"] = [{"basin": int(b), "kind": p["kind"], "spectral_radius": p["spectral_radius"],
                             "label": int(c), "probability": float(q.max())}
                            for b, p, c, q in zip(basins, per, labels, prob)]
        n = min(s["gallery"], len(images))
        captions = [f"{b} · {c}{'' if q.max() >= CONFIDENT else '?'}{'' if p['kind'] == 'attractor' else ' !'}"
                    for b, c, q, p in zip(basins[:n], labels[:n], prob[:n], per[:n])]
        title = (f"d = {d}: {n} of {len(images)} attractors from {s['n_seeds']} N(0, I) seeds, largest basin first "
                 f"(caption: seeds · digit label; ? = label probability < {CONFIDENT}; ! = not a verified attractor)")
        save_png(gallery(images[:n], captions, title), args.out / f"e7_gallery_d{d}.png")
        print(f"d={d}: {res.counts}, {len(res.attractors)} attractors, "
              f"{class_rows[-1]['classes covered']} classes", flush=True)
    return prior_rows, class_rows, decoded, details


def rows_compare(decoded: dict, class_rows: list[dict], n_perm: int, out: Path) -> list[dict]:
    """Pairwise comparison of the decoded attractor sets (pixels) and of the class shares."""
    dims = list(decoded)
    chamfer = np.eye(len(dims))
    rows = []
    for i in range(len(dims)):
        for j in range(i + 1, len(dims)):
            cmp = compare_sets(decoded[dims[i]], decoded[dims[j]], n_perm=n_perm)
            chamfer[i, j] = chamfer[j, i] = cmp["chamfer"]
            tv = 0.5 * sum(abs(class_rows[i][c] - class_rows[j][c]) for c in [*map(str, range(10)), "uncertain"])
            rows.append({"pair": f"d = {dims[i]} vs d = {dims[j]}", "chamfer": cmp["chamfer"],
                         "null chamfer": cmp["null_permute"]["chamfer_mean"],
                         "null std": cmp["null_permute"]["chamfer_std"], "chamfer z": cmp["chamfer_z"],
                         "matched fraction (cos > 0.9)": cmp["matched_fraction"],
                         "null matched": cmp["null_permute"]["matched_mean"], "class-share distance (TV)": tv})
    null = float(np.mean([r["null chamfer"] for r in rows]))
    save_png(compare_figure(class_rows, [f"d = {d}" for d in dims], chamfer, null), out / "e7_compare.png")
    return rows


def rows_ood(models: dict, fit: torch.Tensor, in_test: torch.Tensor, s: dict, args) -> tuple[list, list]:
    """OOD benchmark per model: (AUROC/FPR95 rows per method, trajectory rows per set)."""
    tests = {"faces": fit_to_shape(faces()[:s["n_ood"]], IMAGE_SHAPE),
             "noise": noise_images(s["n_ood"], IMAGE_SHAPE, seed=1)}
    settings = ProbeConfig(tol=s["tol"], max_steps=s["max_steps"], batch_size=256)
    results, metric_rows, traj_rows = {}, [], []
    for d, model in models.items():
        results[d] = res = ood_benchmark(model, fit, in_test, tests, settings, progress=not args.quiet)
        metric_rows += [{"d": d, "method": m, **{f"{t} {k}": res.metrics[t][m][k] for t in tests
                                                 for k in ("auroc", "fpr95")}} for m in METHODS]
        for name, sc in res.scores.items():  # the in-distribution test set comes first
            traj_rows.append({"d": d, "set": name, "n": len(sc["trajectory"]),
                              "converged": float(np.mean(sc["converged"])),
                              "mean trajectory score": float(np.mean(sc["trajectory"])),
                              "median steps": float(np.median(sc["steps"])),
                              "in-distribution attractors": res.info["n_in_attractors"] if name == IN_TEST else None})
    save_png(ood_figure(results), args.out / "e7_ood.png")
    return metric_rows, traj_rows


def main(argv=None) -> None:
    def extra(p) -> None:
        p.add_argument("--weights", type=Path, default=None,
                       help=f"folder with VAE_d{{10,30,50}}.pkl (default: ${meehan_vae.ENV}, "
                            "else ../shared/weights/meehan_vae)")
    args = parse_args("Experiment 7: three uses on the Meehan et al. MNIST VAEs", argv, extra=extra)
    s = SMOKE if args.smoke else FULL
    try:
        models = {d: meehan_vae.load(d, args.weights) for d in s["dims"]}
    except AdapterError as e:
        raise SystemExit(f"e7: {e}, or pass --weights DIR")
    train_x, train_y = sklearn_digits("train")
    test_x, test_y = sklearn_digits("test")
    classifier = DigitClassifier(train_x[:s["n_classifier"]], train_y[:s["n_classifier"]])
    test_labels, test_prob = classifier.predict(test_x)
    confident = test_prob.max(1) >= CONFIDENT
    clf_rows = [{"images": "held-out scikit-learn digits (MNIST layout)", "n": len(test_x),
                 "accuracy": float(np.mean(test_labels == test_y)), "confident": float(confident.mean()),
                 "accuracy on confident": float(np.mean(test_labels[confident] == test_y[confident]))}]
    prior_rows, class_rows, decoded, details = rows_priors(models, classifier, test_x, s, args)
    compare_rows = rows_compare(decoded, class_rows, s["n_perm"], args.out)
    ood_rows, traj_rows = rows_ood(models, train_x[:s["n_fit"]], test_x[:s["n_in_test"]], s, args)
    finish(args, "e7_meehan_vae", {
        "data-free prior from N(0, I) seeds": prior_rows,
        "digit classes of the attractors (share of converged seeds per confident label)": class_rows,
        f"digit classifier (trained on {s['n_classifier']} scikit-learn digits)": clf_rows,
        "comparing the models' attractor sets in pixel space": compare_rows,
        "OOD: AUROC (higher better) and FPR95 (lower better), OOD = positive": ood_rows,
        "OOD: trajectories per set": traj_rows,
    }, {"settings": s, "attractors": details})


if __name__ == "__main__":
    main()
