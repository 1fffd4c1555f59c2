"""Arguments shared by several subcommands, and their parsing into API objects."""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any, Sequence

from latentfield.adapters import Adapter, load_adapter
from latentfield.adapters.options import parse_option

from latentfield.adapters.errors import UsageError
from ..rundir import ProbeConfig, distributed

DEFAULTS = ProbeConfig()  # every CLI default of a probe setting is read from here


def num(v: float) -> str:
    """A default as help texts show it: 1e-6, not 1e-06."""
    return f"{v:g}".replace("e-0", "e-").replace("e+0", "e+")


MODEL_FLAGS = ("--image-shape", "--checkpoint", "--device", "--dtype", "--model-option", "--offline")


def add_model_args(p: argparse.ArgumentParser, name: str | None = "model", nargs: str | None = None,
                   spec_help: str | None = None) -> None:
    """The model flags of every command that loads a model (``MODEL_FLAGS``; :func:`model_from_args` reads
    them). ``name``: the positional spec argument (``nargs="+"``: several models, the flags apply to each;
    None: the command names its model otherwise, e.g. ``index --model``)."""
    several = nargs in ("+", "*")
    each = " for every model without its own (a SPEC[...] setting wins)" if several else ""
    if name is not None:
        p.add_argument(name, nargs=nargs, help=spec_help or
                       "model spec: demo, demo:memorize, a checkpoint path, an HF id, py:module:attr, ...")
    p.add_argument("--image-shape", type=image_shape, default=None, metavar="C,H,W",
                   help="input size, for models that accept several or a bare encoder/decoder pair" + each)
    p.add_argument("--checkpoint", default=None, help="weights file for specs that need one (e.g. timm:NAME)" + each)
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                   help="dtype the model runs in (default float32; float16 needs a GPU); the probe's stopping "
                   "rule and stored end points stay float32 (also --model-option torch_dtype=...)")
    p.add_argument("--model-option", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                   help="option for the model family's loader, e.g. scale_latents=true, or for a Hugging Face id: "
                   "revision=TAG, subfolder=vae, allow_pickle=true (repeatable; see docs/adapters.md)" + each)
    p.add_argument("--offline", action="store_true",
                   help="never download: resolve Hugging Face ids from the local cache only (as HF_HUB_OFFLINE=1)")


def add_probe_args(p: argparse.ArgumentParser, seeds: int = DEFAULTS.n_seeds) -> None:
    g = p.add_argument_group("probe")
    g.add_argument("--seeds", type=int, default=seeds, help=f"number of seeds (default {seeds})")
    g.add_argument("--init", default=DEFAULTS.init, help=f"gaussian | uniform | orthogonal | data (default {DEFAULTS.init})")
    g.add_argument("--seed", type=int, default=DEFAULTS.seed, help=f"random seed (default {DEFAULTS.seed})")
    g.add_argument("--sigma", type=float, default=DEFAULTS.sigma, help=f"std of Gaussian seeds (default {num(DEFAULTS.sigma)})")
    add_stopping_args(g, "seed", "seeds")
    add_solver_args(g, "seed")
    g.add_argument("--verify", action="store_true",
                   help="classify each attractor by the spectral radius of the Jacobian (attractor/saddle/marginal)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def add_stopping_args(g: argparse._ActionsContainer, what: str, whats: str) -> None:
    """--tol, --max-steps and --batch-size, with ``ProbeConfig``'s defaults; ``what``/``whats``: what is iterated."""
    g.add_argument("--tol", type=float, default=DEFAULTS.tol,
                   help=f"stop when the squared step < tol (default {num(DEFAULTS.tol)})")
    g.add_argument("--max-steps", type=int, default=DEFAULTS.max_steps,
                   help=f"step limit per {what} (default {DEFAULTS.max_steps})")
    g.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size,
                   help=f"{whats} evaluated together (default {DEFAULTS.batch_size})")


