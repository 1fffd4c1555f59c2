"""``audit``: probe a model from noise and write a report a person can open.

``workflows.audit.gather`` probes and computes; each section here renders one block of ``report.html``
and one key of ``report.json`` from that context (``audit_sections`` holds the analyses' sections).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Callable

import torch

from latentfield.adapters import Adapter
from latentfield.adapters.precision import LOW_PRECISION, dtype_name

from ..analyses.memorization import memorization_coefficient, top_cosine
from ..analyses.verdict import verdict
from ..rundir import ProbeConfig
from ..workflows.audit import AuditContext, gather, reference_sets
from .audit_sections import copying_section, dictionary_section, generalization_entropy_section, ood_section
from .figures import basin_figure
from ..image_files import save_grid
from .html import Report, figure_uri, fmt, img_tag, table
from .messages import describe_captured, describe_unconverged

GALLERY_MAX = 48
PAIR_PX = 112      # decoded attractor and its nearest training image, side by side
NEIGHBOUR_PX = 54  # the 2nd and 3rd nearest training images
TOP_NEIGHBOURS = 3
Section = Callable[["AuditContext", Report], None]


def audit(adapter: Adapter, out: str | Path, config: ProbeConfig | None = None, *, train: torch.Tensor | None = None,
          heldout: torch.Tensor | None = None, sections: list[Section] | None = None, progress: bool = True,
          options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Probe ``adapter`` and write ``out/report.json`` and ``out/report.html``; returns the JSON data.

    The probe run itself goes to ``out/probe`` (resumable). ``train`` / ``heldout``: reference images
    in [0, 1] for the memorization sections (default: a demo checkpoint's own sets). ``sections`` adds
    further analyses after the built-ins. ``options``: ``{"dictionary": True}`` runs the OMP dictionary
    test, ``{"ood": {name: images}}`` the OOD section (fitted on ``train``, negatives ``heldout``).
    """
    ctx = gather(adapter, out, config, train=train, heldout=heldout, progress=progress, options=options)
    report = Report(f"latentfield audit: {adapter.name}")
    for section in [overview_section, convergence_section, stability_section, trajectory_section, gallery_section,
                    memorization_section, copying_section, generalization_entropy_section,
                    dictionary_section, ood_section, *(sections or [])]:
        section(ctx, report)
    verdict_section(ctx, report)  # written last from the numbers above, shown first
    report.write(ctx.out)
    return report.data


def overview_section(ctx: AuditContext, report: Report) -> None:
    r, a = ctx.result, ctx.adapter
    cfg = r.config
    rows = [("model", a.name), ("fingerprint (sha256 of weights)", a.fingerprint[:16] + "..."),
            ("image shape", tuple(a.image_shape or ())), ("latent shape", tuple(a.latent_shape)),
            ("dtype", dtype_name(a.dtype) + (" (the engine's state and end points: float32)"
                                             if a.dtype in LOW_PRECISION else "")),
            ("seeds", f"{cfg.n_seeds} {cfg.init} (sigma {cfg.sigma}, seed {cfg.seed})"),
            ("stopping rule", f"||z(t+1) - z(t)||^2 < {cfg.tol:g}, at most {cfg.max_steps} steps"),
            ("solver", cfg.solver), ("evaluations of f", r.n_evals), ("wall time (s)", round(r.wall_time_s, 2))]
    env = r.summary()["versions"]
    rows.append(("computed with", f"torch {env['torch']}, {env['torch_threads']} thread(s), {env.get('device', a.device)}, "
                 f"Python {env['python']}, {env['platform']}"))
    prov = getattr(a, "provenance", None)
    report.add("Model and probe", table(rows + provenance_rows(prov)), model=a.name, fingerprint=a.fingerprint,
               latent_shape=list(a.latent_shape), image_shape=list(a.image_shape or ()), dtype=dtype_name(a.dtype),
               config=r.summary()["config"], probe_config=r.summary()["config"], n_evals=r.n_evals, wall_time_s=r.wall_time_s,
               environment=r.summary()["versions"],
               **({"provenance": prov} if prov is not None else {}))


def provenance_rows(prov: dict[str, Any] | None) -> list[tuple[str, Any]]:
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


