"""Linear stability of fixed points of the latent map: is a converged end point really an attractor?

At a fixed point z* = f(z*) the error of the iteration evolves as e_{t+1} ~ J e_t with J = J_f(z*).
The point attracts its neighbourhood when the spectral radius rho(J) (largest |eigenvalue|) is below 1;
with rho > 1 some direction is repelled (a saddle or a repeller) and plain iteration only lands there by
luck, while accelerated solvers can converge to it. The largest singular value ||J||_2 is the local
Lipschitz constant: the largest one-step stretch of a perturbation (>= rho; much larger when J is
far from normal, which means a transient growth before the contraction wins).

J is never formed for large latents: it is applied through Jacobian-vector products (``torch.func.jvp``,
``vjp`` for J^T) inside a Krylov method (ARPACK via ``scipy.sparse.linalg.eigs``/``svds``). A real
non-symmetric J often has a complex-conjugate dominant pair, which plain power iteration does not
converge on but Arnoldi does. Small latents (<= ``DENSE_MAX`` dims) get the exact dense Jacobian from
one batched jvp. Maps that autograd cannot differentiate fall back to central finite differences of f.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, LinearOperator, eigs, svds

from .types import Map

KINDS = ("attractor", "saddle_or_repeller", "marginal")
DENSE_MAX = 64  # latents up to this many dims: full Jacobian from d jvps in one batch (exact, cheap)
MARGIN = 0.01  # |rho - 1| <= MARGIN is "marginal": float32 maps and Krylov tolerance cannot decide


@dataclass
class Stability:
    """Linearisation of f at one fixed point.

    spectral_radius: rho(J) (dimensionless); dominant_eigenvalue: an eigenvalue of largest modulus
    (complex); lipschitz: ||J||_2, exact for dense/autograd, a lower bound with finite differences on
    large latents; residual: ||f(z) - z|| (latent units); n_products: Jacobian-vector and
    vector-Jacobian products used; method: ``dense``, ``krylov`` or ``finite_differences``.
    """

    spectral_radius: float
    dominant_eigenvalue: complex
    lipschitz: float
    kind: str
    residual: float
    n_products: int
    method: str


def classify(spectral_radius: float, margin: float = MARGIN) -> str:
    """``attractor`` (rho < 1 - margin), ``saddle_or_repeller`` (rho > 1 + margin) or ``marginal``."""
    if not math.isfinite(spectral_radius) or spectral_radius > 1 + margin:
        return "saddle_or_repeller"
    return "attractor" if spectral_radius < 1 - margin else "marginal"


def predict_steps(spectral_radius: float, e0: float, eps: float) -> float | None:
    """Steps for an error of norm ``e0`` to shrink to ``eps`` at rate rho: log(eps / e0) / log(rho).

    The paper's asymptotic estimate (it ignores the non-linear transient far from z*). None unless
    0 < rho < 1; 0 when e0 <= eps already.
    """
    if not (0 < spectral_radius < 1) or not (e0 > 0 and eps > 0):
        return None
    return max(0.0, math.log(eps / e0) / math.log(spectral_radius))


def stopping_error(tol: float, dominant_eigenvalue: complex) -> float:
    """The error ||z_t - z*|| at which the engine's rule ||z_{t+1} - z_t||^2 < tol fires.

    Along the dominant direction the step is (lambda - 1) e_t, so the rule stops at
    e_t = sqrt(tol) / |1 - lambda|.
    """
    return math.sqrt(tol) / max(abs(1 - complex(dominant_eigenvalue)), 1e-12)


class JacobianOperator:
    """J_f at one point z, applied to batches of flat vectors (k, d). Counts the products it makes.

    ``mode`` is ``autograd`` (``torch.func.jvp``/``vjp`` on ``f``) or ``finite_differences`` (central
    differences of ``f_eval``; no J^T then). ``f`` must act row-wise on batches (as every adapter does),
    so k products cost one batched forward.
    """

    def __init__(self, f: Map, z: torch.Tensor, f_eval: Map | None = None, fd_eps: float = 1e-3,
                 mode: str | None = None) -> None:
        self.f, self.f_eval = f, f_eval or f
        self.z = z.detach()
        self.shape = tuple(z.shape)
        self.d = z.numel()
        self.fd_eps = fd_eps
        self.n_products = 0
        self.mode = mode or self._detect_mode()

    def _batch(self, k: int) -> torch.Tensor:
        return self.z.unsqueeze(0).expand(k, *self.shape).contiguous()

    def _jvp_autograd(self, v: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():  # torch's first forward-AD call scripts decompositions and warns about it
            warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning)
            _, jv = torch.func.jvp(self.f, (self._batch(len(v)),), (v.view(len(v), *self.shape),))
        return jv.reshape(len(v), -1)

    def _jvp_fd(self, v: torch.Tensor) -> torch.Tensor:
        # Step scaled to the point and the direction, so the difference stays above float32 round-off.
        norm = v.norm(dim=1, keepdim=True).clamp_min(1e-30)
        h = self.fd_eps * max(1.0, float(self.z.norm()) / math.sqrt(self.d)) * math.sqrt(self.d) / norm
        zb = self._batch(len(v)).reshape(len(v), -1)
        both = torch.cat([zb + h * v, zb - h * v]).view(2 * len(v), *self.shape)
        with torch.no_grad():
            out = self.f_eval(both).reshape(2 * len(v), -1)
        return (out[:len(v)] - out[len(v):]) / (2 * h)

    def _detect_mode(self) -> str:
        """autograd when jvp works and agrees with a finite difference (catches detached graphs)."""
        v = torch.randn(1, self.d, generator=torch.Generator().manual_seed(0)).to(self.z)
        try:
            jv = self._jvp_autograd(v)
        except (RuntimeError, NotImplementedError, TypeError, ValueError):
            return "finite_differences"
        fd = self._jvp_fd(v)
        scale = float(fd.norm()) + float(jv.norm()) + 1e-12
        return "autograd" if float((jv - fd).norm()) < 0.1 * scale else "finite_differences"

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """J v for rows of v (k, d) -> (k, d)."""
        self.n_products += len(v)
        v = v.to(self.z)
        return (self._jvp_autograd(v) if self.mode == "autograd" else self._jvp_fd(v)).detach()

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        """J^T u for rows of u (k, d) -> (k, d); autograd mode only."""
        if self.mode != "autograd":
            raise RuntimeError("J^T needs autograd; this map is only available through finite differences")
        self.n_products += len(u)
        _, pullback = torch.func.vjp(self.f, self._batch(len(u)))
        (g,) = pullback(u.to(self.z).view(len(u), *self.shape))
        return g.reshape(len(u), -1).detach()

    def dense(self) -> torch.Tensor:
        """The full Jacobian (d, d), from d products in one batch. Small latents only."""
        return self.jvp(torch.eye(self.d, dtype=self.z.dtype, device=self.z.device)).T

    def linear_operator(self, record: list | None = None) -> LinearOperator:
        """scipy view (float64). ``record`` collects the (v, Jv) pairs for the Lipschitz lower bound."""
        def matvec(v: np.ndarray) -> np.ndarray:
            v = np.array(v.reshape(-1).real, dtype=np.float64)  # a copy: ARPACK reuses its buffers
            jv = self.jvp(torch.from_numpy(v)[None]).double().cpu().numpy()[0]
            if record is not None:
                record.append((v, jv))
            return jv

        def rmatvec(u: np.ndarray) -> np.ndarray:
            t = torch.from_numpy(np.ascontiguousarray(u.reshape(1, -1).real, dtype=np.float64))
            return self.vjp(t).double().cpu().numpy()[0]

        return LinearOperator((self.d, self.d), matvec=matvec, rmatvec=rmatvec, dtype=np.float64)


def _probed_span(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal basis Q (d, k) of the probed vectors V = QR and J Q = W R^-1 (d, k), from the recorded
    (v, Jv) pairs; directions that are numerically dependent are dropped."""
    v = np.stack([p[0] for p in pairs], 1)
    w = np.stack([p[1] for p in pairs], 1)
    q, r = np.linalg.qr(v)
    keep = np.abs(np.diag(r)) > 1e-10 * np.abs(np.diag(r)).max()
    q, r, w = q[:, keep], r[np.ix_(keep, keep)], w[:, keep]
    return q, np.linalg.solve(r.T, w.T).T


