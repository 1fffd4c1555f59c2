"""One-line summaries a person reads in the terminal and in the report, and the command-line phrasing of
the verdict's advice (the analyses name parameters, ``max_steps``; a person at the shell types flags)."""
from __future__ import annotations

from typing import Any, Mapping

from ..analyses.verdict import unconverged_kind

# What to type for a verdict flag that asks for something (``analyses.verdict.Verdict.flags``).
CLI_HINTS = {
    "no_reference": "give the training images with --reference DATA",
    "no_heldout": "give held-out images with --heldout DATA",
    "unconverged_unknown": "raise --max-steps",
    "unconverged_settling": "raise --max-steps or try --solver anderson",
}


def cli_hints(flags: tuple[str, ...] | list[str]) -> list[str]:
    """The command-line advice for ``flags``, in their order."""
    return [CLI_HINTS[f] for f in flags if f in CLI_HINTS]


def unconverged_line(unconverged: Mapping[str, Any] | None, n_seeds: int) -> str | None:
    """One line on the seeds that ran to max steps (``unconverged``: ``ProbeResult.unconverged()``) with the
    command-line advice; None if no seed did."""
    u = unconverged
    if not u:
        return None
    line = f"{u['n']} of {n_seeds} seeds stopped at max steps ({u['max_steps']})"
    if u.get("sq_step_median") is None:
        return line + "."
    rel = u["relative_step_median"]
    # the advice follows the step size (analyses.verdict.unconverged_kind): relax only for seeds that settle
    advice = {"travelling": "They travel rather than settle: neither more steps nor --solver relax converges such "
                            "seeds (docs/latent-dynamics.md, \"Seeds that do not converge\"); try another input "
                            "size or seed scale.",
              "settling": "They are still settling: raise --max-steps or try --solver anderson, which converges "
                          "such slow drifters where plain and relax stop at the limit (docs/latent-dynamics.md)."}
    return (line + f" still moving: squared step {u['sq_step_median']:.2g} (median; tolerance {u['tol']:g}), "
            f"{rel:.1%} of ||z|| per step. " + advice[unconverged_kind(rel)])


def captured_line(n_captured: int | None, captured_status: Mapping[str, int] | None, counts: Mapping[str, int],
                  n_seeds: int) -> str | None:
    """One line on the seeds path capture stopped early (``ProbeResult.captured()``); None if none was."""
    if not n_captured:
        return None
    by = captured_status or {}
    parts = [f"{by[k]} of the {counts[k]} {k}" for k in ("converged", "max_steps", "diverged") if by.get(k) and k in counts]
    of = f" ({', '.join(parts)})" if parts else ""
    return (f"{n_captured} of {n_seeds} seeds captured{of}: they stopped on an earlier seed's path and took its "
            "end point and status, so basin sizes are approximate (docs/latent-dynamics.md, \"Path capture\").")


def describe_unconverged(summary: Mapping[str, Any]) -> str | None:
    """:func:`unconverged_line` from a ``ProbeResult.summary()``."""
    return unconverged_line(summary.get("unconverged"), summary["n_seeds"])


def describe_captured(summary: Mapping[str, Any]) -> str | None:
    """:func:`captured_line` from a ``ProbeResult.summary()``."""
    return captured_line(summary.get("n_captured"), summary.get("captured_status"), summary.get("counts") or {},
                         summary["n_seeds"])


__all__ = ["describe_unconverged", "describe_captured", "unconverged_line", "captured_line", "cli_hints", "CLI_HINTS"]
