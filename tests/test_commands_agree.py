"""Every command that loads a model takes the same model flags, with the same meaning; ``ood`` iterates with
the same solver flags as ``probe``. Read from the parsers ``cli.build_parser`` builds (in process)."""
from __future__ import annotations

import argparse
import importlib
import inspect

import pytest
import torch

from latentfield.probe import cli
from latentfield.probe.commands import common

SOLVER_FLAGS = ("--tol", "--max-steps", "--batch-size", "--solver", "--solver-option", "--capture")


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {o: a for a in p._actions for o in a.option_strings}


def model_loading() -> dict[str, argparse.ArgumentParser]:
    """The subcommands whose module loads a model through ``common.model_from_args``."""
    out = {}
    for name, p in subparsers().items():
        module = importlib.import_module(f"latentfield.probe.commands.{name.replace('-', '_')}")
        if "model_from_args(" in inspect.getsource(module):
            out[name] = p
    return out


def signature(a: argparse.Action) -> tuple:
    """What a flag means: its kind, type, default, choices and arity (not its help text)."""
    return type(a).__name__, a.dest, a.type, a.default, a.choices, a.nargs, a.const


def test_the_model_loading_commands_are_found():
    # every subcommand that loads a user's model; a new one is found by its call to model_from_args
    assert set(model_loading()) >= {"audit", "probe", "field", "extract", "ood", "compare", "dynamics", "index"}


@pytest.mark.parametrize("name", sorted(model_loading()))
def test_every_model_loading_command_takes_the_model_flags(name):
    reference = argparse.ArgumentParser()
    common.add_model_args(reference, None)
    want = options(reference)
    have = options(model_loading()[name])
    missing = [f for f in common.MODEL_FLAGS if f not in have]
    assert not missing, f"{name} lacks {missing}: use commands.common.add_model_args"
    for flag in common.MODEL_FLAGS:
        assert signature(have[flag]) == signature(want[flag]), f"{name} {flag} differs from add_model_args'"
    assert set(want) - {"-h", "--help"} == set(common.MODEL_FLAGS)  # MODEL_FLAGS names every flag it adds


@pytest.mark.parametrize("argv,specs", [
    (["compare", "demo", "demo:memorize"], ["demo", "demo:memorize"]),
    (["dynamics", "demo", "demo:memorize", "--reference", "digits"], ["demo", "demo:memorize"]),
    (["probe", "demo", "--out", "o"], [None]),
])
def test_model_flags_apply_to_every_model_of_a_command(argv, specs):
    args = cli.build_parser().parse_args([*argv, "--dtype", "bfloat16", "--offline", "--device", "cpu"])
    for spec in specs:
        adapter = common.model_from_args(args, spec=spec, per_model=True)
        assert adapter.dtype == torch.bfloat16, spec


def test_ood_takes_the_solver_flags_of_probe():
    parsers = subparsers()
    probe, ood = options(parsers["probe"]), options(parsers["ood"])
    for flag in SOLVER_FLAGS:
        assert flag in ood, flag
        assert signature(ood[flag]) == signature(probe[flag]), flag
    args = cli.build_parser().parse_args(["ood", "demo", "--in-dist", "digits", "--test", "faces", "--solver",
                                          "anderson", "--solver-option", "m=3", "--capture", "0.05", "--tol", "1e-5"])
    cfg = common.iteration_config(args)
    assert (cfg.solver, cfg.solver_options, cfg.capture, cfg.tol) == ("anderson", {"m": 3}, 0.05, 1e-5)
