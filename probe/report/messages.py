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


__all__ = ["describe_unconverged"]
