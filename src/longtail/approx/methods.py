"""The approximations by name: the one registry that the ``approximation`` pipeline, its
parameters and benchmarks/approximations.py draw on (``METHODS``).

**Subset-model families** (``SUBSET_FAMILIES``) estimate from the study's own first n subset
models, for each n of a list; the method ``<family>-<n>`` costs n subset models:

* ``fz``: the exact estimate (``longtail.estimate``) from those n models;
* ``margin``: LiRA's Gaussian fit to the logit margins (``longtail.approx.fewmodels``);
* ``eb``: empirical-Bayes shrinkage of the IN and OUT correctness rates.

Each one's seconds are n times the seconds of one subset model (``subset_model_seconds``,
measured in the same process) plus its own computation.

**Full-run methods** (``RUN_METHODS``): the training-dynamics proxies
(``longtail.approx.dynamics.MEMORIZATION_METHODS``) and the attribution methods
(``longtail.approx.attribution.INFLUENCE_METHODS``), from a few full-data runs of the study's
configuration trained once for all of them (``full_run_estimates``); each counts its own cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from longtail.approx import fewmodels
from longtail.approx.attribution import INFLUENCE_METHODS, influence_approximations
from longtail.approx.dynamics import MEMORIZATION_METHODS, memorization_proxies
from longtail.approx.result import InfluenceEstimate, MemorizationEstimate
from longtail.approx.runs import train_full_runs
from longtail.estimate import influence, memorization
from longtail.executors import TrainingData, train_shard
from longtail.nets.config import TrainConfig

Labels = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class SubsetModels:
    """The study's subset models: IN masks (n_models, n_train) and what each model computed,
    on the training split (``train_*``, (n_models, n_train)) and the test split (``test_*``)."""

    masks: np.ndarray
    train_correct: np.ndarray
    test_correct: np.ndarray
    train_margin: np.ndarray
    test_margin: np.ndarray
    labels: Labels  # (train labels, test labels): pairs are of one class

    def first(self, n: int) -> SubsetModels:
        return SubsetModels(
            self.masks[:n], self.train_correct[:n], self.test_correct[:n], self.train_margin[:n], self.test_margin[:n],
            self.labels,
        )


@dataclass(frozen=True)
class SubsetFamily:
    """How a family scores memorization (every training example) and influence (the
    ``per_test`` highest same-class pairs of each test example, within ``max_block_mb``)."""

    memorization: Callable[[SubsetModels], np.ndarray]
    influence: Callable[[SubsetModels, int, float], pd.DataFrame]


def _exact_influence(models: SubsetModels, per_test: int, max_block_mb: float) -> pd.DataFrame:
    """The exact estimate's ``per_test`` largest positive influences of each test example."""
    pairs = influence(models.masks, models.test_correct, top_k=per_test, labels=models.labels, max_block_mb=max_block_mb)
    return pairs[["train_index", "test_index", "infl"]].rename(columns={"infl": "score"})


SUBSET_FAMILIES: dict[str, SubsetFamily] = {
    "fz": SubsetFamily(lambda m: memorization(m.masks, m.train_correct)["mem"].to_numpy(), _exact_influence),
    "margin": SubsetFamily(
        lambda m: fewmodels.margin_memorization(m.masks, m.train_margin),
        lambda m, k, mb: fewmodels.margin_influence(m.masks, m.test_margin, m.labels, k, mb),
    ),
    "eb": SubsetFamily(
        lambda m: fewmodels.eb_memorization(m.masks, m.train_correct),
        lambda m, k, mb: fewmodels.eb_influence(m.masks, m.test_correct, m.labels, k, mb),
    ),
}


#: Methods computed from a few full-data runs: memorization proxies, then influence approximations.
RUN_METHODS: tuple[str, ...] = (*MEMORIZATION_METHODS, *INFLUENCE_METHODS)
#: Every method the ``approximation`` parameters may name.
METHODS: tuple[str, ...] = (*SUBSET_FAMILIES, *RUN_METHODS)


