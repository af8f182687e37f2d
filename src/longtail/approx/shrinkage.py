"""Empirical-Bayes shrinkage of success rates: a beta prior fitted to many binomial counts by
the method of moments, and each count's posterior mean under it.

Each group i has ``s_i`` successes in ``n_i`` trials with its own rate ``p_i ~ Beta(α, β)``
(the beta-binomial model). With prior mean ``μ = α / (α + β)`` and intra-class correlation
``ρ = 1 / (α + β + 1)``, the observed rate ``p̂_i = s_i / n_i`` has

    E[p̂_i] = μ,   Var[p̂_i] = μ (1 − μ) (ρ + (1 − ρ) / n_i),

so the sample mean and variance of the p̂_i give μ and ρ (Kleinman 1973's unweighted
estimator). The posterior mean ``(s_i + α) / (n_i + α + β)`` moves each p̂_i toward μ, the
more the fewer trials it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The smallest overdispersion ρ a fit returns (a prior of at most 10⁶ pseudo-trials): where
#: the rates spread no more than binomial noise, the moment estimate is ≤ 0, a point mass that
#: would give every group the same posterior; at 10⁻⁶ the posterior still orders groups by
#: their excess successes.
MIN_OVERDISPERSION = 1e-6


@dataclass(frozen=True)
class BetaPrior:
    """Beta(α, β), elementwise over arrays of priors."""

    alpha: np.ndarray
    beta: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        return self.alpha / (self.alpha + self.beta)


def fit_beta_prior(successes: np.ndarray, trials: np.ndarray, axis: int = 0) -> BetaPrior:
    """The method-of-moments beta prior of the rates ``successes / trials`` along ``axis``
    (the arrays broadcast together; groups with no trial are left out). NaN where fewer than
    two groups have a trial."""
    successes, trials = np.broadcast_arrays(np.asarray(successes, np.float64), np.asarray(trials, np.float64))
    observed = trials > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(observed, successes / trials, np.nan)
        inverse_trials = np.where(observed, 1.0 / trials, np.nan)
    counted = observed.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(rate, axis=axis) / counted
        spread = np.nansum((rate - np.expand_dims(mean, axis)) ** 2, axis=axis) / (counted - 1)
        noise = np.nansum(inverse_trials, axis=axis) / counted  # mean of 1 / n_i
        binomial = mean * (1 - mean)
        rho = (np.where(binomial > 0, spread / binomial, 0.0) - noise) / (1 - noise)
    rho = np.where(noise < 1, rho, MIN_OVERDISPERSION)  # one trial each: ρ cannot be told from noise
    rho = np.clip(rho, MIN_OVERDISPERSION, 1 - MIN_OVERDISPERSION)
    strength = np.where(counted >= 2, 1 / rho - 1, np.nan)
    return BetaPrior(mean * strength, (1 - mean) * strength)


def posterior_mean(successes: np.ndarray, trials: np.ndarray, prior: BetaPrior) -> np.ndarray:
    """``(s + α) / (n + α + β)``: the prior mean without trials, ``s / n`` under the flat
    (Haldane) prior α = β = 0, and the same as ``n`` grows."""
    successes, trials = np.asarray(successes, np.float64), np.asarray(trials, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (successes + prior.alpha) / (trials + prior.alpha + prior.beta)
