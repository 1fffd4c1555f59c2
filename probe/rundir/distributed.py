"""The chunks of one probe shared by the processes of a ``torchrun`` / ``accelerate launch`` job.

Rank and world size come from the environment, in one place (:func:`rank`, :func:`world_size`: ``RANK`` and
``WORLD_SIZE``, which ``torchrun`` and ``accelerate launch`` both set; 0 and 1 without a launch);
``accelerate.PartialState`` only provides the barriers. Rank r iterates the chunks with ``index % world_size == r`` and writes
them into the shared run directory; after a barrier, rank 0 reads every chunk back from disk, assembles,
verifies and writes ``attractors.safetensors`` / ``summary.json``. The other ranks assemble the same
chunks from disk too and, after a second barrier, take the stability report from rank 0's
``summary.json``: every rank returns the same :class:`ProbeResult`, so a workflow that probes several
runs (audit, ood) goes on identically on every rank and calls the same sequence of barriers. Files
that a person reads (report, scores, figures) are written by rank 0 only, through ``rundir.output``; the CLI
prints on rank 0 only.

A run without a directory (``out`` None) has no shared place for chunks: under a launch, every rank
runs it whole, alone (no barrier), which is what the audit's short trajectory re-run does.

Resuming needs nothing: chunk files are keyed by the run, so a killed job continues with any number of
processes, each rank skipping the finished chunks of its share. The result is identical to a
single-process run (bit for bit at equal batch size): every chunk is computed the same way wherever it runs.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable

from latentfield.adapters.errors import UsageError

from .result import ProbeResult

log = logging.getLogger("latentfield")


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:  # a malformed value is no launch
        return default


def world_size() -> int:
    """The number of processes of the job (``WORLD_SIZE``; 1 without a launch)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def rank() -> int:
    """This process's rank in the job (``RANK``, 0 to ``world_size() - 1``; 0 without a launch)."""
    return _env_int("RANK", 0) if launched() else 0


def launched() -> bool:
    """True inside a multi-process launch (torchrun and accelerate launch both set ``WORLD_SIZE``)."""
    return world_size() > 1


def is_main_process() -> bool:
    """True outside a launch, and on rank 0 inside one: the process that writes what a person reads
    (``rundir.output`` asks; nothing else should)."""
    return rank() == 0


def state() -> Any:
    """The job's ``accelerate.PartialState`` (created once), always on the gloo backend (``cpu=True``).

    On CPU, ``cpu=True`` is needed: without it, under torchrun, accelerate falls back to one process
    (``DistributedType.NO``, measured here); with it, it starts gloo (``MULTI_CPU``). On GPUs too: the
    probe's only collectives are two barriers, which exchange no tensors, so NCCL would gain nothing,
    and gloo lets several ranks share one GPU (a small model does not fill one).
    """
    try:
        from accelerate import PartialState
    except ImportError:  # pragma: no cover - accelerate is a dependency
        raise UsageError("a multi-process launch needs `accelerate` (pip install accelerate)") from None
    return PartialState(cpu=True)


def device(requested: str | None) -> str | None:
    """The device of this rank: ``cuda`` (no index) -> ``cuda:LOCAL_RANK`` under a launch (modulo the
    number of visible GPUs, so more ranks than GPUs share them); anything else unchanged."""
    if requested == "cuda" and launched():
        import torch
        n = torch.cuda.device_count()
        if n:
            return f"cuda:{state().local_process_index % n}"
    return requested


def run_shared(run: Any, compute: Callable[[Any, Any], Any],
               finish: Callable[[ProbeResult], ProbeResult]) -> ProbeResult:
    """This rank's share of the chunks of ``run`` (a ``ProbeRun``; ``compute`` runs one chunk not on disk),
    then the shared assembly: rank 0 finishes (``finish``: verify + save), the others take its stability."""

    st = state()
    me, world = rank(), world_size()
    if (st.process_index, st.num_processes) != (me, world):  # accelerate must see the launch the environment names
        raise RuntimeError(f"accelerate sees rank {st.process_index} of {st.num_processes}, the environment "
                           f"rank {me} of {world} (RANK / WORLD_SIZE)")
    mine = [c for c in run.chunks() if c.index % world == me]
    todo = [c for c in mine if run.load_chunk(c) is None]
    log.info("rank %d of %d: %d of its %d chunks to iterate", me, world, len(todo), len(mine))
    for chunk in todo:
        compute(run, chunk)
    st.wait_for_everyone()  # every chunk is on disk
    parts = []
    for chunk in run.chunks():
        part = run.load_chunk(chunk)
        if part is None:
            raise RuntimeError(f"chunk {chunk.index} missing after every rank finished its share "
                               f"(is {run.dir.root} on a filesystem every process sees?)")
        parts.append((chunk, part))
    result = run.assemble(parts)
    if me == 0:
        result = finish(result)
    st.wait_for_everyone()  # rank 0's summary.json is written
    if me != 0 and run.config.verified:
        result.stability = json.loads(run.dir.summary.read_text()).get("stability")
    return result


__all__ = ["rank", "world_size", "launched", "is_main_process", "state", "device", "run_shared"]
