"""Solver settings: ProbeConfig.solver_options and --solver-option, kept in summary.json and the resume key."""
from __future__ import annotations

import json

import pytest
import torch

from latentfield.adapters import TorchAutoencoder
from latentfield.probe.cli import main
from latentfield.probe.engine import make_solver
from latentfield.adapters.errors import UsageError
from latentfield.probe.rundir import ProbeConfig, run_probe
from latentfield.probe.engine.solvers import AndersonSolver


def slow_linear(d: int = 12, rho: float = 0.95) -> TorchAutoencoder:
    """f(z) = diag(linspace(0, rho)) (z - 1) + 1: one attractor at z = 1, plain iteration crawls at rate rho."""
    scale = torch.linspace(0, rho, d)
    return TorchAutoencoder(lambda x: x.flatten(1), lambda z: (scale * (z - 1) + 1).view(-1, 1, 1, d),
                            image_shape=(1, 1, d), name="slow-linear")


def test_options_reach_the_solver_and_the_summary(tmp_path):
    adapter = slow_linear()
    base = dict(n_seeds=6, tol=1e-10, max_steps=2000)
    plain = run_probe(adapter, ProbeConfig(**base), progress=False)
    fast = run_probe(adapter, ProbeConfig(**base, solver="anderson", solver_options={"m": 3, "warmup": 5}),
                     progress=False)
    # A warm-up longer than any run leaves only plain steps: exactly the plain iteration's evaluations.
    never = run_probe(adapter, ProbeConfig(**base, solver="anderson", solver_options={"warmup": 5000}),
                      out=tmp_path / "run", progress=False)
    assert plain.counts["converged"] == fast.counts["converged"] == never.counts["converged"] == 6
    assert never.n_evals == plain.n_evals
    assert fast.n_evals * 3 < plain.n_evals
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["solver_options"] == {"warmup": 5000}
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["solver_options"] == {"warmup": 5000}
    # Other solver settings make another run: resuming into the same directory is refused.
    with pytest.raises(UsageError, match="other settings"):
        run_probe(adapter, ProbeConfig(**base, solver="anderson", solver_options={"warmup": 10}),
                  out=tmp_path / "run", progress=False)


@pytest.mark.parametrize("solver, options, message", [
    ("anderson", {"mm": 3}, "unknown option 'mm' for solver 'anderson': choose from m, beta"),
    ("anderson", {"m": 0}, "m must be an integer >= 1, got 0"),
    ("anderson", {"m": 2.5}, "m must be an integer >= 1, got 2.5"),
    ("anderson", {"beta": "high"}, "beta must be a number in \\(0, 1\\], got 'high'"),
    ("anderson", {"beta": 1.5}, "beta must be a number in \\(0, 1\\]"),
    ("anderson", {"warmup": True}, "warmup must be an integer"),
    ("plain", {"m": 3}, "solver 'plain': it takes no options"),
])
def test_bad_options_are_one_line_usage_errors(solver, options, message):
    with pytest.raises(UsageError, match=message):
        ProbeConfig(solver=solver, solver_options=options).validate()


def test_make_solver_builds_the_configured_solver():
    s = make_solver("anderson", {"m": 7, "beta": 0.5, "backoff": 2})
    assert isinstance(s, AndersonSolver) and (s.m, s.beta, s.backoff, s.warmup) == (7, 0.5, 2, 30)
    assert make_solver("plain").name == "plain"


def test_cli_solver_option(tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "p"
    args = ["probe", "demo:memorize", "--seeds", "4", "--max-steps", "60", "--tol", "1e-5", "--quiet",
            "--solver", "anderson", "--solver-option", "m=3", "--solver-option", "beta=0.8", "--out", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["solver_options"] == {"m": 3, "beta": 0.8}
    assert "stability" in summary  # accelerated end points are verified
    capsys.readouterr()
    assert main([*args[:-2], "--solver-option", "memory=3", "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("latentfield: error: solver option: unknown option 'memory'") and "\n" not in err
