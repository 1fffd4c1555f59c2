"""The engine: fixed-point iteration of a latent map, its solvers, seeds, attractor sets and stability.

It sees only a map ``f`` (or an adapter's ``encode``/``decode``/``f``), never a model family or a file.
"""
from .iterate import IterationResult, iterate
from .solvers import SOLVERS, make_solver
from .types import CONVERGED, DIVERGED, MAX_STEPS, STATUS_NAMES

__all__ = ["iterate", "IterationResult", "SOLVERS", "make_solver", "CONVERGED", "MAX_STEPS", "DIVERGED",
           "STATUS_NAMES"]
