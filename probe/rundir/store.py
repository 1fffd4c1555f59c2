"""Reading and writing a run directory (layout: :class:`~.layout.RunDir`).

Every file carries the key of the run it belongs to. A chunk is used only when its key, seed range and
row counts match the run that reads it; anything else (another run's chunk, a truncated or corrupt
file) is reported in one line and recomputed, never used. ``run.json`` holds the key of the settings a
directory was made for: other settings are refused; a lost or unreadable ``run.json`` is rebuilt from the
current settings (chunks of other runs still cannot slip in: their own keys do not match).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentfield.adapters import atomic, run_record
from latentfield.adapters.errors import UsageError

from .config import RESULT_NEUTRAL, ProbeConfig
from .layout import RunDir, key_hash
from .result import ProbeResult

log = logging.getLogger("latentfield")
CHUNK_TENSORS = ("end", "status", "steps", "last_sq_step", "captured_by")  # the tensors of a chunk file


@dataclass
class ChunkPart:
    """One finished chunk of a run: for each of its n seeds, in seed order, the end point ``end``
    (n, *latent) float32, ``status`` (n,) (``engine.types``), ``steps`` (n,), ``last_sq_step`` (n,) float64
    (the squared last step; NaN where not known) and, with capture, ``captured_by`` (n,) (the run-wide
    seed index whose path caught it, -1 if none); the chunk's ``n_evals`` (evaluations of f) and ``wall``
    (seconds). ``trajectories``: the recorded points (``seed``, ``step``, ``z``) when ``record_every`` > 0.
    """

    end: torch.Tensor
    status: torch.Tensor
    steps: torch.Tensor
    last_sq_step: torch.Tensor
    n_evals: int
    wall: float
    captured_by: torch.Tensor | None = None
    trajectories: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.status)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensors of the chunk file (``CHUNK_TENSORS`` that are set)."""
        return {k: getattr(self, k) for k in CHUNK_TENSORS if getattr(self, k) is not None}


def resume_key(config: ProbeConfig, fingerprint: str, data_sha256: str | None = None,
               dtype: str = "float32") -> dict[str, Any]:
    """Everything that decides a probe's result: result-deciding settings, the model fingerprint and dtype
    and, for seeds encoded from images, the images' SHA-256."""
    key: dict[str, Any] = {"config": {k: v for k, v in asdict(config).items() if k not in RESULT_NEUTRAL},
                           "fingerprint": fingerprint}
    if dtype != "float32":  # the model's dtype changes its map
        key["dtype"] = dtype
    key["config"]["chunk_size"] = config.chunk_seeds()  # the plan, whether asked for or chosen
    if data_sha256 is not None:
        key["data_sha256"] = data_sha256
    return key


def prepare(run: RunDir, key: dict[str, Any]) -> None:
    """Create ``run`` for ``key``, or check that it was made for it (UsageError in one line if not)."""
    try:
        run.root.mkdir(parents=True, exist_ok=True)
        probe_file = run.root / f".write-test-{os.getpid()}"  # per process: ranks of a launch check at once
        probe_file.write_text("")
        probe_file.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to {run.root}: {e.strerror or e}") from None
    run_record.claim(run.run_file, key, "a probe with other settings, another model or dtype, or other data",
                     "choose another `out` or delete it",
                     rebuild_unreadable="chunks of other runs are still refused by their own keys")


def record_environment(run: RunDir, env: dict[str, Any]) -> None:
    """Append ``env`` (``environment.environment()``) to ``environment.json``'s ``sessions`` unless it is the
    last one there: kept beside ``run.json``, not in it, because the resume key must not change when a
    run is resumed under another library version or thread count (the record says that it was)."""
    sessions: list[dict[str, Any]] = []
    if run.environment_file.exists():
        try:
            sessions = list(json.loads(run.environment_file.read_text()).get("sessions", []))
        except (OSError, ValueError, AttributeError):
            log.warning("%s is unreadable; started afresh", run.environment_file)
    if not sessions or sessions[-1] != json.loads(json.dumps(env)):
        atomic.write_json(run.environment_file, {"sessions": [*sessions, env]})


