"""Influence approximations from a few full-data training runs
(:class:`~longtail.approx.runs.FullRuns`), reported as each test example's highest-scored
same-class training examples (higher = more influential: the training example helps the test
example's label).

* ``trak`` (Park et al., ICML 2023, "TRAK: Attributing Model Behavior at Scale"): MadryLab's
  ``traker`` package, as it is, on the last weights of each run (its CPU projector).
* ``tracin`` (Pruthi et al., NeurIPS 2020): Σ_checkpoints lr · ⟨∇_θ ℓ(train), ∇_θ ℓ(test)⟩,
  averaged over runs, with exact per-example gradients (:mod:`longtail.approx.gradients`).
* ``influence_function`` (Koh & Liang, ICML 2017; EK-FAC: Grosse et al. 2023, "Studying Large
  Language Model Generalization with Influence Functions"): the ``kronfluence`` package, as it
  is, on the last weights of each run: g_testᵀ (G + λI)⁻¹ g_train with an eigenvalue-corrected
  Kronecker-factored Gauss-Newton G, averaged over runs.
* ``nn_features``: cosine similarity of the inputs of the last linear layer (penultimate
  features) of one trained model, the last weights of the first run.
* ``nn_input``: cosine similarity of the raw inputs; needs no training.

The peer packages are imported inside their methods, so the library imports without them
(``pip install -e '.[peers]'`` installs them).
"""

from __future__ import annotations

import importlib
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from longtail.approx.dynamics import check_methods, check_training_data, scored_epochs
from longtail.approx.gradients import gradient_features
from longtail.approx.result import PAIR_COLUMNS, InfluenceEstimate
from longtail.approx.runs import Budget, FullRuns

INFLUENCE_METHODS = ("trak", "tracin", "influence_function", "nn_features", "nn_input")
#: The methods that run a peer package (the ``peers`` extra), and the module each imports.
PEER_MODULES = {"trak": "trak", "influence_function": "kronfluence"}
BATCH = 500  # examples per batch handed to the peer packages


@dataclass(frozen=True)
class AttributionOptions:
    """The methods' own settings: how many runs' last weights TRAK and the influence function
    use (None: all), TRAK's projection dimension (None: no projection, for tiny networks) and
    the ridge λ it adds to XᵀX (traker's ``lambda_reg``), the influence function's damping (None: kronfluence's heuristic, 0.1 × the mean eigenvalue),
    the checkpoint epochs TracIn sums over (None: every stored one after training began), and
    the projection's seed."""

    models: int | None = None
    trak_proj_dim: int | None = 512
    trak_ridge: float = 0.0
    influence_damping: float | None = None
    epochs: Sequence[int] | None = None
    seed: int = 0


@dataclass(frozen=True)
class _Data:
    runs: FullRuns
    train_images: np.ndarray  # as given, in [0, 1]
    test_images: np.ndarray
    x: torch.Tensor  # standardised training images
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    options: AttributionOptions

    def models(self) -> range:
        count = self.runs.n_runs if self.options.models is None else self.options.models
        if not 1 <= count <= self.runs.n_runs:
            raise ValueError(f"models must be within 1..{self.runs.n_runs} (the runs trained); got {count}")
        return range(count)


#: A method: (data) -> ((n_train, n_test) scores, runs whose training it needs, the last epoch it needs).
Method = Callable[[_Data], tuple[torch.Tensor, int, int]]


