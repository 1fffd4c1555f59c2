"""``run_probe``: seeds -> attractors for one adapter, with a resumable run directory.

Seeds are processed in fixed chunks; each finished chunk is written atomically to
``DIR/chunks/``, so a run stopped by Ctrl-C or a kill continues from its completed chunks and
ends with exactly the result of an uninterrupted run. The finished directory holds
``attractors.safetensors`` and ``summary.json``.
"""
from __future__ import annotations

import hashlib
import json
import math
import platform
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from latentfield.adapters import Adapter

from latentfield.adapters import atomic
from .attractors import basin_sizes, deduplicate, step_stats
from .data import images_sha256
from .engine import CONVERGED, DIVERGED, MAX_STEPS, SOLVERS, STATUS_NAMES, iterate, make_solver
from latentfield.adapters.errors import UsageError
from .seeds import INITS, make_seeds

# Fields that change how fast a run goes but not its result: a resumed run may change them.
_RESULT_NEUTRAL = {"batch_size", "verify"}


@dataclass
class ProbeConfig:
    """How to probe: seeds, stopping rule and de-duplication. Defaults are the paper's small-AE ones."""

    n_seeds: int = 256
    init: str = "gaussian"
    seed: int = 0
    sigma: float = 1.0
    low: float = -1.0
    high: float = 1.0
    tol: float = 1e-6
    max_steps: int = 3000
    max_norm: float = 1e6
    batch_size: int = 256
    chunk_size: int = 1024
    solver: str = "plain"
    cos_threshold: float = 0.99
    euclid_rtol: float = 0.02
    record_every: int = 0
    verify: bool = False  # classify attractors by the Jacobian's spectral radius (always on for accelerated solvers)
    capture: float = 0.0  # > 0: stop a seed that joins an earlier seed's path (engine.iterate); verified then too
    solver_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"m": 5, "warmup": 30} for anderson

    def validate(self) -> None:
        if self.n_seeds <= 0:
            raise UsageError(f"number of seeds must be positive, got {self.n_seeds}")
        if not self.tol > 0:  # NaN too
            raise UsageError(f"tolerance must be positive, got {self.tol}")
        if not math.isfinite(self.tol):  # every squared step is below inf: each seed would stop at once
            raise UsageError(f"tolerance must be finite, got {self.tol}")
        for what, value in (("max steps", self.max_steps), ("batch size", self.batch_size),
                            ("chunk size", self.chunk_size)):
            if value <= 0:
                raise UsageError(f"{what} must be positive, got {value}")
        if self.init not in INITS:
            raise UsageError(f"unknown init {self.init!r}: choose one of {', '.join(INITS)}")
        if self.solver not in SOLVERS:
            raise UsageError(f"unknown solver {self.solver!r}: choose one of {', '.join(SOLVERS)}")
        try:
            make_solver(self.solver, self.solver_options)
        except ValueError as e:
            raise UsageError(f"solver option: {e}") from None
        if not self.sigma > 0:
            raise UsageError(f"sigma must be positive, got {self.sigma}")
        if not math.isfinite(self.sigma):
            raise UsageError(f"sigma must be finite, got {self.sigma}")
        if not -math.inf < self.low < self.high < math.inf:
            raise UsageError(f"uniform seeds need finite low < high, got {self.low}, {self.high}")
        if not self.max_norm > 0:  # inf is allowed: no norm limit
            raise UsageError(f"max_norm must be positive, got {self.max_norm}")
        if self.record_every < 0:
            raise UsageError(f"record_every must be >= 0, got {self.record_every}")
        if not 0 <= self.capture < 1:
            raise UsageError(f"capture is a radius relative to a point's norm, in [0, 1); got {self.capture}")


