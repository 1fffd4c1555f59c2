"""``latentfield audit MODEL --out DIR``: probe from noise, then write report.json and report.html."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..workflows.audit import audit, reference_sets
from ..report.audit import write_report
from ..data import load_images
from latentfield.adapters.errors import UsageError
from ..report.messages import captured_line, unconverged_line
from .common import add_model_args, add_probe_args, model_from_args, probe_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="probe a model and write an HTML + JSON report (start here: audit demo)",
                       description="Probe noise seeds to attractors and report what the model encodes.")
    add_model_args(p)
    add_probe_args(p, seeds=256)
    p.add_argument("--out", required=True, help="report directory (created; a rerun resumes the probe)")
    p.add_argument("--reference", default=None,
                   help="training images (folder, .npy/.npz/.safetensors, or digits:train); demo models know theirs")
    p.add_argument("--heldout", default=None, help="held-out images for the memorization baseline")
    p.add_argument("--ood", action="append", default=None, metavar="DATA",
                   help="out-of-distribution images (repeatable): adds the OOD section (needs training images)")
    p.add_argument("--dictionary", action="store_true", help="add the OMP dictionary test (needs reference images)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    adapter = model_from_args(args)
    train, heldout = reference_sets(adapter)  # a demo checkpoint knows its own; given sets take precedence
    if args.reference:
        train = load_images(args.reference, adapter.image_shape)
    if args.heldout:
        heldout = load_images(args.heldout, adapter.image_shape)
    if (args.ood or args.dictionary) and train is None:
        raise UsageError("--ood and --dictionary need training images: give --reference DATA")
    options = {"dictionary": args.dictionary}
    if args.ood:
        options["ood"] = {Path(src).stem if Path(src).exists() else str(src): load_images(src, adapter.image_shape)
                          for src in args.ood}
    result = audit(adapter, args.out, probe_config(args), train=train, heldout=heldout, progress=not args.quiet,
                   options=options)
    _, page = write_report(result, args.out, command=args.command_line)
    c, mem = result.convergence, result.memorization
    line = f"{adapter.name}: {c.n_converged}/{c.n_seeds} seeds converged to {c.n_attractors} attractors"
    if mem is not None:
        line += f"; memorization {mem.mean:.3f}"
        if mem.baseline_mean is not None:
            line += f" (held-out baseline {mem.baseline_mean:.3f})"
    print(line)
    for note in (unconverged_line(c.unconverged, c.n_seeds),
                 captured_line(c.n_captured, c.captured_status, c.counts, c.n_seeds)):
        if note:
            print(note)
    print(f"report: {page}")
    return 0
