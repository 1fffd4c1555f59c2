"""The run directory: probe settings, resume keys, chunk storage and assembly of a result.

``run_probe`` is the one call most code needs; :class:`ProbeRun` exposes its plan / run-one-chunk /
assemble steps for running the chunks of one probe in several processes.
"""
from .config import ProbeConfig
from .result import ProbeResult, adapter_info
from . import distributed
from .runner import Chunk, ProbeRun, cache_dir, run_probe
from .store import load_result, load_trajectories, save_result

__all__ = ["ProbeConfig", "ProbeResult", "ProbeRun", "Chunk", "run_probe", "cache_dir", "load_result",
           "load_trajectories", "save_result", "adapter_info"]
