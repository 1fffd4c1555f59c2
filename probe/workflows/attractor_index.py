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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentfield.adapters import Adapter
from latentfield.adapters.errors import UsageError

from ..data import fit_to_shape
from ..engine.latents import decode_unit, encode_unit
from ..index import AttractorIndex
from ..rundir import ProbeResult, load_result, output
from ..rundir.layout import RunDir, probe_dir
from ..rundir.result import basin_ranks

INDEX_FILE = "index.faiss"


def find_run(path: str | Path) -> Path:
    """The probe run directory at ``path``: the directory itself, or its ``probe/`` for an audit."""
    path = Path(path)
    for cand in (path, probe_dir(path)):
        run = RunDir(cand)
        if run.attractors.exists() and run.summary.exists():
            return cand
    if not path.exists():
        raise UsageError(f"{path}: no such run directory")
    raise UsageError(f"{path}: not a finished probe run (no {RunDir(path).attractors.name} and {RunDir(path).summary.name} "
                     f"here or in {probe_dir(path)}); give the output folder of `latentfield probe` or `latentfield audit`")


@dataclass(frozen=True)
class IndexSource:
    """What an index query reads, resolved once (:func:`open_source`): a finished probe run (``result``) or
    a saved index (``index``), found at ``where``. ``model``: the model it records (``name``,
    ``fingerprint``, ``image_shape``); ``embed``: the reference encoder a saved index was built with."""

    where: Path
    model: dict[str, Any]
    result: ProbeResult | None = None
    index: AttractorIndex | None = None

    @property
    def loaded(self) -> bool:
        return self.index is not None

    @property
    def embed(self) -> str | None:
        return self.index.meta.get("embed") if self.index is not None else None


def open_source(run: str | Path | None = None, load: str | Path | None = None) -> IndexSource:
    """Read a probe run (or an audit directory: its run) or a saved index of :func:`index_run`, once."""
    if (run is None) == (load is None):
        raise UsageError("give a probe run directory (`run`) or a saved index (`load`), not both"
                         if run is not None else "give a probe run directory to index (`run`), or a saved index (`load`)")
    if load is not None:
        index = AttractorIndex.load(load)
        if "basin_sizes" not in index.meta:  # e.g. extract's index.faiss: attractors in rank order, no basins
            raise UsageError(f"{load}: not an index of `latentfield index` (no basin sizes beside it); "
                             "build one with `latentfield index RUN --reference DATA --out DIR`")
        model = {"name": index.meta.get("model"), "fingerprint": index.fingerprint,
                 "image_shape": index.meta.get("image_shape")}
        return IndexSource(Path(load), model, index=index)
    path = find_run(run)
    result = load_result(path)
    return IndexSource(path, result.adapter_info, result=result)


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


def check_index(index: AttractorIndex, path: str | Path, adapter: Adapter, embedder: Adapter | None = None) -> None:
    """Refuse a saved index (read from ``path``) built for another model (fingerprint), in another space,
    or with another reference encoder."""
    index.check_model(path, fingerprint=adapter.fingerprint)
    space = index.meta.get("space", "latent")
    if space == "embed" and embedder is None:
        raise UsageError(f"{path} indexes embeddings by {index.meta.get('embed')}; give that encoder as `embedder`")
    if space == "latent" and embedder is not None:
        raise UsageError(f"{path} indexes latents of {index.meta.get('model')}, not embeddings; drop `embedder`")
    if embedder is not None and index.meta.get("embed_fingerprint") not in (None, embedder.fingerprint):
        raise UsageError(f"{path} was built with another reference encoder ({index.meta.get('embed')}, "
                         f"fingerprint {str(index.meta['embed_fingerprint'])[:12]}...); rebuild it with this `embedder`")
    model = embedder or adapter
    dim = int(np.prod(model.latent_shape))
    if index.dim != dim:
        raise UsageError(f"{path} indexes {index.dim}-dimensional vectors, {model.name}'s latents have {dim}")


def load_index(path: str | Path, adapter: Adapter, embedder: Adapter | None = None) -> AttractorIndex:
    """Read an index written by :func:`index_run` for ``adapter`` (and ``embedder``): :func:`check_index`."""
    source = open_source(load=path)
    check_index(source.index, path, adapter, embedder)
    return source.index


@dataclass(frozen=True)
class IndexQuery:
    """An attractor index queried with M images: ``attractor`` (M,) int64, each image's nearest attractor,
    at ``distance`` (M,); ``neighbours`` (K, k') int64 and ``neighbour_distance`` (K, k'), each attractor's
    k' = min(k, M) nearest images, nearest first."""

    attractor: np.ndarray
    distance: np.ndarray
    neighbours: np.ndarray
    neighbour_distance: np.ndarray


def query_index(index: AttractorIndex, queries: torch.Tensor | np.ndarray, k: int = 5) -> IndexQuery:
    """Query an attractor index with image vectors (M, D) (the neighbours by exact search over the images,
    whatever the index kind)."""
    if k < 1:
        raise UsageError(f"k must be >= 1, got {k}")
    dist, att = index.nearest_attractor(queries)
    ndist, nidx = AttractorIndex.build(queries, index.metric, "flat").search(index.vectors(), k)
    return IndexQuery(attractor=att, distance=dist, neighbours=nidx, neighbour_distance=ndist)


