"""One-line summaries a person reads in the terminal and in the report."""
from __future__ import annotations

from typing import Any

from ..analyses.verdict import unconverged_advice


def describe_unconverged(summary: dict[str, Any]) -> str | None:
    """One line on the seeds that ran to max steps, from a summary with ``unconverged`` and ``n_seeds``
    (``ProbeResult.summary()``, or the audit's report data); None if no seed did."""
    u = summary.get("unconverged")
    if not u:
        return None
    line = f"{u['n']} of {summary['n_seeds']} seeds stopped at max steps ({u['max_steps']})"
    if u.get("sq_step_median") is None:
        return line + "."
    # the advice follows the step size (analyses.verdict.unconverged_advice): relax only for seeds that settle
    return (line + f" still moving: squared step {u['sq_step_median']:.2g} (median; tolerance {u['tol']:g}), "
            f"{u['relative_step_median']:.1%} of ||z|| per step. " + (unconverged_advice(u) or ""))


def describe_captured(summary: dict[str, Any]) -> str | None:
    """One line on the seeds path capture stopped early, from a summary with ``n_captured`` and
    ``captured_status`` (``ProbeResult.summary()``, or the audit's report data); None if none was."""
    n = summary.get("n_captured")
    if not n:
        return None
    by = summary.get("captured_status") or {}
    counts = summary.get("counts") or {}
    parts = [f"{by[k]} of the {counts[k]} {k}" for k in ("converged", "max_steps", "diverged") if by.get(k) and k in counts]
    of = f" ({', '.join(parts)})" if parts else ""
    return (f"{n} of {summary['n_seeds']} seeds captured{of}: they stopped on an earlier seed's path and took its "
            "end point and status, so basin sizes are approximate (docs/latent-dynamics.md, \"Path capture\").")


__all__ = ["describe_unconverged", "describe_captured"]
