"""Models in bfloat16 (and float16 where the device has it): the engine's stopping rule, norms and stored
end points stay float32, the dtype is part of the run key and of the report, refusals are one line."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from builders import CliResult, assert_one_line_error, save_tiny_autoencoder_kl
from latentfield.adapters import AdapterError, load_adapter
from latentfield.probe.cli import main
from latentfield.probe.engine import CONVERGED, MAX_STEPS, iterate, make_solver
from latentfield.probe.rundir import ProbeConfig, cache_dir, load_trajectories, run_probe


def _one_error_line(capsys) -> str:
    return assert_one_line_error(CliResult.captured(capsys, 2))  # the caller checked main(...) == 2


# -- loading -----------------------------------------------------------------------------------------

def test_dtype_and_its_torch_dtype_alias_cast_the_weights():
    for kwargs in ({"dtype": "bfloat16"}, {"torch_dtype": "bfloat16"}, {"torch_dtype": torch.bfloat16},
                   {"dtype": "bf16", "torch_dtype": "torch.bfloat16"}):
        a = load_adapter("demo", **kwargs)
        assert a.dtype == torch.bfloat16, kwargs
        assert {p.dtype for p in a.model.parameters()} == {torch.bfloat16}
        assert a.f(torch.zeros(2, 16)).dtype == torch.bfloat16  # float32 input is cast when f runs
    assert load_adapter("demo").dtype == torch.float32


def test_fingerprint_names_the_dtype():
    f32, bf16 = load_adapter("demo"), load_adapter("demo", dtype="bfloat16")
    assert f32.fingerprint != bf16.fingerprint
    fp = f32.fingerprint
    assert f32.to(dtype=torch.bfloat16).fingerprint == bf16.fingerprint != fp  # recomputed, not the cached one


def test_bad_dtypes_are_one_line():
    with pytest.raises(AdapterError, match=r"float16 is not supported on CPU: use `dtype` bfloat16") as e:
        load_adapter("demo", dtype="float16")
    assert "\n" not in str(e.value)
    with pytest.raises(AdapterError, match=r"unknown dtype 'int8': choose one of float32, bfloat16, float16"):
        load_adapter("demo", torch_dtype="int8")
    with pytest.raises(AdapterError, match="disagree"):
        load_adapter("demo", dtype="bfloat16", torch_dtype="float32")


def test_float16_on_cpu_refused_by_the_cli(tmp_path, capsys):
    assert main(["probe", "demo", "--dtype", "float16", "--seeds", "4", "--out", str(tmp_path / "p"), "--quiet"]) == 2
    assert "use --dtype bfloat16 (works on CPU) or a GPU (--device cuda)" in _one_error_line(capsys)
    assert not (tmp_path / "p").exists()


# -- the engine ------------------------------------------------------------------------------------

def _bf16_map(d: int = 64) -> torch.nn.Module:
    """A contraction z -> 0.5 z + b computed in bfloat16 (its input must be bfloat16)."""
    lin = torch.nn.Linear(d, d).to(torch.bfloat16)
    with torch.no_grad():
        lin.weight.copy_(0.5 * torch.eye(d))
        lin.bias.copy_(torch.linspace(-1, 1, d))
    return lin.requires_grad_(False)


def test_engine_state_and_squared_step_are_float32_for_a_bfloat16_map():
    f = _bf16_map()
    z0 = torch.randn(5, 64, generator=torch.Generator().manual_seed(0)) * 3
    one = iterate(f, z0.to(torch.bfloat16), max_steps=1)  # bfloat16 seeds: cast back when f runs
    fz = f(z0.to(torch.bfloat16)).float()
    assert one.end.dtype == torch.float32 and torch.equal(one.end, fz)
    want = (fz - z0.to(torch.bfloat16).float()).pow(2).sum(1).double()  # float32 arithmetic on f's output
    bf16_sum = (f(z0.to(torch.bfloat16)) - z0.to(torch.bfloat16)).pow(2).sum(1).double()
    assert torch.allclose(torch.from_numpy(one.last_sq_step), want, rtol=1e-6)
    assert not torch.allclose(torch.from_numpy(one.last_sq_step), bf16_sum, rtol=1e-6)  # the test can tell
    for solver in ("plain", "relax", "anderson"):
        res = iterate(f, z0.to(torch.bfloat16), tol=1e-6, max_steps=200, solver=make_solver(solver))
        assert res.end.dtype == torch.float32 and (res.status == CONVERGED).all(), solver
        fixed = f(torch.linspace(-1, 1, 64).to(torch.bfloat16) * 2).float()  # 2b: the fixed point in real numbers
        assert torch.allclose(res.end, fixed.expand(5, -1), atol=0.05), solver


# -- probe, audit, run keys --------------------------------------------------------------------------

def test_probe_bfloat16_end_to_end(tmp_path, capsys):
    """The guarantee of a bfloat16 probe, on any CPU: only f runs in bfloat16; the state, the squared step
    that the stopping rule tests and the stored points are float32, and the records name the dtype. The rule
    is checked on the recorded float32 points themselves, not on one more bfloat16 step of f (whose rounding
    near a fixed point differs between CPUs' kernels)."""
    out = tmp_path / "p"
    assert main(["probe", "demo", "--dtype", "bfloat16", "--seeds", "16", "--record-every", "1", "--out", str(out),
                 "--quiet"]) == 0
    t = load_file(str(out / "attractors.safetensors"))
    summary = json.loads((out / "summary.json").read_text())
    assert json.loads((out / "run.json").read_text())["dtype"] == "bfloat16"  # in the run key
    assert summary["adapter"]["dtype"] == summary["versions"]["dtype"] == "bfloat16"
    traj = load_trajectories(out)
    assert t["end_points"].dtype == t["attractors"].dtype == traj["z"].dtype == torch.float32
    tol, max_steps = summary["config"]["tol"], summary["config"]["max_steps"]
    status, steps, last_sq = t["status"], t["steps"], t["last_sq_step"]
    assert summary["counts"]["converged"] == int((status == CONVERGED).sum()) > 0
    for i in range(16):
        mine = traj["seed"] == i
        order = traj["step"][mine].argsort()
        z, step = traj["z"][mine][order], traj["step"][mine][order]
        assert step.tolist() == list(range(int(steps[i]) + 1)), i  # every point, start to end
        assert torch.equal(z[-1], t["end_points"][i])
        sq = (z[1:] - z[:-1]).flatten(1).pow(2).sum(1)  # the rule's quantity, in float32, between stored points
        # what the engine tested is this float32 step (a bfloat16 sum differs by ~1e-3, rounding by ~1e-6 at most)
        assert float(last_sq[i]) == pytest.approx(float(sq[-1]), rel=1e-5, abs=1e-30), i
        assert (sq[:-1] >= tol * (1 - 1e-5)).all(), i  # no seed stopped before the rule held
        if status[i] == CONVERGED:
            assert last_sq[i] < tol, i
        else:  # no NaN or huge norm from this contracting model: the only other end is the step budget
            assert status[i] == MAX_STEPS and steps[i] == max_steps and last_sq[i] >= tol, i


def test_float32_and_bfloat16_runs_are_kept_apart(tmp_path, capsys):
    out = str(tmp_path / "p")
    assert main(["probe", "demo", "--seeds", "8", "--max-steps", "50", "--out", out, "--quiet"]) == 0
    assert "dtype" not in json.loads((tmp_path / "p" / "run.json").read_text())  # float32 keys are as before
    capsys.readouterr()
    assert main(["probe", "demo", "--dtype", "bfloat16", "--seeds", "8", "--max-steps", "50", "--out", out,
                 "--quiet"]) == 2
    assert "holds a probe with other settings, another model or dtype" in _one_error_line(capsys)
    assert main(["probe", "demo", "--dtype", "float32", "--seeds", "8", "--max-steps", "50", "--out", out,
                 "--quiet"]) == 0  # the same float32 run resumes
    cfg = ProbeConfig(n_seeds=8)
    f32, bf16 = load_adapter("demo"), load_adapter("demo", dtype="bfloat16")
    assert cache_dir(tmp_path, f32, cfg) != cache_dir(tmp_path, bf16, cfg)


def test_model_option_torch_dtype_from_the_cli(tmp_path, capsys):
    out = tmp_path / "p"
    assert main(["probe", "demo", "--model-option", "torch_dtype=bfloat16", "--seeds", "4", "--max-steps", "20",
                 "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["adapter"]["dtype"] == "bfloat16"
    capsys.readouterr()
    assert main(["probe", "demo", "--dtype", "bfloat16", "--model-option", "dtype=float32", "--seeds", "4",
                 "--out", str(tmp_path / "q"), "--quiet"]) == 2
    assert "dtype given twice" in _one_error_line(capsys)


def test_audit_bfloat16_names_the_dtype(tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["audit", "demo", "--dtype", "bfloat16", "--seeds", "16", "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["dtype"] == "bfloat16" and report["counts"]["converged"] > 0 and report["memorization"]["mean"] > 0
    assert "<td>dtype</td><td>bfloat16" in (out / "report.html").read_text()
    assert load_file(str(out / "probe" / "attractors.safetensors"))["end_points"].dtype == torch.float32


def test_diffusers_vae_in_bfloat16(tmp_path, capsys):
    save_tiny_autoencoder_kl(tmp_path / "vae")
    a = load_adapter(str(tmp_path / "vae"), dtype="bfloat16")
    assert a.dtype == torch.bfloat16 and {p.dtype for p in a.vae.parameters()} == {torch.bfloat16}
    res = run_probe(a, ProbeConfig(n_seeds=6, max_steps=30, tol=1e-4), progress=False)
    assert res.end_points.dtype == torch.float32 and torch.isfinite(res.end_points).all()
    out = tmp_path / "p"
    assert main(["probe", str(tmp_path / "vae"), "--dtype", "bfloat16", "--seeds", "6", "--max-steps", "30",
                 "--tol", "1e-4", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["adapter"]["dtype"] == "bfloat16"
    assert torch.equal(load_file(str(out / "attractors.safetensors"))["end_points"], res.end_points)


def test_models_that_pin_modules_to_float32_are_not_cast():
    from latentfield.adapters import TorchAutoencoder

    class Pinned(torch.nn.Linear):
        _keep_in_fp32_modules = ["norm"]

    a = TorchAutoencoder(Pinned(4, 2), torch.nn.Linear(2, 4), image_shape=(4,))
    with pytest.raises(AdapterError, match="keeps norm in float32"):
        load_adapter(a, dtype="bfloat16")
    assert load_adapter(a, dtype="float32").dtype == torch.float32


def test_verification_of_a_bfloat16_model_linearises_its_weights_in_float32():
    from latentfield.probe.engine.stability import verify_fixed_points
    a = load_adapter("demo", dtype="bfloat16")
    points = run_probe(a, ProbeConfig(n_seeds=8, max_steps=500), progress=False).attractors
    fp = a.fingerprint
    stab = verify_fixed_points(a, points)
    assert a.dtype == torch.bfloat16 and {p.dtype for p in a.model.parameters()} == {torch.bfloat16}
    assert a.fingerprint == fp  # cast to float32 and back: the same bytes
    ref = verify_fixed_points(load_adapter("demo", dtype="bfloat16").to(dtype=torch.float32), points)
    assert [s.spectral_radius for s in stab] == pytest.approx([s.spectral_radius for s in ref], rel=1e-6)
    assert max(s.spectral_radius for s in stab) < 1.1  # a bfloat16 Jacobian reads up to ~2 on these points