@dataclass(frozen=True)
class IndexReport:
    """What :func:`index_run` found: the ``index`` (built from ``source``'s run, or the one it loaded), the
    ``query`` with ``n_images`` images named ``images_name``, and the basin size and rank of each
    attractor (rank 0 = the largest basin: ``rundir.result.basin_order``)."""

    model: str
    fingerprint: str
    source: IndexSource
    index: AttractorIndex
    query: IndexQuery
    k: int
    images_name: str
    n_images: int

    @property
    def basin_sizes(self) -> np.ndarray:
        return np.asarray(self.index.meta["basin_sizes"], dtype=np.int64)

    def per_image(self) -> list[dict[str, Any]]:
        sizes, ranks = self.basin_sizes, basin_ranks(self.basin_sizes)
        return [{"image": i, "attractor": int(a), "basin_rank": int(ranks[a]), "basin_size": int(sizes[a]),
                 "distance": float(d)} for i, (a, d) in enumerate(zip(self.query.attractor, self.query.distance))]

    def per_attractor(self) -> list[dict[str, Any]]:
        sizes, ranks = self.basin_sizes, basin_ranks(self.basin_sizes)
        n_images = np.bincount(self.query.attractor, minlength=len(self.index))
        q = self.query
        return [{"attractor": a, "basin_rank": int(ranks[a]), "basin_size": int(sizes[a]), "n_images": int(n_images[a]),
                 "neighbours": [{"image": int(i), "distance": float(d)}
                                for i, d in zip(q.neighbours[a], q.neighbour_distance[a]) if i >= 0]}
                for a in range(len(self.index))]

    def to_json(self, index_file: str | Path) -> dict[str, Any]:
        """``index.json``: everything above, with the index at ``index_file``."""
        src = self.source
        return {"model": self.model, "fingerprint": self.fingerprint,
                "run": src.index.meta.get("run") if src.loaded else str(src.where),
                "index": str(index_file), "loaded": src.loaded, "space": self.index.meta.get("space", "latent"),
                "embed": self.index.meta.get("embed"), "metric": self.index.metric, "kind": self.index.kind,
                "k": self.k, "images": {"source": self.images_name, "n": self.n_images},
                "n_attractors": len(self.index), "per_image": self.per_image(), "per_attractor": self.per_attractor()}


def index_run(source: IndexSource | str | Path, images: torch.Tensor, out: str | Path | None = None, *, adapter: Adapter,
              embedder: Adapter | None = None, metric: str = "cosine", kind: str = "flat", k: int = 5,
              images_name: str = "images") -> IndexReport:
    """Index ``source``'s attractors (or use the index it loaded) and query it with ``images`` (M, C, H, W)
    in [0, 1].

    ``source``: :func:`open_source` (or a probe run / audit directory, opened here); its run must be
    ``adapter``'s (checked by fingerprint), as must a loaded index (and ``embedder``'s). ``embedder``:
    index in its embedding space instead of ``adapter``'s latents (when building; ``metric`` and ``kind``
    also apply only then). With ``out``, writes (through
    ``rundir.output``) ``index.faiss`` (+ ``.json`` sidecar; not for a loaded index), ``index.json``
    (:meth:`IndexReport.to_json`), ``images.csv`` (image, attractor, basin_rank, basin_size, distance) and
    ``attractors.csv`` (attractor, basin_rank, basin_size, n_images, neighbour, image, distance; one row
    per neighbour).
    """
    if not isinstance(source, IndexSource):
        source = open_source(run=source)
    if source.loaded:
        check_index(source.index, source.where, adapter, embedder)
        index = source.index
    else:
        recorded = source.model.get("fingerprint")
        if recorded and recorded != adapter.fingerprint:
            raise UsageError(f"{source.where} was probed with another model (fingerprint {recorded[:12]}..., "
                             f"{adapter.name} is {adapter.fingerprint[:12]}...); give the model that made it (`adapter`)")
        index = build_index(adapter, source.result, embedder=embedder, metric=metric, kind=kind, run=source.where)
    if len(images) == 0:
        raise UsageError(f"{images_name}: no images to query with")
    report = IndexReport(model=adapter.name, fingerprint=adapter.fingerprint, source=source, index=index,
                         query=query_index(index, image_vectors(adapter, images, embedder), k), k=k,
                         images_name=images_name, n_images=len(images))
    if out is not None:
        write_index_report(report, out)
    return report


def write_index_report(report: IndexReport, out: str | Path) -> list[Path]:
    """The files of :func:`index_run` in ``out`` (through ``rundir.output``); returns their paths."""
    out = Path(out)
    index_file = report.source.where if report.source.loaded else out / INDEX_FILE
    written = [] if report.source.loaded else [out / INDEX_FILE, report.index.save(out / INDEX_FILE)]
    data = report.to_json(index_file)
    rows = ["image,attractor,basin_rank,basin_size,distance"]
    rows += [f"{r['image']},{r['attractor']},{r['basin_rank']},{r['basin_size']},{r['distance']:.6g}"
             for r in data["per_image"]]
    written.append(output.write_text(out / "images.csv", "\n".join(rows) + "\n"))
    rows = ["attractor,basin_rank,basin_size,n_images,neighbour,image,distance"]
    rows += [f"{a['attractor']},{a['basin_rank']},{a['basin_size']},{a['n_images']},{j},{n['image']},{n['distance']:.6g}"
             for a in data["per_attractor"] for j, n in enumerate(a["neighbours"])]
    written.append(output.write_text(out / "attractors.csv", "\n".join(rows) + "\n"))
    written.append(output.write_json(out / "index.json", data))
    return written


__all__ = ["index_run", "open_source", "IndexSource", "IndexQuery", "IndexReport", "write_index_report",
           "build_index", "check_index", "load_index", "query_index", "find_run", "attractor_vectors",
           "image_vectors", "INDEX_FILE"]
