"""Verification per distinct Euclidean end point: a saddle that cosine de-duplication merges into an
attractor's cluster (both on the same ray) is reported, not hidden behind the cluster's representative."""
from __future__ import annotations

import json

import torch

from latentfield.adapters import TorchAutoencoder
from latentfield.probe.rundir import ProbeConfig, load_result, run_probe


def ray_map(z: torch.Tensor) -> torch.Tensor:
    """f on (B, 2): angle halved (contracts onto the ray theta = 0), radius r -> r + 2.5 (r - 1)(r - 1.2).

    Fixed points on the ray: (1, 0) with eigenvalues 0.5 (radial) and 0.5 (angular): an attractor;
    (1.2, 0) with 1.5 (radial) and 0.5: a saddle. Cosine similarity 1 (same ray), relative distance 0.17.
    """
    r = z.norm(dim=1, keepdim=True)
    theta = torch.atan2(z[:, 1:], z[:, :1]) / 2
    g = r + 2.5 * (r - 1) * (r - 1.2)
    return torch.cat([g * torch.cos(theta), g * torch.sin(theta)], dim=1)


def adapter() -> TorchAutoencoder:
    return TorchAutoencoder(lambda x: x.flatten(1), lambda z: ray_map(z.flatten(1)).view(-1, 1, 1, 2),
                            image_shape=(1, 1, 2), name="ray")


def test_saddle_merged_by_cosine_is_reported(tmp_path):
    # seven seeds fall onto the attractor (1, 0); the last one sits on the saddle (1.2, 0) and stays there
    starts = [(0.9, 0.1), (1.05, -0.1), (0.95, 0.05), (1.1, 0.02), (0.8, -0.2), (1.0, 0.3), (0.97, -0.05), (1.2, 0.0)]
    data = torch.tensor(starts).view(-1, 1, 1, 2)
    cfg = ProbeConfig(init="data", tol=1e-12, max_steps=300, verify=True, batch_size=4)
    res = run_probe(adapter(), cfg, out=tmp_path / "run", data=data, progress=False)
    assert (res.status == 0).all()
    assert len(res.attractors) == 1 and len(res.attractors_euclid) == 2  # cosine merges them, Euclidean does not
    st = res.stability
    assert st["n_attractor"] == 1 and st["per_attractor"][0]["kind"] == "attractor"  # the representative looks fine
    kinds = sorted((p["kind"], round(p["spectral_radius"], 3), p["n_seeds"], p["cosine_attractor"]) for p in st["per_euclid"])
    assert kinds == [("attractor", 0.5, 7, 0), ("saddle_or_repeller", 1.5, 1, 0)]
    assert st["n_euclid_attractor"] == 1 and st["n_euclid_saddle_or_repeller"] == 1
    assert st["n_clusters_with_non_attractor"] == 1 and st["n_hidden_non_attractor"] == 1
    cost = st["verify_cost"]
    assert cost["euclid_points"] == 2 and cost["euclid_points_analysed"] == 1  # the representative is reused
    assert cost["jacobian_products_euclid_extra"] > 0
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())["stability"]
    assert on_disk["n_hidden_non_attractor"] == 1 and load_result(tmp_path / "run").stability == on_disk


def test_no_saddle_no_flag():
    data = torch.tensor([(0.9, 0.1), (1.05, -0.1), (1.1, 0.02)]).view(-1, 1, 1, 2)
    res = run_probe(adapter(), ProbeConfig(init="data", tol=1e-12, max_steps=300, verify=True), data=data,
                    progress=False)
    st = res.stability
    assert len(res.attractors_euclid) == 1 and st["n_euclid_attractor"] == 1
    assert st["n_clusters_with_non_attractor"] == 0 and st["n_hidden_non_attractor"] == 0
    assert st["verify_cost"]["euclid_points_analysed"] == 0
