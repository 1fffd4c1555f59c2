"""The ``latentfield`` command line. Each subcommand lives in ``probe/commands/<name>.py`` and only
composes the Python API. User mistakes end as one ``latentfield: error: ...`` line (exit code 2), a
model that fails as one ``latentfield: model error: ...`` line (exit code 3); ``--debug`` or
``LATENTFIELD_DEBUG=1`` adds the traceback."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import shlex
import sys
import traceback
from typing import Sequence

from latentfield.adapters.errors import EXIT_MODEL, EXIT_USAGE, USER_ERRORS, ModelError

from .rundir import distributed
from .rundir.environment import package_version

# Modules under probe/commands, in the order `latentfield --help` lists them. Each defines
# ``register(subparsers)`` that adds a parser with ``set_defaults(func=run)``.
COMMANDS = ("audit", "probe", "train_demo", "field", "extract", "ood", "compare", "dynamics", "index",
            "train_decoder")

EPILOG = f"""exit status: 0 done; 2 a usage error (bad option, input file or model spec); {EXIT_MODEL} the model
failed (its encode/decode raised or returned the wrong shape; finished work under --out is kept);
130 interrupted. --debug (anywhere on the line) or LATENTFIELD_DEBUG=1 prints the traceback too."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentfield", description=(
        "Audit autoencoders through the attractors of their latent map f(z) = E(D(z))."), epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version('latentfield')}")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of any error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("LATENTFIELD_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]  # accepted after the subcommand too
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["latentfield", *argv])  # what a record quotes as "made with"
    _log_to_stderr()
    if distributed.rank() != 0:  # under torchrun / accelerate launch, rank 0 prints the result lines
        sys.stdout = open(os.devnull, "w")
    try:
        return int(args.func(args) or 0)
    except Exception as e:
        report = _one_line(e, debug)
        if report is None:  # not the user's nor the model's: a bug in latentfield, with its traceback
            raise
        if debug:
            traceback.print_exception(e)
        line, code = report
        if line:
            print(line, file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("latentfield: interrupted; finished work under --out is kept, rerun the same command to resume",
              file=sys.stderr)
        return 130


def _one_line(e: Exception, debug: bool) -> tuple[str, int] | None:
    """The line to print and the exit code for errors that are the user's or the model's; None otherwise."""
    if isinstance(e, USER_ERRORS):
        return f"latentfield: error: {as_flags(str(e))}", EXIT_USAGE
    if isinstance(e, ModelError):
        note = f"; {e.note}" if e.note else ""
        hint = "" if debug else " (--debug shows the traceback)"
        return f"latentfield: model error: {e}{note}{hint}", EXIT_MODEL
    if isinstance(e, BrokenPipeError):  # output piped into `head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return "", 1
    if isinstance(e, OSError):  # an output path that cannot be written, a disk that is full: the user's to fix
        where = f"{e.filename}: " if e.filename else ""
        return f"latentfield: error: {where}{e.strerror or e}", EXIT_USAGE
    return None


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
# tests/test_error_messages.py checks that every backticked parameter with a flag of the same name is here.
FLAGS = {"out": "--out", "record_every": "--record-every", "checkpoint": "--checkpoint", "device": "--device",
         "dtype": "--dtype", "max_steps": "--max-steps", "tol": "--tol", "image_shape": "--image-shape",
         "fit_set": "--fit-set", "embed": "--embed", "embedder": "--embed", "chunk_size": "--chunk-size",
         "batch_size": "--batch-size", "n_seeds": "--seeds", "seed": "--seed", "local_files_only": "--offline",
         "adapter": "--model SPEC",  # only `latentfield index` names the model by a flag; nothing else raises it
         "allow_pickle": "--model-option allow_pickle"}


def as_flags(message: str) -> str:
    """A library error message as the CLI shows it: `max_steps` -> --max-steps."""
    return re.sub(r"`(\w+)`", lambda m: FLAGS.get(m.group(1), m.group(0)), message)


if __name__ == "__main__":
    sys.exit(main())
