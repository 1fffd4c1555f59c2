"""Meehan, Chaudhuri and Dasgupta's data-copying test (AISTATS 2020): the C_T statistic.

Three samples: the training set T, a held-out sample P_n from the data distribution and a generated
sample Q_m. L(x) is the distance of x to its nearest training point. A model that copies produces
samples nearer to T than unseen data is; one that underfits produces samples further away. The test
compares the two distance samples cell by cell, so that a model copying in one region and underfitting
in another does not cancel out.

Definition implemented (the paper's Section 3, and its companion code casey-meehan/data-copying):

1. Cells: k-means with ``n_cells`` clusters fitted on T; every point of P_n and Q_m joins the cell of
   its nearest centroid.
2. In cell pi, L_pi(x) = min over training points t *in the same cell* of ||x - t|| (Euclidean).
3. Z_U(pi): the Mann-Whitney U statistic of L_pi(Q_m) against L_pi(P_n), U = #{(q, p): L(q) > L(p)}
   + ties / 2 (``scipy.stats.mannwhitneyu``'s U of its first sample), z-scored under the null of equal
   distributions with the paper's continuity correction: Z_U = (U - m n / 2 + 1/2) / sqrt(m n (m + n + 1) / 12),
   m and n the in-cell counts. Z_U << 0: generated samples are closer to T than held-out ones.
4. C_T = sum_{pi in Pi_tau} P_n(pi) Z_U(pi) / sum_{pi in Pi_tau} P_n(pi), P_n(pi) the share of held-out
   points in pi, Pi_tau the cells holding at least ``min_per_cell`` generated points (the paper's
   Q_m(pi) >= tau, with tau = min_per_cell / m).

Reading (the paper: C_T << 0 means data-copying, C_T >> 0 underfitting, ~0 neither). Under the null
each Z_U is approximately N(0, 1) and the cells are disjoint, so C_T is approximately
N(0, sum w^2) with w the normalised weights; we report ``z`` = C_T / sqrt(sum w^2) and its one-sided
p-values, and read ``copying`` when z < -3, ``underfitting`` when z > 3, else ``neither``.

Deviations, stated: (i) the variance of U has no tie correction (as in the paper's code; ties only
shrink the true variance, so |Z_U| is, if anything, understated); (ii) cells with generated points but
no held-out point get weight P_n(pi) = 0 and drop out, where the paper's code stops with an error;
(iii) the distance is Euclidean on whatever vectors are given (the paper used an autoencoder embedding
for MNIST; the audit gives flattened [0, 1] pixels). The statistic assumes Q_m is an i.i.d. sample of
the model; for latent dynamics that is one decoded end point per Gaussian seed (``docs/analyses.md``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu, norm

SIGNIFICANCE_Z = 3.0


def _flat(x: Any) -> np.ndarray:
    """(N, ...) array or tensor -> (N, D) float64 numpy."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(len(x), -1)


def z_u(dist_generated: np.ndarray, dist_heldout: np.ndarray) -> float:
    """The paper's z-scored Mann-Whitney U of generated (m,) against held-out (n,) distances to the
    training set: negative when generated samples lie closer to T than held-out ones."""
    m, n = len(dist_generated), len(dist_heldout)
    if m == 0 or n == 0:
        raise ValueError("both distance samples must be non-empty")
    u = mannwhitneyu(dist_generated, dist_heldout, method="asymptotic").statistic
    return float((u - m * n / 2 + 0.5) / np.sqrt(m * n * (m + n + 1) / 12))


def ct_statistic(train: Any, generated: Any, heldout: Any, n_cells: int = 5, seed: int = 0,
                 min_per_cell: int = 20) -> dict[str, Any]:
    """The C_T statistic of ``generated`` (m, ...) against ``heldout`` (n, ...) and ``train`` (l, ...).

    Arrays or tensors, compared flattened, in one space (e.g. images in [0, 1]). ``n_cells``: k-means
    cells on the training set (at most l); ``seed``: k-means seed; ``min_per_cell``: generated points a
    cell needs to count (the paper's tau * m). Returns a JSON-ready dict: ``C_T`` (None when no cell
    qualifies), ``z`` and ``p_copying`` / ``p_underfitting`` (normal approximation, see the module
    docstring), ``reading``, and per cell (``cells``): training / held-out / generated counts, weight
    P_n(pi), ``Z_U`` (None where the cell is not used) and ``used``.
    """
    from sklearn.cluster import KMeans  # lazy: keeps CLI start-up fast
    from sklearn.neighbors import NearestNeighbors

    t, q, p = _flat(train), _flat(generated), _flat(heldout)
    if len(p) == 0 or len(q) == 0:
        raise ValueError("held-out and generated samples must be non-empty")
    if not 1 <= n_cells <= len(t):
        raise ValueError(f"n_cells must be in [1, {len(t)}] (the training set size), got {n_cells}")
    if not t.shape[1] == q.shape[1] == p.shape[1]:
        raise ValueError(f"dimension mismatch: train {t.shape[1]}, generated {q.shape[1]}, held-out {p.shape[1]}")
    km = KMeans(n_clusters=n_cells, n_init=10, random_state=seed).fit(t)
    t_cell, q_cell, p_cell = km.labels_, km.predict(q), km.predict(p)
    cells, used_w, used_z = [], [], []
    for c in range(n_cells):
        tc, qc, pc = t[t_cell == c], q[q_cell == c], p[p_cell == c]
        row: dict[str, Any] = {"n_train": len(tc), "n_heldout": len(pc), "n_generated": len(qc),
                               "weight": len(pc) / len(p), "Z_U": None, "used": False}
        if len(qc) >= min_per_cell and len(pc) > 0 and len(tc) > 0:
            nn = NearestNeighbors(n_neighbors=1).fit(tc)
            row["Z_U"] = z_u(nn.kneighbors(qc)[0][:, 0], nn.kneighbors(pc)[0][:, 0])
            row["used"] = True
            used_w.append(row["weight"])
            used_z.append(row["Z_U"])
        cells.append(row)
    out: dict[str, Any] = {"n_cells": n_cells, "min_per_cell": min_per_cell, "n_train": len(t),
                           "n_heldout": len(p), "n_generated": len(q), "cells_used": len(used_w),
                           "generated_in_used_cells": int(sum(r["n_generated"] for r in cells if r["used"])),
                           "C_T": None, "z": None, "p_copying": None, "p_underfitting": None,
                           "reading": "no cell has enough generated samples", "cells": cells}
    if used_w:
        w = np.asarray(used_w) / np.sum(used_w)
        ct = float(w @ np.asarray(used_z))
        z = ct / float(np.sqrt(np.sum(w ** 2)))
        out.update(C_T=ct, z=z, p_copying=float(norm.cdf(z)), p_underfitting=float(norm.sf(z)),
                   reading="copying" if z < -SIGNIFICANCE_Z else "underfitting" if z > SIGNIFICANCE_Z else "neither")
    return out


__all__ = ["ct_statistic", "z_u", "SIGNIFICANCE_Z"]
