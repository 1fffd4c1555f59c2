"""The audit's report: :class:`~latentfield.probe.workflows.audit.AuditResult` rendered as ``report.html``
(images embedded) and ``attractors.png``. Render only: every number is the result's (``workflows.audit``
computes them and writes ``report.json``); nothing here calls the model or an analysis.

A section is a function ``(result) -> (title, HTML body) | None`` (None: nothing to show). The built-in
ones are :data:`SECTIONS`, in reading order (the verdict first); :func:`render_html` and
:func:`write_report` take further sections, appended after them. A section shows what the result holds;
a new number is a new field of the result (``workflows.audit``), not a section's computation.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Callable, Sequence

from ..image_files import grid_png
from ..rundir import output
from ..workflows.audit import AuditResult, check_same_audit
from .audit_sections import (copying_section, dictionary_section, generalization_entropy_section,
                             memorization_section, ood_section)
from .figures import basin_figure
from .html import Report, figure_uri, fmt, img_tag, table
from .messages import captured_line, cli_hints, unconverged_line
from .model_card import GALLERY_FILE, write_model_card

GALLERY_MAX = 48
PAIR_PX = 112      # decoded attractor and its nearest training image, side by side
NEIGHBOUR_PX = 54  # the 2nd and 3rd nearest training images
Section = Callable[[AuditResult], "tuple[str, str] | None"]


def render_html(result: AuditResult, sections: Sequence[Section] = ()) -> str:
    """The report page of ``result``: the built-in :data:`SECTIONS`, then ``sections``."""
    report = Report(f"latentfield audit: {result.overview.model}")
    for section in [*SECTIONS, *sections]:
        if (block := section(result)) is not None:
            report.add(*block)
    return report.html()


def write_report(result: AuditResult, out: str | Path, sections: Sequence[Section] = (),
                 command: str | None = None) -> tuple[Path, Path]:
    """Write ``out/report.html``, ``out/attractors.png`` (the gallery's attractors as one grid) and
    ``out/model_card.md`` (the audit as a Hugging Face model-card section; ``command``: the command line
    it quotes, None for the Python API) through ``rundir.output``; returns the paths of ``report.json``
    (written by ``workflows.audit.audit``) and ``report.html``. A folder whose ``report.json`` belongs to
    another run or model is refused: the page never sits beside another audit's numbers."""
    out = Path(out)
    check_same_audit(result, out / "report.json")
    png = grid_png(result.decoded[:GALLERY_MAX])
    if png is not None:
        output.write_bytes(out / GALLERY_FILE, png)
    write_model_card(result, out, command)
    return out / "report.json", output.write_text(out / "report.html", render_html(result, sections))


# -- the built-in sections ------------------------------------------------------------------------

def verdict_section(result: AuditResult) -> tuple[str, str]:
    """The verdict (``analyses.verdict``), with the command-line advice for its flags; it opens the page."""
    v = result.verdict
    body = "".join(f"<p>{html.escape(t)}</p>" for t in v.sentences.values())
    body += "".join(f"<p class='caveat'>Caveat: {html.escape(c)}</p>" for c in v.caveats)
    if hints := cli_hints(v.flags):
        body += f"<p class='muted'>On the command line: {html.escape('; '.join(hints))}.</p>"
    body += ("<p class='muted'>Written from the numbers below by fixed rules (docs/analyses.md, \"Verdict\"); "
             "attractors are numbered by basin size, largest first.</p>")
    return "Verdict", f"<div class='verdict'>{body}</div>"


def overview_section(result: AuditResult) -> tuple[str, str]:
    o, cfg = result.overview, result.overview.config
    env = o.environment
    rows = [("model", o.model), ("fingerprint (sha256 of weights)", o.fingerprint[:16] + "..."),
            ("image shape", o.image_shape), ("latent shape", o.latent_shape),
            ("dtype", o.dtype + (" (the engine's state and end points: float32)" if o.low_precision else "")),
            ("seeds", f"{cfg.n_seeds} {cfg.init} (sigma {cfg.sigma}, seed {cfg.seed})"),
            ("stopping rule", f"||z(t+1) - z(t)||^2 < {cfg.tol:g}, at most {cfg.max_steps} steps"),
            ("solver", cfg.solver), ("evaluations of f", o.n_evals), ("wall time (s)", round(o.wall_time_s, 2)),
            ("computed with", f"torch {env.get('torch')}, {env.get('torch_threads')} thread(s), {env.get('device')}, "
                              f"Python {env.get('python')}, {env.get('platform')}")]
    return "Model and probe", table(rows + provenance_rows(o.provenance))


def provenance_rows(prov: dict | None) -> list[tuple[str, object]]:
    """Where the weights came from: repo id and commit (with the spec that reloads exactly them) or
    the local folder, then the sha256 of each file read."""
    if not prov:
        return []
    if prov.get("repo_id"):
        spec = f"{prov['repo_id']}@{prov['commit']}"
        sub = f" --model-option subfolder={prov['subfolder']}" if prov.get("subfolder") else ""
        rows = [("Hugging Face repo", prov["repo_id"]), ("revision requested", prov.get("revision")),
                ("commit", prov["commit"]), ("reload exactly these weights", f"latentfield audit {spec}{sub}")]
    else:
        rows = [("weights folder", prov.get("path"))]
    return rows + [(f"sha256 {name}", digest) for name, digest in prov.get("files", {}).items()]


def convergence_section(result: AuditResult) -> tuple[str, str]:
    c = result.convergence
    n, st = c.counts, c.steps_to_converge
    steps = " / ".join(fmt(st.get(k)) for k in ("median", "p90", "max")) if n["converged"] else "no seed converged"
    body = table([("converged", n["converged"]), ("max_steps (not converged)", n["max_steps"]),
                  ("diverged", n["diverged"]), ("attractors (cosine > %g)" % c.cos_threshold, c.n_attractors),
                  ("attractors (relative Euclidean < %g)" % c.euclid_rtol, c.n_attractors_euclid),
                  ("steps to converge: median / p90 / max", steps)])
    if n["max_steps"] or n["diverged"]:
        body += (f"<p>{n['max_steps'] + n['diverged']} of {c.n_seeds} seeds did not converge; their end points "
                 "are not attractors and are left out of everything below. "
                 f"{html.escape(unconverged_line(c.unconverged, c.n_seeds) or '')}</p>")
    if note := captured_line(c.n_captured, c.captured_status, n, c.n_seeds):
        body += f"<p>{html.escape(note)}</p>"
    if c.n_attractors:
        body += f"<img src='{figure_uri(basin_figure(list(c.basin_sizes)))}' title='basin sizes'>"
        approx = (" Basin sizes are approximate: captured seeds are counted in the basin of the seed they joined."
                  if c.basin_sizes_approximate else "")
        body += ("<p class='muted'>Attractors are numbered by basin size, largest first (#0), here and in every "
                 "table, the gallery and report.json (<code>attractor_ids</code> gives each one's id in the run's "
                 f"files).{approx}</p>")
    return "Convergence and basins", body


def stability_section(result: AuditResult) -> tuple[str, str] | None:
    s = result.stability
    if s is None:
        return None
    rec = s.record
    rows = [(e.rank, e.kind, e.spectral_radius, e.lipschitz, e.predicted_steps, e.measured_steps_median)
            for e in s.per_attractor]
    body = table([("attractors (radius < 1)", rec.get("n_attractor")),
                  ("saddles or repellers", rec.get("n_saddle_or_repeller")), ("marginal", rec.get("n_marginal"))])
    body += table(rows[:GALLERY_MAX], ["# (by basin)", "kind", "spectral radius of J_f", "Lipschitz (max singular value)",
                                       "predicted steps", "measured steps (median)"])
    if "per_euclid" in rec:
        body += ("<p>Every distinct end point (relative Euclidean tolerance), not only the cosine representatives: "
                 f"{rec['n_euclid_attractor']} attractors, {rec['n_euclid_saddle_or_repeller']} saddles or repellers, "
                 f"{rec['n_euclid_marginal']} marginal. {rec['n_clusters_with_non_attractor']} cosine cluster(s) "
                 f"contain a member that is not an attractor; {rec['n_hidden_non_attractor']} such member(s) hide "
                 "behind a representative judged an attractor.</p>")
        rank = {k: i for i, k in enumerate(result.convergence.attractor_ids)}  # ids -> the report's numbering
        bad = [(j, p["kind"], p["spectral_radius"], rank.get(p["cosine_attractor"], "-"), p["n_seeds"])
               for j, p in enumerate(rec["per_euclid"]) if p["kind"] != "attractor"]
        if bad:
            body += table(bad[:GALLERY_MAX], ["Euclidean point", "kind", "spectral radius of J_f", "cosine attractor #",
                                              "seeds"])
    return "Stability of fixed points", body


def trajectory_section(result: AuditResult) -> tuple[str, str] | None:
    """The first seeds' trajectories (every step), drawn on the top-2 principal axes of the attractor set."""
    if result.trajectories is None:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .field_plot import plot_projected
    kinds = [e.kind for e in result.stability.per_attractor] if result.stability else None
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    plot_projected(ax, list(result.trajectories), result.attractors.numpy(), kinds)
    return "Trajectories", (f"<img src='{figure_uri(fig)}'><p class='muted'>The first {len(result.trajectories)} "
                            "seeds, every step, projected on the top two principal axes of the attractor set "
                            "(markers: attractors).</p>")


def gallery_section(result: AuditResult) -> tuple[str, str]:
    if len(result.decoded) == 0:
        return "Attractors", "<p>No seed converged, so there are no attractors to show.</p>" + _end_points_html(result)
    train, cards = result.train, []
    for e, image in zip(result.gallery[:GALLERY_MAX], result.decoded):
        pair = img_tag(image, PAIR_PX, f"attractor #{e.rank}")
        caption = f"<b>#{e.rank}</b> basin {e.basin_size} seeds <span class='muted'>(id {e.attractor_id})</span>"
        if e.nearest_train and train is not None:
            first, rest = e.nearest_train[0], e.nearest_train[1:]
            pair += img_tag(train[first.index], PAIR_PX, f"nearest training image {first.index}")
            thumbs = "".join(img_tag(train[n.index], NEIGHBOUR_PX, f"training image {n.index}") for n in rest)
            caption += (f"<br>nearest training images: {first.index} (cos {first.cosine:.3f})"
                        + "".join(f", {n.index} ({n.cosine:.3f})" for n in rest))
            pair = f"<div class='pair'>{pair}</div><div class='pair'>{thumbs}</div>"
        else:
            pair = f"<div class='pair'>{pair}</div>"
        cards.append(f"<div class='card'>{pair}{caption}</div>")
    k = len(result.gallery[0].nearest_train) if result.gallery else 0
    note = (f"Each decoded attractor (left, #rank by basin size) beside its nearest training image by cosine "
            f"(right; the next {k - 1} below), with the training set's indices."
            if k and train is not None else "Decoded attractors, largest basin first.")
    return "Attractors", f"<p class='muted'>{note}</p><div class='gallery'>{''.join(cards)}</div>"


def _end_points_html(result: AuditResult) -> str:
    ep = result.end_points
    if ep is None:
        return ""
    steps = result.overview.config.max_steps
    cards = "".join(f"<div class='card'>{img_tag(x, PAIR_PX, f'end point of seed {i} (not converged)')}"
                    f"seed {i}<br>end point, not converged</div>" for i, x in zip(ep.seeds, ep.images))
    return (f"<p class='muted'>Where the first {len(ep.seeds)} seeds were after {steps} steps, decoded. These are "
            "<b>not attractors</b>: the seeds were still moving.</p>"
            f"<div class='gallery'>{cards}</div>")


SECTIONS: tuple[Section, ...] = (verdict_section, overview_section, convergence_section, stability_section,
                                 trajectory_section, gallery_section, memorization_section, copying_section,
                                 generalization_entropy_section, dictionary_section, ood_section)

__all__ = ["render_html", "write_report", "SECTIONS", "Section", "AuditResult", "GALLERY_MAX"]
