"""One rule for error messages: the library names parameters (in backticks, ``max_steps``), the CLI turns
them into flags (``cli.FLAGS``). Read from the source (``ast``): every ``raise UsageError(...)`` /
``AdapterError(...)`` outside the command layer, and every string of the pure analyses."""
from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

import pytest

from latentfield.probe import cli

ROOT = Path(__file__).resolve().parents[1]
ERRORS = {"UsageError", "AdapterError"}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
COMMAND_LINE = re.compile(r"`[^`]* [^`]*`")  # a whole command to run (`latentfield index RUN --out DIR`) may hold flags


def library_files() -> list[Path]:
    """probe/ and adapters/ without the command layer (probe/commands, probe/cli.py), which speaks in flags."""
    files = sorted(ROOT.glob("probe/**/*.py")) + sorted(ROOT.glob("adapters/**/*.py"))
    return [p for p in files if "commands" not in p.relative_to(ROOT).parts and p.name != "cli.py"]


def text(node: ast.AST) -> str:
    """The message an expression builds, with ``{}`` where a value goes (f-strings, ``+``, implicit joins)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(text(v) if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return text(node.left) + text(node.right)
    return "{}"


def raise_sites() -> list[tuple[str, str]]:
    """(file:line, message) of every UsageError / AdapterError built in the library."""
    sites = []
    for path in library_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and node.args:
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
                if name in ERRORS:
                    sites.append((f"{path.relative_to(ROOT)}:{node.lineno}", text(node.args[0])))
    return sites


def flags_in(message: str) -> list[str]:
    return FLAG.findall(COMMAND_LINE.sub("", message))


def every_cli_flag() -> set[str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {o for p in sub.choices.values() for a in p._actions for o in a.option_strings if o.startswith("--")}


def test_the_raise_sites_are_found():
    sites = raise_sites()
    assert len(sites) > 100  # the walk reaches the library (a broken walk would pass everything below)
    assert any(where.startswith("adapters/") for where, _ in sites)
    assert any("`max_steps`" in msg for _, msg in sites)


def test_library_errors_name_parameters_not_flags():
    bad = [f"{where}: {flags_in(msg)} in {msg!r}" for where, msg in raise_sites() if flags_in(msg)]
    assert not bad, "name the parameter in backticks (`max_steps`) and map it in cli.FLAGS:\n" + "\n".join(bad)


def test_pure_analyses_print_no_flags():
    bad = []
    for path in sorted(ROOT.glob("probe/analyses/*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if flags_in(node.value):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not bad, "\n".join(bad)


def test_the_cli_maps_every_backticked_parameter_that_has_a_flag():
    flags = every_cli_flag()
    named = {m for _, msg in raise_sites() for m in re.findall(r"`(\w+)`", msg)}
    unmapped = sorted(n for n in named if f"--{n.replace('_', '-')}" in flags and n not in cli.FLAGS)
    assert not unmapped, f"add these to cli.FLAGS: {unmapped}"
    stale = sorted(k for k, v in cli.FLAGS.items() if v.split()[0] not in flags)
    assert not stale, f"cli.FLAGS maps to flags no command has: {stale}"


@pytest.mark.parametrize("message,shown", [
    ("no seed converged; raise `max_steps` or `tol`", "no seed converged; raise --max-steps or --tol"),
    ("use `dtype` bfloat16 or a GPU (`device` cuda)", "use --dtype bfloat16 or a GPU (--device cuda)"),
    ("needs `accelerate` (pip install accelerate)", "needs `accelerate` (pip install accelerate)"),  # not a flag
])
def test_as_flags(message, shown):
    assert cli.as_flags(message) == shown