def cosine_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)) cosine similarities of flattened rows (0 for an all-zero row)."""
    a, b = (F.normalize(t.flatten(1).double(), dim=1) for t in (a, b))
    return a @ b.T


def _nn_input(data: _Data) -> tuple[torch.Tensor, int, int]:
    return cosine_similarity(torch.as_tensor(data.train_images), torch.as_tensor(data.test_images)), 0, 0


def penultimate_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the model's last ``nn.Linear`` layer receives."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ValueError(f"nn_features needs a network whose last layer is nn.Linear; {type(model).__name__} has none")
    seen: list[torch.Tensor] = []
    handle = last[-1].register_forward_hook(lambda _m, args, _out: seen.append(args[0]))
    try:
        with torch.no_grad():
            for start in range(0, len(x), BATCH):
                model(x[start : start + BATCH])
    finally:
        handle.remove()
    return torch.cat(seen)


def _nn_features(data: _Data) -> tuple[torch.Tensor, int, int]:
    model = data.runs.model(0)
    train, test = (penultimate_features(model, x) for x in (data.x, data.x_test))
    return cosine_similarity(train, test), 1, data.runs.epochs


def _tracin(data: _Data) -> tuple[torch.Tensor, int, int]:
    runs, smoothing = data.runs, data.runs.config.label_smoothing
    epochs = scored_epochs(runs, data.options.epochs)
    total = torch.zeros(len(data.y), len(data.y_test), dtype=torch.float64)
    for run in range(runs.n_runs):
        for epoch in epochs:
            position = runs.checkpoint_at(epoch)
            model = runs.model(run, position)
            train, test = (gradient_features(model, x, y, label_smoothing=smoothing) for x, y in ((data.x, data.y), (data.x_test, data.y_test)))
            total += runs.checkpoint_lr(position) * train.dot(test).double()
    return total / runs.n_runs, runs.n_runs, epochs[-1]


def _trak(data: _Data) -> tuple[torch.Tensor, int, int]:
    from trak import TRAKer  # noqa: PLC0415 - a peer package, optional

    runs, models = data.runs, data.models()
    template = runs.model(0)
    projector = _trak_projector(sum(p.numel() for p in template.parameters()), data.options, runs.config.dtype)
    with tempfile.TemporaryDirectory() as save_dir:
        traker = TRAKer(
            model=template, task="image_classification", train_set_size=len(data.y), save_dir=save_dir, device="cpu",
            projector=projector, use_half_precision=False, logging_level=logging.ERROR, lambda_reg=data.options.trak_ridge,
        )
        for run in models:
            traker.load_checkpoint(runs.checkpoints[run][-1], model_id=run)
            for start in range(0, len(data.y), BATCH):
                batch = (data.x[start : start + BATCH], data.y[start : start + BATCH])
                traker.featurize(batch=batch, num_samples=len(batch[1]))
        traker.finalize_features()
        for run in models:
            traker.start_scoring_checkpoint(exp_name="longtail", checkpoint=runs.checkpoints[run][-1], model_id=run, num_targets=len(data.y_test))
            for start in range(0, len(data.y_test), BATCH):
                batch = (data.x_test[start : start + BATCH], data.y_test[start : start + BATCH])
                traker.score(batch=batch, num_samples=len(batch[1]))
        scores = torch.as_tensor(np.array(traker.finalize_scores(exp_name="longtail"), dtype=np.float64))
    return scores, len(models), runs.epochs


def _trak_projector(n_params: int, options: AttributionOptions, dtype: torch.dtype):
    """traker's CPU projector (Gaussian, generated in blocks), or its no-op one when
    ``trak_proj_dim`` is None."""
    from trak.projectors import BasicProjector, NoOpProjector, ProjectionType  # noqa: PLC0415

    dim, device = options.trak_proj_dim, torch.device("cpu")
    if dim is None:
        return NoOpProjector(grad_dim=n_params, proj_dim=0, seed=options.seed, proj_type=ProjectionType.normal, device=device)
    # block_size < proj_dim: with a single block, traker 0.3.2's BasicProjector frees its matrix in
    # finalize_features and then fails in score() ("'BasicProjector' object has no attribute 'proj_matrix'")
    return BasicProjector(
        grad_dim=n_params, proj_dim=dim, seed=options.seed, proj_type=ProjectionType.normal, device=device,
        block_size=max(1, (dim + 1) // 2), dtype=dtype,
    )


def _influence_function(data: _Data) -> tuple[torch.Tensor, int, int]:
    from kronfluence.analyzer import Analyzer, prepare_model  # noqa: PLC0415 - a peer package, optional
    from kronfluence.arguments import FactorArguments, ScoreArguments  # noqa: PLC0415
    from torch.utils.data import TensorDataset  # noqa: PLC0415

    task = _kronfluence_task(data.runs.config.label_smoothing, data.options.seed)
    train, test = TensorDataset(data.x, data.y), TensorDataset(data.x_test, data.y_test)
    total = torch.zeros(len(data.y), len(data.y_test), dtype=torch.float64)
    models = data.models()
    for run in models:
        model = prepare_model(data.runs.model(run), task)
        with tempfile.TemporaryDirectory() as output_dir:
            analyzer = Analyzer(
                analysis_name="longtail", model=model, task=task, cpu=True, output_dir=output_dir,
                disable_tqdm=True, disable_model_save=True, log_level=logging.ERROR,
            )
            analyzer.fit_all_factors(factors_name="ekfac", dataset=train, per_device_batch_size=BATCH, factor_args=FactorArguments(strategy="ekfac"))
            analyzer.compute_pairwise_scores(
                scores_name="pairs", factors_name="ekfac", query_dataset=test, train_dataset=train,
                per_device_query_batch_size=BATCH, per_device_train_batch_size=BATCH,
                score_args=ScoreArguments(damping_factor=data.options.influence_damping),
            )
            total += analyzer.load_pairwise_scores("pairs")["all_modules"].T.double()
    return total / len(models), len(models), data.runs.epochs


def _kronfluence_task(label_smoothing: float, seed: int):
    """kronfluence's Task for classification: the training loss (with labels drawn from the
    model, by a generator seeded with ``seed``, for the true Fisher when ``sample``) and the
    test example's loss as the measurement."""
    from kronfluence.task import Task  # noqa: PLC0415

    generator = torch.Generator().manual_seed(seed)

    class Classification(Task):
        def compute_train_loss(self, batch, model, sample=False):  # noqa: ANN001, ANN202, FBT002 - kronfluence's signature
            inputs, labels = batch
            logits = model(inputs)
            if sample:
                with torch.no_grad():
                    labels = torch.multinomial(logits.detach().softmax(-1), 1, generator=generator).flatten()
            return F.cross_entropy(logits, labels, reduction="sum", label_smoothing=label_smoothing)

        def compute_measurement(self, batch, model):  # noqa: ANN001, ANN202
            inputs, labels = batch
            return F.cross_entropy(model(inputs), labels, reduction="sum", label_smoothing=label_smoothing)

    return Classification()


