"""The record a resumable job keeps in its folder: ``run.json``, the key of what the folder computes.

A rerun with the same key resumes; another key is refused, so files made for other settings, another
model or other data are never mixed in. Shared by the probe's run directories (``probe.rundir.store``)
and ``train-decoder``'s output folder (it lives here because ``adapters`` imports nothing of ``probe``).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from . import atomic
from .errors import UsageError

log = logging.getLogger("latentfield")


def claim(path: str | Path, key: dict[str, Any], holds: str, remedy: str, *, rebuild_unreadable: str | None = None,
          error: type[Exception] = UsageError) -> None:
    """Write ``key`` (JSON-able) to ``path``, or check that ``path`` already holds it.

    ``path`` holding another key raises ``error("<folder> holds <holds>; <remedy>")``. An unreadable
    ``path`` is rebuilt from ``key`` with a warning that ends in ``rebuild_unreadable`` (why that is safe
    for this job), or, without it, refused (``error("<path> is unreadable; <remedy>")``).
    """
    path = Path(path)
    if path.exists():
        try:
            held = json.loads(path.read_text())
        except (OSError, ValueError):
            if rebuild_unreadable is None:
                raise error(f"{path} is unreadable; {remedy}") from None
            log.warning("%s is unreadable; rebuilt from the current settings (%s)", path, rebuild_unreadable)
        else:
            if held != json.loads(json.dumps(key)):
                raise error(f"{path.parent} holds {holds}; {remedy}")
            return
    atomic.write_json(path, key)


__all__ = ["claim"]