def subset_method(family: str, n: int) -> str:
    return f"{family}-{n}"


def estimates_mem(method: str) -> bool:
    """Whether a method's memorization score estimates mem itself (so that its error against
    the reference means something): the subset-model families do."""
    family, _, n = method.rpartition("-")
    return family in SUBSET_FAMILIES and n.isdigit()


def subset_model_estimates(
    models: SubsetModels,
    families: Sequence[str],
    counts: Sequence[int],
    *,
    per_test: int,
    subset_model_seconds: float,
    max_block_mb: float,
) -> tuple[list[MemorizationEstimate], list[InfluenceEstimate]]:
    """Every family's estimates from the first n models, for each n of ``counts`` that the
    study has (the others are skipped)."""
    unknown = [f for f in families if f not in SUBSET_FAMILIES]
    if unknown:
        raise ValueError(f"unknown subset-model families {unknown}; allowed: {', '.join(SUBSET_FAMILIES)}")
    mem, infl = [], []
    for n in (n for n in counts if n <= len(models.masks)):
        first, trained = models.first(n), n * subset_model_seconds
        for family in families:
            name, estimator = subset_method(family, n), SUBSET_FAMILIES[family]
            started = time.perf_counter()
            score = estimator.memorization(first)
            mem.append(MemorizationEstimate(name, score, float(n), trained + time.perf_counter() - started))
            started = time.perf_counter()
            pairs = estimator.influence(first, per_test, max_block_mb)
            infl.append(InfluenceEstimate(name, pairs, float(n), trained + time.perf_counter() - started))
    return mem, infl


def subset_model_seconds(data: TrainingData, mask: np.ndarray, config: TrainConfig) -> float:
    """Seconds to train one subset model (on ``mask``, as the study's model 0) and evaluate it
    on both splits, alone in this process: the unit of every method's cost in seconds. The
    second of two such trainings is timed, the first paying for start-up (threads, CUDA
    context, kernel choice). A study trains its models in batches, faster per model."""
    masks = np.asarray(mask, dtype=bool)[None]
    train_shard(data, masks, 0, config)
    started = time.perf_counter()
    train_shard(data, masks, 0, config)
    return time.perf_counter() - started


@dataclass(frozen=True)
class FullRunPlan:
    """The full-data runs that the full-run methods share: how many (at most 8), their seed,
    and the epochs whose end they keep the weights of (None: every epoch)."""

    n_runs: int
    seed: int
    checkpoint_epochs: Sequence[int] | None = None


def full_run_estimates(
    data: TrainingData,
    config: TrainConfig,
    methods: Sequence[str],
    plan: FullRunPlan,
    *,
    per_test: int,
    subset_model_seconds: float,
    subset_ratio: float,
) -> tuple[list[MemorizationEstimate], list[InfluenceEstimate]]:
    """The full-run methods among ``methods``, from ``plan.n_runs`` full-data runs of ``config``
    (trained only if one is asked for); cost counted against a subset model of
    ``subset_model_seconds`` on ``subset_ratio`` of the examples, for ``config.epochs``."""
    unknown = [m for m in methods if m not in RUN_METHODS]
    if unknown:
        raise ValueError(f"unknown full-run methods {unknown}; allowed: {', '.join(RUN_METHODS)}")
    proxies = [m for m in methods if m in MEMORIZATION_METHODS]
    attributions = [m for m in methods if m in INFLUENCE_METHODS]
    if not methods:
        return [], []
    runs = train_full_runs(
        data.train_images, data.train_labels, config, plan.n_runs, seed=plan.seed,
        checkpoint_epochs=plan.checkpoint_epochs, n_classes=data.n_classes,
    )
    budget = {"subset_model_seconds": subset_model_seconds, "subset_ratio": subset_ratio}
    mem = memorization_proxies(runs, data.train_images, data.train_labels, proxies, **budget) if proxies else []
    infl = influence_approximations(
        runs, data.train_images, data.train_labels, data.test_images, data.test_labels, attributions,
        per_test=per_test, **budget,
    ) if attributions else []
    return mem, infl
