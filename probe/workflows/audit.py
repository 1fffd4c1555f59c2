"""The audit as a library function: probe a model from noise (a resumable run in ``OUT/probe``), compute
every analysis the report shows, and return it as one typed :class:`AuditResult` (also written as
``OUT/report.json``). Nothing here renders HTML; ``report.audit`` renders the result.

One frozen dataclass per part of the audit (overview, convergence, stability, gallery, memorization,
generalization entropy, dictionary, OOD, verdict); each has ``to_json()``, the part's keys in
``report.json``. Attractors are numbered by basin size, largest first (``ProbeResult.basin_order``), in
every part. A new analysis is a new field of :class:`AuditResult` (its own dataclass), computed in
:func:`audit` from typed values.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from latentfield.adapters import Adapter, load_adapter
from latentfield.adapters.errors import UsageError
from latentfield.adapters.precision import LOW_PRECISION, dtype_name

from ..analyses.copying import VARIANCE_EXPLAINED, calibrated_copying, generalization_entropy
from ..analyses.data_copying import ct_statistic
from ..analyses.dictionary import dictionary_test
from ..analyses.field import split_trajectories
from ..analyses.memorization import memorization_coefficient, top_cosine
from ..analyses.verdict import Verdict, verdict
from ..data import noise_images
from ..display import card, image_strip
from ..engine.latents import decode_unit
from ..engine.types import CONVERGED, MAX_STEPS
from ..rundir import ProbeConfig, ProbeResult, output, run_probe
from ..rundir.layout import audit_ood_dir, cache_root, probe_dir
from .ood import OODResult, export_scores, ood_benchmark, split_heldout

SCHEMA_VERSION = 1  # report.json's layout; raise it when a key changes meaning or goes
TRAJECTORY_SEEDS = 12
END_POINT_SAMPLE = 8  # decoded end points shown when no seed converged
AUDIT_MAX_IMAGES = 512  # the audit scores a seeded subset of each OOD set; `latentfield ood` has no cap
TOP_NEIGHBOURS = 3  # nearest training images per attractor
NOISE_MAX = 256  # noise images of the memorization floor (at least one per attractor)
CT_CELLS, CT_MIN_PER_CELL = 5, 20  # C_T: k-means cells on the training set, generated samples a cell needs
DICTIONARY_MAX_IMAGES = 512
DISPLAY_GALLERY = 12  # decoded attractors a notebook shows


# -- the parts of an audit ------------------------------------------------------------------------

@dataclass(frozen=True)
class AuditOverview:
    """The model and the probe. ``image_shape`` (C, H, W) and ``latent_shape`` as the adapter states them;
    ``dtype``: the model's dtype name (the engine's state and end points are float32 whatever it is);
    ``config``: the probe's settings; ``n_evals``: evaluations of f; ``wall_time_s``: seconds the probe took;
    ``environment``: versions, threads, platform and device (``summary.json``'s ``versions``);
    ``provenance``: repo id, commit and sha256 of each weight file, when the adapter knows them;
    ``run_key``: the probe run's key (``OUT/probe/run.json``)."""

    model: str
    fingerprint: str
    image_shape: tuple[int, ...]
    latent_shape: tuple[int, ...]
    dtype: str
    low_precision: bool
    config: ProbeConfig
    n_evals: int
    wall_time_s: float
    environment: Mapping[str, Any]
    provenance: Mapping[str, Any] | None = None
    run_key: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "fingerprint": self.fingerprint, "run_key": self.run_key,
                "latent_shape": list(self.latent_shape), "image_shape": list(self.image_shape), "dtype": self.dtype,
                "config": asdict(self.config), "n_evals": self.n_evals, "wall_time_s": self.wall_time_s,
                "environment": dict(self.environment),
                **({"provenance": dict(self.provenance)} if self.provenance is not None else {})}


