"""The attractor index as a workflow: a probe run's attractors in FAISS, queried with reference images.

``index_run`` loads a finished probe run (or an audit directory, whose run is ``AUDIT/probe``), puts its
attractors in an :class:`~latentfield.probe.index.AttractorIndex` and queries it with images:

* for each image, its nearest attractor (the basin it falls in) and the distance;
* for each attractor, its ``k`` nearest images.

Two spaces, as ``latentfield compare --space``: ``latent`` (attractors as flattened latents, images
encoded by the same model: ``encode_unit``) and ``embed`` (attractors decoded to images, then attractors
and images alike encoded by a reference encoder, the ``embedder``). Distances are the index's: cosine
distance 1 - cos (default) or Euclidean.

Indexed vector i is attractor i of the run (its id in ``attractors.safetensors``, the numbering of the
run's ``labels``); ``basin_rank`` is the position by basin size, largest first (0 = largest), the order of
the audit's basin histogram. The index is saved with the model's fingerprint; a later query with
``load=`` refuses an index built for another model, and another reference encoder.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentfield.adapters import Adapter, atomic
from latentfield.adapters.errors import UsageError

from ..data import fit_to_shape
from ..index import AttractorIndex
from ..engine.latents import decode_unit, encode_unit
from ..rundir import ProbeResult, load_result
from ..rundir.distributed import is_main_process

INDEX_FILE = "index.faiss"


def find_run(path: str | Path) -> Path:
    """The probe run directory at ``path``: the directory itself, or ``path/probe`` for an audit."""
    path = Path(path)
    for cand in (path, path / "probe"):
        if (cand / "attractors.safetensors").exists() and (cand / "summary.json").exists():
            return cand
    if not path.exists():
        raise UsageError(f"{path}: no such run directory")
    raise UsageError(f"{path}: not a finished probe run (no attractors.safetensors and summary.json here or in "
                     f"{path / 'probe'}); give the output folder of `latentfield probe` or `latentfield audit`")


def run_model(run: str | Path) -> dict[str, Any]:
    """The ``adapter`` record of a run's summary.json: name, fingerprint, latent and image shape."""
    return json.loads((find_run(run) / "summary.json").read_text()).get("adapter", {})


def attractor_vectors(adapter: Adapter, attractors: torch.Tensor, embedder: Adapter | None = None) -> torch.Tensor:
    """Attractors (K, *latent) -> vectors (K, D): flattened latents, or the ``embedder``'s latents of the
    decoded attractors (resized to its input shape)."""
    if embedder is None:
        return attractors.float().flatten(1)
    images = fit_to_shape(decode_unit(adapter, attractors), embedder.image_shape)
    return encode_unit(embedder, images, 64).flatten(1)


def image_vectors(adapter: Adapter, images: torch.Tensor, embedder: Adapter | None = None) -> torch.Tensor:
    """Images (M, C, H, W) in [0, 1] -> vectors (M, D) in the same space as :func:`attractor_vectors`."""
    model = embedder or adapter
    return encode_unit(model, fit_to_shape(images, model.image_shape)).flatten(1)


def build_index(adapter: Adapter, result: ProbeResult, *, embedder: Adapter | None = None, metric: str = "cosine",
                kind: str = "flat", run: str | Path | None = None) -> AttractorIndex:
    """An :class:`AttractorIndex` over all of ``result``'s attractors (vector i = attractor i), carrying
    the model's fingerprint and, in its metadata, the space, the reference encoder and the basin sizes."""
    if len(result.attractors) == 0:
        raise UsageError(f"{run or 'the run'}: no seed converged, so there are no attractors to index "
                         "(probe again with a larger `max_steps` or `tol`)")
    index = AttractorIndex.build(attractor_vectors(adapter, result.attractors, embedder), metric, kind,
                                 fingerprint=adapter.fingerprint)
    index.meta = {"model": adapter.name, "space": "embed" if embedder is not None else "latent",
                  "embed": embedder.name if embedder is not None else None,
                  "embed_fingerprint": embedder.fingerprint if embedder is not None else None,
                  "run": str(run) if run is not None else None, "image_shape": list(adapter.image_shape or ()),
                  "basin_sizes": result.basin_sizes.tolist()}
    return index


def load_index(path: str | Path, adapter: Adapter, embedder: Adapter | None = None) -> AttractorIndex:
    """Read an index written by :func:`index_run`, refusing one built for another model (fingerprint),
    in another space, or with another reference encoder."""
    model = embedder or adapter
    index = AttractorIndex.load(path, fingerprint=adapter.fingerprint)
    if "basin_sizes" not in index.meta:  # e.g. extract's index.faiss: attractors in rank order, no basins
        raise UsageError(f"{path}: not an index of `latentfield index` (no basin sizes beside it); "
                         "build one with `latentfield index RUN --reference DATA --out DIR`")
    space = index.meta.get("space", "latent")
    if space == "embed" and embedder is None:
        raise UsageError(f"{path} indexes embeddings by {index.meta.get('embed')}; give that encoder as `embedder`")
    if space == "latent" and embedder is not None:
        raise UsageError(f"{path} indexes latents of {index.meta.get('model')}, not embeddings; drop `embedder`")
    if embedder is not None and index.meta.get("embed_fingerprint") not in (None, embedder.fingerprint):
        raise UsageError(f"{path} was built with another reference encoder ({index.meta.get('embed')}, "
                         f"fingerprint {str(index.meta['embed_fingerprint'])[:12]}...); rebuild it with this `embedder`")
    dim = int(np.prod(model.latent_shape))
    if index.dim != dim:
        raise UsageError(f"{path} indexes {index.dim}-dimensional vectors, {model.name}'s latents have {dim}")
    return index


