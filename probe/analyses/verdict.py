"""The audit's verdict: a few sentences a person reads first, written from the numbers by fixed rules.

Pure: numbers in, a :class:`Verdict` out (sentences, flags, caveats and the numbers behind them). The rules
and their thresholds are documented in docs/analyses.md ("Verdict"); the report renders what this returns.
Attractors are numbered by basin size, largest first (the report's one numbering). The sentences name
parameters (``max_steps``, the ``anderson`` solver), never command-line flags: the CLI and the report
phrase those from the flags (``report.messages``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

MIN_CONVERGED = 10          # fewer converged seeds: the basin shares and copy rate rest on too little
MIN_CONVERGED_SHARE = 0.5   # under half the seeds converged: the attractors describe a minority of seeds
TRAVELLING_STEP = 0.01      # last step >= 1% of ||z|| (median): seeds travel; no solver converges them
GOOD_AUROC, WEAK_AUROC = 0.9, 0.7  # OOD separation: good above 0.9, weak under 0.7 (0.5 is chance)


@dataclass(frozen=True)
class Verdict:
    """The verdict. ``sentences``: topic -> sentence in reading order (``memorization`` and ``convergence``
    always, ``ood`` when it ran; ``convergence`` first when no seed converged). ``flags``: machine-readable
    (``no_convergence``, ``few_converged``, ``unconverged_travelling`` / ``unconverged_settling`` /
    ``unconverged_unknown``, ``copies``, ``no_copies``, ``no_reference``, ``no_heldout``,
    ``baseline_at_noise_floor``, ``ood_weak:<set>``). ``caveats``: sentences. ``converged_share``: converged
    seeds / seeds, in [0, 1]. When memorization was measured: ``n_copies`` (attractors above the copy
    threshold), ``copy_ranks`` (their ranks by basin size) and ``copy_seed_share`` (their basins over all
    converged seeds, in [0, 1]); None otherwise."""

    sentences: dict[str, str]
    flags: tuple[str, ...]
    caveats: tuple[str, ...]
    converged_share: float
    n_copies: int | None = None
    copy_ranks: tuple[int, ...] | None = None
    copy_seed_share: float | None = None

    @property
    def order(self) -> list[str]:
        """The sentence topics in reading order."""
        return list(self.sentences)

    def to_json(self) -> dict[str, Any]:
        """``report.json``'s ``verdict``: the sentences by topic, ``order``, ``flags``, ``caveats`` and the numbers."""
        nums = {} if self.n_copies is None else {"n_copies": self.n_copies, "copy_ranks": list(self.copy_ranks or ()),
                                                 "copy_seed_share": self.copy_seed_share}
        return {**self.sentences, "order": self.order, "flags": list(self.flags), "caveats": list(self.caveats),
                "converged_share": self.converged_share, **nums}


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def unconverged_kind(relative_step: float | None) -> str:
    """How seeds stopped at max steps still move, from the median of their last step over ||z||:
    ``travelling`` (``TRAVELLING_STEP`` or more: no fixed point for relax or Anderson to reach; TAEF2),
    ``settling`` (under it: a slow drifter, which Anderson converges and relax does not; demo:memorize) or
    ``unknown`` (the step was not recorded)."""
    if relative_step is None:
        return "unknown"
    return "travelling" if relative_step >= TRAVELLING_STEP else "settling"


def unconverged_advice(relative_step: float | None) -> str:
    """What to try for seeds that stopped at max steps (:func:`unconverged_kind`), naming parameters."""
    kind = unconverged_kind(relative_step)
    if kind == "unknown":
        return "Raise max_steps to see whether the seeds at max steps settle."
    if kind == "travelling":
        return (f"The seeds at max steps travel rather than settle (last step {100 * relative_step:.2g}% of ||z||): "
                "neither more steps nor the relax solver converges such seeds (docs/latent-dynamics.md, \"Seeds "
                "that do not converge\"); try another input size or seed scale.")
    return (f"The seeds at max steps are still settling (last step {100 * relative_step:.2g}% of ||z||): raise "
            "max_steps or try the anderson solver, which converges such slow drifters where plain and relax stop "
            "at the limit (docs/latent-dynamics.md).")


def convergence_verdict(n_seeds: int, n_converged: int, n_attractors: int, n_stopped: int = 0,
                        relative_step: float | None = None) -> tuple[str, list[str], list[str]]:
    """Sentence, flags and caveats on how many seeds converged. ``n_stopped``: seeds that ran to max steps
    themselves; ``relative_step``: the median of their last step over ||z|| (``ProbeResult.unconverged()``)."""
    flags, caveats = [], []
    share = n_converged / n_seeds if n_seeds else 0.0
    if n_converged == 0:
        flags.append("no_convergence")
        s = f"No seed converged ({n_seeds} seeds): there are no attractors, so nothing here measures memorization."
    else:
        s = (f"{n_converged} of {n_seeds} seeds ({_pct(share)}) converged, to {n_attractors} "
             f"{_plural(n_attractors, 'attractor', 'attractors')}.")
        if n_converged < MIN_CONVERGED or share < MIN_CONVERGED_SHARE:
            flags.append("few_converged")
            caveats.append(f"Only {n_converged} of {n_seeds} seeds converged (the verdict wants at least "
                           f"{MIN_CONVERGED} and half of the seeds): basin shares and copy rates rest on few seeds.")
    if n_stopped and n_converged < n_seeds:
        flags.append(f"unconverged_{unconverged_kind(relative_step)}")
        s += " " + unconverged_advice(relative_step)
    return s, flags, caveats


