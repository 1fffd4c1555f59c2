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

from ..analyses.memorization import max_cosine, memorization_coefficient
from ..rundir import ProbeConfig
from ..workflows.audit import AuditContext, gather, reference_sets
from .audit_sections import copying_section, dictionary_section, generalization_entropy_section, ood_section
from .figures import basin_figure
from ..image_files import save_grid
from .html import Report, figure_uri, img_tag, table
from .messages import describe_captured, describe_unconverged

GALLERY_MAX = 48
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
               probe_config=r.summary()["config"], n_evals=r.n_evals, wall_time_s=r.wall_time_s,
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
    body = table([("converged", c["converged"]), ("max_steps (not converged)", c["max_steps"]),
                  ("diverged", c["diverged"]), ("attractors (cosine > %g)" % r.config.cos_threshold, s["n_attractors"]),
                  ("attractors (relative Euclidean < %g)" % r.config.euclid_rtol, s["n_attractors_euclid"]),
                  ("steps to converge: median / p90 / max", f"{st['median']} / {st['p90']} / {st['max']}")])
    if c["max_steps"] or c["diverged"]:
        body += (f"<p>{c['max_steps'] + c['diverged']} of {s['n_seeds']} seeds did not converge; their end points "
                 "are not attractors and are left out of everything below. "
                 f"{html.escape(describe_unconverged(s) or '')}</p>")
    if note := describe_captured(s):
        body += f"<p>{html.escape(note)}</p>"
    if s["n_attractors"]:
        approx = " (approximate: captured seeds are counted in the basin of the seed they joined)" \
            if s.get("basin_sizes_approximate") else ""
        body += f"<img src='{figure_uri(basin_figure(r.basin_sizes[ctx.order]))}'>"
        body += f"<p class='muted'>Basin sizes{approx}.</p>" if approx else ""
    captured = {k: s[k] for k in ("n_captured", "captured_status") if k in s}
    report.add("Convergence and basins", body, n_seeds=s["n_seeds"], counts=c, n_converged=c["converged"],
               n_max_steps=c["max_steps"], n_diverged=c["diverged"], n_attractors=s["n_attractors"],
               n_attractors_euclid=s["n_attractors_euclid"], basin_sizes=r.basin_sizes[ctx.order].tolist(),
               basin_sizes_approximate=bool(s.get("basin_sizes_approximate", False)),
               steps_median=st["median"], steps_p90=st["p90"], steps_max=st["max"], unconverged=s.get("unconverged"),
               **captured)


def stability_section(ctx: AuditContext, report: Report) -> None:
    stab = ctx.result.summary().get("stability")
    if not stab:
        return
    per = stab.get("per_attractor", [])
    rows = [(i, p.get("kind"), p.get("spectral_radius"), p.get("lipschitz"), p.get("predicted_steps"),
             p.get("measured_steps_median")) for i, p in enumerate(per)]
    body = table([("attractors (radius < 1)", stab["n_attractor"]), ("saddles or repellers", stab["n_saddle_or_repeller"]),
                  ("marginal", stab["n_marginal"])])
    body += table(rows[:GALLERY_MAX], ["#", "kind", "spectral radius of J_f", "Lipschitz (max singular value)",
                                       "predicted steps", "measured steps (median)"])
    if "per_euclid" in stab:
        body += ("<p>Every distinct end point (relative Euclidean tolerance), not only the cosine representatives: "
                 f"{stab['n_euclid_attractor']} attractors, {stab['n_euclid_saddle_or_repeller']} saddles or repellers, "
                 f"{stab['n_euclid_marginal']} marginal. {stab['n_clusters_with_non_attractor']} cosine cluster(s) "
                 f"contain a member that is not an attractor; {stab['n_hidden_non_attractor']} such member(s) hide "
                 "behind a representative judged an attractor.</p>")
        bad = [(j, p["kind"], p["spectral_radius"], p["cosine_attractor"], p["n_seeds"])
               for j, p in enumerate(stab["per_euclid"]) if p["kind"] != "attractor"]
        if bad:
            body += table(bad[:GALLERY_MAX], ["Euclidean point", "kind", "spectral radius of J_f", "cosine attractor #",
                                              "seeds"])
    report.add("Stability of fixed points", body, stability=stab)


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
        report.add("Attractors", "<p>No seed converged, so there are no attractors to show.</p>")
        return
    order = ctx.order[:GALLERY_MAX]
    sizes = ctx.result.basin_sizes
    near_val, near_idx = (max_cosine(ctx.decoded, ctx.train) if ctx.train is not None else (None, None))
    cards = []
    for k in order:
        pair = img_tag(ctx.decoded[k], 64, "decoded attractor")
        caption = f"#{k} basin {sizes[k]}"
        if near_val is not None:
            pair += img_tag(ctx.train[near_idx[k]], 64, "nearest training image")
            caption += f"<br>cos {near_val[k]:.3f}"
        cards.append(f"<div class='card'><div style='display:flex;gap:2px'>{pair}</div>{caption}</div>")
    save_grid(ctx.decoded[order], ctx.out / "attractors.png")
    note = ("Each decoded attractor (left) beside its nearest training image (right) by cosine."
            if near_val is not None else "Decoded attractors, largest basin first.")
    report.add("Attractors", f"<p class='muted'>{note}</p><div class='gallery'>{''.join(cards)}</div>")


def memorization_section(ctx: AuditContext, report: Report) -> None:
    if ctx.train is None or len(ctx.decoded) == 0:
        return
    mem = memorization_coefficient(ctx.decoded, ctx.train)
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


__all__ = ["audit", "AuditContext", "reference_sets", "Section", "GALLERY_MAX"]
