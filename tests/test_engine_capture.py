"""Path capture (``capture`` > 0): a seed that joins an earlier seed's path stops and ends as that seed ends."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from latentfield.probe.engine import CONVERGED, iterate
from latentfield.probe.rundir import ProbeConfig, run_probe

from builders import random_conv_ae


def test_a_seed_on_an_earlier_path_is_captured_there():
    a = torch.tensor([1.0, 0.0])
    e = torch.tensor([0.0, 1.0])
    f = lambda z: a + 0.5 * (z - a)  # noqa: E731  contraction onto a, straight lines
    z0 = torch.stack([a + 10 * e, a + 10.002 * e, a + 10 * torch.tensor([0.6, 0.8])])
    res = iterate(f, z0, tol=1e-12, max_steps=200, capture=0.01)
    # Seed 1 is 0.001 from seed 0's step-1 point after one step: it stops and takes seed 0's end.
    assert res.captured_by.tolist()[:2] == [-1, 0] and res.steps[1] == 1
    assert torch.equal(res.end[1], res.end[0]) and res.status[1] == CONVERGED
    # Seed 2 comes from another direction: it walks until its path meets seed 0's near a.
    assert res.captured_by[2] == 0 and 1 < res.steps[2] < res.steps[0]
    plain = iterate(f, z0, tol=1e-12, max_steps=200)
    assert plain.captured_by is None and res.n_evals < plain.n_evals
    torch.testing.assert_close(res.end, plain.end, rtol=0, atol=1e-5)  # same attractor either way


@pytest.mark.parametrize("solver", ["plain", "relax"])
def test_capture_does_not_depend_on_the_batch_size(solver):
    adapter = random_conv_ae()
    runs = [run_probe(adapter, ProbeConfig(n_seeds=48, batch_size=bs, max_steps=400, solver=solver, capture=0.05),
                      progress=False) for bs in (1, 5, 48)]
    ref = runs[0]
    assert (ref.captured_by >= 0).sum() > 10  # the rule does fire on this model
    assert all((ref.captured_by[ref.captured_by >= 0] < np.flatnonzero(ref.captured_by >= 0)))  # earlier seeds only
    for r in runs[1:]:
        assert (r.captured_by == ref.captured_by).all() and (r.steps == ref.steps).all()
        assert (r.status == ref.status).all() and (r.labels == ref.labels).all()
        torch.testing.assert_close(r.attractors, ref.attractors, rtol=0, atol=1e-5)
    assert ref.stability is not None  # capture forces verification, as the accelerated solvers do
    plain = run_probe(adapter, ProbeConfig(n_seeds=48, max_steps=400, solver=solver), progress=False)
    assert ref.n_evals < plain.n_evals and len(ref.attractors) == len(plain.attractors)


def test_capture_out_of_range_is_refused():
    with pytest.raises(ValueError, match="capture is a radius relative to a point's norm"):
        ProbeConfig(capture=1.0).validate()