def convergence_section(ctx: AuditContext, report: Report) -> None:
    r = ctx.result
    s = r.summary()
    c, st = s["counts"], s["steps_to_converge"]
    steps = " / ".join(fmt(st.get(k)) for k in ("median", "p90", "max")) if c["converged"] else "no seed converged"
    body = table([("converged", c["converged"]), ("max_steps (not converged)", c["max_steps"]),
                  ("diverged", c["diverged"]), ("attractors (cosine > %g)" % r.config.cos_threshold, s["n_attractors"]),
                  ("attractors (relative Euclidean < %g)" % r.config.euclid_rtol, s["n_attractors_euclid"]),
                  ("steps to converge: median / p90 / max", steps)])
    if c["max_steps"] or c["diverged"]:
        body += (f"<p>{c['max_steps'] + c['diverged']} of {s['n_seeds']} seeds did not converge; their end points "
                 "are not attractors and are left out of everything below. "
                 f"{html.escape(describe_unconverged(s) or '')}</p>")
    if note := describe_captured(s):
        body += f"<p>{html.escape(note)}</p>"
    if s["n_attractors"]:
        body += f"<img src='{figure_uri(basin_figure(r.basin_sizes[ctx.order]))}' title='basin sizes'>"
        approx = (" Basin sizes are approximate: captured seeds are counted in the basin of the seed they joined."
                  if s.get("basin_sizes_approximate") else "")
        body += ("<p class='muted'>Attractors are numbered by basin size, largest first (#0), here and in every "
                 "table, the gallery and report.json (<code>attractor_ids</code> gives each one's id in the run's "
                 f"files).{approx}</p>")
    # summary.json's names (config, counts, steps_to_converge, ...) and, kept readable, the older flat aliases
    report.add("Convergence and basins", body, n_seeds=s["n_seeds"], counts=c, n_attractors=s["n_attractors"],
               n_attractors_euclid=s["n_attractors_euclid"], basin_sizes=r.basin_sizes[ctx.order].tolist(),
               attractor_ids=ctx.order.tolist(), steps_to_converge=st, unconverged=s.get("unconverged"),
               n_converged=c["converged"], n_max_steps=c["max_steps"], n_diverged=c["diverged"],
               steps_median=st["median"], steps_p90=st["p90"], steps_max=st["max"],
               basin_sizes_approximate=bool(s.get("basin_sizes_approximate", False)),
               **{k: s[k] for k in ("n_captured", "captured_status") if k in s})


def stability_section(ctx: AuditContext, report: Report) -> None:
    stab = ctx.result.summary().get("stability")
    if not stab:
        return
    per = stab.get("per_attractor", [])
    ranked = [{"rank": rank, "attractor_id": int(k), **per[k]} for rank, k in enumerate(ctx.order) if k < len(per)]
    rows = [(p["rank"], p.get("kind"), p.get("spectral_radius"), p.get("lipschitz"), p.get("predicted_steps"),
             p.get("measured_steps_median")) for p in ranked]
    body = table([("attractors (radius < 1)", stab["n_attractor"]), ("saddles or repellers", stab["n_saddle_or_repeller"]),
                  ("marginal", stab["n_marginal"])])
    body += table(rows[:GALLERY_MAX], ["# (by basin)", "kind", "spectral radius of J_f", "Lipschitz (max singular value)",
                                       "predicted steps", "measured steps (median)"])
    if "per_euclid" in stab:
        body += ("<p>Every distinct end point (relative Euclidean tolerance), not only the cosine representatives: "
                 f"{stab['n_euclid_attractor']} attractors, {stab['n_euclid_saddle_or_repeller']} saddles or repellers, "
                 f"{stab['n_euclid_marginal']} marginal. {stab['n_clusters_with_non_attractor']} cosine cluster(s) "
                 f"contain a member that is not an attractor; {stab['n_hidden_non_attractor']} such member(s) hide "
                 "behind a representative judged an attractor.</p>")
        rank = {int(k): i for i, k in enumerate(ctx.order)}  # the report's numbering: by basin size
        bad = [(j, p["kind"], p["spectral_radius"], rank.get(p["cosine_attractor"], "-"), p["n_seeds"])
               for j, p in enumerate(stab["per_euclid"]) if p["kind"] != "attractor"]
        if bad:
            body += table(bad[:GALLERY_MAX], ["Euclidean point", "kind", "spectral radius of J_f", "cosine attractor #",
                                              "seeds"])
    report.add("Stability of fixed points", body, stability={**stab, "per_attractor": ranked})


def trajectory_section(ctx: AuditContext, report: Report) -> None:
    """The first seeds' trajectories (every step), drawn on the top-2 principal axes of the attractor set."""
    if ctx.trajectories is None:
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..analyses.field import split_trajectories
    from .field_plot import plot_projected
    paths = split_trajectories(ctx.trajectories)
    stab = ctx.result.summary().get("stability")
    kinds = [p["kind"] for p in stab["per_attractor"]] if stab else None
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    plot_projected(ax, paths, ctx.result.attractors.numpy(), kinds)
    report.add("Trajectories", f"<img src='{figure_uri(fig)}'><p class='muted'>The first {len(paths)} seeds, every "
               "step, projected on the top two principal axes of the attractor set (markers: attractors).</p>")


