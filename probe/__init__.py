"""latentfield's probe: the engine, run directories, analyses, workflows, reports and the CLI.

The everyday names are importable from here (loaded on first use, so ``import latentfield.probe`` stays
cheap): ``load_adapter``, ``ProbeConfig``, ``run_probe``, ``load_result``, ``audit`` (returns an
``AuditResult`` and writes ``report.json``), ``write_report`` (its ``report.html``), ``AttractorIndex``,
``load_images``.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"load_adapter": "latentfield.adapters", "ProbeConfig": ".rundir", "ProbeResult": ".rundir",
            "run_probe": ".rundir", "load_result": ".rundir", "audit": ".workflows.audit",
            "AuditResult": ".workflows.audit", "write_report": ".report.audit", "AttractorIndex": ".index",
            "load_images": ".data"}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)


__all__ = list(_EXPORTS)