def indexed_vectors(index: AttractorIndex) -> np.ndarray:
    """The vectors stored in ``index`` (K, D) float32 (L2-normalised for the cosine metric)."""
    import faiss
    ivf = faiss.try_extract_index_ivf(index.index)
    if ivf is not None:
        ivf.make_direct_map()
    return index.index.reconstruct_n(0, len(index))


def query_index(index: AttractorIndex, queries: torch.Tensor | np.ndarray, k: int = 5) -> dict[str, np.ndarray]:
    """Query an attractor index with image vectors (M, D).

    Returns ``attractor`` (M,) int64, each image's nearest attractor, with ``distance`` (M,); and
    ``neighbours`` (K, k') int64 / ``neighbour_distance`` (K, k'), each attractor's k' = min(k, M) nearest
    images, nearest first (exact search over the images, whatever the index kind).
    """
    if k < 1:
        raise UsageError(f"k must be >= 1, got {k}")
    dist, att = index.nearest_attractor(queries)
    images = AttractorIndex.build(queries, index.metric, "flat")
    ndist, nidx = images.search(indexed_vectors(index), k)
    return {"attractor": att, "distance": dist, "neighbours": nidx, "neighbour_distance": ndist}


def basin_ranks(basin_sizes: np.ndarray) -> np.ndarray:
    """Rank of each attractor by basin size (0 = largest; ties in id order, as the audit orders them)."""
    order = np.argsort(-np.asarray(basin_sizes), kind="stable")
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


def index_run(run: str | Path | None, images: torch.Tensor, out: str | Path, *, adapter: Adapter,
              embedder: Adapter | None = None, load: str | Path | None = None, metric: str = "cosine",
              kind: str = "flat", k: int = 5, images_name: str = "images") -> dict[str, Any]:
    """Index a run's attractors (or ``load`` a saved index) and query it with ``images`` (M, C, H, W) in [0, 1].

    ``run``: a probe run or audit directory, made by ``adapter`` (checked by fingerprint); ignored with
    ``load``. ``embedder``: index in its embedding space instead of ``adapter``'s latents.
    Writes to ``out``: ``index.faiss`` (+ ``.json`` sidecar; not when loading), ``index.json`` (everything
    below), ``images.csv`` (image, attractor, basin_rank, basin_size, distance) and ``attractors.csv``
    (attractor, basin_rank, basin_size, n_images, neighbour, image, distance; one row per neighbour).
    Returns the ``index.json`` data.
    """
    out = Path(out)
    if load is not None:
        index = load_index(load, adapter, embedder)
        source = index.meta.get("run")
    else:
        if run is None:
            raise UsageError("give a probe run directory to index, or a saved index to load")
        run_path = find_run(run)
        recorded = run_model(run_path).get("fingerprint")
        if recorded and recorded != adapter.fingerprint:
            raise UsageError(f"{run_path} was probed with another model (fingerprint {recorded[:12]}..., "
                             f"{adapter.name} is {adapter.fingerprint[:12]}...); give the model that made it (`adapter`)")
        index = build_index(adapter, load_result(run_path), embedder=embedder, metric=metric, kind=kind, run=run_path)
        source = str(run_path)
    if len(images) == 0:
        raise UsageError(f"{images_name}: no images to query with")
    res = query_index(index, image_vectors(adapter, images, embedder), k)
    sizes = np.asarray(index.meta["basin_sizes"], dtype=np.int64)
    ranks = basin_ranks(sizes)
    n_images = np.bincount(res["attractor"], minlength=len(index))
    per_image = [{"image": i, "attractor": int(a), "basin_rank": int(ranks[a]), "basin_size": int(sizes[a]),
                  "distance": float(d)} for i, (a, d) in enumerate(zip(res["attractor"], res["distance"]))]
    per_attractor = [{"attractor": a, "basin_rank": int(ranks[a]), "basin_size": int(sizes[a]),
                      "n_images": int(n_images[a]),
                      "neighbours": [{"image": int(i), "distance": float(d)}
                                     for i, d in zip(res["neighbours"][a], res["neighbour_distance"][a]) if i >= 0]}
                     for a in range(len(index))]
    data = {"model": adapter.name, "fingerprint": adapter.fingerprint, "run": source,
            "index": str(load if load is not None else out / INDEX_FILE), "loaded": load is not None,
            "space": index.meta.get("space", "latent"), "embed": index.meta.get("embed"), "metric": index.metric,
            "kind": index.kind, "k": k, "images": {"source": images_name, "n": len(images)},
            "n_attractors": len(index), "per_image": per_image, "per_attractor": per_attractor}
    if not is_main_process():  # under torchrun every rank queries; one writes
        return data
    if load is None:
        index.save(out / INDEX_FILE)
    atomic.write_json(out / "index.json", data)
    rows = ["image,attractor,basin_rank,basin_size,distance"]
    rows += [f"{r['image']},{r['attractor']},{r['basin_rank']},{r['basin_size']},{r['distance']:.6g}" for r in per_image]
    atomic.write_text(out / "images.csv", "\n".join(rows) + "\n")
    rows = ["attractor,basin_rank,basin_size,n_images,neighbour,image,distance"]
    rows += [f"{a['attractor']},{a['basin_rank']},{a['basin_size']},{a['n_images']},{j},{n['image']},{n['distance']:.6g}"
             for a in per_attractor for j, n in enumerate(a["neighbours"])]
    atomic.write_text(out / "attractors.csv", "\n".join(rows) + "\n")
    return data


__all__ = ["index_run", "build_index", "load_index", "query_index", "find_run", "run_model", "attractor_vectors",
           "image_vectors", "indexed_vectors", "basin_ranks", "INDEX_FILE"]