def write_chunk(run: RunDir, index: int, seeds: range, part: ChunkPart, run_key: str) -> None:
    """Write one finished chunk (and its trajectory points), stamped with the run key and seed range."""
    meta = {"run_key": run_key, "start": str(seeds.start), "stop": str(seeds.stop),
            "n_evals": str(part.n_evals), "wall": repr(part.wall)}
    if part.trajectories:
        atomic.write_tensors(run.trajectory(index), part.trajectories, metadata={**meta, "kind": "trajectories"})
    atomic.write_tensors(run.chunk(index), part.tensors(), metadata=meta)


def read_chunk(run: RunDir, index: int, seeds: range, run_key: str,
               latent_shape: tuple[int, ...]) -> ChunkPart | None:
    """The chunk if its file exists and belongs to this run and seed range; else None (a bad file is
    reported in one line, and left to be overwritten by the recomputed chunk). Trajectories are not read
    here (:func:`read_trajectories`)."""
    path = run.chunk(index)
    if not path.exists():
        return None
    why = _check_chunk(path, seeds, run_key, latent_shape)
    if isinstance(why, str):
        log.warning("%s: %s; recomputing that chunk", path, why)
        return None
    return why


def _check_chunk(path: Path, seeds: range, run_key: str, latent_shape: tuple[int, ...]) -> ChunkPart | str:
    from safetensors import safe_open
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            part = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - any unreadable file is recomputed, whatever the library raised
        return f"unreadable ({type(e).__name__})"
    if meta.get("run_key") != run_key:
        return "belongs to another run (its key differs)" if meta.get("run_key") else "carries no run key"
    if (meta.get("start"), meta.get("stop")) != (str(seeds.start), str(seeds.stop)):
        return f"holds seeds {meta.get('start')}-{meta.get('stop')}, expected {seeds.start}-{seeds.stop}"
    n = len(seeds)
    if any(k not in part for k in CHUNK_TENSORS[:3]) or any(len(part[k]) != n for k in part):
        return f"does not hold {n} rows of every field"
    if tuple(part["end"].shape[1:]) != tuple(latent_shape):
        return f"end points of shape {tuple(part['end'].shape[1:])}, expected {tuple(latent_shape)}"
    if "last_sq_step" not in part:  # chunks written before the squared step was kept: NaN, "not known"
        part["last_sq_step"] = torch.full((n,), float("nan"), dtype=torch.float64)
    try:
        n_evals, wall = int(meta["n_evals"]), float(meta["wall"])
    except (KeyError, ValueError):
        return "metadata incomplete"
    return ChunkPart(**{k: part[k] for k in CHUNK_TENSORS if k in part}, n_evals=n_evals, wall=wall)


def read_trajectories(run: RunDir, index: int, run_key: str) -> dict[str, torch.Tensor] | None:
    """A chunk's recorded trajectory points, if that file belongs to this run."""
    from safetensors import safe_open
    path = run.trajectory(index)
    if not path.exists():
        return None
    with safe_open(str(path), "pt") as f:
        if (f.metadata() or {}).get("run_key") != run_key:
            return None
        return {k: f.get_tensor(k) for k in f.keys()}


