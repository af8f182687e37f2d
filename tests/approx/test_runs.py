"""train_full_runs trains the project's own models and records what the proxies read."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from longtail.approx.runs import Budget, train_full_runs
from longtail.nets import train_ensemble
from longtail.nets.loop import init_model, lr_at
from tests.approx.conftest import CONFIG


def test_the_runs_are_the_trainers_full_data_models(digits, runs):
    x, y, _, _ = digits
    trained = train_ensemble(
        x, y, np.ones((2, len(y)), dtype=bool), np.arange(2), replace(CONFIG, seed=3, keep_models=True, record_epochs=True), 10,
        {"train": (x, y)},
    )
    for run in range(2):
        for name, tensor in trained.state_dicts[run].items():
            torch.testing.assert_close(runs.checkpoints[run][-1][name], tensor)
        initial = init_model(replace(CONFIG, seed=3), run, (1, 8, 8), 10).state_dict()
        for name, tensor in initial.items():
            torch.testing.assert_close(runs.checkpoints[run][0][name], tensor)
    np.testing.assert_array_equal(runs.epoch_correct, trained.epoch_correct["train"])
    np.testing.assert_allclose(runs.epoch_true_prob, trained.epoch_true_prob["train"], rtol=1e-6)


def test_each_checkpoint_classifies_as_recorded_at_the_end_of_its_epoch(digits, runs):
    x, y, _, _ = digits
    for run in range(runs.n_runs):
        for position, epoch in enumerate(runs.checkpoint_epochs):
            if epoch == 0:
                continue
            with torch.no_grad():
                probs = runs.model(run, position)(runs.standardise(x)).softmax(1)
            np.testing.assert_array_equal(probs.argmax(1).numpy() == y, runs.epoch_correct[run, epoch - 1])
            np.testing.assert_allclose(probs[np.arange(len(y)), y].numpy(), runs.epoch_true_prob[run, epoch - 1], rtol=1e-5)


def test_epoch_learning_rates_average_the_schedules_steps(digits):
    x, y, _, _ = digits
    config = replace(CONFIG, schedule="linear", epochs=3, batch_size=100)
    runs = train_full_runs(x[:200], y[:200], config, 1, checkpoint_epochs=[3])
    steps = [lr_at(config, step, 6) for step in range(6)]  # 2 steps per epoch
    np.testing.assert_allclose(runs.epoch_lr, [np.mean(steps[0:2]), np.mean(steps[2:4]), np.mean(steps[4:6])])
    assert runs.checkpoint_lr(0) == pytest.approx(np.mean(steps[4:6]))


@pytest.mark.parametrize(
    ("n_runs", "epochs", "message"),
    [(9, None, "n_runs must be within 1..8; got 9"), (0, None, "got 0"), (1, [3], "within 0..2"), (1, [], "non-empty")],
)
def test_bad_requests_stop_before_training(digits, n_runs, epochs, message):
    x, y, _, _ = digits
    with pytest.raises(ValueError, match=message):
        train_full_runs(x, y, CONFIG, n_runs, checkpoint_epochs=epochs)


def test_cost_counts_full_data_runs_by_ratio_and_epochs_and_passes_by_time(runs):
    budget = Budget(subset_model_seconds=2.0, subset_ratio=0.5, study_epochs=4)
    cost, seconds = budget.cost(runs, 1, 3.0)
    training = (runs.train_seconds - runs.record_seconds) / 2  # half of the epochs
    assert cost == pytest.approx(2 / 0.5 * 1 / 4 + 3.0 / 2.0)
    assert seconds == pytest.approx(training + 3.0)
    one_run, _ = budget.cost(runs, 2, 0.0, n_runs=1, records=True)
    assert one_run == pytest.approx(1 / 0.5 * 2 / 4 + runs.record_seconds / 2 / 2.0)
    assert budget.cost(runs, 0, 4.0) == pytest.approx((2.0, 4.0))


@pytest.mark.parametrize(("seconds", "ratio", "message"), [(0, 0.7, "subset_model_seconds must be > 0; got 0"), (1, 1.5, r"subset_ratio must be in \(0, 1\]; got 1.5")])
def test_budget_rejects_impossible_units(seconds, ratio, message):
    with pytest.raises(ValueError, match=message):
        Budget(seconds, ratio)