@dataclass
class ProbeResult:
    """Outcome of a probe.

    end_points (N, *latent): where each seed stopped; status (N,) int8 (0 converged, 1 max_steps,
    2 diverged); steps (N,) f evaluations per seed; last_sq_step (N,): the squared step of each seed's
    own last step (NaN for runs saved before it was kept). attractors (K, *latent): de-duplicated converged
    end points (cosine > cos_threshold); labels (N,): attractor of each seed, -1 if not converged.
    The ``_euclid`` twins use the relative Euclidean tolerance instead.
    """

    config: ProbeConfig
    end_points: torch.Tensor
    status: np.ndarray
    steps: np.ndarray
    attractors: torch.Tensor
    labels: np.ndarray
    attractors_euclid: torch.Tensor
    labels_euclid: np.ndarray
    n_evals: int
    wall_time_s: float
    last_sq_step: np.ndarray | None = None
    adapter_info: dict[str, Any] = field(default_factory=dict)
    trajectories: dict[str, torch.Tensor] | None = None  # in-memory runs with record_every > 0
    captured_by: np.ndarray | None = None  # (N,) with capture > 0: the seed whose path each joined, -1 if none
    stability: dict[str, Any] | None = None  # verified runs: see stability.stability_report

    @property
    def basin_sizes(self) -> np.ndarray:
        return basin_sizes(self.labels, len(self.attractors))

    @property
    def counts(self) -> dict[str, int]:
        return {name: int((self.status == code).sum()) for code, name in enumerate(STATUS_NAMES)}

    def unconverged(self) -> dict[str, Any] | None:
        """The seeds that ran to ``max_steps`` themselves (not by capture): how many, and how fast they
        still moved at the end, as squared step (the stopping rule's quantity) and step / ||z||."""
        cut = np.flatnonzero((self.status == MAX_STEPS) & (self.steps >= self.config.max_steps))
        if not len(cut):
            return None
        out: dict[str, Any] = {"n": int(len(cut)), "max_steps": self.config.max_steps, "tol": self.config.tol}
        known = cut[~np.isnan(self.last_sq_step[cut])] if self.last_sq_step is not None else cut[:0]
        if len(known):
            sq = self.last_sq_step[known]
            norm = self.end_points[known].flatten(1).double().norm(dim=1).clamp_min(1e-30).numpy()
            out |= {"sq_step_median": float(np.median(sq)), "sq_step_max": float(sq.max()),
                    "relative_step_median": float(np.median(np.sqrt(sq) / norm))}
        return out

    def summary(self) -> dict[str, Any]:
        conv = self.status == CONVERGED
        return {
            "config": asdict(self.config),
            "adapter": self.adapter_info,
            "versions": versions(),
            "n_seeds": len(self.status),
            "counts": self.counts,
            "n_attractors": len(self.attractors),
            "n_attractors_euclid": len(self.attractors_euclid),
            "basin_sizes": self.basin_sizes.tolist(),
            "basin_sizes_euclid": basin_sizes(self.labels_euclid, len(self.attractors_euclid)).tolist(),
            "steps_to_converge": step_stats(self.steps[conv]),
            "n_evals": self.n_evals,
            "wall_time_s": round(self.wall_time_s, 3),
        } | ({"unconverged": u} if (u := self.unconverged()) else {}) \
          | ({"stability": self.stability} if self.stability is not None else {}) \
          | ({"n_captured": int((self.captured_by >= 0).sum())} if self.captured_by is not None else {})


