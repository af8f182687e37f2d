"""Memorization proxies: known answers on hand-made inputs and brute-force loops on the runs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from longtail.approx.dynamics import (
    MEMORIZATION_METHODS,
    ProxyOptions,
    curvature,
    el2n,
    forgetting_events,
    memorization_proxies,
)
from longtail.nets.models import build_model
from tests.approx.conftest import loop_grads

BUDGET = {"subset_model_seconds": 0.5, "subset_ratio": 0.7}


def _loop_forgetting(correct: np.ndarray) -> np.ndarray:
    runs, epochs, n = correct.shape
    counts = np.zeros((runs, n), dtype=int)
    for r, i in itertools.product(range(runs), range(n)):
        if not correct[r, :, i].any():
            counts[r, i] = epochs
            continue
        for e in range(1, epochs):
            if correct[r, e - 1, i] and not correct[r, e, i]:
                counts[r, i] += 1
    return counts


def test_forgetting_counts_right_to_wrong_and_never_learned_highest():
    hand = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 1, 1], [1, 1, 0, 1]], dtype=bool).T[None]  # (1 run, 4 epochs, 4 examples)
    np.testing.assert_array_equal(forgetting_events(hand), [[2, 4, 0, 1]])
    random = np.random.default_rng(0).random((3, 6, 50)) < 0.6
    np.testing.assert_array_equal(forgetting_events(random), _loop_forgetting(random))


def test_el2n_is_the_distance_of_softmax_from_the_one_hot_label():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]], dtype=torch.float64)  # softmax (1/2, 1/2), (3/4, 1/4)
    np.testing.assert_allclose(el2n(logits, torch.tensor([0, 1])), [math.sqrt(0.5), math.sqrt(2 * 0.75**2)])


def test_proxies_from_the_runs_match_loops_over_examples(digits, runs):
    x, y, _, _ = digits
    grand, tracin_self, speed, forgetting = memorization_proxies(runs, x, y, ["grand", "tracin_self", "learning_speed", "forgetting"], **BUDGET)
    xs, ys = runs.standardise(x), torch.as_tensor(y)
    norms = {(r, e): (loop_grads(runs.model(r, runs.checkpoint_at(e)), xs, ys) ** 2).sum(1).numpy() for r in range(2) for e in (1, 2)}
    np.testing.assert_allclose(grand.score, np.mean([np.sqrt(norms[r, 1]) for r in range(2)], 0), rtol=1e-4)
    self_influence = np.mean([sum(runs.epoch_lr[e - 1] * norms[r, e] for e in (1, 2)) for r in range(2)], 0)
    np.testing.assert_allclose(tracin_self.score, self_influence, rtol=1e-4)
    np.testing.assert_allclose(speed.score, 1 - runs.epoch_true_prob.mean((0, 1)), rtol=1e-6)
    np.testing.assert_allclose(forgetting.score, _loop_forgetting(runs.epoch_correct).mean(0))


def test_el2n_is_read_at_the_early_checkpoint(digits, runs):
    x, y, _, _ = digits
    (early,) = memorization_proxies(runs, x, y, ["el2n"], **BUDGET)
    (later,) = memorization_proxies(runs, x, y, ["el2n"], **BUDGET, options=ProxyOptions(early_epoch=2))
    for estimate, epoch in ((early, 1), (later, 2)):
        with torch.no_grad():
            probs = [runs.model(r, runs.checkpoint_at(epoch))(runs.standardise(x)).softmax(1).numpy() for r in range(2)]
        by_hand = np.mean([np.linalg.norm(p - np.eye(10)[y], axis=1) for p in probs], 0)
        np.testing.assert_allclose(estimate.score, by_hand, rtol=1e-5)
    assert early.cost_models < later.cost_models  # half the training


def test_curvature_estimates_the_squared_input_hessian_trace(digits):
    x, y, _, _ = digits
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, (16,)).double().eval()
    xs, ys = torch.as_tensor(x[:4], dtype=torch.float64), torch.as_tensor(y[:4])
    step = 1e-4
    score = curvature(model, xs, ys, probes=3000, step=step, generator=torch.Generator().manual_seed(0))
    for i in range(4):
        hessian = torch.autograd.functional.hessian(lambda v: F.cross_entropy(model(v.view(1, 1, 8, 8)), ys[i : i + 1]), xs[i].flatten())
        assert score[i] == pytest.approx(step**2 * (hessian**2).sum().item(), rel=0.1)


def test_every_proxy_scores_every_example_and_reports_its_cost(digits, runs):
    x, y, _, _ = digits
    estimates = memorization_proxies(runs, x, y, MEMORIZATION_METHODS, **BUDGET, options=ProxyOptions(curvature_probes=2))
    assert [e.method for e in estimates] == list(MEMORIZATION_METHODS)
    for estimate in estimates:
        assert estimate.score.shape == (len(y),) and np.isfinite(estimate.score).all()
        assert estimate.cost_models > 2 / 0.7 / 2 and estimate.seconds > 0  # at least one epoch of both runs
    # the hardest examples by self-influence are rarely right at the end of training
    hardest = np.argsort(-estimates[-1].score)[:20]
    assert runs.epoch_correct[:, -1, hardest].mean() < runs.epoch_correct[:, -1].mean()


def test_unknown_methods_and_foreign_data_are_refused(digits, runs):
    x, y, _, _ = digits
    with pytest.raises(ValueError, match="unknown method 'loss'; allowed: learning_speed, forgetting, el2n"):
        memorization_proxies(runs, x, y, ["el2n", "loss"], **BUDGET)
    with pytest.raises(ValueError, match="trained on 300 examples; got 299 images"):
        memorization_proxies(runs, x[1:], y[1:], ["el2n"], **BUDGET)
    with pytest.raises(ValueError, match=r"no weights stored at epoch 5; stored: \[0, 1, 2\]"):
        memorization_proxies(runs, x, y, ["grand"], **BUDGET, options=ProxyOptions(early_epoch=5))