@dataclass(frozen=True)
class Convergence:
    """How the seeds ended, with ``summary.json``'s names. ``counts``: seeds per status (``converged``,
    ``max_steps``, ``diverged``); ``basin_sizes`` (K,) seeds per attractor and ``attractor_ids`` (K,) each
    attractor's index in the run's files, both largest basin first; ``steps_to_converge``: ``median``,
    ``p90``, ``max`` f evaluations of the converged seeds (None when none converged); ``unconverged``: the
    seeds that ran to max steps themselves (``ProbeResult.unconverged()``: ``n``, ``max_steps``, ``tol``,
    ``sq_step_median``, ``sq_step_max``, ``relative_step_median``), None when none did; ``n_captured`` /
    ``captured_status``: seeds stopped by path capture (None without capture); ``cos_threshold`` /
    ``euclid_rtol``: the de-duplication rules behind ``n_attractors`` / ``n_attractors_euclid``."""

    n_seeds: int
    counts: Mapping[str, int]
    n_attractors: int
    n_attractors_euclid: int
    basin_sizes: tuple[int, ...]
    attractor_ids: tuple[int, ...]
    steps_to_converge: Mapping[str, float | None]
    unconverged: Mapping[str, Any] | None
    cos_threshold: float
    euclid_rtol: float
    n_captured: int | None = None
    captured_status: Mapping[str, int] | None = None
    basin_sizes_approximate: bool = False

    @property
    def n_converged(self) -> int:
        return int(self.counts["converged"])

    def to_json(self) -> dict[str, Any]:
        out = {"n_seeds": self.n_seeds, "counts": dict(self.counts), "n_attractors": self.n_attractors,
               "n_attractors_euclid": self.n_attractors_euclid, "basin_sizes": list(self.basin_sizes),
               "attractor_ids": list(self.attractor_ids), "steps_to_converge": dict(self.steps_to_converge),
               "unconverged": None if self.unconverged is None else dict(self.unconverged),
               "basin_sizes_approximate": self.basin_sizes_approximate}
        if self.n_captured is not None:
            out |= {"n_captured": self.n_captured, "captured_status": dict(self.captured_status or {})}
        return out


@dataclass(frozen=True)
class StabilityEntry:
    """One attractor's Jacobian spectrum: ``rank`` (by basin size) and ``attractor_id``; ``kind``
    (``attractor``, ``saddle_or_repeller``, ``marginal``); ``spectral_radius`` of J_f; ``lipschitz`` (its
    largest singular value); ``predicted_steps`` / ``measured_steps_median``: steps to converge, from the
    spectrum and as the seeds took them (None when unknown)."""

    rank: int
    attractor_id: int
    kind: str
    spectral_radius: float
    lipschitz: float
    predicted_steps: float | None
    measured_steps_median: float | None


@dataclass(frozen=True)
class Stability:
    """Verified runs only. ``record``: the run's ``summary.json`` ``stability`` block as it is (kind counts
    ``n_<kind>``, the Euclidean points ``per_euclid`` with ``cosine_attractor`` ids, ``verify_cost``);
    ``per_attractor``: its per-attractor entries, largest basin first."""

    record: Mapping[str, Any]
    per_attractor: tuple[StabilityEntry, ...]

    def to_json(self) -> dict[str, Any]:
        return {**self.record, "per_attractor": [asdict(e) for e in self.per_attractor]}


@dataclass(frozen=True)
class Neighbour:
    """A training image near an attractor: its ``index`` in the training set and the ``cosine`` of the
    flattened [0, 1] pixels."""

    index: int
    cosine: float