def gallery_section(ctx: AuditContext, report: Report) -> None:
    if len(ctx.decoded) == 0:
        report.add("Attractors", "<p>No seed converged, so there are no attractors to show.</p>" + _end_points_html(ctx))
        return
    order = ctx.order[:GALLERY_MAX]
    sizes = ctx.result.basin_sizes
    near_val, near_idx = (top_cosine(ctx.decoded[order], ctx.train, TOP_NEIGHBOURS) if ctx.train is not None
                          else (None, None))
    cards, listing = [], []
    for rank, k in enumerate(order):
        pair = img_tag(ctx.decoded[k], PAIR_PX, f"attractor #{rank}")
        caption = f"<b>#{rank}</b> basin {sizes[k]} seeds <span class='muted'>(id {k})</span>"
        entry: dict[str, Any] = {"rank": rank, "attractor_id": int(k), "basin_size": int(sizes[k])}
        if near_val is not None:
            idx, val = near_idx[rank].tolist(), near_val[rank].tolist()
            pair += img_tag(ctx.train[idx[0]], PAIR_PX, f"nearest training image {idx[0]}")
            thumbs = "".join(img_tag(ctx.train[j], NEIGHBOUR_PX, f"training image {j}") for j in idx[1:])
            caption += ("<br>nearest training images: " + f"{idx[0]} (cos {val[0]:.3f})"
                        + "".join(f", {j} ({v:.3f})" for j, v in zip(idx[1:], val[1:])))
            pair = f"<div class='pair'>{pair}</div><div class='pair'>{thumbs}</div>"
            entry["nearest_train"] = [{"index": j, "cosine": v} for j, v in zip(idx, val)]
        else:
            pair = f"<div class='pair'>{pair}</div>"
        cards.append(f"<div class='card'>{pair}{caption}</div>")
        listing.append(entry)
    save_grid(ctx.decoded[order], ctx.out / "attractors.png")
    note = (f"Each decoded attractor (left, #rank by basin size) beside its nearest training image by cosine "
            f"(right; the next {TOP_NEIGHBOURS - 1} below), with the training set's indices."
            if near_val is not None else "Decoded attractors, largest basin first.")
    report.add("Attractors", f"<p class='muted'>{note}</p><div class='gallery'>{''.join(cards)}</div>",
               attractors=listing)


def _end_points_html(ctx: AuditContext) -> str:
    if ctx.end_points is None:
        return ""
    seeds, images = ctx.end_points
    steps = ctx.result.config.max_steps
    cards = "".join(f"<div class='card'>{img_tag(x, PAIR_PX, f'end point of seed {i} (not converged)')}"
                    f"seed {i}<br>end point, not converged</div>" for i, x in zip(seeds.tolist(), images))
    return (f"<p class='muted'>Where the first {len(seeds)} seeds were after {steps} steps, decoded. These are "
            "<b>not attractors</b>: the seeds were still moving.</p>"
            f"<div class='gallery'>{cards}</div>")


def memorization_section(ctx: AuditContext, report: Report) -> None:
    if ctx.train is None or len(ctx.decoded) == 0:
        return
    mem = memorization_coefficient(ctx.decoded[ctx.order], ctx.train)  # per attractor, largest basin first
    data = {"mean": mem["mean"], "std": mem["std"], "per_attractor": mem["per_item"]}
    rows = [("decoded attractors", len(ctx.decoded), mem["mean"], mem["std"])]
    if ctx.heldout is not None and len(ctx.heldout):
        base = memorization_coefficient(ctx.heldout, ctx.train)
        data.update(baseline_mean=base["mean"], baseline_std=base["std"])
        rows.append(("held-out images (baseline)", len(ctx.heldout), base["mean"], base["std"]))
    body = table(rows, ["images", "n", "max cosine to training set: mean", "std"])
    body += ("<p class='muted'>Memorization coefficient (the paper): for each decoded attractor, the largest "
             f"cosine similarity to any of the {len(ctx.train)} training images. The held-out row is the same "
             "number for real test images, so the coefficient has a baseline: attractors above it sit closer "
             "to training images than unseen data does.</p>")
    report.add("Memorization", body, memorization=data)


def verdict_section(ctx: AuditContext, report: Report) -> None:
    """The verdict (``analyses.verdict``) from the numbers the other sections wrote; it opens the page."""
    d, r = report.data, ctx.result
    mem = d.get("memorization") or {}
    ood = d.get("ood") or {}
    v = verdict(d["n_seeds"], d["counts"]["converged"], d["basin_sizes"], unconverged=d.get("unconverged"),
                cosines=mem.get("per_attractor"), threshold=mem.get("copy_threshold_cosine"),
                heldout_mean=mem.get("baseline_mean"), noise_mean=mem.get("noise_baseline_mean"),
                noise_std=mem.get("noise_baseline_std"), have_train=ctx.train is not None,
                have_heldout=ctx.heldout is not None and len(ctx.heldout) > 0, ood_auroc=ood.get("auroc"))
    body = "".join(f"<p>{html.escape(t)}</p>" for t in (v[k] for k in v["order"]))
    body += "".join(f"<p class='caveat'>Caveat: {html.escape(c)}</p>" for c in v["caveats"])
    body += ("<p class='muted'>Written from the numbers below by fixed rules (docs/analyses.md, \"Verdict\"); "
             "attractors are numbered by basin size, largest first.</p>")
    report.add_first("Verdict", f"<div class='verdict'>{body}</div>", verdict=v)


__all__ = ["audit", "AuditContext", "reference_sets", "Section", "GALLERY_MAX"]