def memorization_verdict(basin_sizes: Sequence[int], cosines: Sequence[float] | None, threshold: float | None,
                         heldout_mean: float | None = None, noise_mean: float | None = None,
                         noise_std: float | None = None, have_train: bool = False,
                         have_heldout: bool = False) -> tuple[str, list[str], list[str], dict[str, Any]]:
    """Sentence, flags, caveats and numbers on near-copies of training images.

    ``basin_sizes`` (K,) and ``cosines`` (K,): per attractor (largest basin first), its seeds and its max
    cosine to the training set; ``threshold``: the calibrated copy cosine (``copying.calibrated_copying``).
    An attractor is a near-copy when its cosine exceeds the threshold; the seed share weights by basin.
    """
    k = len(basin_sizes)
    if k == 0:
        return "Memorization not measured: no seed converged, so no attractor can be compared with training images.", \
            [], [], {}
    if not have_train or cosines is None:
        return ("Memorization not measured: no training images were given.", ["no_reference"], [], {})
    if threshold is None or not have_heldout:
        return ("Memorization not calibrated: no held-out images were given to set the copy threshold.",
                ["no_heldout"], [], {})
    sizes = np.asarray(basin_sizes, dtype=np.float64)
    hit = np.asarray(cosines) > threshold
    n_copy = int(hit.sum())
    seed_share = float(sizes[hit].sum() / max(sizes.sum(), 1.0))
    ranks = np.flatnonzero(hit).tolist()
    if n_copy == 0:
        who = "The one attractor is not" if k == 1 else f"None of the {k} attractors is"
        s = (f"{who} a near-copy of a training image (cosine above {threshold:.4f}, a level 5% of held-out "
             "images reach).")
    else:
        s = (f"{n_copy} of {k} {_plural(k, 'attractor', 'attractors')} ({_pct(seed_share)} of converged seeds) "
             f"{_plural(n_copy, 'is a near-copy', 'are near-copies')} of a training image "
             f"(cosine above {threshold:.4f}; {_plural(n_copy, 'attractor', 'attractors')} "
             f"{', '.join(f'#{r}' for r in ranks[:8])}{' ...' if n_copy > 8 else ''}).")
    flags, caveats = ["copies" if n_copy else "no_copies"], []
    if None not in (heldout_mean, noise_mean, noise_std) and heldout_mean - noise_mean <= noise_std:
        flags.append("baseline_at_noise_floor")
        caveats.append(f"Held-out images are no nearer the training set than noise is (mean max cosine "
                       f"{heldout_mean:.4f} vs noise {noise_mean:.4f} +- {noise_std:.4f}): the copy threshold "
                       "cannot tell copies from anything else, so this copy count cannot be trusted.")
    return s, flags, caveats, {"n_copies": n_copy, "copy_ranks": tuple(ranks), "copy_seed_share": seed_share}


def ood_verdict(auroc: dict[str, dict[str, float]] | None) -> tuple[str | None, list[str]]:
    """One sentence per OOD test set: the best method by AUROC, read as good / moderate / weak separation."""
    if not auroc:
        return None, []
    parts, flags = [], []
    for name, per in auroc.items():
        known = {m: v for m, v in per.items() if v is not None and np.isfinite(v)}
        if not known:
            continue
        method, best = max(known.items(), key=lambda kv: kv[1])
        word = "well" if best >= GOOD_AUROC else "weakly" if best < WEAK_AUROC else "moderately"
        traj = known.get("trajectory")
        parts.append(f"{name}: separated {word} (best AUROC {best:.3f}, {method}"
                     + (f"; trajectory score {traj:.3f}" if traj is not None and method != "trajectory" else "")
                     + ")")
        if best < WEAK_AUROC:
            flags.append(f"ood_weak:{name}")
    return ("Out-of-distribution: " + "; ".join(parts) + ".") if parts else None, flags


def verdict(n_seeds: int, n_converged: int, basin_sizes: Sequence[int], *, n_stopped: int = 0,
            relative_step: float | None = None, cosines: Sequence[float] | None = None,
            threshold: float | None = None, heldout_mean: float | None = None, noise_mean: float | None = None,
            noise_std: float | None = None, have_train: bool = False, have_heldout: bool = False,
            ood_auroc: dict[str, dict[str, float]] | None = None) -> Verdict:
    """The verdict from the audit's numbers (see the module doc and docs/analyses.md, "Verdict").

    ``basin_sizes`` (K,) and ``cosines`` (K,): largest basin first; ``n_stopped`` / ``relative_step``: the
    seeds that ran to max steps and the median of their last step over ||z||; ``threshold``: the calibrated
    copy cosine; ``heldout_mean`` / ``noise_mean`` / ``noise_std``: the memorization baselines;
    ``ood_auroc``: test set -> method -> AUROC.
    """
    conv, flags, caveats = convergence_verdict(n_seeds, n_converged, len(basin_sizes), n_stopped, relative_step)
    mem, f2, c2, nums = memorization_verdict(basin_sizes, cosines, threshold, heldout_mean, noise_mean, noise_std,
                                             have_train, have_heldout)
    ood, f3 = ood_verdict(ood_auroc)
    first = {"convergence": conv} if "no_convergence" in flags else {}  # nothing else to read then
    sentences = first | {"memorization": mem, "convergence": conv} | ({"ood": ood} if ood else {})
    return Verdict(sentences, tuple(flags + f2 + f3), tuple(caveats + c2),
                   n_converged / n_seeds if n_seeds else 0.0, **nums)


__all__ = ["Verdict", "verdict", "convergence_verdict", "memorization_verdict", "ood_verdict", "unconverged_kind",
           "unconverged_advice", "MIN_CONVERGED", "MIN_CONVERGED_SHARE", "TRAVELLING_STEP", "GOOD_AUROC",
           "WEAK_AUROC"]
