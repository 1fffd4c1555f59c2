"""The audit report's analysis sections (memorization, copy rate and C_T, generalization entropy,
dictionary, OOD): each renders one part of an :class:`~latentfield.probe.workflows.audit.AuditResult` as
(title, HTML body), or None when the audit did not compute that part. Render only: the numbers are the
result's (``workflows.audit``).
"""
from __future__ import annotations

import html

from ..workflows.audit import AuditResult
from ..workflows.ood import OODResult
from .figures import dictionary_figure
from .html import figure_uri, table


def memorization_section(result: AuditResult) -> tuple[str, str] | None:
    mem = result.memorization
    if mem is None:
        return None
    rows = [("decoded attractors", len(mem.per_attractor), mem.mean, mem.std)]
    if mem.baseline_mean is not None:
        rows.append(("held-out images (baseline)", mem.n_heldout, mem.baseline_mean, mem.baseline_std))
    body = table(rows, ["images", "n", "max cosine to training set: mean", "std"])
    body += ("<p class='muted'>Memorization coefficient (the paper): for each decoded attractor, the largest "
             f"cosine similarity to any of the {mem.n_train} training images. The held-out row is the same "
             "number for real test images, so the coefficient has a baseline: attractors above it sit closer "
             "to training images than unseen data does.</p>")
    return "Memorization", body


def copying_section(result: AuditResult) -> tuple[str, str] | None:
    """The noise floor, the calibrated copy rate and C_T."""
    mem = result.memorization
    if mem is None:
        return None
    body = table([("noise images (floor)", mem.n_noise, mem.noise_baseline_mean, mem.noise_baseline_std)],
                 ["images", "n", "max cosine to training set: mean", "std"])
    if (cal := mem.copying) is not None:
        body += table([("decoded attractors", cal.copy_rate), ("seeds (weighted by basin)", cal.copy_rate_seeds),
                       ("held-out images (by construction)", cal.heldout_copy_rate),
                       ("noise images", cal.noise_copy_rate)], ["images", "calibrated copy rate"])
        body += (f"<p class='muted'>Calibrated copy rate: the fraction of images whose cosine to their nearest "
                 f"training image exceeds {cal.copy_threshold_cosine:.4f}, a level only "
                 f"{100 * cal.copy_quantile:g}% of held-out images reach (Meehan et al. 2020). Raw cosine has a "
                 "high floor; this rate does not.</p>")
    if (ct := mem.ct_statistic) is not None:
        fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
        rows = [("C_T", fmt(ct.C_T)), ("z (normal approximation)", fmt(ct.z)), ("p (copying)", fmt(ct.p_copying)),
                ("reading", ct.reading),
                ("cells used", f"{ct.cells_used} of {ct.n_cells} ({ct.generated_in_used_cells} of "
                               f"{ct.n_generated} seeds)")]
        body += table(rows, ["data-copying test (Meehan et al. 2020)", "value"]) + (
            "<p class='muted'>C_T: in k-means cells of the training set, a Mann-Whitney test of the converged "
            "seeds' decoded end points against held-out images, by Euclidean distance to the nearest training "
            "image; z-scores averaged with the held-out share of each cell. Well below 0 (z &lt; -3): copying; "
            "near 0: neither; well above 0: further from the training set than held-out images are "
            "(underfitting, e.g. blurred prototypes).</p>")
    return "Memorization baselines and calibrated copy rate", body


def generalization_entropy_section(result: AuditResult) -> tuple[str, str] | None:
    ent = result.generalization_entropy
    if ent is None:
        return None
    rows = [("decoded attractors", ent.attractors.n_items, ent.attractors.n_components, ent.attractors.ratio)]
    if (base := ent.train_baseline) is not None:
        rows.append(("training images (same count)", base.n_items, base.n_components, base.ratio))
    share = f"{100 * ent.attractors.explained:g}%"
    body = table(rows, ["images", "n", f"singular vectors for {share} of variance", "ratio"])
    body += ("<p class='muted'>Generalization entropy (the paper): the number of singular vectors of the "
             f"centred decoded attractors needed to explain {share} of their variance.</p>")
    return "Generalization entropy", body


def dictionary_section(result: AuditResult) -> tuple[str, str] | None:
    """Present when the audit was asked for it (``options['dictionary']``) and had reference images."""
    d = result.dictionary
    if d is None:
        return None
    body = table(list(zip(d.n_atoms, d.mse_attractors, d.mse_random_basis)),
                 ["atoms", "MSE (attractors)", "MSE (random basis)"])
    body += f"<img src='{figure_uri(dictionary_figure(d.to_json()))}'>"
    body += (f"<p class='muted'>{d.n_images} reference images encoded and rebuilt by orthogonal matching "
             f"pursuit from n atoms, then decoded; D(E(x)) itself has MSE {d.mse_autoencoder:.4g}.</p>")
    return "Attractors as a dictionary", body


def metrics_table(result: OODResult) -> str:
    rows = [(t, m, v["auroc"], v["fpr95"], v["aupr_in"], v["aupr_out"])
            for t, per in result.metrics.items() for m, v in per.items()]
    return table(rows, ["test set", "method", "AUROC", "FPR95", "AUPR-in", "AUPR-out"])


def ood_section(result: AuditResult) -> tuple[str, str] | None:
    """Present when the audit had OOD sets (``options['ood']``: name -> images) and training images."""
    ood = result.ood
    if ood is None:
        return None
    body = metrics_table(ood.benchmark)
    body += (f"<p class='muted'>In-distribution: {ood.n_fit} images iterated to "
             f"{ood.benchmark.info['n_in_attractors']} attractors; {ood.n_test} held-out images are the negatives. "
             "Higher score = more OOD; AUROC 0.5 is chance, FPR95 is the share of OOD inputs accepted when 95% of "
             f"in-distribution ones are. Each set is a seeded subset of at most {ood.max_images} images "
             "(`latentfield ood` uses all). Per-sample scores: ood/scores.csv.</p>")
    body += "".join(f"<p class='caveat'>Note: {html.escape(n)}</p>" for n in ood.benchmark.info.get("notes") or ())
    return "Out-of-distribution detection", body


__all__ = ["memorization_section", "copying_section", "generalization_entropy_section", "dictionary_section",
           "ood_section", "metrics_table"]
