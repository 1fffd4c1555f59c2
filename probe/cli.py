"""The ``latentfield`` command line. Each subcommand lives in ``probe/commands/<name>.py`` and only
composes the Python API; user mistakes end as one ``latentfield: error: ...`` line, exit code 2."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

from latentfield.adapters.errors import USER_ERRORS

# Modules under probe/commands, in the order `latentfield --help` lists them. Each defines
# ``register(subparsers)`` that adds a parser with ``set_defaults(func=run)``.
COMMANDS = ("audit", "probe", "train_demo", "field", "extract", "ood", "compare", "dynamics", "index",
            "train_decoder")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentfield", description=(
        "Audit autoencoders through the attractors of their latent map f(z) = E(D(z))."))
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        print(f"latentfield: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latentfield: interrupted; finished work under --out is kept, rerun the same command to resume",
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:  # an output path that cannot be written, a disk that is full: the user's to fix
        where = f"{e.filename}: " if e.filename else ""
        print(f"latentfield: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("latentfield")
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
