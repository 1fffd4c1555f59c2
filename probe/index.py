"""``AttractorIndex``: nearest-neighbour search between attractors and reference embeddings (FAISS).

Vectors are flattened latents (or any embeddings) of one model. Two metrics:

* ``cosine``: vectors are L2-normalised and compared by inner product; the distance we return is the
  cosine distance ``1 - cos`` (in [0, 2]);
* ``l2``: Euclidean distance (FAISS works with squared L2; we return the square root).

Either way smaller = nearer. Exact ``IndexFlat*`` search is the default; ``kind="hnsw"`` or ``"ivf"``
(and ``"auto"`` above ``AUTO_APPROX`` vectors) trade exactness for speed on very large sets.
FAISS is imported lazily so that importing latentfield never needs it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from latentfield.adapters.errors import UsageError, first_line

from .display import card
from .rundir import output
from .rundir.environment import package_version

METRICS = ("cosine", "l2")
KINDS = ("flat", "hnsw", "ivf", "auto")
AUTO_APPROX = 1_000_000  # "auto" switches from exact to HNSW above this many indexed vectors
FORMAT = 1


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise UsageError("the attractor index needs FAISS: pip install faiss-cpu") from None
    return faiss


def as_matrix(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, ...) tensor/array -> C-contiguous float32 (N, D) array, the layout FAISS needs."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().float().numpy()
    x = np.asarray(x, dtype=np.float32)
    return np.ascontiguousarray(x.reshape(len(x), int(np.prod(x.shape[1:])) if x.ndim > 1 else 1))


class AttractorIndex:
    """A FAISS index over K vectors of dimension ``dim`` plus the metadata needed to trust it later.

    Build with :meth:`build`; query with :meth:`search`, :meth:`nearest_attractor`,
    :meth:`nearest_reference`, :meth:`basin_purity`; persist with :meth:`save` / :meth:`load`.
    ``fingerprint`` is the adapter's weight hash: an index is only valid for the model whose latent
    space it indexes.
    """

    def __init__(self, index: Any, dim: int, metric: str, kind: str, fingerprint: str | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        self.index, self.dim, self.metric, self.kind = index, dim, metric, kind
        self.fingerprint = fingerprint
        self.meta = meta or {}

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def build(cls, vectors: torch.Tensor | np.ndarray, metric: str = "cosine", kind: str = "flat", *,
              fingerprint: str | None = None, hnsw_m: int = 32, nlist: int | None = None,
              nprobe: int = 16) -> "AttractorIndex":
        """Index ``vectors`` (K, ...) (flattened to (K, D)).

        ``kind``: ``flat`` (exact), ``hnsw`` (graph, M = ``hnsw_m``), ``ivf`` (inverted lists,
        ``nlist`` cells, default ~4 sqrt(K), ``nprobe`` visited per query), or ``auto`` (flat up to
        ``AUTO_APPROX`` vectors, HNSW above).
        """
        if metric not in METRICS:
            raise UsageError(f"unknown metric {metric!r}: choose one of {', '.join(METRICS)}")
        if kind not in KINDS:
            raise UsageError(f"unknown index kind {kind!r}: choose one of {', '.join(KINDS)}")
        x = as_matrix(vectors)
        if len(x) == 0:
            raise UsageError("cannot build an attractor index from zero vectors")
        if kind == "auto":
            kind = "flat" if len(x) <= AUTO_APPROX else "hnsw"
        faiss = _faiss()
        d = x.shape[1]
        ip = metric == "cosine"
        if ip:
            x = x.copy()
            faiss.normalize_L2(x)
        fmetric = faiss.METRIC_INNER_PRODUCT if ip else faiss.METRIC_L2
        if kind == "flat":
            index = faiss.IndexFlatIP(d) if ip else faiss.IndexFlatL2(d)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, hnsw_m, fmetric)
            index.hnsw.efSearch = max(64, hnsw_m * 2)
        else:
            nlist = nlist or max(1, min(len(x) // 39, int(4 * np.sqrt(len(x)))))  # FAISS wants >= 39 points per cell
            quantizer = faiss.IndexFlatIP(d) if ip else faiss.IndexFlatL2(d)
            index = faiss.IndexIVFFlat(quantizer, d, nlist, fmetric)
            index.train(x)
            index.nprobe = min(nprobe, nlist)
        index.add(x)
        return cls(index, d, metric, kind, fingerprint)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def __repr__(self) -> str:
        return f"AttractorIndex(n={len(self)}, dim={self.dim}, metric={self.metric!r}, kind={self.kind!r})"

    def _repr_html_(self) -> str:
        """Jupyter: what the index holds and which model and run it belongs to."""
        return card("AttractorIndex", [("vectors", len(self)), ("dimension", self.dim), ("metric", self.metric),
                                       ("kind", self.kind), ("model fingerprint", (self.fingerprint or "-")[:16]),
                                       ("run key", str(self.meta.get("run_key") or "-")[:16])])

    # -- queries ----------------------------------------------------------------------------------
    def _queries(self, q: torch.Tensor | np.ndarray) -> np.ndarray:
        x = as_matrix(q)
        if x.shape[1] != self.dim:
            raise UsageError(f"query vectors have dimension {x.shape[1]}, the index holds dimension {self.dim}")
        if self.metric == "cosine":
            x = x.copy()
            _faiss().normalize_L2(x)
        return x

    def search(self, queries: torch.Tensor | np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest indexed vectors of each query (Q, ...).

        Returns distances (Q, k) float32 (cosine distance or Euclidean, see module doc; nearest
        first) and indices (Q, k) int64 into the indexed vectors (-1 where fewer than k exist).
        """
        x = self._queries(queries)
        k = max(1, min(int(k), len(self)))
        raw, idx = self.index.search(x, k)
        if self.metric == "cosine":
            dist = 1.0 - raw
        else:
            dist = np.sqrt(np.maximum(raw, 0.0))
        return dist.astype(np.float32), idx.astype(np.int64)

    def nearest_attractor(self, references: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each reference (M, ...): distance (M,) and index (M,) of its nearest indexed attractor."""
        d, i = self.search(references, 1)
        return d[:, 0], i[:, 0]

    def nearest_reference(self, attractors: torch.Tensor | np.ndarray,
                          references: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each of ``attractors`` (K, ...): distance (K,) and index (K,) of the nearest of
        ``references`` (M, ...), searched with an index of the references (same metric, ``auto`` kind)."""
        ref = AttractorIndex.build(references, self.metric, "auto")
        if ref.dim != self.dim:
            raise UsageError(f"reference vectors have dimension {ref.dim}, the index holds dimension {self.dim}")
        d, i = ref.search(attractors, 1)
        return d[:, 0], i[:, 0]

    def basin_purity(self, references: torch.Tensor | np.ndarray, labels: Sequence[int] | np.ndarray,
                     k: int = 1) -> dict[str, np.ndarray]:
        """Label purity of each attractor's basin from a labelled reference set.

        Each reference (M, ...) with its label (M,) is assigned by a k-nearest-attractor vote
        (k = 1: its nearest attractor). Per attractor (K,): ``count`` of references assigned,
        ``label`` (their majority label, -1 if none) and ``purity`` (fraction carrying it, NaN if none).
        """
        labels = np.asarray(labels)
        if len(labels) != len(as_matrix(references)):
            raise UsageError(f"{len(labels)} labels for {len(as_matrix(references))} reference vectors")
        _, idx = self.search(references, k)
        owner = np.array([np.bincount(row[row >= 0]).argmax() for row in idx]) if k > 1 else idx[:, 0]
        n = len(self)
        count = np.bincount(owner, minlength=n)
        label = np.full(n, -1, dtype=np.int64)
        purity = np.full(n, np.nan)
        classes, lab = np.unique(labels, return_inverse=True)
        table = np.zeros((n, len(classes)), dtype=np.int64)
        np.add.at(table, (owner, lab), 1)
        has = count > 0
        label[has] = classes[table[has].argmax(1)]
        purity[has] = table[has].max(1) / count[has]
        return {"count": count, "label": label, "purity": purity}

    def knn_labels(self, queries: torch.Tensor | np.ndarray, labels: Sequence[int] | np.ndarray,
                   k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """kNN classification of ``queries`` against the indexed vectors labelled ``labels`` (len(self),):
        predicted label (Q,) by majority of the k nearest, and the vote share of that label (Q,)."""
        labels = np.asarray(labels)
        if len(labels) != len(self):
            raise UsageError(f"{len(labels)} labels for an index of {len(self)} vectors")
        _, idx = self.search(queries, k)
        votes = labels[idx]
        pred = np.empty(len(idx), dtype=labels.dtype)
        share = np.empty(len(idx))
        for r, row in enumerate(votes):
            vals, cnt = np.unique(row, return_counts=True)
            pred[r], share[r] = vals[cnt.argmax()], cnt.max() / len(row)
        return pred, share

    def vectors(self) -> np.ndarray:
        """The indexed vectors (K, D) float32 in id order, as stored (L2-normalised for the cosine metric)."""
        ivf = _faiss().try_extract_index_ivf(self.index)
        if ivf is not None:  # inverted lists: ids -> list positions, needed to read vectors back by id
            ivf.make_direct_map()
        return self.index.reconstruct_n(0, len(self))

    def check_model(self, where: str | Path, *, fingerprint: str | None = None, dim: int | None = None) -> None:
        """Refuse (``UsageError`` naming ``where``) when the index was built for another model than the one
        with ``fingerprint``, or holds vectors of another dimension than ``dim``."""
        _check_model(where, self.fingerprint, self.dim, fingerprint, dim)

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write the FAISS index to ``path`` and its metadata to ``path`` + ``.json`` (``rundir.output``: the
        main process only); returns the sidecar."""
        path = Path(path)
        faiss = _faiss()
        output.write_bytes(path, faiss.serialize_index(self.index).tobytes())
        meta = {"format": FORMAT, "fingerprint": self.fingerprint, "dim": self.dim, "metric": self.metric,
                "kind": self.kind, "n": len(self), "latentfield_version": package_version("latentfield"),
                "faiss_version": getattr(faiss, "__version__", "unknown"), **self.meta}
        sidecar = path.with_name(path.name + ".json")
        output.write_json(sidecar, meta)
        return sidecar

    @classmethod
    def load(cls, path: str | Path, *, fingerprint: str | None = None, dim: int | None = None) -> "AttractorIndex":
        """Read an index written by :meth:`save`. With ``fingerprint`` / ``dim`` (e.g. from the adapter
        the caller will query with), refuse an index built for another model or latent size. A damaged
        index file or sidecar is a one-line ``UsageError`` naming the file."""
        path = Path(path)
        sidecar = path.with_name(path.name + ".json")
        if not path.exists() or not sidecar.exists():
            raise UsageError(f"{path}: no attractor index here (need {path.name} and {sidecar.name})")
        meta = _read_sidecar(sidecar)
        if meta.get("format") != FORMAT:
            raise UsageError(f"{path}: index format {meta.get('format')} is not supported (expected {FORMAT}); rebuild it")
        _check_model(path, meta.get("fingerprint"), meta["dim"], fingerprint, dim)  # before reading the index
        faiss = _faiss()
        try:
            index = faiss.deserialize_index(np.fromfile(path, dtype=np.uint8))
        except (RuntimeError, OSError, ValueError) as e:  # FAISS raises RuntimeError with C++ context
            raise UsageError(f"{path}: not a readable FAISS index ({type(e).__name__}: damaged or truncated); "
                             "rebuild it") from None
        if index.d != meta["dim"] or index.ntotal != meta["n"]:
            raise UsageError(f"{path} does not match its metadata {sidecar.name}; rebuild the index")
        extra = {k: v for k, v in meta.items() if k not in ("format", "fingerprint", "dim", "metric", "kind", "n",
                                                          "latentfield_version", "faiss_version")}
        return cls(index, int(meta["dim"]), meta["metric"], meta["kind"], meta.get("fingerprint"), extra)


def _check_model(where: str | Path, held_fingerprint: str | None, held_dim: int, fingerprint: str | None,
                 dim: int | None) -> None:
    if fingerprint is not None and held_fingerprint not in (None, fingerprint):
        raise UsageError(f"{where} was built for another model (fingerprint {str(held_fingerprint)[:12]}..., "
                         f"this one is {fingerprint[:12]}...); rebuild the index for this model")
    if dim is not None and int(held_dim) != int(dim):
        raise UsageError(f"{where} indexes {held_dim}-dimensional vectors, this model's latents have {dim}")


def _read_sidecar(sidecar: Path) -> dict[str, Any]:
    """The metadata :meth:`AttractorIndex.save` wrote, checked for the fields ``load`` needs."""
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise UsageError(f"{sidecar}: not readable JSON ({first_line(e)}); rebuild the index") from None
    if not isinstance(meta, dict):
        raise UsageError(f"{sidecar}: not the metadata of an attractor index (a JSON {type(meta).__name__}); "
                         "rebuild the index")
    if meta.get("format") == FORMAT:
        bad = [k for k, ok in (("dim", isinstance(meta.get("dim"), int)), ("n", isinstance(meta.get("n"), int)),
                               ("metric", meta.get("metric") in METRICS), ("kind", meta.get("kind") in KINDS)) if not ok]
        if bad:
            raise UsageError(f"{sidecar}: missing or invalid {', '.join(bad)}; rebuild the index")
    return meta


__all__ = ["AttractorIndex", "as_matrix", "METRICS", "KINDS"]
