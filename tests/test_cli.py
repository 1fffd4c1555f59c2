"""The CLI on user mistakes: one clear line, a non-zero exit, never a traceback. In this process through
``cli.main`` (builders.run_cli); the installed console script and fresh interpreters where only they can
show it."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from builders import assert_one_line_error, cli_env, run_cli


def test_unknown_model_names_the_accepted_forms(tmp_path):
    res = run_cli("probe", "no-such-model", "--out", str(tmp_path / "o"))
    assert_one_line_error(res, "unknown model 'no-such-model'", "demo", "py:package.module:attr")


def test_installed_console_script_ends_a_mistake_in_one_line_and_exit_2(tmp_path):
    """End to end: the `latentfield` script pip installed (exit status through sys.exit), a fresh interpreter."""
    script = Path(sys.executable).with_name("latentfield")
    script = script if script.exists() else shutil.which("latentfield")
    assert script, "the latentfield console script is not installed beside this Python"
    res = subprocess.run([str(script), "probe", "no-such-model", "--out", str(tmp_path / "o")], capture_output=True,
                         text=True, env=cli_env(), timeout=300)
    assert_one_line_error(res, "unknown model 'no-such-model'", "demo", "py:package.module:attr")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("spec", ["./missing-run", "weights/nowhere/model", "model.safetensors"])
def test_missing_checkpoint_path_says_so(tmp_path, spec):
    res = run_cli("probe", spec, "--out", str(tmp_path / "o"))
    assert_one_line_error(res, f"{spec}: no such checkpoint file or folder")


@pytest.mark.parametrize("args,needle", [(["--seeds", "0"], "seeds must be positive"),
                                         (["--tol=-1e-6"], "tolerance must be positive"),
                                         (["--init", "lattice"], "unknown init")])
def test_bad_numbers_are_refused(tmp_path, args, needle):
    assert_one_line_error(run_cli("probe", "py:builders:random_conv_ae", "--out", str(tmp_path / "o"), *args), needle)


@pytest.mark.parametrize("argv,needle", [
    (["probe", "demo", "--sigma", "-1"], "sigma must be positive, got -1.0"),
    (["probe", "demo", "--chunk-size", "0"], "chunk size must be positive, got 0"),
    (["probe", "demo", "--capture", "1.5"], "capture is a radius relative to a point's norm, in [0, 1)"),
    (["probe", "demo", "--device", "gpu0"], "unknown device 'gpu0': expected cpu, cuda"),
    (["probe", "demo", "--device", "cuda:99"], "device 'cuda:99'"),  # no CUDA here, or not 100 GPUs
    (["ood", "demo", "--in-dist", "digits", "--test", "noise", "--limit", "20", "--k", "0"], "must be >= 1, got 0"),
    (["ood", "demo", "--in-dist", "digits", "--test", "noise", "--limit", "-1"], "limit must be >= 1 image, got -1"),
    (["compare", "demo", "demo:memorize", "--threshold", "1.5"], "--threshold is a cosine, in [-1, 1]"),
    (["dynamics", "demo", "--reference", "digits", "--n-data", "0"], "--n-data must be >= 1, got 0"),
])
def test_bad_settings_are_one_line(tmp_path, argv, needle):
    assert_one_line_error(run_cli(*argv, "--out", str(tmp_path / "o"), "--quiet"), needle)
    assert not (tmp_path / "o").exists()


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = run_cli("probe", "py:builders:random_conv_ae", "--seeds", "2", "--out", str(blocker / "run"))
    assert_one_line_error(res, "cannot write to", str(blocker / "run"))


def test_bad_python_spec_and_missing_data(tmp_path):
    assert_one_line_error(run_cli("probe", "py:builders:nothing_here", "--out", str(tmp_path)), "cannot import")
    res = run_cli("probe", "py:builders:random_conv_ae", "--init", "data", "--data", str(tmp_path / "none"),
                  "--out", str(tmp_path / "o"))
    assert_one_line_error(res, "no such file or folder")


def test_bare_pair_needs_an_image_shape_and_works_with_one(tmp_path):
    assert_one_line_error(run_cli("probe", "py:builders:conv_pair", "--out", str(tmp_path / "a")), "--image-shape")
    res = run_cli("probe", "py:builders:conv_pair", "--image-shape", "3,16,16", "--seeds", "8", "--max-steps", "50",
                  "--quiet", "--out", str(tmp_path / "b"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "b" / "summary.json").exists() and "8 seeds" in res.stdout


def test_bad_image_shape_is_an_argument_error(tmp_path):
    res = run_cli("probe", "demo", "--image-shape", "3x32", "--out", str(tmp_path))
    assert res.returncode == 2 and "C,H,W" in res.stderr and "Traceback" not in res.stderr


def test_mistyped_model_option_is_refused(tmp_path):
    res = run_cli("probe", "demo:memorize", "--model-option", "scale_latents=true", "--out", str(tmp_path / "o"))
    assert_one_line_error(res, "demo: unknown option scale_latents")
    assert not (tmp_path / "o" / "summary.json").exists()


@pytest.mark.parametrize("command", [["field", "demo", "--seeds", "4", "--max-steps", "50"],
                                     ["ood", "demo", "--in-dist", "digits:train", "--test", "noise", "--limit", "8"]])
def test_output_path_that_cannot_be_written_is_one_line(tmp_path, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    res = run_cli(*command, "--out", str(blocker / "out.png"), "--quiet")
    assert_one_line_error(res, str(blocker))


def test_embed_without_embed_space_is_refused():
    assert_one_line_error(run_cli("compare", "demo:memorize", "demo:generalize", "--space", "latent", "--embed", "demo"),
                          "--embed is only used with --space embed")


@pytest.mark.parametrize("name,needle", [("fig.txt", "as a .txt file"), ("fig", "without a suffix")])
def test_field_refuses_a_figure_name_it_cannot_write_before_probing(tmp_path, name, needle):
    res = run_cli("field", "demo", "--out", str(tmp_path / name), "--quiet")
    assert_one_line_error(res, needle)
    assert res.stdout == ""  # refused before the probe ran (it prints a summary line when it does)


def test_unusable_safetensors_files_say_why(tmp_path):
    from safetensors.torch import save_file
    (tmp_path / "broken.safetensors").write_bytes(b"garbage")
    save_file({"w": torch.zeros(3)}, str(tmp_path / "bare.safetensors"))
    for name, needle in (("broken", "not a valid safetensors file"), ("bare", "1 tensors with no model configuration")):
        assert_one_line_error(run_cli("probe", str(tmp_path / f"{name}.safetensors"), "--out", str(tmp_path / "o")),
                              needle)


def test_every_entry_module_imports_first_in_a_fresh_interpreter():
    # probe imports adapters, never the reverse: every entry module imports first (latentfield.probe.cli: the
    # console script test above). One interpreter per module, all at once.
    modules = ["latentfield.probe.data", "latentfield.adapters.errors", "latentfield.adapters",
               "latentfield.adapters.trained_decoder"]
    procs = {m: subprocess.Popen([sys.executable, "-c", f"import {m}"], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True) for m in modules}
    failed = {m: p.communicate(timeout=300)[1][-500:] for m, p in procs.items()}
    assert not {m: err for m, err in failed.items() if procs[m].returncode != 0}
