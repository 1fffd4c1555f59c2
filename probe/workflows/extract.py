"""Data-free prior extraction: Gaussian seeds iterated to attractors, written as files a person or another
tool can use: ``attractors/*.png`` (decoded, largest basin first), ``manifest.json``, the latents
(``attractors.safetensors``) and a FAISS index of them (``index.faiss``); optionally the OMP dictionary test.

``OUT`` is also an image dataset in the Hugging Face Hub's ``imagefolder`` layout: ``metadata.jsonl`` names
each attractor image with its rank, basin size, kind and the model's fingerprint, so
``datasets.load_dataset("imagefolder", data_dir=OUT)`` loads the prior and ``hf upload`` publishes it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentfield.adapters import Adapter, load_adapter

from ..analyses.dictionary import dictionary_test
from ..engine.latents import decode_unit
from ..index import AttractorIndex
from ..image_files import grid_png, png_bytes, to_pil
from ..rundir import ProbeConfig, ProbeResult, output, run_probe
from ..rundir.layout import probe_dir


def extract_prior(adapter: Adapter | Any, out: str | Path, config: ProbeConfig | None = None,
                  reference: torch.Tensor | None = None,
                  progress: bool = False) -> tuple[ProbeResult, dict[str, Any], dict[str, Any] | None]:
    """Probe ``adapter`` (a resumable run in ``out/probe``) and write its attractors to ``out``.

    ``reference`` (M, C, H, W) in [0, 1]: images for the dictionary test (``dictionary.json``;
    ``report.figures.dictionary_figure`` draws it). Returns the probe result, the manifest (also ``out/manifest.json``) and the
    dictionary test's result (None when not run). Under torchrun every rank computes; rank 0 writes.
    """
    adapter = load_adapter(adapter)  # a model object or a spec string wraps as its family's adapter
    out = Path(out)
    result = run_probe(adapter, config or ProbeConfig(), out=probe_dir(out), progress=progress)
    order = result.basin_order()
    attractors = result.attractors[order]
    sizes = result.basin_sizes[order]
    decoded = decode_unit(adapter, attractors)
    entries = [{"file": f"attractors/{rank:05d}.png", "rank": rank, "attractor": int(k), "basin_size": int(sizes[rank]),
                "latent_norm": float(attractors[rank].norm())} for rank, k in enumerate(order)]
    manifest = {"model": adapter.name, "fingerprint": adapter.fingerprint, "run_key": result.run_key,
                "latent_shape": list(adapter.latent_shape), "n_seeds": len(result.status), "counts": result.counts,
                "n_attractors": len(attractors), "attractors": entries}
    dictionary = None
    if reference is not None and len(attractors):
        dictionary = dictionary_test(adapter, attractors, reference)
        manifest["dictionary"] = "dictionary.json"
    _write(out, adapter, result, attractors, sizes, decoded, manifest, dictionary)
    return result, manifest, dictionary


def _write(out: Path, adapter: Adapter, result: ProbeResult, attractors: torch.Tensor, sizes: np.ndarray,
           decoded: torch.Tensor, manifest: dict[str, Any], dictionary: dict[str, Any] | None) -> None:
    for entry, img in zip(manifest["attractors"], decoded):
        output.write_bytes(out / entry["file"], png_bytes(to_pil(img)))
    output.write_tensors(out / "attractors.safetensors", {"attractors": attractors.contiguous(),
                                                          "basin_sizes": torch.from_numpy(sizes.copy())},
                         metadata={"fingerprint": adapter.fingerprint, "model": adapter.name,
                                   "run_key": str(result.run_key)})
    if len(attractors):
        index = AttractorIndex.build(attractors, "cosine", fingerprint=adapter.fingerprint)
        index.meta["run_key"] = result.run_key
        index.save(out / "index.faiss")
        output.write_bytes(out / "attractors.png", grid_png(decoded[:64]))
    if dictionary is not None:
        output.write_json(out / "dictionary.json", dictionary)
    if manifest["attractors"]:
        output.write_text(out / "metadata.jsonl", imagefolder_metadata(manifest))
    output.write_json(out / "manifest.json", manifest)  # last: its presence says the rest is there


def imagefolder_metadata(manifest: dict[str, Any]) -> str:
    """``metadata.jsonl`` of the Hub's ``imagefolder`` layout: one JSON line per attractor image
    (``file_name`` relative to ``OUT``, ``rank`` by basin size, ``basin_size`` in seeds, ``kind``, the model's
    ``fingerprint`` and the probe's ``run_key``)."""
    kind = "fixed_point"  # the probe's attractors are fixed points of f
    return "".join(json.dumps({"file_name": e["file"], "rank": e["rank"], "basin_size": e["basin_size"], "kind": kind,
                               "fingerprint": manifest["fingerprint"], "run_key": manifest["run_key"]}) + "\n"
                   for e in manifest["attractors"])


__all__ = ["extract_prior", "imagefolder_metadata"]
