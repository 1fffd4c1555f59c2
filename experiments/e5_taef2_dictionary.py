"""Experiment 5 (paper Sec. 4.1): a data-free dictionary from a real autoencoder, TAEF2.

TAEF2 (tiny autoencoder of the FLUX.2 latent space; 32 x 8 x 8 latents for 64 x 64 images) is iterated
from N(0, I) seeds. On 2 CPU cores it does not converge in the steps we can afford (see
docs/adapters.md), so the atoms are the **end points reached after ``max_steps`` steps**, reported as
such, not converged attractors. Crops of scikit-image's natural images are encoded and rebuilt by OMP
(scikit-learn) from n atoms (``probe.analyses.dictionary.dictionary_test``): end points against a
random orthonormal basis of the latent space, and against the Gaussian seeds themselves (does the
iteration add anything?).

    .venv/bin/python experiments/e5_taef2_dictionary.py --out docs/results/e5 [--smoke] [--weights DIR]
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import finish, parse_args, save_png  # noqa: E402
from latentfield.adapters import load_adapter  # noqa: E402
from latentfield.probe.analyses.dictionary import dictionary_test  # noqa: E402
from latentfield.probe.engine.attractors import deduplicate  # noqa: E402
from latentfield.adapters.errors import UsageError  # noqa: E402
from latentfield.probe.rundir import ProbeConfig, run_probe  # noqa: E402
from latentfield.probe.engine.seeds import make_seeds  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = Path(os.environ.get("LATENTFIELD_TAEF2_DIR", ROOT.parent / "shared" / "weights" / "taef2"))
IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")
FULL = dict(size=64, n_seeds=10, max_steps=150, tol=1e-5, crops_per_image=5)
SMOKE = dict(size=16, n_seeds=2, max_steps=3, tol=1e-5, crops_per_image=1)


def natural_crops(size: int, per_image: int, seed: int = 0) -> torch.Tensor:
    """Seeded ``size`` x ``size`` RGB crops (N, 3, size, size) in [0, 1] of scikit-image's colour images,
    each image first downscaled by 2 (antialiased) so a crop holds more than texture."""
    import skimage.data
    from skimage.transform import rescale
    rng = np.random.default_rng(seed)
    out = []
    for name in IMAGES:
        img = rescale(getattr(skimage.data, name)().astype(np.float32) / 255.0, 0.5, channel_axis=2,
                      anti_aliasing=True)
        for _ in range(per_image):
            i, j = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
            out.append(torch.from_numpy(np.ascontiguousarray(img[i:i + size, j:j + size].transpose(2, 0, 1))))
    return torch.stack(out).float().clamp(0, 1)


def figure(main: dict, seeds: dict) -> object:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.8, 3.6))
    k = main["n_attractors"]  # beyond k atoms OMP has nothing more to add: draw the curve up to k
    n_k = [n for n in main["n_atoms"] if n <= k]
    ax.plot(n_k, main["mse_attractors"][:len(n_k)], "o-", label=f"end points after iteration ({k})")
    ax.plot(seeds["n_atoms"], seeds["mse_attractors"], "^:", label=f"Gaussian seeds, not iterated ({seeds['n_attractors']})")
    ax.plot(main["n_atoms"], main["mse_random_basis"], "s--", label=f"random orthonormal basis ({main['latent_dim']})")
    ax.axhline(main["mse_autoencoder"], color="gray", lw=1, ls=":", label="D(E(x)) (floor)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("atoms used by OMP")
    ax.set_ylabel("image MSE ([0, 1] pixels)")
    ax.set_title("TAEF2, natural-image crops", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv=None) -> None:
    args = parse_args("Experiment 5: TAEF2 data-free dictionary", argv,
                      extra=lambda p: p.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS,
                                                     help="directory with taef2_encoder.pth / taef2_decoder.pth"))
    s = SMOKE if args.smoke else FULL
    if not (args.weights / "taef2_encoder.pth").exists():
        raise SystemExit(f"e5: TAEF2 weights not found in {args.weights} (pass --weights DIR or set LATENTFIELD_TAEF2_DIR)")
    try:
        adapter = load_adapter(str(args.weights), image_shape=(3, s["size"], s["size"]))
    except UsageError as e:
        raise SystemExit(f"e5: {e}")
    config = ProbeConfig(n_seeds=s["n_seeds"], tol=s["tol"], max_steps=s["max_steps"], batch_size=s["n_seeds"])
    t0 = time.perf_counter()
    res = run_probe(adapter, config, progress=not args.quiet)
    print(f"e5: probe {time.perf_counter() - t0:.0f} s, {res.counts}", flush=True)
    ends = res.end_points
    with torch.no_grad():
        last_sq = (adapter.f(ends.to(adapter.dtype)).float() - ends).flatten(1).pow(2).sum(1)
    reps, _ = deduplicate(ends, "cosine", config.cos_threshold)
    atoms = ends[torch.from_numpy(reps)]
    seeds = make_seeds("gaussian", range(s["n_seeds"]), adapter.latent_shape, config.seed)
    crops = natural_crops(s["size"], s["crops_per_image"])
    d = int(np.prod(adapter.latent_shape))
    k = len(atoms)
    small = sorted({n for n in (1, 2, 4, 8) if n < k} | {k})
    # OMP over all d atoms of an orthonormal basis is exact (it returns E(x)) and costs O(d^3) per image in
    # scikit-learn, so the curve stops at d / 8; the floor D(E(x)) is drawn instead.
    grid = sorted(set(small) | {n for n in (16, 64, d // 8) if k < n <= d})
    t0 = time.perf_counter()
    main_res = dictionary_test(adapter, atoms, crops, n_atoms=grid)
    seed_res = dictionary_test(adapter, seeds, crops, n_atoms=small)
    print(f"e5: dictionary tests {time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    for i, n in enumerate(grid):
        j = small.index(n) if n in small else None
        rows.append({"atoms": n, "MSE end points": main_res["mse_attractors"][i] if n <= k else None,
                     "MSE Gaussian seeds": seed_res["mse_attractors"][j] if j is not None else None,
                     "MSE random basis": main_res["mse_random_basis"][i],
                     "latent residual end points": main_res["residual_attractors"][i] if n <= k else None,
                     "latent residual random basis": main_res["residual_random_basis"][i]})
    norms = ends.flatten(1).norm(dim=1)
    probe_rows = [{"seeds": len(res.status), **res.counts, "distinct end points (cos 0.99)": k,
                   "median squared step at end": float(last_sq.median()),
                   "median relative step at end": float((last_sq.sqrt() / norms).median()),
                   "median ||z|| at end": float(norms.median()), "f evaluations": res.n_evals}]
    save_png(figure(main_res, seed_res), args.out / "e5_taef2_dictionary.png")
    finish(args, "e5_taef2_dictionary", {"probe from N(0, I) seeds": probe_rows, "OMP dictionary test": rows},
           {"settings": s, "latent_shape": list(adapter.latent_shape), "n_crops": len(crops),
            "mse_autoencoder": main_res["mse_autoencoder"], "images": list(IMAGES)})


if __name__ == "__main__":
    main()