def describe_unconverged(summary: dict[str, Any]) -> str | None:
    """One line on the seeds that ran to max steps, from a summary with ``unconverged`` and ``n_seeds``
    (``ProbeResult.summary()``, or the audit's report data); None if no seed did."""
    u = summary.get("unconverged")
    if not u:
        return None
    line = f"{u['n']} of {summary['n_seeds']} seeds stopped at max steps ({u['max_steps']})"
    if u.get("sq_step_median") is None:
        return line + "."
    return (line + f" still moving: squared step {u['sq_step_median']:.2g} (median; tolerance {u['tol']:g}), "
            f"{u['relative_step_median']:.1%} of ||z|| per step. Raise --max-steps or try --solver relax; a step "
            "that stays at a few % of ||z|| is a seed travelling, not settling (docs/dynamics.md, "
            "\"Seeds that do not converge\").")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {"python": platform.python_version()}
    for pkg in ("latentfield", "torch", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def adapter_info(adapter: Adapter) -> dict[str, Any]:
    return {"name": adapter.name, "fingerprint": adapter.fingerprint, "latent_shape": list(adapter.latent_shape),
            "image_shape": list(adapter.image_shape or ()), "value_range": list(adapter.value_range)}


def run_probe(adapter: Adapter, config: ProbeConfig | None = None, out: str | Path | None = None,
              data: torch.Tensor | None = None, progress: bool = True) -> ProbeResult:
    """Probe ``adapter``'s latent map from ``config.n_seeds`` seeds to attractors.

    ``data`` (N, C, H, W) in [0, 1] is required for ``init='data'`` (then n_seeds = N). With ``out``,
    chunks, trajectories (``record_every`` > 0) and the final files go to that directory, and a
    rerun of the same command resumes. Without ``out``, everything stays in memory.
    """
    config = config or ProbeConfig()
    if config.init == "data":
        if data is None:
            raise UsageError("init 'data' needs images to encode")
        config.n_seeds = len(data)
    config.validate()
    if adapter.latent_shape is None:
        raise UsageError(f"{adapter.name}: image shape unknown; pass --image-shape C,H,W or data")
    out = Path(out) if out is not None else None
    info = adapter_info(adapter)
    if out is not None:
        _prepare_dir(out, _resume_key(config, info["fingerprint"], data))
    chunks = [range(s, min(s + config.chunk_size, config.n_seeds)) for s in range(0, config.n_seeds, config.chunk_size)]
    bar = tqdm(total=config.n_seeds, desc=f"probe {adapter.name}", unit="seed", disable=not progress, leave=False)
    parts: list[dict[str, Any]] = []
    try:
        for c, idx in enumerate(chunks):
            path = out / "chunks" / f"{c:05d}.safetensors" if out else None
            if path is not None and path.exists():
                parts.append(_load_chunk(path))
            else:
                parts.append(_run_chunk(adapter, config, c, idx, data, path, bar))
            bar.n = idx.stop
            bar.refresh()
    finally:
        bar.close()
    result = _assemble(config, parts, info)
    if config.verify or config.solver != "plain" or config.capture:  # acceleration can land on unstable points
        result.stability = _verify(adapter, config, result, data, progress)
    if out is not None:
        save_result(result, out)
    return result


def _verify(adapter: Adapter, config: ProbeConfig, result: ProbeResult, data: torch.Tensor | None,
            progress: bool) -> dict[str, Any]:
    """Stability of each cosine attractor, with predicted vs measured steps of the seeds it attracted."""
    from .stability import stability_report, verify_fixed_points

    stab = verify_fixed_points(adapter, result.attractors, progress=progress)
    e0, measured = [], []
    for k, point in enumerate(result.attractors):
        seeds = np.flatnonzero(result.labels == k)
        measured.append(float(np.median(result.steps[seeds])) if len(seeds) else None)
        z0 = _initial_points(adapter, config, seeds[:64], data)  # a sample is enough for a median
        e0.append(float((z0.flatten(1).float() - point.flatten()).norm(dim=1).median()) if len(seeds) else None)
    return stability_report(stab, config.tol, e0, measured)


def _initial_points(adapter: Adapter, config: ProbeConfig, seeds: np.ndarray, data: torch.Tensor | None) -> torch.Tensor:
    """The start points of the given seed indices, as ``_run_chunk`` made them (CPU float32)."""
    if config.init == "data":
        return adapter.encode(adapter.from_unit(data[torch.from_numpy(seeds)])).float().cpu()
    return make_seeds(config.init, seeds.tolist(), adapter.latent_shape, config.seed, config.sigma, config.low,
                      config.high)


def cache_dir(root: str | Path, adapter: Adapter, config: ProbeConfig, data: torch.Tensor | None = None) -> Path:
    """A run directory under ``root`` named by everything that decides the probe's result, for commands
    that probe several models or sets: a rerun finds and resumes its own runs, other inputs get new ones."""
    if config.init == "data" and data is not None:
        config = replace(config, n_seeds=len(data))  # as run_probe will set it
    key = json.dumps(_resume_key(config, adapter.fingerprint, data), sort_keys=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", adapter.name)[-40:]
    return Path(root) / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _resume_key(config: ProbeConfig, fingerprint: str, data: torch.Tensor | None) -> dict[str, Any]:
    key = {"config": {k: v for k, v in asdict(config).items() if k not in _RESULT_NEUTRAL}, "fingerprint": fingerprint}
    if not config.capture:  # so run directories made before the option existed still resume
        del key["config"]["capture"]
    if config.init == "data" and data is not None:  # seeds from data: other images of the same count are another run
        key["data_sha256"] = images_sha256(data)
    return key


def _prepare_dir(out: Path, key: dict[str, Any]) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_file = out / ".write-test"
        probe_file.write_text("")
        probe_file.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to {out}: {e.strerror or e}") from None
    run_file = out / "run.json"
    if run_file.exists():
        if json.loads(run_file.read_text()) != json.loads(json.dumps(key)):
            raise UsageError(f"{out} holds a probe with other settings, another model or other data; "
                             "choose another --out or delete it")
    else:
        atomic.write_json(run_file, key)


def _run_chunk(adapter: Adapter, config: ProbeConfig, c: int, idx: range, data: torch.Tensor | None,
               path: Path | None, bar: tqdm) -> dict[str, Any]:
    t0 = time.perf_counter()
    if config.init == "data":
        x = adapter.from_unit(data[idx.start:idx.stop])
        z0 = torch.cat([adapter.encode(x[i:i + config.batch_size]) for i in range(0, len(x), config.batch_size)])
    else:
        z0 = make_seeds(config.init, idx, adapter.latent_shape, config.seed, config.sigma, config.low, config.high)
    z0 = z0.to(adapter.device, adapter.dtype)
    rec: list[tuple[np.ndarray, np.ndarray, torch.Tensor]] = []
    recorder = (lambda i, s, z: rec.append((i + idx.start, s, z.detach().cpu()))) if config.record_every else None
    res = iterate(adapter.f, z0, tol=config.tol, max_steps=config.max_steps, batch_size=config.batch_size,
                  max_norm=config.max_norm, solver=make_solver(config.solver, config.solver_options),
                  record_every=config.record_every, recorder=recorder, progress=bar.update, capture=config.capture)
    part = {"end": res.end.float().cpu(), "status": torch.from_numpy(res.status), "steps": torch.from_numpy(res.steps),
            "last_sq_step": torch.from_numpy(res.last_sq_step), "n_evals": res.n_evals, "wall": time.perf_counter() - t0}
    if res.captured_by is not None:  # seed indices within the chunk -> run-wide
        part["captured_by"] = torch.from_numpy(np.where(res.captured_by >= 0, res.captured_by + idx.start, -1))
    if path is not None:
        if rec:
            atomic.write_tensors(path.parent.parent / "trajectories" / path.name, _stack_records(rec))
        atomic.write_tensors(path, {k: part[k] for k in ("end", "status", "steps", "last_sq_step", "captured_by")
                                     if k in part},
                         metadata={"n_evals": str(part["n_evals"]), "wall": repr(part["wall"])})
    elif rec:
        part["trajectories"] = _stack_records(rec)
    return part


def _stack_records(rec: list[tuple[np.ndarray, np.ndarray, torch.Tensor]]) -> dict[str, torch.Tensor]:
    seed = np.concatenate([r[0] for r in rec]).astype(np.int64)
    step = np.concatenate([r[1] for r in rec]).astype(np.int64)
    z = torch.cat([r[2] for r in rec]).float()
    order = np.lexsort((step, seed))
    return {"seed": torch.from_numpy(seed[order]), "step": torch.from_numpy(step[order]), "z": z[order]}


def _load_chunk(path: Path) -> dict[str, Any]:
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    part: dict[str, Any] = dict(load_file(str(path)))
    part["n_evals"], part["wall"] = int(meta["n_evals"]), float(meta["wall"])
    return part


def _assemble(config: ProbeConfig, parts: list[dict[str, Any]], info: dict[str, Any]) -> ProbeResult:
    end = torch.cat([p["end"] for p in parts])
    status = torch.cat([p["status"] for p in parts]).numpy()
    steps = torch.cat([p["steps"] for p in parts]).numpy()
    # chunks written before the squared step was kept have none: NaN, "not known"
    last_sq = np.concatenate([p["last_sq_step"].numpy() if "last_sq_step" in p else np.full(len(p["status"]), np.nan)
                              for p in parts])
    conv = np.flatnonzero(status == CONVERGED)
    labels, labels_e = np.full(len(status), -1), np.full(len(status), -1)
    reps, lab = deduplicate(end[conv], "cosine", config.cos_threshold) if len(conv) else (np.zeros(0, int), [])
    reps_e, lab_e = deduplicate(end[conv], "euclidean", config.euclid_rtol) if len(conv) else (np.zeros(0, int), [])
    labels[conv], labels_e[conv] = lab, lab_e
    result = ProbeResult(config=config, end_points=end, status=status, steps=steps,
                         attractors=end[conv[reps]], labels=labels, attractors_euclid=end[conv[reps_e]],
                         labels_euclid=labels_e, n_evals=int(sum(p["n_evals"] for p in parts)),
                         wall_time_s=float(sum(p["wall"] for p in parts)), last_sq_step=last_sq, adapter_info=info)
    if config.capture:
        result.captured_by = torch.cat([p["captured_by"] for p in parts]).numpy()
    traj = [p["trajectories"] for p in parts if "trajectories" in p]
    if traj:
        result.trajectories = {k: torch.cat([t[k] for t in traj]) for k in traj[0]}
    return result


def save_result(result: ProbeResult, out: str | Path) -> None:
    """Write ``attractors.safetensors`` and ``summary.json`` into ``out``."""
    out = Path(out)
    atomic.write_tensors(out / "attractors.safetensors", {
        "attractors": result.attractors, "attractors_euclid": result.attractors_euclid,
        "end_points": result.end_points, "status": torch.from_numpy(result.status),
        "steps": torch.from_numpy(result.steps), "labels": torch.from_numpy(result.labels),
        "labels_euclid": torch.from_numpy(result.labels_euclid),
    } | ({"last_sq_step": torch.from_numpy(result.last_sq_step)} if result.last_sq_step is not None else {}),
        metadata={"summary": json.dumps(result.summary())})
    atomic.write_json(out / "summary.json", result.summary())


def load_result(out: str | Path) -> ProbeResult:
    """Read a finished run directory back into a :class:`ProbeResult`."""
    out = Path(out)
    path = out / "attractors.safetensors"
    if not path.exists():
        raise UsageError(f"{out}: no finished probe here (attractors.safetensors missing)")
    t = load_file(str(path))
    s = json.loads((out / "summary.json").read_text())
    return ProbeResult(config=ProbeConfig(**s["config"]), end_points=t["end_points"], status=t["status"].numpy(),
                       steps=t["steps"].numpy(), attractors=t["attractors"], labels=t["labels"].numpy(),
                       attractors_euclid=t["attractors_euclid"], labels_euclid=t["labels_euclid"].numpy(),
                       n_evals=s["n_evals"], wall_time_s=s["wall_time_s"], adapter_info=s["adapter"],
                       last_sq_step=t["last_sq_step"].numpy() if "last_sq_step" in t else None,
                       stability=s.get("stability"))


def load_trajectories(out: str | Path) -> dict[str, torch.Tensor]:
    """All recorded trajectory points of a run directory: ``seed`` (P,), ``step`` (P,), ``z`` (P, *latent)."""
    files = sorted((Path(out) / "trajectories").glob("*.safetensors"))
    parts = [load_file(str(f)) for f in files]
    if not parts:
        raise UsageError(f"{out}: no trajectories recorded (probe with --record-every K)")
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


__all__ = ["ProbeConfig", "ProbeResult", "run_probe", "describe_unconverged", "cache_dir", "save_result", "load_result", "load_trajectories",
           "CONVERGED", "MAX_STEPS", "DIVERGED", "STATUS_NAMES"]
