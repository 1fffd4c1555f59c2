"""``latentfield extract MODEL --seeds N --out DIR``: the model's data-free prior as files.

Gaussian seeds are iterated to attractors; the decoded attractors go to ``DIR/attractors/*.png`` with
``DIR/manifest.json``, the latents to ``DIR/attractors.safetensors`` and a FAISS index of them to
``DIR/index.faiss``. With ``--reference DATA --dictionary`` the OMP dictionary test runs as well.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from latentfield.adapters import atomic
from ..analyses.dictionary import dictionary_figure, dictionary_test
from ..data import load_images
from ..index import AttractorIndex
from ..latents import decode_unit
from ..report import png_bytes, save_grid, to_pil, write_figure
from ..run import describe_unconverged, run_probe
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
    from latentfield.adapters.errors import UsageError
    if args.dictionary and not args.reference:
        raise UsageError("--dictionary needs --reference DATA (images to rebuild)")
    adapter = model_from_args(args)
    out = Path(args.out)
    result = run_probe(adapter, probe_config(args), out=out / "probe", progress=not args.quiet)
    order = np.argsort(-result.basin_sizes, kind="stable")  # largest basin first, as in the audit
    attractors = result.attractors[order]
    sizes = result.basin_sizes[order]
    decoded = decode_unit(adapter, attractors)
    entries = []
    for rank, (k, img) in enumerate(zip(order, decoded)):
        name = f"attractors/{rank:05d}.png"
        atomic.write_bytes(out / name, png_bytes(to_pil(img)))
        entries.append({"file": name, "rank": rank, "attractor": int(k), "basin_size": int(sizes[rank]),
                        "latent_norm": float(attractors[rank].norm())})
    atomic.write_tensors(out / "attractors.safetensors", {"attractors": attractors.contiguous(),
                                                      "basin_sizes": torch.from_numpy(sizes.copy())},
                     metadata={"fingerprint": adapter.fingerprint, "model": adapter.name})
    if len(attractors):
        AttractorIndex.build(attractors, "cosine", fingerprint=adapter.fingerprint).save(out / "index.faiss")
        save_grid(decoded[:64], out / "attractors.png")
    manifest = {"model": adapter.name, "fingerprint": adapter.fingerprint, "latent_shape": list(adapter.latent_shape),
                "n_seeds": len(result.status), "counts": result.counts, "n_attractors": len(attractors),
                "attractors": entries}
    if args.dictionary:
        images = load_images(args.reference, adapter.image_shape, limit=args.limit)
        dico = dictionary_test(adapter, attractors, images) if len(attractors) else None
        if dico is not None:
            atomic.write_json(out / "dictionary.json", dico)
            write_figure(dictionary_figure(dico), out / "dictionary.png")
            manifest["dictionary"] = "dictionary.json"
    atomic.write_json(out / "manifest.json", manifest)
    # name only what was written: with no attractor there are no PNGs, no index and no attractors/ folder
    written = [f"{out}/attractors/ ({len(entries)} PNGs)"] if entries else []
    written += [f"{out}/manifest.json", f"{out}/attractors.safetensors"] + ([f"{out}/index.faiss"] if entries else [])
    written += [f"{out}/dictionary.json"] if "dictionary" in manifest else []
    none = " (no seed converged, so no attractor images)" if not entries else ""
    print(f"{adapter.name}: {len(result.status)} seeds -> {len(attractors)} attractors{none}; wrote {', '.join(written)}")
    if note := describe_unconverged(result.summary()):
        print(note)
    return 0
