"""The audit as a section of a Hugging Face model card (``model_card.md``, beside ``report.html``).

Rendered with ``huggingface_hub``'s ``ModelCard`` machinery: YAML metadata (tags only: an audit says
nothing about licence or training data) and a Markdown section an owner pastes into the model's README:
the verdict first, the key numbers, the decoded attractors as an image file referenced relatively
(``attractors.png``), the exact command and the provenance of the weights. Render only: every number
is the :class:`~latentfield.probe.workflows.audit.AuditResult`'s.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..rundir import output
from ..workflows.audit import AuditResult

GALLERY_FILE = "attractors.png"
TAGS = ("latentfield", "latent-dynamics-audit")

TEMPLATE = """---
{{ card_data }}
---

## Latent-dynamics audit (latentfield)

**Verdict.** {{ verdict }}
{% for caveat in caveats %}
> Caveat: {{ caveat }}
{% endfor %}

| | |
|---|---|
{% for name, value in rows %}| {{ name }} | {{ value }} |
{% endfor %}
{% if gallery %}
![Decoded attractors of {{ model }}, largest basin first]({{ gallery }})

*Decoded attractors, largest basin first: where Gaussian seeds settle under f(z) = E(D(z)).*
{% endif %}

Made with:

```
{{ command }}
```

{{ provenance }}

Method: iterate f(z) = E(D(z)) from Gaussian seeds to its attractors (Fumero et al., "Navigating the Latent
Space Dynamics of Neural Models", ICLR 2026); the full report, with every number and its test, is
`report.html` / `report.json` of the same run (run key `{{ run_key }}`).
"""


def model_card_text(result: AuditResult, command: str | None = None, gallery: str | None = GALLERY_FILE) -> str:
    """``model_card.md`` of ``result`` as text. ``command``: the command line that made it (None: the
    Python API); ``gallery``: the attractor image's path relative to the card (None: no image)."""
    from huggingface_hub import ModelCard, ModelCardData

    o, c, v = result.overview, result.convergence, result.verdict
    card = ModelCard.from_template(
        ModelCardData(tags=list(TAGS)), template_str=TEMPLATE, model=o.model, verdict=" ".join(v.sentences.values()),
        caveats=list(v.caveats), rows=_rows(result), gallery=gallery if len(result.decoded) else None,
        command=command or f"latentfield.probe.audit({o.model!r}, ...)  # Python API", run_key=o.run_key,
        provenance=_provenance(o.provenance, o.fingerprint))
    return str(card)


def write_model_card(result: AuditResult, out: str | Path, command: str | None = None) -> Path:
    """Write ``out/model_card.md`` (the gallery image is ``write_report``'s ``attractors.png``)."""
    return output.write_text(Path(out) / "model_card.md", model_card_text(result, command))


def _rows(result: AuditResult) -> list[tuple[str, str]]:
    o, c = result.overview, result.convergence
    cfg = o.config
    rows = [("model", f"`{o.model}`"), ("fingerprint (weights, code, shapes)", f"`{o.fingerprint[:16]}`"),
            ("seeds", f"{c.n_seeds} {cfg.init} (sigma {cfg.sigma:g}, seed {cfg.seed}), image {tuple(o.image_shape)}"),
            ("stopping rule", f"squared step < {cfg.tol:g}, at most {cfg.max_steps} steps"),
            ("converged", f"{c.n_converged} of {c.n_seeds} ({100 * c.n_converged / max(c.n_seeds, 1):.0f}%)"),
            ("attractors (cosine > %g)" % c.cos_threshold, str(c.n_attractors))]
    if c.n_attractors:
        rows.append(("largest basins (seeds)", ", ".join(str(b) for b in c.basin_sizes[:8])))
    mem = result.memorization
    if mem is not None:
        base = f" (held-out images: {mem.baseline_mean:.3f})" if mem.baseline_mean is not None else ""
        rows.append(("memorization coefficient (max cosine to training set)", f"{mem.mean:.3f}{base}"))
        if mem.copying is not None:
            rows.append(("calibrated copy rate of attractors", f"{mem.copying.copy_rate:.3f} "
                         f"(held-out: {mem.copying.heldout_copy_rate:.3f})"))
        if mem.ct_statistic is not None and mem.ct_statistic.C_T is not None:
            ct = mem.ct_statistic
            rows.append(("data-copying test C_T (Meehan et al. 2020)", f"{ct.C_T:.3g} ({ct.reading})"))
    if result.ood is not None:
        for name, per in result.ood.auroc().items():
            if per.get("trajectory") is not None:
                rows.append((f"OOD AUROC, {name} (trajectory score)", f"{per['trajectory']:.3f}"))
    if result.verdict.flags:
        rows.append(("flags", ", ".join(f"`{f}`" for f in result.verdict.flags)))
    if mem is not None and mem.copying is not None and c.n_attractors:
        q, k = mem.copying.copy_quantile, c.n_attractors
        rows.append(("chance of the near-copy call for a model that copies nothing",
                     f"not measured; {100 * (1 - (1 - q) ** k):.0f}% if the {k} attractors were as independent as "
                     f"held-out images (each passes the level with probability {q:g})"))
    return rows


def _provenance(prov: Any, fingerprint: str) -> str:
    """Where the weights came from, as Markdown: repo id and commit (and the spec that reloads exactly them)
    or the local folder, then the sha256 of each file read. Without a record (a bundled demo model, or an
    object in memory), the fingerprint of weights and code is all that identifies them."""
    if not prov:
        return ("Weights: no file provenance recorded (a bundled model, or a model object in memory); the "
                f"fingerprint of its weights and code identifies it: `{fingerprint}`.")
    if prov.get("repo_id"):
        spec = f"{prov['repo_id']}@{prov['commit']}"
        sub = f", subfolder `{prov['subfolder']}`" if prov.get("subfolder") else ""
        lines = [f"Weights: Hugging Face repo `{prov['repo_id']}`, commit `{prov['commit']}`{sub} "
                 f"(reload exactly these: `latentfield audit {spec}`)."]
    else:
        lines = [f"Weights: local folder `{Path(str(prov.get('path'))).name}`."]
    files = prov.get("files") or {}
    if files:
        lines += ["", "| file | sha256 |", "|---|---|", *(f"| `{n}` | `{d}` |" for n, d in files.items())]
    return "\n".join(lines)


__all__ = ["model_card_text", "write_model_card", "GALLERY_FILE", "TAGS"]
