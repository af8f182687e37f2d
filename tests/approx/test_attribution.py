"""Influence approximations: known answers (duplicates), brute-force gradient dot products,
the TRAK estimator written out from its definition, and the influence function's closed form."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from longtail.approx.attribution import INFLUENCE_METHODS, AttributionOptions, influence_approximations, top_same_class_pairs
from longtail.approx.result import PAIR_COLUMNS
from longtail.approx.runs import train_full_runs
from tests.approx.conftest import CONFIG, loop_grads

BUDGET = {"subset_model_seconds": 0.5, "subset_ratio": 0.7}


def _needs(package: str):
    return pytest.mark.skipif(importlib.util.find_spec(package) is None, reason=f"{package} is not installed (pip install -e '.[peers]')")


def _all_pairs(estimate, n_train: int) -> pd.DataFrame:
    assert list(estimate.pairs.columns) == list(PAIR_COLUMNS)
    return estimate.pairs.set_index(["train_index", "test_index"])["score"]


def _same_class_scores(pairs: pd.Series, full: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    train, test = (pairs.index.get_level_values(name).to_numpy() for name in ("train_index", "test_index"))
    return pairs.to_numpy(), full[train, test]


def test_top_pairs_are_each_test_examples_best_same_class_training_examples():
    rng = np.random.default_rng(0)
    scores = rng.random((40, 7))
    train_labels, test_labels = rng.integers(0, 3, 40), np.array([0, 1, 2, 0, 1, 2, 2])
    pairs = top_same_class_pairs(scores, train_labels, test_labels, per_test=5)
    for j in range(7):
        same = np.flatnonzero(train_labels == test_labels[j])
        best = same[np.argsort(-scores[same, j])[:5]]
        chosen = pairs[pairs["test_index"] == j]
        np.testing.assert_array_equal(chosen["train_index"], best)
        np.testing.assert_allclose(chosen["score"], scores[best, j])
    few = top_same_class_pairs(scores, np.where(np.arange(40) < 3, 0, 1), np.array([0]), per_test=5)
    np.testing.assert_array_equal(np.sort(few["train_index"]), [0, 1, 2])  # a class with fewer than 5: all of them


def test_an_exact_duplicate_is_its_test_examples_nearest_neighbour_with_score_one(digits, runs):
    x, y, x_test, y_test = digits
    x = x.copy()
    x[17] = x_test[4]  # the runs trained on the original x: nn_features reads their weights only
    y = y.copy()
    y[17] = y_test[4]
    nn_input, nn_features = influence_approximations(runs, x, y, x_test, y_test, ["nn_input", "nn_features"], per_test=3, **BUDGET)
    for estimate in (nn_input, nn_features):
        top = estimate.pairs[estimate.pairs["test_index"] == 4].iloc[0]
        assert top["train_index"] == 17 and top["score"] == pytest.approx(1.0, abs=1e-9)
        assert (estimate.pairs.groupby("test_index").size() == 3).all()
    assert nn_input.cost_models < 1 < nn_features.cost_models  # no training against one full run


def test_tracin_pairs_are_learning_rate_weighted_gradient_dot_products(digits, runs):
    x, y, x_test, y_test = digits
    (tracin,) = influence_approximations(runs, x, y, x_test, y_test, ["tracin"], per_test=len(y), **BUDGET)
    xs, ys, xt, yt = runs.standardise(x), torch.as_tensor(y), runs.standardise(x_test), torch.as_tensor(y_test)
    full = np.zeros((len(y), len(y_test)))
    for run in range(2):
        for epoch in (1, 2):
            model = runs.model(run, runs.checkpoint_at(epoch))
            full += runs.epoch_lr[epoch - 1] * (loop_grads(model, xs, ys) @ loop_grads(model, xt, yt).T).numpy() / 2
    ours, brute = _same_class_scores(_all_pairs(tracin, len(y)), full)
    assert len(ours) == sum((y == label).sum() * (y_test == label).sum() for label in range(10))
    np.testing.assert_allclose(ours, brute, rtol=1e-3, atol=1e-5 * np.abs(brute).max())


def test_unknown_methods_are_refused(digits, runs):
    x, y, x_test, y_test = digits
    with pytest.raises(ValueError, match="unknown method 'datamodels'; allowed: trak, tracin, influence_function"):
        influence_approximations(runs, x, y, x_test, y_test, ["datamodels"], **BUDGET)


def test_a_missing_peer_package_stops_the_call_before_any_method_runs(digits, runs, monkeypatch):
    x, y, x_test, y_test = digits
    monkeypatch.setitem(sys.modules, "kronfluence", None)  # import kronfluence raises ImportError
    with pytest.raises(ImportError, match=r"method 'influence_function' needs the 'kronfluence' package .*pip install -e '\.\[peers\]'"):
        influence_approximations(runs, x, y, x_test, y_test, ["nn_input", "influence_function"], **BUDGET)


@pytest.fixture(scope="module")
def linear():
    """A logistic regression (the mlp without hidden layers: 8 inputs, 3 classes, 27 weights) on
    Gaussian inputs with noisy linear labels, trained for 2 epochs by two runs."""
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 0.2, (150, 1, 2, 4)).astype(np.float32)
    y = (x.reshape(150, -1) @ rng.normal(size=(8, 3)) + rng.normal(0, 0.3, (150, 3))).argmax(1)
    runs = train_full_runs(x[:120], y[:120], replace(CONFIG, hidden_sizes=()), 2, n_classes=3)
    return runs, x[:120], y[:120], x[120:], y[120:]


def _margin_grads(model, x, y) -> torch.Tensor:
    """(n, parameters): ∇θ of logit_y − logsumexp(other logits), one example at a time."""
    rows = []
    for i in range(len(x)):
        logits = model(x[i : i + 1])[0]
        others = torch.cat([logits[: y[i]], logits[y[i] + 1 :]])
        margin = logits[y[i]] - others.logsumexp(0)
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(margin, list(model.parameters()))]))
    return torch.stack(rows).double()


@_needs("trak")
def test_trak_scores_follow_the_estimators_definition(linear):
    runs, x, y, x_test, y_test = linear
    # traker's no-op projector: exact gradients, whose XᵀX is singular (softmax ignores a shift
    # of all logits), hence the ridge
    options = AttributionOptions(trak_proj_dim=None, trak_ridge=1e-3)
    (trak,) = influence_approximations(runs, x, y, x_test, y_test, ["trak"], per_test=len(y), options=options, **BUDGET)
    xs, ys, xt, yt = runs.standardise(x), torch.as_tensor(y), runs.standardise(x_test), torch.as_tensor(y_test)
    scores, weights = [], []
    for run in range(2):
        model = runs.model(run)
        n_params = sum(p.numel() for p in model.parameters())
        train, test = (_margin_grads(model, a, b) / np.sqrt(n_params) for a, b in ((xs, ys), (xt, yt)))
        inverse = torch.linalg.inv(train.T @ train + 1e-3 * torch.eye(n_params, dtype=torch.float64))
        inverse /= inverse.abs().mean()  # traker's normalisation of (XᵀX)⁻¹
        scores.append((train @ inverse @ test.T).numpy())
        with torch.no_grad():
            weights.append(1 - model(xs).softmax(1)[torch.arange(len(y)), ys].double().numpy())  # Q = 1 − p
    full = np.mean(scores, 0) * np.mean(weights, 0)[:, None]
    ours, brute = _same_class_scores(_all_pairs(trak, len(y)), full)
    np.testing.assert_allclose(ours, brute, rtol=2e-3, atol=1e-4 * np.abs(brute).max())


@_needs("kronfluence")
def test_influence_function_approaches_the_damped_gauss_newton_inverse(linear):
    runs, x, y, x_test, y_test = linear
    damping = 1e-2
    options = AttributionOptions(influence_damping=damping, models=1)
    (estimate,) = influence_approximations(runs, x, y, x_test, y_test, ["influence_function"], per_test=len(y), options=options, **BUDGET)
    model = runs.model(0)
    xs, ys, xt, yt = runs.standardise(x), torch.as_tensor(y), runs.standardise(x_test), torch.as_tensor(y_test)
    with torch.no_grad():
        probs = model(xs).softmax(1).double()
    a = torch.cat([xs.flatten(1).double(), torch.ones(len(y), 1, dtype=torch.float64)], 1)  # [input, 1]
    # Gauss-Newton of the mean loss of a linear softmax model: mean of (diag p − p pᵀ) ⊗ a aᵀ, in (weight | bias) order
    blocks = [torch.kron(torch.diag(p) - torch.outer(p, p), torch.outer(ai, ai)) for p, ai in zip(probs, a)]
    gn = torch.stack(blocks).mean(0)
    order = torch.cat([torch.arange(3 * 9).view(3, 9)[:, :8].flatten(), torch.arange(3 * 9).view(3, 9)[:, 8]])
    gn = gn[order][:, order]  # rows in the parameters' order: the 3x8 weight, then the 3 biases
    g_train, g_test = loop_grads(model, xs, ys), loop_grads(model, xt, yt)
    full = (g_train @ torch.linalg.solve(gn + damping * torch.eye(27, dtype=torch.float64), g_test.T)).numpy()
    ours, exact = _same_class_scores(_all_pairs(estimate, len(y)), full)
    assert np.corrcoef(ours, exact)[0, 1] > 0.9
