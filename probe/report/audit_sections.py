"""The audit report's analysis sections (copy rate, generalization entropy, dictionary, OOD): each turns
pure functions of ``probe/analyses`` or what ``workflows.audit.gather`` computed into one HTML block and
one key of ``report.json``. A section returns without a trace when its inputs are missing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..analyses.copying import COPY_QUANTILE, VARIANCE_EXPLAINED, calibrated_copying, generalization_entropy
from ..analyses.data_copying import ct_statistic
from ..analyses.memorization import memorization_coefficient
from ..data import noise_images
from ..workflows.audit import AUDIT_MAX_IMAGES
from ..workflows.ood import OODResult
from .figures import dictionary_figure
from .html import figure_uri, table

if TYPE_CHECKING:
    from ..workflows.audit import AuditContext
    from .html import Report


# -- audit sections -------------------------------------------------------------------------------

def copying_section(ctx: "AuditContext", report: "Report") -> None:
    """Noise-image baseline and calibrated copy rate, merged into the ``memorization`` JSON key."""
    if ctx.train is None or len(ctx.decoded) == 0:
        return
    n_noise = max(len(ctx.decoded), min(256, len(ctx.train)))
    noise = noise_images(n_noise, ctx.train.shape[1:], seed=0)
    base = memorization_coefficient(noise, ctx.train)
    mem = dict(report.data.get("memorization") or {})
    mem.update(noise_baseline_mean=base["mean"], noise_baseline_std=base["std"])
    rows = [("noise images (floor)", len(noise), base["mean"], base["std"])]
    body = table(rows, ["images", "n", "max cosine to training set: mean", "std"])
    if ctx.heldout is not None and len(ctx.heldout):
        cal = calibrated_copying(ctx.decoded, ctx.train, ctx.heldout, noise, ctx.result.basin_sizes)
        mem.update(cal)
        body += table([("decoded attractors", cal["copy_rate"]), ("seeds (weighted by basin)", cal.get("copy_rate_seeds")),
                       ("held-out images (by construction)", cal["heldout_copy_rate"]),
                       ("noise images", cal["noise_copy_rate"])], ["images", "calibrated copy rate"])
        body += (f"<p class='muted'>Calibrated copy rate: the fraction of images whose cosine to their nearest "
                 f"training image exceeds {cal['copy_threshold_cosine']:.4f}, a level only "
                 f"{100 * COPY_QUANTILE:g}% of held-out images reach (Meehan et al. 2020). Raw cosine has a "
                 "high floor; this rate does not.</p>")
        if ctx.converged_decoded is not None:
            body += _ct_block(ctx, mem)
    report.add("Memorization baselines and calibrated copy rate", body, memorization=mem)


CT_CELLS, CT_MIN_PER_CELL = 5, 20


def _ct_block(ctx: "AuditContext", mem: dict[str, Any]) -> str:
    """Meehan et al.'s C_T: one generated sample per converged seed (its decoded end point), in
    flattened [0, 1] pixels; adds ``memorization.ct_statistic``."""
    ct = ct_statistic(ctx.train, ctx.converged_decoded, ctx.heldout, n_cells=min(CT_CELLS, len(ctx.train)),
                      min_per_cell=CT_MIN_PER_CELL)
    mem["ct_statistic"] = ct
    fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
    rows = [("C_T", fmt(ct["C_T"])), ("z (normal approximation)", fmt(ct["z"])),
            ("p (copying)", fmt(ct["p_copying"])), ("reading", ct["reading"]),
            ("cells used", f"{ct['cells_used']} of {ct['n_cells']} ({ct['generated_in_used_cells']} of "
                           f"{ct['n_generated']} seeds)")]
    return table(rows, ["data-copying test (Meehan et al. 2020)", "value"]) + (
        "<p class='muted'>C_T: in k-means cells of the training set, a Mann-Whitney test of the converged seeds' "
        "decoded end points against held-out images, by Euclidean distance to the nearest training image; "
        "z-scores averaged with the held-out share of each cell. Well below 0 (z &lt; -3): copying; near 0: "
        "neither; well above 0: further from the training set than held-out images are (underfitting, "
        "e.g. blurred prototypes).</p>")


def generalization_entropy_section(ctx: "AuditContext", report: "Report") -> None:
    if len(ctx.decoded) == 0:
        return
    ent = generalization_entropy(ctx.decoded)
    data: dict[str, Any] = {"attractors": ent}
    rows = [("decoded attractors", ent["n_items"], ent["n_components"], ent["ratio"])]
    if ctx.train is not None and len(ctx.train) >= 2:
        # The count grows with the number of images: compare with as many training images.
        g = torch.Generator().manual_seed(0)
        sub = ctx.train[torch.randperm(len(ctx.train), generator=g)[:max(2, len(ctx.decoded))]]
        base = generalization_entropy(sub)
        data["train_baseline"] = base
        rows.append(("training images (same count)", base["n_items"], base["n_components"], base["ratio"]))
    body = table(rows, ["images", "n", f"singular vectors for {100 * VARIANCE_EXPLAINED:g}% of variance", "ratio"])
    body += ("<p class='muted'>Generalization entropy (the paper): the number of singular vectors of the "
             "centred decoded attractors needed to explain 90% of their variance.</p>")
    report.add("Generalization entropy", body, generalization_entropy=data)


def dictionary_section(ctx: "AuditContext", report: "Report") -> None:
    """Runs when the audit is asked for it (``options['dictionary']``) and has reference images."""
    res = ctx.dictionary
    if res is None:
        return
    rows = list(zip(res["n_atoms"], res["mse_attractors"], res["mse_random_basis"]))
    body = table(rows, ["atoms", "MSE (attractors)", "MSE (random basis)"])
    body += f"<img src='{figure_uri(dictionary_figure(res))}'>"
    body += (f"<p class='muted'>{res['n_images']} reference images encoded and rebuilt by orthogonal matching "
             f"pursuit from n atoms, then decoded; D(E(x)) itself has MSE {res['mse_autoencoder']:.4g}.</p>")
    report.add("Attractors as a dictionary", body, dictionary=res)


def metrics_table(result: OODResult) -> str:
    rows = [(t, m, v["auroc"], v["fpr95"], v["aupr_in"], v["aupr_out"])
            for t, per in result.metrics.items() for m, v in per.items()]
    return table(rows, ["test set", "method", "AUROC", "FPR95", "AUPR-in", "AUPR-out"])


def ood_section(ctx: "AuditContext", report: "Report") -> None:
    """Runs when the audit has OOD sets (``options['ood']``: name -> images) and training images."""
    res = ctx.ood
    if res is None:
        return
    n_fit, n_test = ctx.ood_sizes
    body = metrics_table(res)
    body += (f"<p class='muted'>In-distribution: {n_fit} images iterated to {res.info['n_in_attractors']} "
             f"attractors; {n_test} held-out images are the negatives. Higher score = more OOD; AUROC 0.5 is "
             "chance, FPR95 is the share of OOD inputs accepted when 95% of in-distribution ones are. "
             f"Each set is a seeded subset of at most {AUDIT_MAX_IMAGES} images (`latentfield ood` uses all). "
             "Per-sample scores: ood/scores.csv.</p>")
    report.add("Out-of-distribution detection", body, ood=res.to_json())


__all__ = ["copying_section", "generalization_entropy_section", "dictionary_section", "ood_section", "metrics_table"]