def save_result(result: ProbeResult, out: str | Path) -> None:
    """Write ``attractors.safetensors`` and ``summary.json`` (both carrying the run key) into ``out``."""
    run = RunDir(out)
    summary = result.summary()
    atomic.write_tensors(run.attractors, {
        "attractors": result.attractors, "attractors_euclid": result.attractors_euclid,
        "end_points": result.end_points, "status": torch.from_numpy(result.status),
        "steps": torch.from_numpy(result.steps), "labels": torch.from_numpy(result.labels),
        "labels_euclid": torch.from_numpy(result.labels_euclid),
    } | ({"last_sq_step": torch.from_numpy(result.last_sq_step)} if result.last_sq_step is not None else {})
      | ({"captured_by": torch.from_numpy(result.captured_by)} if result.captured_by is not None else {}),
        metadata={"summary": json.dumps(summary, default=str), "run_key": str(result.run_key)})
    atomic.write_json(run.summary, summary)


def load_result(out: str | Path) -> ProbeResult:
    """Read a finished run directory back into a :class:`ProbeResult` (refused if its files disagree)."""
    from safetensors import safe_open
    run = RunDir(out)
    if not run.attractors.exists():
        raise UsageError(f"{out}: no finished probe here (attractors.safetensors missing)")
    try:
        with safe_open(str(run.attractors), "pt") as f:
            meta = f.metadata() or {}
            t = {k: f.get_tensor(k) for k in f.keys()}
        s = json.loads(run.summary.read_text())
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"{out}: cannot read the finished probe ({type(e).__name__}); delete "
                         "attractors.safetensors and summary.json and rerun to rebuild them") from None
    if s.get("run_key") != json.loads(meta.get("summary", "{}")).get("run_key"):
        raise UsageError(f"{out}: summary.json and attractors.safetensors belong to different runs; delete both "
                         "and rerun to rebuild them")
    config = {k: v for k, v in s["config"].items() if k in ProbeConfig.__dataclass_fields__}
    return ProbeResult(config=ProbeConfig(**config), end_points=t["end_points"], status=t["status"].numpy(),
                       steps=t["steps"].numpy(), attractors=t["attractors"], labels=t["labels"].numpy(),
                       attractors_euclid=t["attractors_euclid"], labels_euclid=t["labels_euclid"].numpy(),
                       n_evals=s["n_evals"], wall_time_s=s["wall_time_s"], adapter_info=s["adapter"],
                       last_sq_step=t["last_sq_step"].numpy() if "last_sq_step" in t else None,
                       captured_by=t["captured_by"].numpy() if "captured_by" in t else None,
                       stability=s.get("stability"), run_key=s.get("run_key"),
                       world_size=s.get("versions", {}).get("world_size"))


def load_trajectories(out: str | Path) -> dict[str, torch.Tensor]:
    """All recorded trajectory points of a run directory: ``seed`` (P,), ``step`` (P,), ``z`` (P, *latent)."""
    from safetensors.torch import load_file
    run = RunDir(out)
    held = json.loads(run.summary.read_text()).get("run_key") if run.summary.exists() else None
    files = sorted(run.trajectories.glob("*.safetensors"))
    parts = [load_file(str(f)) for f in files if held is None or _file_key(f) == held]
    if not parts:
        raise UsageError(f"{out}: no trajectories recorded (probe with `record_every` > 0)")
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _file_key(path: Path) -> str | None:
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        return (f.metadata() or {}).get("run_key")


def check_complete(n_seeds: int, parts: list[tuple[range, ChunkPart]]) -> None:
    """Every seed 0..n_seeds-1 present exactly once, in order (RuntimeError otherwise: a bug, not a user error)."""
    seen = np.zeros(n_seeds, dtype=np.int64)
    for seeds, part in parts:
        if len(part) != len(seeds):
            raise RuntimeError(f"chunk {seeds.start}-{seeds.stop} holds {len(part)} seeds")
        seen[seeds.start:seeds.stop] += 1
    if not (seen == 1).all():
        raise RuntimeError(f"assembly: {int((seen == 0).sum())} seeds missing, {int((seen > 1).sum())} repeated")


__all__ = ["ChunkPart", "resume_key", "key_hash", "prepare", "write_chunk", "read_chunk", "read_trajectories", "save_result",
           "load_result", "load_trajectories", "check_complete"]
