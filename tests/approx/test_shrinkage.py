"""The beta prior fitted by moments, and the shrinkage it gives: known priors recovered, the
posterior between the raw rate and the prior mean, the raw rate where the prior is flat or the
counts huge."""

from __future__ import annotations

import numpy as np
import pytest

from longtail.approx.shrinkage import MIN_OVERDISPERSION, BetaPrior, fit_beta_prior, posterior_mean


def test_a_known_beta_prior_is_recovered_from_unequal_counts() -> None:
    rng = np.random.default_rng(0)
    trials = rng.integers(3, 40, 200_000)
    successes = rng.binomial(trials, rng.beta(2.0, 5.0, trials.size))
    prior = fit_beta_prior(successes, trials)
    assert prior.alpha == pytest.approx(2.0, rel=0.05) and prior.beta == pytest.approx(5.0, rel=0.05)


def test_priors_are_fitted_per_column_and_groups_without_trials_are_left_out() -> None:
    rng = np.random.default_rng(1)
    trials = rng.integers(5, 30, (50_000, 1))
    successes = np.column_stack([rng.binomial(trials[:, 0], rng.beta(a, b, len(trials))) for a, b in ((1, 1), (8, 2))])
    empty = np.zeros((1000, 1), dtype=int)  # no trial: no information, and no effect on the fit
    prior = fit_beta_prior(np.vstack([successes, np.zeros((1000, 2), int)]), np.vstack([trials, empty]), axis=0)
    np.testing.assert_allclose(prior.alpha, [1, 8], rtol=0.08)
    np.testing.assert_allclose(prior.beta, [1, 2], rtol=0.08)


def test_the_moment_estimate_written_out_by_hand() -> None:
    successes, trials = np.array([0, 3, 5, 9, 2]), np.array([4, 5, 10, 10, 3])
    rate = successes / trials
    mean, spread = rate.mean(), rate.var(ddof=1)
    noise = np.mean(1 / trials)
    rho = (spread / (mean * (1 - mean)) - noise) / (1 - noise)
    prior = fit_beta_prior(successes, trials)
    assert prior.mean == pytest.approx(mean)
    assert prior.alpha + prior.beta == pytest.approx(1 / rho - 1)


def test_the_posterior_lies_between_the_raw_rate_and_the_prior_mean() -> None:
    rng = np.random.default_rng(2)
    trials = rng.integers(1, 12, 5000)
    successes = rng.binomial(trials, rng.beta(0.5, 0.3, trials.size))
    prior = fit_beta_prior(successes, trials)
    raw, shrunk = successes / trials, posterior_mean(successes, trials, prior)
    assert np.all(np.abs(shrunk - prior.mean) < np.abs(raw - prior.mean) + 1e-12)
    assert np.all((shrunk - prior.mean) * (raw - prior.mean) >= 0)  # never past the prior mean
    # the fewer the trials, the further toward the prior mean
    pulled = np.abs(raw - shrunk) / np.maximum(np.abs(raw - prior.mean), 1e-12)
    assert pulled[trials == 1].mean() > pulled[trials == 11].mean()


def test_a_flat_prior_or_huge_counts_give_the_raw_rate() -> None:
    successes, trials = np.array([0, 3, 7, 10]), np.array([10, 10, 10, 10])
    np.testing.assert_array_equal(posterior_mean(successes, trials, BetaPrior(np.zeros(1), np.zeros(1))), successes / trials)
    prior = BetaPrior(np.array(2.0), np.array(5.0))
    np.testing.assert_allclose(posterior_mean(successes * 10**6, trials * 10**6, prior), successes / trials, atol=1e-6)
    assert posterior_mean(0, 0, prior) == pytest.approx(2 / 7)  # no trial: the prior mean


def test_rates_that_spread_less_than_binomial_noise_get_the_tightest_prior() -> None:
    tightest = 1 / MIN_OVERDISPERSION - 1
    same = fit_beta_prior(np.full(200, 6), np.full(200, 20))  # every rate 0.3: less spread than noise
    assert same.mean == pytest.approx(0.3) and same.alpha + same.beta == pytest.approx(tightest)
    # still an ordering by evidence: one success more moves the posterior up, by ~1e-6
    assert posterior_mean(7, 20, same) > posterior_mean(6, 20, same) > posterior_mean(6, 21, same)
    everyone_right = fit_beta_prior(np.full(50, 20), np.full(50, 20))  # every rate 1: no binomial noise at all
    assert everyone_right.mean == 1 and everyone_right.alpha + everyone_right.beta == pytest.approx(tightest)
    assert np.isnan(fit_beta_prior(np.array([3]), np.array([5])).alpha)  # one group: nothing to fit
