"""Pictures of the dynamics: the 2-D stream plot, PCA projections, and the ``latentfield field`` command."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from latentfield.adapters import TorchAutoencoder
from latentfield.probe.cli import main
from latentfield.probe.report.field_plot import field_figure, save_figure
from latentfield.probe.analyses.field import field_grid, pca_basis, project, split_trajectories
from latentfield.probe.rundir import ProbeConfig, run_probe

PNG = b"\x89PNG\r\n\x1a\n"


def double_well(z: torch.Tensor) -> torch.Tensor:
    """2-D map with attractors (+-0.957..., 0) and a saddle at the origin: x -> tanh(2x), y -> y / 2."""
    return torch.stack([torch.tanh(2 * z[:, 0]), 0.5 * z[:, 1]], 1)


def two_wells() -> TorchAutoencoder:
    """The double well as an adapter (also used by the CLI test through ``py:test_field:two_wells``)."""
    return TorchAutoencoder(lambda x: x.flatten(1), lambda z: double_well(z).view(-1, 1, 1, 2),
                            image_shape=(1, 1, 2), name="two-wells")


def rotating_sink(dim: int = 6) -> TorchAutoencoder:
    """A contraction towards (1, ..., 1) with a rotation: spiralling trajectories in any dimension."""
    c, s = 0.8 * np.cos(0.5), 0.8 * np.sin(0.5)
    rot = torch.eye(dim) * 0.5
    rot[:2, :2] = torch.tensor([[c, -s], [s, c]])
    return TorchAutoencoder(lambda x: x.flatten(1), lambda z: (1 + (z - 1) @ rot.T).view(-1, 1, 1, dim),
                            image_shape=(1, 1, dim), name="rotating-sink")


def test_field_grid_is_f_minus_identity():
    xs, ys, v = field_grid(double_well, (-2.0, 2.0, -1.0, 1.0), n=9)
    assert v.shape == (9, 9, 2) and xs[0] == -2 and ys[-1] == 1
    i, j = 2, 7  # V[i, j] sits at (xs[j], ys[i])
    expected = double_well(torch.tensor([[xs[j], ys[i]]], dtype=torch.float32))[0].numpy() - [xs[j], ys[i]]
    np.testing.assert_allclose(v[i, j], expected, atol=1e-6)
    with pytest.raises(ValueError, match="2-D"):
        field_grid(lambda z: torch.cat([z, z], 1), (0, 1, 0, 1), n=3)


def test_stream_plot_file_is_written(tmp_path):
    adapter = two_wells()
    res = run_probe(adapter, ProbeConfig(n_seeds=12, init="uniform", record_every=1, verify=True),
                    progress=False)
    paths = split_trajectories(res.trajectories, 6)
    assert len(paths) == 6 and all(p.shape[1] == 2 for p in paths)
    for i, p in enumerate(paths):  # seed i: from its uniform start in [-1, 1]^2 to its end point, step by step
        assert (np.abs(p[0]) <= 1).all() and len(p) == res.steps[i] + 1
        np.testing.assert_allclose(p[-1], res.end_points[i].flatten().numpy())
    kinds = [p["kind"] for p in res.stability["per_attractor"]]
    assert sorted(kinds) == ["attractor", "attractor"]
    out = save_figure(field_figure(adapter.f, res.attractors, paths, kinds, title="two wells"), tmp_path / "f.png")
    data = out.read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000  # a real picture, not an empty canvas


def test_trajectories_are_projected_on_the_attractor_pcs():
    rng = np.random.default_rng(0)
    axes_true = np.linalg.qr(rng.standard_normal((10, 2)))[0].T  # attractors on a 2-D plane in R^10
    attractors = rng.standard_normal((8, 2)) * [5.0, 1.0] @ axes_true + 3.0
    mean, axes = pca_basis(attractors)
    np.testing.assert_allclose(np.linalg.norm(axes @ axes_true.T, axis=1), 1.0, atol=1e-8)  # PCs span the plane
    coords = project(attractors, mean, axes)
    np.testing.assert_allclose(coords @ axes + mean, attractors, atol=1e-8)  # nothing lost off the plane
    with pytest.raises(ValueError):
        pca_basis(attractors[:1])


def test_field_command_writes_stream_plot_and_projection(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    out = tmp_path / "field.png"
    assert main(["field", "py:test_field:two_wells", "--out", str(out), "--seeds", "16", "--init", "uniform",
                 "--grid", "20", "--quiet"]) == 0
    assert out.read_bytes().startswith(PNG) and out.stat().st_size > 10_000
    assert "2 verified attractors" in capsys.readouterr().out
    out2 = tmp_path / "pca.png"
    assert main(["field", "py:test_field:rotating_sink", "--out", str(out2), "--seeds", "8", "--quiet",
                 "--solver", "anderson"]) == 0
    assert out2.read_bytes().startswith(PNG) and out2.stat().st_size > 10_000


def test_field_command_rejects_bad_input(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(__import__("pathlib").Path(__file__).parent))
    assert main(["field", "py:test_field:two_wells", "--out", str(tmp_path / "x.png"), "--grid", "1"]) == 2
    assert "latentfield: error: --trajectories must be >= 0 and --grid >= 2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["field", "py:test_field:two_wells", "--out", str(tmp_path / "x.png"), "--box", "1,0,0,1"])
    assert e.value.code == 2 and "XMIN < XMAX" in capsys.readouterr().err
