"""``latentfield index RUN --reference DATA --out DIR``: which basin each image falls in, and which images
sit nearest each attractor, through a FAISS index of a probe run's attractors (``workflows.attractor_index``).

The model that encodes the images is the one that made the run: ``--model SPEC``, or by default the
name in the run's summary.json (which is a spec for demo models and Hugging Face ids, not for a local
path); its fingerprint must match the run's. ``--load INDEX`` queries a saved index instead of a run;
the model and the ``--embed`` encoder then default to those its sidecar (INDEX.json) names.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from latentfield.adapters import Adapter, load_adapter
from latentfield.adapters.errors import USER_ERRORS, UsageError

from ..data import load_images
from ..index import KINDS, METRICS
from ..workflows.attractor_index import INDEX_FILE, index_run, open_source
from .common import add_model_args, model_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="index a run's attractors (FAISS) and find each image's basin and each "
                                     "attractor's nearest images",
                       description="Build a FAISS index over the attractors of a probe run (or an audit's run) and "
                                   "query it with reference images: each image's nearest attractor and distance, "
                                   "each attractor's k nearest images. Writes index.json, images.csv, "
                                   "attractors.csv and the index (reusable with --load).")
    p.add_argument("run", nargs="?", default=None,
                   help="probe run directory (--out of `latentfield probe`) or audit directory (its probe/ is used)")
    p.add_argument("--reference", required=True, metavar="DATA",
                   help="images to query with: folder (sorted by file name), .npy/.npz/.safetensors, digits:test, ...")
    p.add_argument("--out", required=True, help="directory for index.json, images.csv, attractors.csv, index.faiss")
    p.add_argument("--load", default=None, metavar="INDEX",
                   help=f"query a saved index (DIR/{INDEX_FILE} of an earlier run of this command) instead of a run")
    p.add_argument("--model", default=None, metavar="SPEC",
                   help="the model that made the run (default: the name its summary.json records)")
    add_model_args(p, None)  # --image-shape (default: the run's), --checkpoint, --device, --dtype, ...
    p.add_argument("--embed", default=None, metavar="SPEC",
                   help="index in this reference encoder's space: decoded attractors and images both encoded by it")
    p.add_argument("--metric", choices=METRICS, default=None, help="distance: cosine (1 - cos; default) or l2")
    p.add_argument("--kind", choices=KINDS, default=None, help="FAISS index: flat (exact, default), hnsw, ivf, auto")
    p.add_argument("--k", type=int, default=5, help="nearest images listed per attractor (default 5)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many reference images")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.run is None and args.load is None:
        raise UsageError("give a probe run directory to index (or --load INDEX to query a saved index)")
    if args.run is not None and args.load is not None:
        raise UsageError("give a probe run directory or --load INDEX, not both")
    if args.k < 1:
        raise UsageError(f"--k must be >= 1, got {args.k}")
    source = open_source(args.run, args.load)  # the run, or the saved index, read once
    if source.loaded:
        saved = source.index
        for flag, want, have in (("--metric", args.metric, saved.metric), ("--kind", args.kind, saved.kind)):
            if want is not None and want != have:
                raise UsageError(f"{args.load} is a {saved.metric} {saved.kind} index; {flag} {want} applies when "
                                 "building one from a run")
    where, recorded = args.load or args.run, source.model
    embed = args.embed or source.embed  # a saved index's sidecar names the space and the encoder
    adapter = _model(args, args.model or recorded.get("name"), args.image_shape or recorded.get("image_shape"), where)
    embedder = _embedder(embed, args.device, None if args.embed else where) if embed else None
    query_shape = (embedder or adapter).image_shape
    images = load_images(args.reference, query_shape, limit=args.limit)
    report = index_run(source, images, args.out, adapter=adapter, embedder=embedder, metric=args.metric or "cosine",
                       kind=args.kind or "flat", k=args.k, images_name=args.reference)
    meta = report.index.meta
    space = f"{meta.get('space', 'latent')} space" + (f" of {meta['embed']}" if meta.get("embed") else "")
    what = (f"index of {len(report.index)} attractors loaded from {args.load}" if source.loaded
            else f"{len(report.index)} attractors of {source.where} indexed")
    print(f"{adapter.name}: {what} ({space}, {report.index.metric} distance)")
    counts = np.bincount(report.query.attractor, minlength=len(report.index))
    top = sorted(((int(n), a) for a, n in enumerate(counts)), reverse=True)
    shown = ", ".join(f"#{a}: {n}" for n, a in top[:6] if n)
    print(f"{args.reference}: {len(images)} images by nearest attractor ({shown}{', ...' if len(top) > 6 else ''}); "
          f"median distance {np.median(report.query.distance):.4g}")
    out = Path(args.out)
    print(f"wrote {out}/index.json, {out}/images.csv, {out}/attractors.csv" + ("" if source.loaded else f", {out}/{INDEX_FILE}"))
    return 0


def _model(args: argparse.Namespace, spec: str | None, shape, where: str) -> Adapter:
    if not spec:
        raise UsageError(f"{where} does not name its model; give --model SPEC")
    try:
        return model_from_args(args, spec=spec, image_shape=shape)
    except USER_ERRORS as e:
        if args.model:
            raise
        raise UsageError(f"{where} names the model {spec!r}, which does not load ({e}); give --model SPEC") from None


def _embedder(spec: str, device: str | None, named_by: str | None) -> Adapter:
    try:
        embedder = load_adapter(spec, device=device)
    except USER_ERRORS as e:
        if named_by is None:
            raise
        raise UsageError(f"{named_by} names the encoder {spec!r}, which does not load ({e}); give --embed SPEC") from None
    if embedder.latent_shape is None or not embedder.image_shape:
        raise UsageError(f"--embed {spec}: its input size is unknown; use an encoder with a fixed input size")
    return embedder
