"""What tests build, in one place: small real models (importable as ``py:builders:NAME``, tests/ is on the
path of the test process and of every ``run_cli(..., subprocess=True)``), CLI runs with their exit code and
output, the one-line error check, and repository scripts loaded as modules."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess as sp
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Iterator, Sequence

import torch

from latentfield.adapters.demo import DemoAdapter, DemoAutoencoder

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


# -- small real models ---------------------------------------------------------------------------------

def random_conv_ae(bottleneck: int = 6, seed: int = 0) -> DemoAdapter:
    """A randomly initialised demo-architecture conv AE, with weights scaled so f contracts."""
    torch.manual_seed(seed)
    model = DemoAutoencoder(bottleneck=bottleneck, width=8)
    with torch.no_grad():
        model.encoder[-1].weight.mul_(0.5)
    return DemoAdapter(model.eval(), name="random-conv-ae")


def conv_pair():
    """A bare (encoder, decoder) pair of nn.Modules with no image shape of its own."""
    torch.manual_seed(1)
    enc = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 4, 4), torch.nn.Tanh())
    dec = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 3, 4, 4), torch.nn.Sigmoid())
    return enc, dec


# One 8-channel stage, 2 latent channels, 8 x 8 images: the smallest AutoencoderKL diffusers builds.
TINY_KL = dict(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
               norm_num_groups=4, latent_channels=2, layers_per_block=1, sample_size=8)


def tiny_autoencoder_kl(seed: int = 0, **overrides):
    """A real diffusers ``AutoencoderKL`` with random weights (``TINY_KL``, any key overridden), in eval mode."""
    from diffusers import AutoencoderKL
    torch.manual_seed(seed)
    return AutoencoderKL(**{**TINY_KL, **overrides}).eval()


def save_tiny_autoencoder_kl(path: Path, seed: int = 0, **overrides) -> Path:
    """``tiny_autoencoder_kl(seed, **overrides)`` written with ``save_pretrained`` into ``path``; returns ``path``."""
    tiny_autoencoder_kl(seed, **overrides).save_pretrained(path)
    return Path(path)


# -- the command line ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CliResult:
    """What one ``latentfield`` command left: its exit status and everything it printed."""
    returncode: int
    stdout: str
    stderr: str

    @classmethod
    def captured(cls, capsys, returncode: int) -> CliResult:
        """What a ``cli.main`` call a test made itself printed under pytest's ``capsys``, with its exit status."""
        out = capsys.readouterr()
        return cls(returncode, out.out, out.err)


def cli_env(pythonpath: Sequence[Path | str] = (), **env: str) -> dict[str, str]:
    """The environment of a ``latentfield`` child process: offline, one thread, tests/ importable."""
    base = {k: v for k, v in os.environ.items() if k not in ("LATENTFIELD_DEBUG", "WORLD_SIZE", "RANK", "LOCAL_RANK")}
    path = os.pathsep.join(str(p) for p in (*pythonpath, TESTS))
    return {**base, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **env}


def cli_command(*args: str | Path) -> list[str]:
    """``python -m latentfield.probe.cli ARGS`` for ``subprocess.Popen`` (tests that kill a running command)."""
    return [sys.executable, "-m", "latentfield.probe.cli", *map(str, args)]


def run_cli(*args: str | Path, subprocess: bool = False, pythonpath: Sequence[Path | str] = (),
            env: dict[str, str] | None = None, timeout: float = 300) -> CliResult:
    """Run ``latentfield ARGS``. In this process by default, through ``cli.main`` with stdout and stderr
    captured (argparse's exit is its status; an exception that is neither the user's nor the model's fails
    the test with its traceback). ``subprocess=True`` runs a fresh interpreter instead, for what only a new
    process shows (the installed entry module, signals, a module changed on disk, the environment at
    import). ``pythonpath`` folders come first on the import path; ``env`` adds variables; ``timeout`` (s)
    bounds a subprocess."""
    argv = [str(a) for a in args]
    if subprocess:
        res = sp.run(cli_command(*argv), capture_output=True, text=True, timeout=timeout,
                     env=cli_env(pythonpath, **(env or {})))
        return CliResult(res.returncode, res.stdout, res.stderr)
    from latentfield.probe.cli import main
    out, err = io.StringIO(), io.StringIO()
    with _environment(env or {}), _import_path(pythonpath), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: --help, or a malformed command line
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _import_path(folders: Sequence[Path | str]) -> Iterator[None]:
    added = [str(p) for p in folders]
    sys.path[:0] = added
    importlib.invalidate_caches()
    try:
        yield
    finally:
        for p in added:
            sys.path.remove(p)


def assert_one_line_error(res: CliResult | sp.CompletedProcess, *needles: str, code: int = 2,
                          prefix: str = "latentfield: error: ") -> str:
    """The run exited with ``code`` and printed exactly one non-empty line on stderr, no traceback, starting
    with ``prefix`` and containing every needle; returns that line. ``prefix="latentfield: "`` with
    ``code=0`` checks a one-line notice of a run that went on."""
    assert res.returncode == code, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(prefix), res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# -- repository scripts --------------------------------------------------------------------------------

def load_script(folder: str, name: str, module_name: str | None = None) -> ModuleType:
    """``ROOT/folder/name.py`` as a fresh module; the folder goes on ``sys.path`` for its sibling imports."""
    if str(ROOT / folder) not in sys.path:
        sys.path.insert(0, str(ROOT / folder))
    spec = importlib.util.spec_from_file_location(module_name or name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