def add_solver_args(g: argparse._ActionsContainer, what: str) -> None:
    """--solver, --solver-option and --capture, with ``ProbeConfig``'s defaults; ``what``: what is iterated."""
    g.add_argument("--solver", default=DEFAULTS.solver, help="fixed-point solver: plain (default, the paper's "
                   "iteration), relax (stretched steps along a steady drift) or anderson (mixing); the accelerated "
                   "solvers' end points are always verified")
    g.add_argument("--solver-option", action="append", default=[], type=key_value, metavar="KEY=VALUE",
                   help="solver setting, e.g. m=5, warmup=30 for anderson, h_max=4, align=0.9 for relax "
                   "(repeatable; see docs/latent-dynamics.md)")
    g.add_argument("--capture", type=float, default=DEFAULTS.capture, metavar="R",
                   help=f"stop a {what} that comes within R x |p| of a point p an earlier {what} visited, and let it "
                   "end as that one ends (e.g. 0.05; default 0 = off, the paper's iteration); end points are verified")


def iteration_config(args: argparse.Namespace, **overrides) -> ProbeConfig:
    """The stopping rule and solver of parsed arguments (:func:`add_stopping_args`, :func:`add_solver_args`)."""
    return ProbeConfig(tol=args.tol, max_steps=args.max_steps, batch_size=args.batch_size, solver=args.solver,
                       solver_options=dict(args.solver_option), capture=args.capture, **overrides)


def probe_config(args: argparse.Namespace, **overrides) -> ProbeConfig:
    """The probe settings of parsed arguments (:func:`add_probe_args`; validated where they are used: ``ProbeRun``)."""
    return iteration_config(args, n_seeds=args.seeds, init=args.init, seed=args.seed, sigma=args.sigma,
                            verify=args.verify, **overrides)


def image_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W (e.g. 3,256,256), got {text!r}") from None
    if len(shape) != 3 or min(shape) <= 0:
        raise argparse.ArgumentTypeError(f"expected three positive integers C,H,W, got {text!r}")
    return shape  # type: ignore[return-value]


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` for argparse (:func:`latentfield.adapters.options.parse_option`)."""
    try:
        return parse_option(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


_SETTING = re.compile(r",(?=[A-Za-z_]\w*=)")  # a comma that starts the next KEY= (values may hold commas)


def model_settings(spec: str) -> tuple[str, tuple[int, int, int] | None, dict[str, Any]]:
    """``SPEC[image_shape=C,H,W,KEY=VALUE,...]`` -> (SPEC, image shape or None, options): one model's own
    settings in a command that takes several (``compare``, ``dynamics``). A spec without the bracket suffix,
    or naming an existing path, comes back unchanged. VALUEs are read as ``--model-option`` reads them."""
    if not spec.endswith("]") or "[" not in spec or Path(spec).exists():
        return spec, None, {}
    base, _, inner = spec[:-1].partition("[")
    shape, options = None, {}
    for item in _SETTING.split(inner):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UsageError(f"{spec}: per-model settings are KEY=VALUE items, e.g. {base}[image_shape=3,64,64]; "
                             f"got {item!r}")
        key = key.strip()
        if key == "image_shape":
            try:
                shape = image_shape(value)
            except argparse.ArgumentTypeError as e:
                raise UsageError(f"{spec}: image_shape: {e}") from None
        else:
            options.update([parse_option(f"{key}={value}")])
    return base, shape, options


def model_from_args(args: argparse.Namespace, spec: str | None = None,
                    image_shape: Sequence[int] | None = None, per_model: bool = False) -> Adapter:
    """The adapter of ``spec`` (default ``args.model``) with the command's model flags (:func:`add_model_args`,
    which every model-loading command uses). ``per_model``: the
    spec may carry its own settings (:func:`model_settings`), which win over the command's flags."""
    own: dict[str, Any] = {}
    if per_model and spec:
        spec, shape, own = model_settings(spec)
        image_shape = shape or image_shape
    options = dict(args.model_option) | own
    if args.checkpoint:
        options["checkpoint"] = args.checkpoint
    if args.dtype:
        if "dtype" in options and "dtype" not in own:
            raise UsageError("dtype given twice (--dtype and --model-option dtype=...): give it once")
        options.setdefault("dtype", args.dtype)  # load_adapter refuses it beside a different --model-option torch_dtype
    if args.offline:
        options["local_files_only"] = True
    adapter = load_adapter(spec or args.model, image_shape=image_shape or args.image_shape,
                           device=distributed.device(args.device), **options)
    if adapter.latent_shape is None:
        raise UsageError(f"{adapter.name}: give --image-shape C,H,W (or data) so the latent shape can be found")
    return adapter