_METHODS: dict[str, Method] = {
    "trak": _trak,
    "tracin": _tracin,
    "influence_function": _influence_function,
    "nn_features": _nn_features,
    "nn_input": _nn_input,
}


def check_peers(methods: Sequence[str]) -> None:
    """ImportError, before anything is computed, when a requested method's package is missing."""
    for method in methods:
        if method in PEER_MODULES:
            try:
                importlib.import_module(PEER_MODULES[method])
            except ImportError as error:
                raise ImportError(f"method {method!r} needs the {PEER_MODULES[method]!r} package ({error}); install the peers extra: pip install -e '.[peers]'") from error


def top_same_class_pairs(scores: np.ndarray, train_labels: np.ndarray, test_labels: np.ndarray, per_test: int) -> pd.DataFrame:
    """Each test example's ``per_test`` highest-scored training examples of its own class (all
    of them where the class has fewer), from (n_train, n_test) ``scores``: ``PAIR_COLUMNS``,
    sorted by test example, then score from the highest."""
    if per_test < 1:
        raise ValueError(f"per_test must be >= 1; got {per_test}")
    parts = []
    for label in np.unique(test_labels):
        train_rows, test_cols = np.flatnonzero(train_labels == label), np.flatnonzero(test_labels == label)
        if not len(train_rows):
            continue
        block = scores[np.ix_(train_rows, test_cols)]
        k = min(per_test, len(train_rows))
        top = np.argpartition(-block, k - 1, axis=0)[:k]  # (k, n_test of this class)
        parts.append(
            pd.DataFrame(
                {
                    "train_index": train_rows[top].T.ravel(),
                    "test_index": np.repeat(test_cols, k),
                    "score": np.take_along_axis(block, top, 0).T.ravel(),
                }
            )
        )
    pairs = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({c: [] for c in PAIR_COLUMNS})
    return pairs.sort_values(["test_index", "score"], ascending=[True, False], kind="stable", ignore_index=True)[list(PAIR_COLUMNS)]


def influence_approximations(
    runs: FullRuns,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    methods: Sequence[str],
    *,
    per_test: int = 20,
    subset_model_seconds: float,
    subset_ratio: float,
    study_epochs: int | None = None,
    options: AttributionOptions | None = None,
) -> list[InfluenceEstimate]:
    """One :class:`InfluenceEstimate` per method (``INFLUENCE_METHODS``), in order: each test
    example's ``per_test`` highest-scored training examples of its class. Images in [0, 1]; the
    training split is the one the ``runs`` were trained on. Cost as in ``memorization_proxies``."""
    check_methods(methods, INFLUENCE_METHODS)
    check_peers(methods)
    check_training_data(runs, train_images, train_labels)
    if np.shape(test_labels) != (len(test_images),):
        raise ValueError(f"test_labels must be ({len(test_images)},); got shape {np.shape(test_labels)}")
    budget = Budget(subset_model_seconds, subset_ratio, study_epochs)
    train_labels, test_labels = np.asarray(train_labels, dtype=np.int64), np.asarray(test_labels, dtype=np.int64)
    data = _Data(
        runs, np.asarray(train_images), np.asarray(test_images), runs.standardise(train_images), torch.as_tensor(train_labels),
        runs.standardise(test_images), torch.as_tensor(test_labels), options or AttributionOptions(),
    )
    estimates = []
    for method in methods:
        started = time.perf_counter()
        scores, n_runs, last_epoch = _METHODS[method](data)
        pairs = top_same_class_pairs(scores.numpy(), train_labels, test_labels, per_test)
        cost, seconds = budget.cost(runs, last_epoch, time.perf_counter() - started, n_runs=n_runs)
        estimates.append(InfluenceEstimate(method, pairs, cost, seconds))
    return estimates
