"""AttractorIndex build and query time against brute-force numpy search.

Task: the nearest attractor (cosine) of every reference vector, 1e4 attractors x 1e5 references by
default, random Gaussian vectors (search cost does not depend on the values for exact indexes;
recall of the approximate ones does). Recall = share of references whose nearest attractor matches
the brute-force answer.

Usage: .venv/bin/python bench/bench_index.py [--attractors 10000] [--references 100000] [--dims 16 128] [--threads 2]
Prints a markdown table for docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def brute_force(att: np.ndarray, ref: np.ndarray, block: int = 4096) -> np.ndarray:
    """Nearest attractor by cosine with numpy matmuls in blocks (the baseline)."""
    a = att / np.linalg.norm(att, axis=1, keepdims=True)
    out = np.empty(len(ref), dtype=np.int64)
    for i in range(0, len(ref), block):
        r = ref[i:i + block]
        out[i:i + block] = (r / np.linalg.norm(r, axis=1, keepdims=True) @ a.T).argmax(1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attractors", type=int, default=10_000)
    ap.add_argument("--references", type=int, default=100_000)
    ap.add_argument("--dims", type=int, nargs="+", default=[16, 128])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import faiss
    faiss.omp_set_num_threads(args.threads)
    import os
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from latentfield.probe.index import AttractorIndex

    print(f"{args.attractors} attractors x {args.references} references, cosine, {args.threads} threads\n")
    print("| dim | method | build (s) | query (s) | recall@1 |")
    print("|---:|---|---:|---:|---:|")
    for d in args.dims:
        rng = np.random.default_rng(d)
        att = rng.standard_normal((args.attractors, d), dtype=np.float32)
        ref = rng.standard_normal((args.references, d), dtype=np.float32)
        t0 = time.perf_counter()
        truth = brute_force(att, ref)
        t_bf = time.perf_counter() - t0
        print(f"| {d} | numpy brute force (float32 matmul) | - | {t_bf:.2f} | 1.000 |", flush=True)
        for kind in ("flat", "hnsw", "ivf"):
            t0 = time.perf_counter()
            index = AttractorIndex.build(att, "cosine", kind)
            t_build = time.perf_counter() - t0
            t0 = time.perf_counter()
            _, idx = index.nearest_attractor(ref)
            t_q = time.perf_counter() - t0
            print(f"| {d} | AttractorIndex {kind} | {t_build:.2f} | {t_q:.2f} | {(idx == truth).mean():.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
