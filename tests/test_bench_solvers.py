"""bench/bench_solvers.py's per-seed agreement with plain iteration, on end points with a known answer."""
from __future__ import annotations


import numpy as np
import torch

from builders import load_script



def _bench():
    return load_script("bench", "bench_solvers")


def test_per_seed_agreement():
    bench = _bench()
    ref = torch.tensor([[10.0, 0], [0, 10.0], [10.0, 0], [0, 10.0], [3.0, 4.0], [6.0, 8.0]])
    ref_status = np.array([0, 0, 0, 0, 0, 1])  # the last seed stopped at max_steps
    end = ref.clone()
    end[0] += torch.tensor([0.0, 0.19])   # 1.9% of ||ref||: agrees
    end[1] = torch.tensor([10.0, 0.0])    # another basin: disagrees
    end[2] *= 1.03                        # same direction, 3% longer: disagrees (cosine would merge it)
    status = ref_status.copy()
    status[4] = 1                         # same point, but not converged: disagrees
    captured = np.array([True, True, False, False, False, False])
    ag = bench.per_seed_agreement(ref, ref_status, end, status, captured)
    assert ag == {"all": (3, 6), "ref_converged": (2, 5), "captured": (1, 2), "not_captured": (2, 4)}
    assert set(bench.per_seed_agreement(ref, ref_status, ref, ref_status)) == {"all", "ref_converged"}
    assert bench.per_seed_agreement(ref, ref_status, ref, ref_status)["all"] == (6, 6)
    assert bench._share((3, 6)) == "3/6 (50.0%)" and bench._share(None) == "-"