def _lipschitz_lower_bound(pairs: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """max ||J x|| / ||x|| over x in the span of the probed vectors: sigma_max(J Q)."""
    return float(np.linalg.norm(_probed_span(pairs)[1], 2))


def analyze_fixed_point(f: Map, z: torch.Tensor, *, f_eval: Map | None = None, margin: float = MARGIN,
                        dense_max: int = DENSE_MAX, krylov_tol: float = 1e-3, ncv: int = 20,
                        max_restarts: int = 10) -> Stability:
    """Spectral radius and ||J||_2 of J_f at ``z`` (one point, shape ``latent_shape``), and its kind.

    ``f`` maps batches (B, *latent_shape) and should be differentiable (else ``f_eval`` is used with
    finite differences). Latents of at most ``dense_max`` dims use the dense Jacobian; larger ones
    ARPACK (``ncv`` Krylov vectors, relative tolerance ``krylov_tol``): typically 20-60 products for
    the radius and as many jvp+vjp pairs for the singular value.
    """
    z = z.detach()
    with torch.no_grad():
        residual = float(((f_eval or f)(z.unsqueeze(0))[0] - z).norm())
    op = JacobianOperator(f, z, f_eval=f_eval)
    if op.d <= dense_max:
        jac = op.dense().double().cpu().numpy()
        eig = np.linalg.eigvals(jac)
        lam = complex(eig[np.argmax(np.abs(eig))])
        lip = float(np.linalg.norm(jac, 2))
        method = "dense"
    else:
        lam, lip = _krylov(op, krylov_tol, min(ncv, op.d - 1), max_restarts)
        method = "krylov"
    if op.mode != "autograd":
        method = "finite_differences"
    rho = abs(lam)
    return Stability(spectral_radius=rho, dominant_eigenvalue=lam, lipschitz=lip, kind=classify(rho, margin),
                     residual=residual, n_products=op.n_products, method=method)


def _krylov(op: JacobianOperator, tol: float, ncv: int, max_restarts: int) -> tuple[complex, float]:
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    lin = op.linear_operator(record=pairs)
    v0 = np.random.default_rng(0).standard_normal(op.d)
    # k=2: a complex-conjugate dominant pair is then resolved as a pair (ARPACK's real mode).
    try:
        vals = eigs(lin, k=2, which="LM", v0=v0, ncv=ncv, tol=tol, maxiter=max_restarts, return_eigenvectors=False)
    except ArpackNoConvergence as e:  # keep the Ritz values that did converge, else the best estimate
        vals = e.eigenvalues if len(e.eigenvalues) else _ritz_values(pairs)
    lam = complex(vals[np.argmax(np.abs(vals))])
    if op.mode != "autograd":
        return lam, max(_lipschitz_lower_bound(pairs), abs(lam))
    try:
        s = svds(lin, k=1, ncv=ncv, tol=tol, maxiter=max_restarts * ncv, v0=v0, return_singular_vectors=False,
                 solver="arpack")
        lip = float(s.max())
    except (ArpackNoConvergence, ArpackError):
        lip = _lipschitz_lower_bound(pairs)
    return lam, max(lip, abs(lam))  # ||J||_2 >= rho always; guards a loose Krylov estimate


def _ritz_values(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Eigenvalues of J projected on the span of the probed vectors (Rayleigh-Ritz): of Q^T J Q."""
    q, jq = _probed_span(pairs)
    return np.linalg.eigvals(q.T @ jq)


def verify_fixed_points(model: Any, points: torch.Tensor, *, progress: bool = False, **kwargs: Any) -> list[Stability]:
    """:func:`analyze_fixed_point` for each row of ``points`` (K, *latent_shape).

    ``model`` is an :class:`~latentfield.adapters.Adapter` (its ``f_differentiable`` is used, ``f`` for
    finite differences) or a batched map.
    """
    from tqdm.auto import tqdm

    low = getattr(model, "dtype", None)
    if low in (torch.bfloat16, torch.float16) and hasattr(model, "to"):
        # A bfloat16 map is a staircase on its rounding grid: its Jacobian (autograd or differences) is noise.
        # Linearise the same weights in float32 instead; the casts there and back are exact.
        model.to(dtype=torch.float32)
        try:
            return verify_fixed_points(model, points, progress=progress, **kwargs)
        finally:
            model.to(dtype=low)
    f = getattr(model, "f_differentiable", model)
    f_eval = getattr(model, "f", model)
    if hasattr(model, "device"):
        points = points.to(model.device, model.dtype)
    return [analyze_fixed_point(f, p, f_eval=f_eval, **kwargs)
            for p in tqdm(points, desc="verify", unit="point", disable=not progress, leave=False)]


def stability_report(stabilities: Sequence[Stability], tol: float, e0: Sequence[float | None] = (),
                     measured_steps_median: Sequence[float | None] = ()) -> dict[str, Any]:
    """The ``summary["stability"]`` block: kind counts and per-point numbers.

    ``e0[k]``: typical initial error ||z0 - z*|| of the seeds that reached point k (None: unknown);
    ``measured_steps_median[k]``: their median steps. The prediction uses the engine's stopping error.
    """
    per = []
    for k, s in enumerate(stabilities):
        e = e0[k] if k < len(e0) else None
        pred = predict_steps(s.spectral_radius, e, stopping_error(tol, s.dominant_eigenvalue)) if e else None
        meas = measured_steps_median[k] if k < len(measured_steps_median) else None
        per.append({"spectral_radius": float(s.spectral_radius), "lipschitz": float(s.lipschitz), "kind": s.kind,
                    "predicted_steps": None if pred is None else round(pred, 2),
                    "measured_steps_median": None if meas is None else float(meas)})
    return {f"n_{kind}": sum(s.kind == kind for s in stabilities) for kind in KINDS} | {"per_attractor": per}


def euclid_report(stabilities: Sequence[Stability], cosine_of: Sequence[int], n_seeds: Sequence[int],
                  cosine_kinds: Sequence[str]) -> dict[str, Any]:
    """The per-Euclidean-point keys of ``summary["stability"]``: each distinct Euclidean end point's kind,
    the cosine cluster it was merged into (``cosine_of[j]``, -1 if none) and its seed count, the kind counts
    (``n_euclid_<kind>``), how many cosine clusters contain a member that is not an attractor
    (``n_clusters_with_non_attractor``) and how many such members hide in a cluster whose representative
    (``cosine_kinds[k]``) was judged an attractor (``n_hidden_non_attractor``): a saddle that cosine
    de-duplication merged with an attractor lying on nearly the same ray."""
    per = [{"spectral_radius": float(s.spectral_radius), "lipschitz": float(s.lipschitz), "kind": s.kind,
            "cosine_attractor": int(c), "n_seeds": int(n)} for s, c, n in zip(stabilities, cosine_of, n_seeds)]
    bad = [(p["cosine_attractor"]) for p in per if p["kind"] != "attractor" and p["cosine_attractor"] >= 0]
    hidden = [c for c in bad if c < len(cosine_kinds) and cosine_kinds[c] == "attractor"]
    return {f"n_euclid_{kind}": sum(s.kind == kind for s in stabilities) for kind in KINDS} | {
        "n_clusters_with_non_attractor": len(set(bad)), "n_hidden_non_attractor": len(hidden), "per_euclid": per}


__all__ = ["Stability", "JacobianOperator", "classify", "predict_steps", "stopping_error", "analyze_fixed_point",
           "verify_fixed_points", "stability_report", "euclid_report", "KINDS", "DENSE_MAX", "MARGIN"]
