"""AttractorIndex: exact search against numpy brute force, approximate kinds, basin purity, save/load."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from latentfield.adapters.errors import UsageError
from latentfield.probe.index import AttractorIndex


def _data(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_flat_search_matches_brute_force(metric):
    att, ref = _data(300, 24, 0), _data(500, 24, 1)
    index = AttractorIndex.build(torch.from_numpy(att).view(300, 4, 6), metric)  # (K, ...) is flattened
    dist, idx = index.search(ref, k=3)
    if metric == "cosine":
        a = att / np.linalg.norm(att, axis=1, keepdims=True)
        r = ref / np.linalg.norm(ref, axis=1, keepdims=True)
        full = 1 - r @ a.T
    else:
        full = np.linalg.norm(ref[:, None] - att[None], axis=2)
    want = np.argsort(full, axis=1)[:, :3]
    assert (idx == want).mean() > 0.999  # float ties aside
    np.testing.assert_allclose(dist, np.take_along_axis(full, want, 1), atol=2e-4)
    d1, i1 = index.nearest_attractor(ref)
    np.testing.assert_array_equal(i1, idx[:, 0])
    # nearest reference of each attractor: the reverse search
    d2, i2 = index.nearest_reference(att, ref)
    np.testing.assert_array_equal(i2, np.argmin(full, axis=0))


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_kinds_have_high_recall(kind):
    att, q = _data(4000, 16, 2), _data(200, 16, 3)
    exact = AttractorIndex.build(att, "l2").nearest_attractor(q)[1]
    approx = AttractorIndex.build(att, "l2", kind).nearest_attractor(q)[1]
    assert (exact == approx).mean() > 0.9


def test_basin_purity_and_knn_labels():
    rng = np.random.default_rng(4)
    centers = np.eye(3, 8, dtype=np.float32) * 10
    labels = np.repeat([0, 1, 2], 50)
    refs = centers[labels] + rng.normal(0, 0.5, (150, 8)).astype(np.float32)
    labels_noisy = labels.copy()
    labels_noisy[:5] = 1  # 5 of basin 0's 50 references carry another label
    index = AttractorIndex.build(centers, "l2")
    pur = index.basin_purity(refs, labels_noisy)
    np.testing.assert_array_equal(pur["count"], [50, 50, 50])
    np.testing.assert_array_equal(pur["label"], [0, 1, 2])
    np.testing.assert_allclose(pur["purity"], [0.9, 1.0, 1.0])
    ref_index = AttractorIndex.build(refs, "l2")
    pred, share = ref_index.knn_labels(centers, labels, k=7)
    np.testing.assert_array_equal(pred, [0, 1, 2])
    assert (share == 1).all()


def test_save_load_round_trip_and_refusals(tmp_path):
    att, q = _data(200, 16, 5), _data(50, 16, 6)
    index = AttractorIndex.build(att, "cosine", fingerprint="a" * 64)
    sidecar = index.save(tmp_path / "index.faiss")
    assert sidecar.name == "index.faiss.json"
    loaded = AttractorIndex.load(tmp_path / "index.faiss", fingerprint="a" * 64, dim=16)
    assert (loaded.metric, loaded.dim, len(loaded), loaded.fingerprint) == ("cosine", 16, 200, "a" * 64)
    for got, want in zip(loaded.search(q, 4), index.search(q, 4)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(UsageError, match="another model"):
        AttractorIndex.load(tmp_path / "index.faiss", fingerprint="b" * 64)
    with pytest.raises(UsageError, match="16-dimensional"):
        AttractorIndex.load(tmp_path / "index.faiss", dim=32)
    with pytest.raises(UsageError, match="dimension"):
        loaded.search(_data(3, 8, 7))
    (tmp_path / "index.faiss.json").unlink()
    with pytest.raises(UsageError, match="no attractor index"):
        AttractorIndex.load(tmp_path / "index.faiss")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_index_file_is_one_line_naming_it(tmp_path, damage):
    path = tmp_path / "index.faiss"
    AttractorIndex.build(_data(40, 8, 0), "l2").save(path)
    blob = path.read_bytes()
    path.write_bytes({"truncated": blob[: len(blob) // 2], "garbage": b"not a faiss index" * 8, "empty": b""}[damage])
    with pytest.raises(UsageError) as e:
        AttractorIndex.load(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{path}: not a readable FAISS index") and "rebuild" in msg, msg


@pytest.mark.parametrize("sidecar,needle", [
    ('{"format": 1, "dim": 8, "n"', "not readable JSON (JSONDecodeError"),
    (b"\xff\xfe{}", "not readable JSON (UnicodeDecodeError"),
    ("[1, 2]", "not the metadata of an attractor index (a JSON list)"),
    ('{"format": 1, "dim": "8", "n": 40, "metric": "l2", "kind": "flat"}', "missing or invalid dim"),
    ('{"format": 1, "dim": 8, "metric": "hamming", "kind": "flat"}', "missing or invalid n, metric"),
])
def test_a_damaged_sidecar_is_one_line_naming_it(tmp_path, sidecar, needle):
    path = tmp_path / "index.faiss"
    AttractorIndex.build(_data(40, 8, 0), "l2").save(path)
    side = tmp_path / "index.faiss.json"
    side.write_bytes(sidecar if isinstance(sidecar, bytes) else sidecar.encode())
    with pytest.raises(UsageError) as e:
        AttractorIndex.load(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{side}: ") and needle in msg and "rebuild" in msg, msg


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_vectors_are_the_indexed_ones_in_id_order(kind, metric):
    x = _data(400, 12, 9)
    got = AttractorIndex.build(x, metric, kind).vectors()
    want = x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x
    assert got.shape == (400, 12)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(UsageError, match="unknown metric"):
        AttractorIndex.build(_data(4, 3, 0), "manhattan")
    with pytest.raises(UsageError, match="zero vectors"):
        AttractorIndex.build(np.zeros((0, 3), np.float32))


def test_extract_index_refuses_other_model(tmp_path, capsys):
    """An index written by `extract` for one model cannot be loaded for another."""
    from latentfield.adapters import TorchAutoencoder
    torch.manual_seed(0)
    net = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 16), torch.nn.Unflatten(1, (1, 4, 4)))
    a = TorchAutoencoder(net(), torch.nn.Sequential(net(), torch.nn.Sigmoid()), image_shape=(1, 4, 4))
    b = TorchAutoencoder(net(), torch.nn.Sequential(net(), torch.nn.Sigmoid()), image_shape=(1, 4, 4))
    index = AttractorIndex.build(_data(10, 16, 0), fingerprint=a.fingerprint)
    index.save(tmp_path / "i.faiss")
    AttractorIndex.load(tmp_path / "i.faiss", fingerprint=a.fingerprint, dim=a.latent_dim)
    with pytest.raises(UsageError) as e:
        AttractorIndex.load(tmp_path / "i.faiss", fingerprint=b.fingerprint, dim=b.latent_dim)
    assert "\n" not in str(e.value)
