"""``run_probe``: seeds -> attractors for one adapter, with a resumable run directory.

The work is planned as fixed chunks of seeds (:meth:`ProbeRun.chunks`, lazily); each chunk is iterated
on its own (:meth:`ProbeRun.run_chunk`) and written atomically as soon as it finishes, so a run stopped
by Ctrl-C or a kill continues from its finished chunks and ends with exactly the result of an
uninterrupted run (bit for bit at equal batch size: a chunk is computed the same way either way).
:meth:`ProbeRun.assemble` turns the chunks into a :class:`ProbeResult`, :meth:`ProbeRun.finish`
verifies and saves it. These three steps are the seam for running the chunks of one probe in several
processes: each process runs a share of :meth:`chunks`, one assembles.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from latentfield.adapters import Adapter, load_adapter
from latentfield.adapters.errors import ModelError, UsageError
from latentfield.adapters.precision import dtype_name

from ..data import images_sha256
from ..engine.attractors import deduplicate
from ..engine.iterate import iterate
from ..engine.latents import encode_unit
from ..engine.seeds import make_seeds
from ..engine.solvers import make_solver
from ..engine.types import CONVERGED
from . import distributed, store
from .config import ProbeConfig
from .environment import environment
from .layout import RunDir, key_hash, keyed_run_dir
from .result import ProbeResult, adapter_info
from .store import ChunkPart

log = logging.getLogger("latentfield")


@dataclass(frozen=True)
class Chunk:
    """Chunk ``index`` of a run: seeds ``start`` .. ``stop`` - 1."""

    index: int
    start: int
    stop: int

    @property
    def seeds(self) -> range:
        return range(self.start, self.stop)


class ProbeRun:
    """One probe of one adapter: validated settings, the run key and (with ``out``) its directory.

    ``data`` (N, C, H, W) in [0, 1] is required for ``init='data'`` (then n_seeds = N).
    """

    def __init__(self, adapter: Adapter, config: ProbeConfig | None = None, out: str | Path | None = None,
                 data: torch.Tensor | None = None) -> None:
        config = config or ProbeConfig()
        if config.init == "data":
            if data is None:
                raise UsageError("init 'data' needs images to encode")
            config = replace(config, n_seeds=len(data))
        config.validate(adapter.latent_shape)
        if adapter.latent_shape is None:
            raise UsageError(f"{adapter.name}: image shape unknown; pass `image_shape` (C, H, W) or data")
        self.adapter, self.config, self.data = adapter, config, data
        self.info = adapter_info(adapter)
        self.key = store.resume_key(config, adapter.fingerprint, images_sha256(data) if config.init == "data" else None,
                                    self.info["dtype"])
        self.run_key = key_hash(self.key)
        self.dir = RunDir(out) if out is not None else None
        if self.dir is not None:
            store.prepare(self.dir, self.key)
            store.record_environment(self.dir, environment(self.info["device"], self.info["dtype"],
                                                           distributed.world_size()))

    def chunks(self) -> Iterator[Chunk]:
        """The plan, lazily: fixed chunks of ``config.chunk_seeds()`` seeds."""
        size, n = self.config.chunk_seeds(), self.config.n_seeds
        for i, start in enumerate(range(0, n, size)):
            yield Chunk(i, start, min(start + size, n))

    def load_chunk(self, chunk: Chunk) -> ChunkPart | None:
        """A finished chunk of this run from its directory, or None (not there, or not this run's)."""
        if self.dir is None:
            return None
        part = store.read_chunk(self.dir, chunk.index, chunk.seeds, self.run_key, tuple(self.adapter.latent_shape))
        if part is not None and self.config.record_every:
            part.trajectories = store.read_trajectories(self.dir, chunk.index, self.run_key)
            if part.trajectories is None:
                return None  # the points were asked for: recompute them with the chunk
        return part

    def run_chunk(self, chunk: Chunk, progress: Callable[[int], None] | None = None,
                  on_step: Callable[[int, float, int], None] | None = None) -> ChunkPart:
        """Iterate the chunk's seeds and (with a directory) write the chunk; returns it."""
        cfg, adapter = self.config, self.adapter
        t0 = time.perf_counter()
        # float32 (or wider) state whatever the model's dtype: f casts its input to a bf16/fp16 model
        z0 = self.initial_points(np.arange(chunk.start, chunk.stop)).to(adapter.device,
                                                                         torch.promote_types(adapter.dtype, torch.float32))
        rec: list[tuple[np.ndarray, np.ndarray, torch.Tensor]] = []
        recorder = (lambda i, s, z: rec.append((i + chunk.start, s, z.detach().cpu()))) if cfg.record_every else None
        res = iterate(adapter.f, z0, tol=cfg.tol, max_steps=cfg.max_steps, batch_size=cfg.batch_size,
                      max_norm=cfg.max_norm, solver=make_solver(cfg.solver, cfg.solver_options),
                      record_every=cfg.record_every, recorder=recorder, progress=progress, capture=cfg.capture,
                      on_step=on_step)
        captured = None if res.captured_by is None else torch.from_numpy(  # seed indices within the chunk -> run-wide
            np.where(res.captured_by >= 0, res.captured_by + chunk.start, -1))
        part = ChunkPart(end=res.end.float().cpu(), status=torch.from_numpy(res.status),
                         steps=torch.from_numpy(res.steps), last_sq_step=torch.from_numpy(res.last_sq_step),
                         n_evals=res.n_evals, wall=time.perf_counter() - t0, captured_by=captured,
                         trajectories=_stack_records(rec) if rec else None)
        if self.dir is not None:
            store.write_chunk(self.dir, chunk.index, chunk.seeds, part, self.run_key)
        return part

    def initial_points(self, seeds: np.ndarray) -> torch.Tensor:
        """The start points (len(seeds), *latent) of the given seed indices, on CPU in float32."""
        cfg, adapter = self.config, self.adapter
        if cfg.init == "data":
            return encode_unit(adapter, self.data[torch.from_numpy(np.asarray(seeds, dtype=np.int64))], cfg.batch_size)
        return make_seeds(cfg.init, [int(s) for s in seeds], adapter.latent_shape, cfg.seed, cfg.sigma, cfg.low,
                          cfg.high)

    def assemble(self, parts: list[tuple[Chunk, ChunkPart]]) -> ProbeResult:
        """Chunks (every seed exactly once, in order) -> a :class:`ProbeResult` with de-duplicated attractors."""
        cfg = self.config
        store.check_complete(cfg.n_seeds, [(c.seeds, p) for c, p in parts])
        ps = [p for _, p in parts]
        end = torch.cat([p.end for p in ps])
        status = torch.cat([p.status for p in ps]).numpy()
        steps = torch.cat([p.steps for p in ps]).numpy()
        last_sq = torch.cat([p.last_sq_step for p in ps]).numpy()
        conv = np.flatnonzero(status == CONVERGED)
        labels, labels_e = np.full(len(status), -1), np.full(len(status), -1)
        reps, lab = deduplicate(end[conv], "cosine", cfg.cos_threshold) if len(conv) else (np.zeros(0, int), [])
        reps_e, lab_e = deduplicate(end[conv], "euclidean", cfg.euclid_rtol) if len(conv) else (np.zeros(0, int), [])
        labels[conv], labels_e[conv] = lab, lab_e
        result = ProbeResult(config=cfg, end_points=end, status=status, steps=steps,
                             attractors=end[conv[reps]], labels=labels, attractors_euclid=end[conv[reps_e]],
                             labels_euclid=labels_e, n_evals=int(sum(p.n_evals for p in ps)),
                             wall_time_s=float(sum(p.wall for p in ps)), last_sq_step=last_sq,
                             adapter_info=self.info, run_key=self.run_key if self.dir is not None else None,
                             world_size=distributed.world_size())
        if cfg.capture:
            result.captured_by = torch.cat([p.captured_by for p in ps]).numpy()
        traj = [p.trajectories for p in ps if p.trajectories is not None]
        if traj:
            result.trajectories = {k: torch.cat([t[k] for t in traj]) for k in traj[0]}
        return result

    def finish(self, result: ProbeResult, progress: bool = False) -> ProbeResult:
        """Verify the attractors where the settings ask for it, and save the result to the directory."""
        if self.config.verified:  # acceleration and capture can land on points that are not attractors
            result.stability = self._verify(result, progress)
        if self.dir is not None:
            store.save_result(result, self.dir.root)
        return result

    def _verify(self, result: ProbeResult, progress: bool) -> dict[str, Any]:
        """Stability of each cosine attractor, with predicted vs measured steps of the seeds it attracted,
        and of each distinct Euclidean end point (``per_euclid``): a saddle that cosine de-duplication
        merged into an attractor's cluster is only seen there. A Euclidean point identical to a cosine
        representative reuses its analysis; ``verify_cost`` says what the rest cost."""
        from ..engine.stability import euclid_report, stability_report, verify_fixed_points

        t0 = time.perf_counter()
        stab = verify_fixed_points(self.adapter, result.attractors, progress=progress)
        t_cos = time.perf_counter() - t0
        e0, measured = [], []
        for k, point in enumerate(result.attractors):
            seeds = np.flatnonzero(result.labels == k)
            measured.append(float(np.median(result.steps[seeds])) if len(seeds) else None)
            z0 = self.initial_points(seeds[:64])  # a sample is enough for a median
            e0.append(float((z0.flatten(1).float() - point.flatten()).norm(dim=1).median()) if len(seeds) else None)
        report = stability_report(stab, self.config.tol, e0, measured)

        t0 = time.perf_counter()
        reps = {tuple(a.flatten().tolist()): k for k, a in enumerate(result.attractors)}
        cosine_of, n_seeds, stab_e, new, products = [], [], [], 0, 0
        for j, point in enumerate(result.attractors_euclid):
            members = result.labels[result.labels_euclid == j]
            cosine_of.append(int(np.bincount(members[members >= 0]).argmax()) if (members >= 0).any() else -1)
            n_seeds.append(len(members))
            same = reps.get(tuple(point.flatten().tolist()))
            if same is not None:
                stab_e.append(stab[same])
            else:
                stab_e.append(verify_fixed_points(self.adapter, point[None])[0])
                new, products = new + 1, products + stab_e[-1].n_products
        report |= euclid_report(stab_e, cosine_of, n_seeds, [s.kind for s in stab])
        report["verify_cost"] = {
            "cosine_points": len(stab), "euclid_points": len(stab_e), "euclid_points_analysed": new,
            "jacobian_products_cosine": int(sum(s.n_products for s in stab)),
            "jacobian_products_euclid_extra": products,
            "wall_s_cosine": round(t_cos, 3), "wall_s_euclid_extra": round(time.perf_counter() - t0, 3)}
        return report


def run_probe(adapter: Adapter | Any, config: ProbeConfig | None = None, out: str | Path | None = None,
              data: torch.Tensor | None = None, progress: bool = True) -> ProbeResult:
    """Probe ``adapter``'s latent map from ``config.n_seeds`` seeds to attractors. ``adapter``: an Adapter,
    or anything ``load_adapter`` takes (a spec string, a diffusers / transformers model object, a pair).

    ``data`` (N, C, H, W) in [0, 1] is required for ``init='data'`` (then n_seeds = N). With ``out``,
    chunks, trajectories (``record_every`` > 0) and the final files go to that directory, and a
    rerun of the same command resumes. Without ``out``, everything stays in memory.

    Under ``torchrun`` / ``accelerate launch`` (and with ``out``), the processes share the chunks and every
    rank returns the same result; see :mod:`latentfield.probe.rundir.distributed`.
    """
    run = ProbeRun(load_adapter(adapter), config, out, data)
    if run.dir is not None and distributed.launched():
        with _Progress(run, progress and distributed.is_main_process()) as bar:
            def compute(r: ProbeRun, chunk: Chunk) -> ChunkPart:
                bar.chunk_evals = 0
                return r.run_chunk(chunk, progress=bar.seeds_done, on_step=bar.step)
            return distributed.run_shared(run, compute, lambda result: run.finish(result, progress))
    parts: list[tuple[Chunk, ChunkPart]] = []
    with _Progress(run, progress) as bar:
        for chunk in run.chunks():
            part = run.load_chunk(chunk)
            if part is None:
                bar.chunk_evals = 0
                try:
                    part = run.run_chunk(chunk, progress=bar.seeds_done, on_step=bar.step)
                except ModelError as e:  # the model's failure: say what is kept
                    safe = sum(len(c.seeds) for c, _ in parts)
                    e.add_note_text(f"{safe} of {run.config.n_seeds} seeds are safe on disk in {run.dir.root}; rerun to "
                                    "resume" if run.dir is not None else "nothing was kept (no output folder)")
                    raise
            else:
                bar.seeds_done(len(chunk.seeds))
            parts.append((chunk, part))
    return run.finish(run.assemble(parts), progress)


def cache_dir(root: str | Path, adapter: Adapter, config: ProbeConfig, data: torch.Tensor | None = None) -> Path:
    """A run directory under ``root`` named by everything that decides the probe's result, for workflows
    that probe several models or sets: a rerun finds and resumes its own runs, other inputs get new ones."""
    if config.init == "data" and data is not None:
        config = replace(config, n_seeds=len(data))  # as run_probe will set it
    sha = images_sha256(data) if config.init == "data" and data is not None else None
    return keyed_run_dir(root, adapter.name, store.resume_key(config, adapter.fingerprint, sha, dtype_name(adapter.dtype)))


class _Progress:
    """The probe's progress bar: evaluations of f (they move on every step, also while long seeds have not
    finished), with the finished-seed count, active seeds and their median step as the postfix."""

    def __init__(self, run: ProbeRun, enabled: bool) -> None:
        self.n_seeds, self.max_steps = run.config.n_seeds, run.config.max_steps
        self.done, self.last = 0, 0.0
        self.chunk_evals = 0  # evaluations of the chunk being iterated (reset by run_probe per chunk)
        self.bar = tqdm(desc=f"probe {run.adapter.name}", unit=" f", unit_scale=True, disable=not enabled,
                        leave=False)

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.close()

    def seeds_done(self, n: int) -> None:
        self.done += n
        self._postfix(None, None)

    def step(self, active: int, median_step: float, chunk_evals: int) -> None:
        self.bar.update(chunk_evals - self.chunk_evals)
        self.chunk_evals = chunk_evals
        now = time.monotonic()
        if now - self.last > 0.5:
            self.last = now
            self._postfix(active, median_step)

    def _postfix(self, active: int | None, median_step: float | None) -> None:
        post = f"seeds {self.done}/{self.n_seeds} done"
        if active:
            post += f", {active} active at step {median_step:.0f}/{self.max_steps} (median)"
        self.bar.set_postfix_str(post, refresh=True)


def _stack_records(rec: list[tuple[np.ndarray, np.ndarray, torch.Tensor]]) -> dict[str, torch.Tensor]:
    seed = np.concatenate([r[0] for r in rec]).astype(np.int64)
    step = np.concatenate([r[1] for r in rec]).astype(np.int64)
    z = torch.cat([r[2] for r in rec]).float()
    order = np.lexsort((step, seed))
    return {"seed": torch.from_numpy(seed[order]), "step": torch.from_numpy(step[order]), "z": z[order]}


__all__ = ["ProbeRun", "Chunk", "ChunkPart", "run_probe", "cache_dir"]
