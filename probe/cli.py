"""The ``latentfield`` command line. Each subcommand lives in ``probe/commands/<name>.py`` and only
composes the Python API; user mistakes end as one ``latentfield: error: ...`` line, exit code 2."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from typing import Sequence

from latentfield.adapters.errors import USER_ERRORS

from .rundir.distributed import is_main_process
from .rundir.environment import package_version

# Modules under probe/commands, in the order `latentfield --help` lists them. Each defines
# ``register(subparsers)`` that adds a parser with ``set_defaults(func=run)``.
COMMANDS = ("audit", "probe", "train_demo", "field", "extract", "ood", "compare", "dynamics", "index",
            "train_decoder")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentfield", description=(
        "Audit autoencoders through the attractors of their latent map f(z) = E(D(z))."))
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version('latentfield')}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _log_to_stderr()
    if not is_main_process():  # under torchrun / accelerate launch, rank 0 prints the result lines
        sys.stdout = open(os.devnull, "w")
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        print(f"latentfield: error: {as_flags(str(e))}", file=sys.stderr)
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


def _log_to_stderr() -> None:
    """The library's notices (a chunk recomputed, a run file rebuilt) as ``latentfield: ...`` lines."""
    log = logging.getLogger("latentfield")
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("latentfield: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests and wrappers replace it)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass


# Library errors name parameters in backticks (`max_steps`); on the command line they are flags.
FLAGS = {"out": "--out", "record_every": "--record-every", "checkpoint": "--checkpoint", "device": "--device",
         "max_steps": "--max-steps", "tol": "--tol", "image_shape": "--image-shape", "fit_set": "--fit-set",
         "embed": "--embed", "chunk_size": "--chunk-size", "batch_size": "--batch-size"}


def as_flags(message: str) -> str:
    """A library error message as the CLI shows it: `max_steps` -> --max-steps."""
    return re.sub(r"`(\w+)`", lambda m: FLAGS.get(m.group(1), m.group(0)), message)


if __name__ == "__main__":
    sys.exit(main())
