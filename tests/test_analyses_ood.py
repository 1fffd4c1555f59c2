"""OOD: the trajectory features against closed forms, and digits vs noise / faces on the demo model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latentfield.adapters import TorchAutoencoder, load_adapter
from latentfield.probe.workflows.ood import METHODS, ProbeConfig, export_scores, ood_benchmark, trajectory_scores
from latentfield.probe.data import digits, load_images
from latentfield.probe.index import AttractorIndex


def test_trajectory_features_match_closed_form():
    """f(z) = a + r (z - a) contracts to a: z_t - a = r^t (z_0 - a), so every feature is known."""
    a = torch.tensor([1.0, -2.0, 0.5, 3.0])
    r = 0.5
    model = TorchAutoencoder(lambda x: x.flatten(1), lambda z: (a + r * (z - a)).view(-1, 1, 1, 4), image_shape=(1, 1, 4))
    z0 = a + torch.tensor([[2.0, 0, 0, 0], [0, -4.0, 0, 0], [0, 0, 0, 0.25]])
    tol = 1e-8
    out = trajectory_scores(model, z0, {"a": AttractorIndex.build(a[None], "l2")}, ProbeConfig(tol=tol, max_steps=500))
    d0 = (z0 - a).norm(dim=1).double().numpy()
    # stop at the first T with ||z_T - z_{T-1}||^2 = (r^(T-1) (1 - r) d0)^2 < tol
    T = np.array([next(t for t in range(1, 500) if (r ** (t - 1) * (1 - r) * d) ** 2 < tol) for d in d0])
    np.testing.assert_array_equal(out.steps, T)
    np.testing.assert_allclose(out.field, (1 - r) * d0, rtol=1e-5)
    np.testing.assert_allclose(out.path_length, d0 * (1 - r ** T), rtol=1e-5)
    want = [d * sum(r ** t for t in range(n + 1)) / (n + 1) for d, n in zip(d0, T)]
    np.testing.assert_allclose(out.distance["a"], want, rtol=1e-5)
    assert out.converged.all() and list(out.distance) == ["a"]


def test_fit_sets_on_a_linear_map():
    """f(z) = a + r (z - a): after M steps image x sits at a + r^M (x - a). ``endpoints`` (the paper) keeps
    every one of those points, converged or not; ``attractors`` keeps the converged ones, merged into one."""
    from latentfield.adapters.errors import UsageError
    from latentfield.probe.workflows.ood import fit_in_distribution
    a = torch.tensor([0.5, 0.2, 0.8, 0.4])
    r = 0.5
    model = TorchAutoencoder(lambda x: x.flatten(1), lambda z: (a + r * (z - a)).view(-1, 1, 1, 4), image_shape=(1, 1, 4))
    x = torch.rand(12, 1, 1, 4, generator=torch.Generator().manual_seed(0))
    M = 4  # far too few steps for tol 1e-12: nothing converges
    short = ProbeConfig(tol=1e-12, max_steps=M)
    ind = fit_in_distribution(model, x, short)  # default: the paper's end points
    assert ind.fit_set == "endpoints" and ind.n_converged == 0 and len(ind.fit_points) == len(x)
    want = a + r ** M * (x.flatten(1) - a)
    np.testing.assert_allclose(ind.fit_points.flatten(1).numpy(), want.numpy(), atol=1e-6)
    with pytest.raises(UsageError, match="converged"):
        fit_in_distribution(model, x, short, fit_set="attractors")
    with pytest.raises(UsageError, match="fit set"):
        fit_in_distribution(model, x, short, fit_set="both")

    long = ProbeConfig(tol=1e-12, max_steps=200)  # every trajectory converges onto a
    conv = fit_in_distribution(model, x, long, fit_set="attractors")
    assert conv.n_converged == len(x) and len(conv.fit_points) == 1
    np.testing.assert_allclose(conv.fit_points.flatten(1)[0].numpy(), a.numpy(), atol=1e-5)
    every = fit_in_distribution(model, x, long, fit_set="endpoints")  # same points, not de-duplicated
    assert len(every.fit_points) == len(x)
    np.testing.assert_allclose(every.fit_points.flatten(1).numpy(), a.expand(len(x), 4).numpy(), atol=1e-5)

    # the trajectory score measures distance to the fit set: a test input's score differs between the
    # two sets when the end points are still spread out (M steps) and the attractor is a alone
    test = torch.full((1, 1, 1, 4), 0.05)
    assert ind.indexes["endpoints"].dim == 4 and set(conv.indexes) == set(every.indexes) == {"endpoints", "attractors"}
    both = trajectory_scores(model, test.flatten(1), conv.indexes, short).distance  # one iteration, both fit sets
    z_short = trajectory_scores(model, test.flatten(1), ind.indexes, short).distance["endpoints"]
    z_conv = both["attractors"]
    np.testing.assert_allclose(both["endpoints"], both["attractors"], atol=1e-5)  # every end point sits on a
    d0 = float((test.flatten(1) - a).norm())
    np.testing.assert_allclose(z_conv, [d0 * sum(r ** t for t in range(M + 1)) / (M + 1)], rtol=1e-5)
    assert z_short[0] < z_conv[0]  # some end point lies between the test path and a


@pytest.fixture(scope="module")
def digits_vs_noise_and_faces():
    torch.set_num_threads(1)
    model = load_adapter("demo:generalize")
    x_train, x_test = digits("train")[0][:200], digits("test")[0][:100]
    tests = {"noise": load_images("noise", (1, 32, 32))[:100], "faces": load_images("faces", (1, 32, 32))[:100]}
    # 300 steps: most demo trajectories converge by then (median ~280 from noise seeds)
    return ood_benchmark(model, x_train, x_test, tests, ProbeConfig(max_steps=300), k=10)


def test_digits_vs_noise_and_faces(digits_vs_noise_and_faces, tmp_path):
    res = digits_vs_noise_and_faces
    for name in ("noise", "faces"):
        assert set(res.metrics[name]) == set(METHODS)
        for m, v in res.metrics[name].items():
            assert all(np.isfinite(x) and 0 <= x <= 1 for x in v.values()), (name, m, v)
        # known answers: noise and faces are far from digits for the baselines and the field magnitude
        assert res.metrics[name]["reconstruction"]["auroc"] > 0.95
        assert res.metrics[name]["field"]["auroc"] > 0.9
    # No claim on the trajectory score's AUROC here: on the demo model it swings with the in-distribution
    # attractor set (0.86 vs 0.04 on noise for 200 vs 300 fitting images, docs/analyses.md); its
    # computation is checked against closed forms above.
    j = res.to_json()
    assert set(j["auroc"]) == {"noise", "faces"} and set(j["fpr95"]["faces"]) == set(METHODS)
    assert j["n_in_attractors"] >= 1
    csv, npz = export_scores(res, tmp_path)
    lines = csv.read_text().splitlines()
    assert lines[0].split(",")[3:] == list(METHODS) and len(lines) == 1 + 100 + 100 + 100
    with np.load(npz) as z:
        np.testing.assert_array_equal(z["faces/trajectory"], res.scores["faces"]["trajectory"])


def test_large_latents_use_a_pca_subspace_for_mahalanobis():
    """D = 600 > 512: the Gaussian is fitted in a PCA subspace; a clear OOD shift is still found."""
    torch.manual_seed(0)
    center = torch.rand(600) * 0.2
    model = TorchAutoencoder(lambda x: x.flatten(1), lambda z: (center + 0.5 * (z - center)).view(-1, 1, 20, 30),
                             image_shape=(1, 20, 30))
    pattern = torch.rand(8, 600)
    x_in = (center + 0.1 * torch.rand(160, 8) @ pattern).clamp(0, 1).view(-1, 1, 20, 30)
    x_out = torch.rand(40, 1, 20, 30)
    res = ood_benchmark(model, x_in[:120], x_in[120:], {"uniform": x_out}, ProbeConfig(tol=1e-6, max_steps=100))
    assert res.info["n_in_attractors"] == 1
    m = res.metrics["uniform"]
    assert m["mahalanobis"]["auroc"] > 0.95 and m["knn"]["auroc"] > 0.95
    assert m["trajectory"]["auroc"] > 0.95  # one attractor, linear contraction: distance to it is the signal


def test_cache_resumes_and_recomputes_only_what_changed(tmp_path, monkeypatch):
    import latentfield.probe.workflows.ood as ood
    model = load_adapter("demo:generalize")
    x, _ = digits("all")
    noise = load_images("noise", model.image_shape)[:20]
    settings = ProbeConfig(tol=1e-6, max_steps=200)
    first = ood_benchmark(model, x[:40], x[40:60], {"noise": noise}, settings, cache=tmp_path)
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == ["in-distribution.npz", "noise.npz"]

    calls = []
    real = ood.score_images
    monkeypatch.setattr(ood, "score_images",
                        lambda a, imgs, *r, **kw: calls.append(len(imgs)) or real(a, imgs, *r, **kw))
    again = ood_benchmark(model, x[:40], x[40:60], {"noise": noise}, settings, cache=tmp_path)
    assert calls == []  # every set read back
    for name in first.scores:
        for m, v in first.scores[name].items():
            np.testing.assert_array_equal(again.scores[name][m], v)
    assert again.metrics == first.metrics

    changed = ood_benchmark(model, x[:40], x[40:60], {"noise": noise[:10]}, settings, cache=tmp_path)
    assert calls == [10]  # only the set whose images changed
    assert len(changed.scores["noise"]["trajectory"]) == 10
    # Other settings: a new fit and new scores, not a refusal by the old run directory.
    ood_benchmark(model, x[:40], x[40:60], {"noise": noise[:10]}, ProbeConfig(tol=1e-5, max_steps=200),
                  cache=tmp_path)
    assert calls == [10, 20, 10] and len(list((tmp_path / "fit").iterdir())) == 2


def test_one_scoring_serves_both_fit_sets(tmp_path, monkeypatch):
    """The cache holds the trajectories' scores against every fit set: a run with the other fit set reads
    them back, and they equal what a run without a cache computes for that fit set."""
    import latentfield.probe.workflows.ood as ood
    model = load_adapter("demo:memorize")
    x, _ = digits("all")
    tests = {"noise": load_images("noise", model.image_shape)[:16]}
    settings = ProbeConfig(tol=1e-6, max_steps=150)  # some fit digits stop at max_steps: the sets differ
    paper = ood_benchmark(model, x[:40], x[40:56], tests, settings, cache=tmp_path)
    assert paper.info["n_fit_points"] == 40 and 0 < paper.info["n_in_attractors"] < 40
    monkeypatch.setattr(ood, "score_images", lambda *a, **k: pytest.fail("a cached set was iterated again"))
    cached = ood_benchmark(model, x[:40], x[40:56], tests, settings, cache=tmp_path, fit_set="attractors")
    monkeypatch.undo()
    fresh = ood_benchmark(model, x[:40], x[40:56], tests, settings, fit_set="attractors")
    for name in fresh.scores:
        np.testing.assert_array_equal(cached.scores[name]["trajectory"], fresh.scores[name]["trajectory"])
        np.testing.assert_array_equal(cached.scores[name]["trajectory"], paper.scores[name]["trajectory_attractors"])
        np.testing.assert_array_equal(paper.scores[name]["trajectory"], paper.scores[name]["trajectory_endpoints"])
        assert not np.array_equal(paper.scores[name]["trajectory"], fresh.scores[name]["trajectory"])
    assert cached.metrics == fresh.metrics and cached.info["fit_set"] == "attractors"
    both = paper.info["trajectory_by_fit_set"]  # each protocol's AUROC, from the one scoring
    assert both["attractors"]["noise"] == fresh.metrics["noise"]["trajectory"]
    assert both["endpoints"]["noise"] == paper.metrics["noise"]["trajectory"]
    assert both["attractors"]["n_fit_points"] == paper.info["n_in_attractors"]


def test_k_beyond_the_data_is_clamped_and_said():
    """k = 500 with 16 in-distribution images: knn uses k = 16, the distance to the farthest of them (checked
    by hand), and the result says so; so does the paper's K = 2000 of knn_mean (the mean over all 16)."""
    model = TorchAutoencoder(lambda x: x.flatten(1), lambda z: z.view(-1, 1, 2, 2), image_shape=(1, 2, 2))
    g = torch.Generator().manual_seed(0)
    fit, held = torch.rand(16, 1, 2, 2, generator=g), torch.rand(6, 1, 2, 2, generator=g)
    odd = torch.rand(6, 1, 2, 2, generator=g) * 3
    res = ood_benchmark(model, fit, held, {"odd": odd}, ProbeConfig(tol=1e-6, max_steps=3), k=500)
    assert (res.info["knn_k"], res.info["knn_k_requested"], res.info["knn_mean_k"]) == (16, 500, 16)
    assert res.info["notes"] == [
        "knn: k = 500 exceeds the 16 in-distribution images; k = 16 used (the distance to the farthest of them)",
        "knn_mean: the paper's K = 2000 exceeds the 16 in-distribution images; K = 16 used (the mean distance to "
        "all of them)"]
    unit = lambda v: v.flatten(1).double() / v.flatten(1).double().norm(dim=1, keepdim=True)  # noqa: E731
    np.testing.assert_allclose(res.scores["odd"]["knn"], torch.cdist(unit(odd), unit(fit)).max(1).values.numpy(),
                               rtol=1e-4)
    np.testing.assert_allclose(res.scores["odd"]["knn_mean"],
                               torch.cdist(odd.flatten(1).double(), fit.flatten(1).double()).mean(1).numpy(), rtol=1e-5)
    assert res.to_json()["notes"] == res.info["notes"]
    within = ood_benchmark(model, fit, held, {"odd": odd}, ProbeConfig(tol=1e-6, max_steps=3), k=16)
    assert within.info["notes"] == res.info["notes"][1:]  # k = N is asked for, not clamped
    np.testing.assert_array_equal(within.scores["odd"]["knn"], res.scores["odd"]["knn"])


def test_cli_prints_the_clamp_and_writes_it(tmp_path, capsys):
    from latentfield.probe.cli import main
    out = tmp_path / "ood"
    assert main(["ood", "demo:generalize", "--in-dist", "digits:train", "--limit", "20", "--test", "noise",
                 "--k", "500", "--max-steps", "3", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    note = "note: knn: k = 500 exceeds the 16 in-distribution images; k = 16 used"
    assert note in printed and "note: knn_mean: the paper's K = 2000 exceeds the 16" in printed
    data = json.loads((out / "ood.json").read_text())
    assert (data["knn_k"], data["knn_k_requested"], data["knn_mean_k"]) == (16, 500, 16)
    assert len(data["notes"]) == 2 and data["notes"][0] in printed
