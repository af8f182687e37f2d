"""Memorization proxies from a few full-data training runs (:class:`~longtail.approx.runs.FullRuns`):
scores of how hard each training example is to fit, every one higher = more memorized.

* ``learning_speed`` (Jiang et al. 2021): 1 − the probability of the label averaged over runs and
  the ends of all epochs (``longtail.diagnostics.learning_speed``'s ``mean_true_prob``).
* ``forgetting`` (Toneva et al., ICLR 2019, "An Empirical Study of Example Forgetting during Deep
  Neural Network Learning"): how often an example goes from right to wrong between two
  consecutive epochs' ends, averaged over runs; an example a run never gets right counts
  ``epochs`` (more than any run can forget it, as the paper ranks never-learned examples first).
* ``el2n`` and ``grand`` (Paul et al., NeurIPS 2021, "Deep Learning on a Data Diet"): early in
  training, the L2 norm of softmax − one-hot label, and the L2 norm of the loss gradient with
  respect to all weights, each averaged over runs.
* ``curvature`` (Garg et al. 2024, "Memorization Through the Lens of Curvature of Loss Function
  Around Samples"): the mean of ‖∇ₓℓ(x + h v) − ∇ₓℓ(x)‖² over Rademacher probes v (Hutchinson's
  estimator of h² tr(H²) of the loss's Hessian in input space), averaged over the checkpoints and
  runs; x is the standardised input the network sees.
* ``tracin_self`` (Pruthi et al., NeurIPS 2020, "Estimating Training Data Influence by Tracing
  Gradient Descent"): self-influence Σ_checkpoints lr · ‖∇_θ ℓ‖², averaged over runs.

Cost and seconds count the share of the runs' training that a method needs (up to the last epoch
it reads) plus its own passes (:class:`~longtail.approx.runs.Budget`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from longtail.approx.gradients import gradient_features
from longtail.approx.result import MemorizationEstimate
from longtail.approx.runs import Budget, FullRuns
from longtail.diagnostics import learning_speed

MEMORIZATION_METHODS = ("learning_speed", "forgetting", "el2n", "grand", "curvature", "tracin_self")


@dataclass(frozen=True)
class ProxyOptions:
    """The proxies' own settings: the early epoch of EL2N and GraNd (None: the first stored
    checkpoint after training began), the checkpoint epochs that curvature and self-influence
    average over (None: every stored one after training began), and the curvature probes."""

    early_epoch: int | None = None
    epochs: Sequence[int] | None = None
    curvature_probes: int = 10
    curvature_step: float = 1e-3
    seed: int = 0


@dataclass(frozen=True)
class _Data:
    runs: FullRuns
    x: torch.Tensor  # standardised
    y: torch.Tensor
    options: ProxyOptions


#: A method: (data) -> (score, the last epoch of training it needs, whether it reads the per-epoch records).
Proxy = Callable[[_Data], tuple[np.ndarray, int, bool]]


def check_methods(methods: Sequence[str], allowed: Sequence[str]) -> None:
    """ValueError naming the first unknown method and the allowed ones."""
    for method in methods:
        if method not in allowed:
            raise ValueError(f"unknown method {method!r}; allowed: {', '.join(allowed)}")


def forgetting_events(epoch_correct: np.ndarray) -> np.ndarray:
    """(runs, n): right-to-wrong transitions between consecutive epochs of (runs, epochs, n)
    correctness; ``epochs`` where a run never gets the example right."""
    correct = np.asarray(epoch_correct, dtype=bool)
    events = (correct[:, :-1] & ~correct[:, 1:]).sum(1)
    return np.where(correct.any(1), events, correct.shape[1])


def _learning_speed(data: _Data) -> tuple[np.ndarray, int, bool]:
    table = learning_speed(data.runs.epoch_correct, data.runs.epoch_true_prob)
    return 1.0 - table["mean_true_prob"].to_numpy(), data.runs.epochs, True


def _forgetting(data: _Data) -> tuple[np.ndarray, int, bool]:
    return forgetting_events(data.runs.epoch_correct).mean(0, dtype=np.float64), data.runs.epochs, True


def early_epoch(runs: FullRuns, requested: int | None) -> int:
    """``requested`` if stored, else the first stored checkpoint epoch ≥ 1."""
    if requested is not None:
        runs.checkpoint_at(requested)
        return requested
    trained = [e for e in runs.checkpoint_epochs if e >= 1]
    if not trained:
        raise ValueError(f"the runs store no weights after training began (checkpoint_epochs {list(runs.checkpoint_epochs)})")
    return trained[0]


def scored_epochs(runs: FullRuns, requested: Sequence[int] | None) -> list[int]:
    """The checkpoint epochs a method averages over: ``requested`` (each must be stored) or
    every stored one after training began."""
    epochs = [e for e in runs.checkpoint_epochs if e >= 1] if requested is None else sorted(set(requested))
    for epoch in epochs:
        runs.checkpoint_at(epoch)
    if not epochs:
        raise ValueError(f"no checkpoint epochs to average over; stored: {list(runs.checkpoint_epochs)}")
    return epochs


def el2n(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """‖softmax(logits) − one-hot(label)‖₂ of every row."""
    error = logits.softmax(1) - F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return error.norm(dim=1).double().numpy()


def _el2n(data: _Data) -> tuple[np.ndarray, int, bool]:
    epoch = early_epoch(data.runs, data.options.early_epoch)
    position = data.runs.checkpoint_at(epoch)
    with torch.no_grad():
        scores = [el2n(data.runs.model(run, position)(data.x), data.y) for run in range(data.runs.n_runs)]
    return np.mean(scores, 0), epoch, False


def _grand(data: _Data) -> tuple[np.ndarray, int, bool]:
    epoch = early_epoch(data.runs, data.options.early_epoch)
    position = data.runs.checkpoint_at(epoch)
    smoothing = data.runs.config.label_smoothing
    norms = [
        np.sqrt(gradient_features(data.runs.model(run, position), data.x, data.y, label_smoothing=smoothing).squared_norms())
        for run in range(data.runs.n_runs)
    ]
    return np.mean(norms, 0), epoch, False


def input_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """∇ₓ ℓ(x, y) of every example (each example's loss depends on its own input only)."""
    parts = []
    for start in range(0, len(x), chunk):
        inputs = x[start : start + chunk].clone().requires_grad_(True)
        loss = F.cross_entropy(model(inputs), y[start : start + chunk], reduction="sum")
        parts.append(torch.autograd.grad(loss, inputs)[0])
    return torch.cat(parts)


def curvature(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, probes: int, step: float, generator: torch.Generator) -> np.ndarray:
    """Mean over ``probes`` Rademacher v (one per example and probe) of ‖∇ₓℓ(x + step·v) − ∇ₓℓ(x)‖²."""
    model = model.requires_grad_(False)
    at_x = input_gradients(model, x, y)
    total = torch.zeros(len(x), dtype=torch.float64)
    for _ in range(probes):
        v = torch.randint(0, 2, x.shape, generator=generator).to(x.dtype) * 2 - 1
        total += (input_gradients(model, x + step * v, y) - at_x).flatten(1).double().pow(2).sum(1)
    return (total / probes).numpy()


def _curvature(data: _Data) -> tuple[np.ndarray, int, bool]:
    options, runs = data.options, data.runs
    epochs = scored_epochs(runs, options.epochs)
    generator = torch.Generator().manual_seed(options.seed)
    scores = [
        curvature(runs.model(run, runs.checkpoint_at(epoch)), data.x, data.y, options.curvature_probes, options.curvature_step, generator)
        for run in range(runs.n_runs)
        for epoch in epochs
    ]
    return np.mean(scores, 0), epochs[-1], False


def _tracin_self(data: _Data) -> tuple[np.ndarray, int, bool]:
    runs, smoothing = data.runs, data.runs.config.label_smoothing
    epochs = scored_epochs(runs, data.options.epochs)
    total = np.zeros(len(data.y))
    for run in range(runs.n_runs):
        for epoch in epochs:
            position = runs.checkpoint_at(epoch)
            features = gradient_features(runs.model(run, position), data.x, data.y, label_smoothing=smoothing)
            total += runs.checkpoint_lr(position) * features.squared_norms()
    return total / runs.n_runs, epochs[-1], False


_PROXIES: dict[str, Proxy] = {
    "learning_speed": _learning_speed,
    "forgetting": _forgetting,
    "el2n": _el2n,
    "grand": _grand,
    "curvature": _curvature,
    "tracin_self": _tracin_self,
}


def check_training_data(runs: FullRuns, images: np.ndarray, labels: np.ndarray) -> None:
    n = runs.epoch_correct.shape[2]
    if len(images) != n or np.shape(labels) != (n,):
        raise ValueError(f"the runs were trained on {n} examples; got {len(images)} images and labels of shape {np.shape(labels)}")


def memorization_proxies(
    runs: FullRuns,
    images: np.ndarray,
    labels: np.ndarray,
    methods: Sequence[str],
    *,
    subset_model_seconds: float,
    subset_ratio: float,
    study_epochs: int | None = None,
    options: ProxyOptions | None = None,
) -> list[MemorizationEstimate]:
    """One :class:`MemorizationEstimate` per method (``MEMORIZATION_METHODS``), in order, for the
    training examples ``images`` (in [0, 1]) and ``labels`` the ``runs`` were trained on. The
    study that cost is counted against trains ``study_epochs`` (None: as many as the runs) on
    ``subset_ratio`` of the examples, in ``subset_model_seconds`` per model."""
    check_methods(methods, MEMORIZATION_METHODS)
    check_training_data(runs, images, labels)
    budget = Budget(subset_model_seconds, subset_ratio, study_epochs)
    data = _Data(runs, runs.standardise(images), torch.as_tensor(np.asarray(labels, dtype=np.int64)), options or ProxyOptions())
    estimates = []
    for method in methods:
        started = time.perf_counter()
        score, last_epoch, records = _PROXIES[method](data)
        cost, seconds = budget.cost(runs, last_epoch, time.perf_counter() - started, records=records)
        estimates.append(MemorizationEstimate(method, np.asarray(score, dtype=np.float64), cost, seconds))
    return estimates