@dataclass(frozen=True)
class GalleryEntry:
    """One attractor of the gallery: ``rank`` (by basin size), ``attractor_id``, ``basin_size`` (seeds) and
    its nearest training images, best first (empty without training images)."""

    rank: int
    attractor_id: int
    basin_size: int
    nearest_train: tuple[Neighbour, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = {"rank": self.rank, "attractor_id": self.attractor_id, "basin_size": self.basin_size}
        return out | ({"nearest_train": [asdict(n) for n in self.nearest_train]} if self.nearest_train else {})


@dataclass(frozen=True)
class CalibratedCopying:
    """Copy rates (``analyses.copying.calibrated_copying``), fractions in [0, 1]: an image is a copy when its
    cosine to the nearest training image exceeds ``copy_threshold_cosine``, the level only ``copy_quantile``
    of held-out images reach. ``copy_rate``: of the decoded attractors; ``copy_rate_seeds``: weighted by
    basin size; ``heldout_copy_rate`` (``copy_quantile`` by construction, up to ties); ``noise_copy_rate``."""

    copy_quantile: float
    copy_threshold_cosine: float
    copy_rate: float
    heldout_copy_rate: float
    copy_rate_seeds: float | None = None
    noise_copy_rate: float | None = None


@dataclass(frozen=True)
class DataCopying:
    """Meehan et al.'s C_T test (``analyses.data_copying.ct_statistic``), one generated sample per converged
    seed: ``C_T`` and ``z`` (None when no cell qualifies), the one-sided p-values, ``reading``
    (``copying`` / ``neither`` / ``underfitting``, or why there is none) and per k-means cell (``cells``) the
    training / held-out / generated counts, weight and ``Z_U``."""

    n_cells: int
    min_per_cell: int
    n_train: int
    n_heldout: int
    n_generated: int
    cells_used: int
    generated_in_used_cells: int
    C_T: float | None
    z: float | None
    p_copying: float | None
    p_underfitting: float | None
    reading: str
    cells: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Memorization:
    """Max cosine of flattened [0, 1] pixels to the ``n_train`` training images (the paper's memorization
    coefficient). ``per_attractor`` (K,): each decoded attractor's, largest basin first; ``mean`` / ``std``
    over them. ``baseline_*``: the same for the ``n_heldout`` held-out images (None without them);
    ``noise_baseline_*``: for ``n_noise`` uniform-noise images (the measure's floor). ``copying`` and
    ``ct_statistic``: calibrated against the held-out images (None without them)."""

    n_train: int
    mean: float
    std: float
    per_attractor: tuple[float, ...]
    n_noise: int
    noise_baseline_mean: float
    noise_baseline_std: float
    n_heldout: int = 0
    baseline_mean: float | None = None
    baseline_std: float | None = None
    copying: CalibratedCopying | None = None
    ct_statistic: DataCopying | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mean": self.mean, "std": self.std, "per_attractor": list(self.per_attractor)}
        if self.baseline_mean is not None:
            out |= {"baseline_mean": self.baseline_mean, "baseline_std": self.baseline_std}
        out |= {"noise_baseline_mean": self.noise_baseline_mean, "noise_baseline_std": self.noise_baseline_std}
        if self.copying is not None:
            out |= {k: v for k, v in asdict(self.copying).items() if v is not None}
        if self.ct_statistic is not None:
            out["ct_statistic"] = asdict(self.ct_statistic) | {"cells": [dict(c) for c in self.ct_statistic.cells]}
        return out


@dataclass(frozen=True)
class EntropyCount:
    """The paper's generalization entropy of ``n_items`` images: ``n_components`` singular vectors of the
    centred, flattened images explain ``explained`` of their variance; ``ratio`` = n_components / n_items
    (None under 2 images); ``explained_variance_ratio``: the first (at most 64) shares of variance."""

    n_components: int
    n_items: int
    ratio: float | None
    explained: float = VARIANCE_EXPLAINED
    explained_variance_ratio: tuple[float, ...] = ()


@dataclass(frozen=True)
class GeneralizationEntropy:
    """``attractors``: of the decoded attractors; ``train_baseline``: of as many random training images (the
    count grows with the number of images), None without training images."""

    attractors: EntropyCount
    train_baseline: EntropyCount | None = None

    def to_json(self) -> dict[str, Any]:
        return {"attractors": asdict(self.attractors)} | (
            {"train_baseline": asdict(self.train_baseline)} if self.train_baseline is not None else {})


@dataclass(frozen=True)
class Dictionary:
    """The OMP dictionary test (``analyses.dictionary.dictionary_test``): ``n_images`` reference images
    rebuilt from ``n_atoms[i]`` atoms; per entry the image MSE ([0, 1] pixels) with the attractors as atoms
    and with a random orthonormal basis of the ``latent_dim``-dimensional latent space, and the latent
    relative residuals; ``mse_autoencoder``: the MSE of D(E(x)), both curves' floor."""

    n_atoms: tuple[int, ...]
    n_attractors: int
    latent_dim: int
    n_images: int
    mse_attractors: tuple[float, ...]
    mse_random_basis: tuple[float, ...]
    residual_attractors: tuple[float, ...]
    residual_random_basis: tuple[float, ...]
    mse_autoencoder: float

    def to_json(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


@dataclass(frozen=True)
class AuditOOD:
    """The OOD benchmark on seeded subsets of at most ``max_images`` images per set: fitted on ``n_fit``
    in-distribution images, ``n_test`` held-out ones as negatives; ``benchmark``: scores and metrics."""

    benchmark: OODResult
    n_fit: int
    n_test: int
    max_images: int = AUDIT_MAX_IMAGES

    def auroc(self) -> dict[str, dict[str, float]]:
        """Test set -> method -> AUROC."""
        return {t: {m: v["auroc"] for m, v in per.items()} for t, per in self.benchmark.metrics.items()}

    def to_json(self) -> dict[str, Any]:
        return self.benchmark.to_json()


@dataclass(frozen=True)
class EndPointSample:
    """When no seed converged: the first seeds that stopped at max steps (``seeds`` (S,) indices) and their
    decoded end points (``images`` (S, C, H, W) in [0, 1]). Not attractors: where the seeds happened to be."""

    seeds: tuple[int, ...]
    images: torch.Tensor


@dataclass(frozen=True, eq=False)
class AuditResult:
    """Everything an audit found, typed. The parts above, plus what the renderer draws (not in the JSON):
    ``decoded`` (K, C, H, W) the decoded attractors in [0, 1] and ``attractors`` (K, *latent) their latents,
    both largest basin first; ``trajectories``: the first seeds' recorded paths, one (T_i, D) array each
    (None when not recorded); ``end_points``: see :class:`EndPointSample`; ``train``: the training images
    (N, C, H, W) in [0, 1] the gallery shows beside the attractors (None without them).

    ``to_json()`` is ``report.json``: ``schema_version`` first, then ``verdict`` and each part's keys.
    """

    overview: AuditOverview
    convergence: Convergence
    verdict: Verdict
    gallery: tuple[GalleryEntry, ...]
    decoded: torch.Tensor
    attractors: torch.Tensor
    stability: Stability | None = None
    memorization: Memorization | None = None
    generalization_entropy: GeneralizationEntropy | None = None
    dictionary: Dictionary | None = None
    ood: AuditOOD | None = None
    trajectories: tuple[np.ndarray, ...] | None = None
    end_points: EndPointSample | None = None
    train: torch.Tensor | None = None

    def __repr__(self) -> str:
        c = self.convergence
        flags = f", flags {list(self.verdict.flags)}" if self.verdict.flags else ""
        return (f"AuditResult({self.overview.model!r}: {c.n_converged}/{c.n_seeds} seeds converged to "
                f"{c.n_attractors} attractors{flags})")

    def _repr_html_(self) -> str:
        """Jupyter: the verdict, the key numbers and the first decoded attractors (largest basin first)."""
        o, c, m = self.overview, self.convergence, self.memorization
        rows = [("model", o.model), ("fingerprint", o.fingerprint[:16]),
                ("converged / seeds", f"{c.n_converged} / {c.n_seeds}"), ("attractors", c.n_attractors)]
        if m is not None:
            rows.append(("memorization coefficient", m.mean))
            if m.baseline_mean is not None:
                rows.append(("held-out baseline", m.baseline_mean))
        if self.verdict.flags:
            rows.append(("flags", ", ".join(self.verdict.flags)))
        n = min(len(self.decoded), DISPLAY_GALLERY)
        strip = image_strip(self.decoded[:n], [f"#{e.rank}: {e.basin_size} seeds" for e in self.gallery[:n]])
        return card(f"AuditResult: {o.model}", rows, list(self.verdict.sentences.values()), strip if n else "")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "verdict": self.verdict.to_json(),
                               **self.overview.to_json(), **self.convergence.to_json()}
        if self.stability is not None:
            out["stability"] = self.stability.to_json()
        out["attractors"] = [e.to_json() for e in self.gallery]
        for key in ("memorization", "generalization_entropy", "dictionary", "ood"):
            if (part := getattr(self, key)) is not None:
                out[key] = part.to_json()
        return _plain(out)


def _plain(obj: Any) -> Any:
    """Tuples and mappings as JSON has them (lists, dicts), recursively: ``to_json() == json.loads(report.json)``."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# -- the workflow ---------------------------------------------------------------------------------

def audit(adapter: Adapter | Any, out: str | Path, config: ProbeConfig | None = None, *, train: torch.Tensor | None = None,
          heldout: torch.Tensor | None = None, progress: bool = True,
          options: Mapping[str, Any] | None = None) -> AuditResult:
    """Probe ``adapter``, compute every analysis of the audit and write ``out/report.json``; returns the result.

    The probe run goes to ``out/probe`` (resumable). ``train`` / ``heldout``: reference images (N, C, H, W)
    in [0, 1] for memorization (default: a demo checkpoint's own sets). ``options``: ``{"dictionary": True}``
    runs the OMP dictionary test, ``{"ood": {name: images}}`` the OOD benchmark (fitted on ``train``,
    negatives ``heldout``). ``report.audit.write_report`` renders the result as ``report.html``.
    """
    adapter = load_adapter(adapter)  # a model object (``pipe.vae``) or a spec string wraps as its family's adapter
    out = Path(out)
    options = options or {}
    known_train, known_heldout = reference_sets(adapter)
    train = known_train if train is None else train
    heldout = known_heldout if heldout is None else heldout
    if heldout is not None and not len(heldout):
        heldout = None
    cfg = config or ProbeConfig()
    result = run_probe(adapter, cfg, out=probe_dir(out), progress=progress)
    order = result.basin_order()
    attractors = result.attractors[torch.as_tensor(order, dtype=torch.long)]  # (K, *latent), largest basin first
    decoded = decode_unit(adapter, attractors)
    summary = result.summary()
    convergence = _convergence(result, summary, order)
    memorization = _memorization(adapter, result, decoded, train, heldout) if train is not None else None
    ood = _ood(adapter, train, heldout, options["ood"], cfg, out, progress) \
        if options.get("ood") and train is not None else None
    audit_result = AuditResult(
        overview=_overview(adapter, result, summary),
        convergence=convergence,
        verdict=_verdict(convergence, memorization, ood, have_train=train is not None, have_heldout=heldout is not None),
        gallery=_gallery(convergence, decoded, train),
        decoded=decoded,
        attractors=attractors,
        stability=_stability(summary, order),
        memorization=memorization,
        generalization_entropy=_entropy(decoded, train) if len(decoded) else None,
        dictionary=_dictionary(adapter, result, train, heldout) if options.get("dictionary") else None,
        ood=ood,
        trajectories=_trajectories(adapter, result, cfg),
        end_points=_end_points(adapter, result),
        train=train)
    output.write_json(out / "report.json", audit_result.to_json())
    return audit_result


def _overview(adapter: Adapter, result: ProbeResult, summary: Mapping[str, Any]) -> AuditOverview:
    prov = getattr(adapter, "provenance", None)
    return AuditOverview(model=adapter.name, fingerprint=adapter.fingerprint,
                         image_shape=tuple(adapter.image_shape or ()), latent_shape=tuple(adapter.latent_shape),
                         dtype=dtype_name(adapter.dtype), low_precision=adapter.dtype in LOW_PRECISION,
                         config=result.config, n_evals=result.n_evals, wall_time_s=result.wall_time_s,
                         environment=summary["versions"], provenance=prov, run_key=result.run_key)


def _convergence(result: ProbeResult, s: Mapping[str, Any], order: np.ndarray) -> Convergence:
    return Convergence(n_seeds=s["n_seeds"], counts=s["counts"], n_attractors=s["n_attractors"],
                       n_attractors_euclid=s["n_attractors_euclid"],
                       basin_sizes=tuple(int(n) for n in result.basin_sizes[order]),
                       attractor_ids=tuple(int(k) for k in order), steps_to_converge=s["steps_to_converge"],
                       unconverged=s.get("unconverged"), cos_threshold=result.config.cos_threshold,
                       euclid_rtol=result.config.euclid_rtol, n_captured=s.get("n_captured"),
                       captured_status=s.get("captured_status"),
                       basin_sizes_approximate=bool(s.get("basin_sizes_approximate", False)))


def _stability(summary: Mapping[str, Any], order: np.ndarray) -> Stability | None:
    stab = summary.get("stability")
    if not stab:
        return None
    per = stab.get("per_attractor", [])
    entries = tuple(StabilityEntry(rank=rank, attractor_id=int(k), **per[k])
                    for rank, k in enumerate(order) if k < len(per))
    return Stability(record={k: v for k, v in stab.items() if k != "per_attractor"}, per_attractor=entries)


def _gallery(conv: Convergence, decoded: torch.Tensor, train: torch.Tensor | None) -> tuple[GalleryEntry, ...]:
    """Each attractor, largest basin first, with its ``TOP_NEIGHBOURS`` nearest training images by cosine."""
    near = top_cosine(decoded, train, TOP_NEIGHBOURS) if train is not None and len(decoded) else None
    entries = []
    for rank, (k, size) in enumerate(zip(conv.attractor_ids, conv.basin_sizes)):
        nearest = () if near is None else tuple(Neighbour(int(j), float(v))
                                                for v, j in zip(near[0][rank].tolist(), near[1][rank].tolist()))
        entries.append(GalleryEntry(rank, k, size, nearest))
    return tuple(entries)


def _memorization(adapter: Adapter, result: ProbeResult, decoded: torch.Tensor, train: torch.Tensor,
                  heldout: torch.Tensor | None) -> Memorization | None:
    """The coefficient against the held-out and noise baselines, calibrated copy rates and C_T (the last two
    need held-out images; C_T takes one decoded end point per converged seed)."""
    if not len(decoded):
        return None
    mem = memorization_coefficient(decoded, train)  # decoded is in basin order: per attractor, largest basin first
    noise = noise_images(max(len(decoded), min(NOISE_MAX, len(train))), train.shape[1:], seed=0)
    floor = memorization_coefficient(noise, train)
    parts: dict[str, Any] = {}
    if heldout is not None:
        base = memorization_coefficient(heldout, train)
        sizes = result.basin_sizes[result.basin_order()]
        generated = decode_unit(adapter, result.end_points[torch.as_tensor(result.status == CONVERGED)])
        ct = ct_statistic(train, generated, heldout, n_cells=min(CT_CELLS, len(train)), min_per_cell=CT_MIN_PER_CELL)
        parts = {"n_heldout": len(heldout), "baseline_mean": base["mean"], "baseline_std": base["std"],
                 "copying": CalibratedCopying(**calibrated_copying(decoded, train, heldout, noise, sizes)),
                 "ct_statistic": DataCopying(**{**ct, "cells": tuple(ct["cells"])})}
    return Memorization(n_train=len(train), mean=mem["mean"], std=mem["std"], per_attractor=tuple(mem["per_item"]),
                        n_noise=len(noise), noise_baseline_mean=floor["mean"], noise_baseline_std=floor["std"],
                        **parts)


def _entropy(decoded: torch.Tensor, train: torch.Tensor | None) -> GeneralizationEntropy:
    def count(images: torch.Tensor) -> EntropyCount:
        e = generalization_entropy(images)
        return EntropyCount(**{**e, "explained_variance_ratio": tuple(e["explained_variance_ratio"])})

    base = None
    if train is not None and len(train) >= 2:
        g = torch.Generator().manual_seed(0)  # the count grows with the number of images: as many training images
        base = count(train[torch.randperm(len(train), generator=g)[:max(2, len(decoded))]])
    return GeneralizationEntropy(count(decoded), base)


def _dictionary(adapter: Adapter, result: ProbeResult, train: torch.Tensor | None,
                heldout: torch.Tensor | None) -> Dictionary | None:
    images = heldout if heldout is not None else train
    if not len(result.attractors) or images is None or not len(images):
        return None
    d = dictionary_test(adapter, result.attractors, images[:DICTIONARY_MAX_IMAGES])
    return Dictionary(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _ood(adapter: Adapter, train: torch.Tensor, heldout: torch.Tensor | None, sets: Mapping[str, torch.Tensor],
         cfg: ProbeConfig, out: Path, progress: bool) -> AuditOOD:
    """The OOD benchmark on seeded subsets, with every probe setting of the audit (stopping rule, solver,
    capture); scores exported to ``OUT/ood``."""
    fit, test = (train, heldout) if heldout is not None else split_heldout(train)
    fit, test = _subset(fit, AUDIT_MAX_IMAGES), _subset(test, AUDIT_MAX_IMAGES)
    tests = {name: _subset(x, AUDIT_MAX_IMAGES) for name, x in sets.items()}
    ood_dir = audit_ood_dir(out)
    res = ood_benchmark(adapter, fit, test, tests, cfg, progress=progress, cache=cache_root(ood_dir))
    export_scores(res, ood_dir)
    return AuditOOD(res, len(fit), len(test))


def _trajectories(adapter: Adapter, result: ProbeResult, cfg: ProbeConfig) -> tuple[np.ndarray, ...] | None:
    """The main run's first seeds again, every step recorded (seed i depends only on (seed, i))."""
    if not len(result.attractors) or cfg.init == "data":
        return None
    n = min(TRAJECTORY_SEEDS, cfg.n_seeds)
    rec = run_probe(adapter, replace(cfg, n_seeds=n, record_every=1, verify=False, chunk_size=None), progress=False)
    return tuple(split_trajectories(rec.trajectories))


def _end_points(adapter: Adapter, result: ProbeResult) -> EndPointSample | None:
    if len(result.attractors):
        return None
    seeds = np.flatnonzero(result.status == MAX_STEPS)[:END_POINT_SAMPLE]
    if not len(seeds):
        return None
    return EndPointSample(tuple(int(i) for i in seeds), decode_unit(adapter, result.end_points[torch.as_tensor(seeds)]))


def _verdict(conv: Convergence, mem: Memorization | None, ood: AuditOOD | None, *, have_train: bool,
             have_heldout: bool) -> Verdict:
    u = conv.unconverged or {}
    return verdict(conv.n_seeds, conv.n_converged, conv.basin_sizes, n_stopped=u.get("n", 0),
                   relative_step=u.get("relative_step_median"),
                   cosines=mem.per_attractor if mem else None,
                   threshold=mem.copying.copy_threshold_cosine if mem and mem.copying else None,
                   heldout_mean=mem.baseline_mean if mem else None,
                   noise_mean=mem.noise_baseline_mean if mem else None,
                   noise_std=mem.noise_baseline_std if mem else None,
                   have_train=have_train, have_heldout=have_heldout, ood_auroc=ood.auroc() if ood else None)


def _subset(x: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    if len(x) <= n:
        return x
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n].sort().values]


def check_same_audit(result: AuditResult, path: Path) -> None:
    """Refuse ``path`` (a ``report.json``) when it belongs to another run or model than ``result``."""
    if not path.is_file():
        return
    try:
        theirs = json.loads(path.read_text())
    except (OSError, ValueError):
        return  # unreadable: nothing to pair with; the audit rewrites it
    mine = result.overview
    if (theirs.get("run_key"), theirs.get("fingerprint")) != (mine.run_key, mine.fingerprint):
        raise UsageError(f"{path} belongs to another audit (run key {str(theirs.get('run_key'))[:12]}, not "
                         f"{str(mine.run_key)[:12]}); write the report into its own audit's `out`")


def reference_sets(adapter: Adapter) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Training and held-out images recorded with a bundled demo checkpoint, if any."""
    record = getattr(adapter, "training_record", None)
    if not record:
        return None, None
    from ..data import digits
    x_train, _ = digits("train")
    return x_train[record["train_indices"]], digits("test")[0]


__all__ = ["audit", "check_same_audit", "AuditResult", "AuditOverview", "Convergence", "Stability", "StabilityEntry", "GalleryEntry",
           "Neighbour", "Memorization", "CalibratedCopying", "DataCopying", "GeneralizationEntropy", "EntropyCount",
           "Dictionary", "AuditOOD", "EndPointSample", "Verdict", "reference_sets", "SCHEMA_VERSION",
           "TRAJECTORY_SEEDS", "AUDIT_MAX_IMAGES", "END_POINT_SAMPLE", "TOP_NEIGHBOURS"]
