"""``latentfield extract MODEL --seeds N --out DIR``: the model's data-free prior as files.

Gaussian seeds are iterated to attractors; the decoded attractors go to ``DIR/attractors/*.png`` with
``DIR/manifest.json``, the latents to ``DIR/attractors.safetensors`` and a FAISS index of them to
``DIR/index.faiss``. With ``--reference DATA --dictionary`` the OMP dictionary test runs as well.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from latentfield.adapters.errors import UsageError

from ..data import load_images
from ..report.figures import dictionary_figure, save_figure
from ..report.messages import describe_captured, describe_unconverged
from ..workflows.extract import extract_prior
from .common import add_model_args, add_probe_args, model_from_args, probe_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("extract", help="save the attractors reached from noise (the data-free prior) as PNGs + latents",
                       description="Iterate Gaussian seeds to attractors; save decoded PNGs, a manifest, latents "
                                   "(safetensors) and a FAISS index; optionally run the OMP dictionary test.")
    add_model_args(p)
    add_probe_args(p, seeds=256)
    p.add_argument("--out", required=True, help="output directory (the probe run inside it resumes)")
    p.add_argument("--reference", default=None, help="images for the dictionary test (folder, array file, digits:test, ...)")
    p.add_argument("--dictionary", action="store_true", help="run the OMP dictionary test on --reference images")
    p.add_argument("--limit", type=int, default=512, help="reference images used by the dictionary test (default 512)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.dictionary and not args.reference:
        raise UsageError("--dictionary needs --reference DATA (images to rebuild)")
    adapter = model_from_args(args)
    out = Path(args.out)
    reference = load_images(args.reference, adapter.image_shape, limit=args.limit) if args.dictionary else None
    result, manifest, dictionary = extract_prior(adapter, out, probe_config(args), reference, progress=not args.quiet)
    if dictionary is not None:
        save_figure(dictionary_figure(dictionary), out / "dictionary.png")
    # name only what was written: with no attractor there are no PNGs, no index and no attractors/ folder
    n = manifest["n_attractors"]
    written = [f"{out}/attractors/ ({n} PNGs)"] if n else []
    written += [f"{out}/manifest.json", f"{out}/attractors.safetensors"] + ([f"{out}/index.faiss"] if n else [])
    written += [f"{out}/dictionary.json", f"{out}/dictionary.png"] if dictionary is not None else []
    none = " (no seed converged, so no attractor images)" if not n else ""
    print(f"{adapter.name}: {len(result.status)} seeds -> {n} attractors{none}; wrote {', '.join(written)}")
    for note in (describe_unconverged(result.summary()), describe_captured(result.summary())):
        if note:
            print(note)
    return 0
