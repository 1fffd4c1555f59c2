"""Where things live: the one module that decides the layout of a run directory and of the caches and
sub-runs that workflows keep under their ``--out``. Nothing else builds these paths."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any


class RunDir:
    """One probe run directory::

        run.json                  the run's key (settings, model fingerprint, data hash)
        environment.json          library versions, threads, device and dtype of each session that worked on it
        chunks/NNNNN.safetensors  finished seed chunks, each stamped with the run key and its seed range
        trajectories/NNNNN.safetensors   recorded trajectory points (record_every > 0)
        attractors.safetensors    the assembled result
        summary.json              its numbers
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def run_file(self) -> Path:
        return self.root / "run.json"

    @property
    def environment_file(self) -> Path:
        return self.root / "environment.json"

    @property
    def chunks(self) -> Path:
        return self.root / "chunks"

    @property
    def trajectories(self) -> Path:
        return self.root / "trajectories"

    @property
    def attractors(self) -> Path:
        return self.root / "attractors.safetensors"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def chunk(self, index: int) -> Path:
        return self.chunks / f"{index:05d}.safetensors"

    def trajectory(self, index: int) -> Path:
        return self.trajectories / f"{index:05d}.safetensors"

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"


# -- what workflows keep under their --out ----------------------------------------------------------

def probe_dir(out: str | Path) -> Path:
    """The main probe run of an ``audit`` or ``extract`` output folder."""
    return Path(out) / "probe"


def cache_root(out: str | Path | None) -> Path | None:
    """The cache of a workflow that probes several models or sets (``ood``, ``compare``, ``dynamics``):
    ``OUT/cache``, or None without an output folder (nothing is kept)."""
    return Path(out) / "cache" if out is not None else None


def audit_ood_dir(out: str | Path) -> Path:
    """The OOD section's files (scores) of an audit output folder; its cache is ``cache_root`` of it."""
    return Path(out) / "ood"


def fit_cache(cache: Path | None) -> Path | None:
    """Where the OOD in-distribution fit keeps its probe runs, below an OOD cache."""
    return cache / "fit" if cache is not None else None


def scores_file(cache: Path | None, set_name: str) -> Path | None:
    """The cached scores of one image set, below an OOD cache."""
    return cache / "scores" / f"{safe_name(set_name, 200)}.npz" if cache is not None else None


def key_hash(key: dict[str, Any]) -> str:
    """The hash of a key (e.g. ``store.resume_key``): SHA-256 of its canonical JSON (64 hex digits). The
    run key every file of a run carries, and the name of a keyed run directory."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def keyed_run_dir(root: str | Path, name: str, key: dict[str, Any]) -> Path:
    """A run directory under ``root`` named by a model name and the hash of everything that decides the
    result: a rerun finds its own run, other inputs get another directory."""
    return Path(root) / f"{safe_name(name, 40)}-{key_hash(key)[:16]}"


def safe_name(text: str, keep: int) -> str:
    """``text`` as a file-name fragment: runs of other characters become ``_``, the last ``keep`` kept."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[-keep:]


__all__ = ["RunDir", "probe_dir", "cache_root", "audit_ood_dir", "fit_cache", "scores_file", "key_hash",
           "keyed_run_dir", "safe_name"]
