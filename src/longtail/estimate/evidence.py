"""The evidence behind each contrast: intervals, exact p-values and false-discovery q-values.

Every estimate here is a difference of two proportions, ``p_in − p_out``, from two disjoint
groups of models (those that saw a training example and those that did not). Membership is
randomized by construction, so given the memberships the two groups are independent samples:

* **Interval** (0/1 correctness): Newcombe's hybrid score interval for a difference of two
  independent proportions (Newcombe 1998, method 10), built from the two Wilson score
  intervals. Unlike the Wald form it never collapses to a point at p = 0 or 1 (mem = 1 with
  n_out = 3 gets a wide interval, not se 0). ``se`` is its half-width / z.
* **Interval** (soft scores, probabilities in [0, 1]): the normal interval with the sample
  variances of the two groups (Welch's standard error), cut to [−1, 1], where every difference
  of two probabilities lies (with few models it reaches past them). Soft scores get no
  p-value: no exact test is used for them, and they are not used for selection.
* **p-value** (H0: p_in ≤ p_out): the one-sided Fisher exact test on the in/out × right/wrong
  table, i.e. the upper tail of the hypergeometric distribution of the in-group's right count
  given the table's margins. It is exact (valid at every sample size) because membership is
  randomized.
* **q-value**: Benjamini–Yekutieli over all tests made, which controls the false discovery
  rate under any dependence between the tests (pairs sharing a test example or a training
  example are dependent in ways for which Benjamini–Hochberg's positive-dependence condition
  is not established).

Written here rather than taken from a library, for measured or stated reasons: scipy has the
Wilson interval only one proportion at a time (``binomtest(k, n).proportion_ci``) and no
Newcombe interval, and its (vectorized) ``hypergeom.sf`` took 2.1 s per 10⁶ tails where
``hypergeom_upper_tail`` took 1.3 s (``benchmarks/scoring.py --tails 1000000``: 500 models,
tables of random margins; 2-core AMD EPYC; measured before lower tails were summed from
below, which is to be measured again); the q-values are scipy's
``false_discovery_control``. Each is tested against scipy's scalar functions or a brute force.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma, gammaln
from scipy.stats import false_discovery_control

Z_95 = 1.959963984540054  # two-sided 95%: scipy.stats.norm.ppf(0.975)
_TAIL_RELATIVE = 1e-17  # hypergeometric tail terms below this share of the sum are dropped


def wilson(right: np.ndarray, n: np.ndarray, z: float = Z_95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion ``right / n`` (NaN where n is 0)."""
    n = np.where(n > 0, n, np.nan).astype(np.float64)
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(np.maximum(p * (1 - p) / n + z * z / (4 * n * n), 0.0))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def newcombe(
    in_right: np.ndarray, n_in: np.ndarray, out_right: np.ndarray, n_out: np.ndarray, z: float = Z_95
) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval for ``in_right/n_in − out_right/n_out``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p_in = in_right / np.where(n_in > 0, n_in, np.nan)
        p_out = out_right / np.where(n_out > 0, n_out, np.nan)
        lo_in, hi_in = wilson(in_right, n_in, z)
        lo_out, hi_out = wilson(out_right, n_out, z)
        diff = p_in - p_out
        lower = diff - np.sqrt((p_in - lo_in) ** 2 + (hi_out - p_out) ** 2)
        upper = diff + np.sqrt((hi_in - p_in) ** 2 + (p_out - lo_out) ** 2)
    return np.clip(lower, -1.0, 1.0), np.clip(upper, -1.0, 1.0)  # rounding took 1 to 1 + 2e-16


def hypergeom_upper_tail(x: np.ndarray, draws: np.ndarray, successes: np.ndarray, population: np.ndarray) -> np.ndarray:
    """P(X ≥ x) for X ~ Hypergeometric(population, successes, draws), elementwise.

    Equal to ``scipy.stats.hypergeom.sf(x - 1, population, successes, draws)`` (tested, to 1e-9
    on tables of up to 4,000 models). Each tail is summed from its end nearest the mode, where
    its terms are largest, with the pmf's ratio recurrence, vectorized over elements, dropping
    terms below 1e-17 of the sum: P(X ≥ x) itself where x is above the mode, 1 − P(X ≤ x − 1)
    at or below it. (Summing upwards from an x far below the mean starts from a pmf that
    underflows to 0, and gave p = 0 where p is about 1.)
    """
    x, n, k, m = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (x, draws, successes, population)))
    p = np.full(x.shape, np.nan)
    low, high = np.maximum(0, n + k - m), np.minimum(n, k)
    defined = ~(np.isnan(x) | np.isnan(n) | np.isnan(k) | np.isnan(m))
    p[defined & (x <= low)] = 1.0
    p[defined & (x > high)] = 0.0
    todo = np.flatnonzero(defined & (x > low) & (x <= high))
    xs, ns, ks, ms = x[todo], n[todo], k[todo], m[todo]
    below_mode = xs <= np.floor((ns + 1) * (ks + 1) / (ms + 2))
    upper = _tail_from(np.where(below_mode, xs - 1, xs), ns, ks, ms, upwards=~below_mode)
    p[todo] = np.clip(np.where(below_mode, 1.0 - upper, upper), 0.0, 1.0)
    return p


def _tail_from(start: np.ndarray, n: np.ndarray, k: np.ndarray, m: np.ndarray, upwards: np.ndarray) -> np.ndarray:
    """P(X ≥ start) where ``upwards``, else P(X ≤ start), for starts on the far side of the mode
    from their tail's end (so the terms only fall), summed with the pmf's ratio recurrence."""
    x = start.copy()
    end = np.where(upwards, np.minimum(n, k), np.maximum(0, n + k - m))
    term = np.exp(_log_choose(k, x) + _log_choose(m - k, n - x) - _log_choose(m, n))
    tail = term.copy()
    live = np.arange(x.size)
    while live.size:
        xi, ni, ki, mi, up = x[live], n[live], k[live], m[live], upwards[live]
        rise = (ki - xi) * (ni - xi) / ((xi + 1) * (mi - ki - ni + xi + 1))  # pmf(x + 1) / pmf(x)
        fall = xi * (mi - ki - ni + xi) / ((ki - xi + 1) * (ni - xi + 1))  # pmf(x − 1) / pmf(x)
        term[live] *= np.where(xi != end[live], np.where(up, rise, fall), 0.0)
        x[live] += np.where(up, 1.0, -1.0)
        tail[live] += term[live]
        live = live[term[live] > _TAIL_RELATIVE * tail[live]]
    return tail


def _log_choose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)


def fisher_greater(*, in_right: np.ndarray, n_in: np.ndarray, total_right: np.ndarray, n_out: np.ndarray) -> np.ndarray:
    """One-sided Fisher exact p-value of H0: p_in ≤ p_out (NaN where n_in or n_out is 0);
    ``scipy.stats.fisher_exact([[a, n_in − a], [c, n_out − c]], alternative="greater")`` with
    ``in_right = a`` and ``total_right = a + c`` (the right count of both groups together, not
    the out-group's: keyword-only so that it is not read as ``newcombe``'s ``out_right``)."""
    n_in, n_out = np.asarray(n_in, dtype=np.float64), np.asarray(n_out, dtype=np.float64)
    defined = (n_in > 0) & (n_out > 0)
    population = np.where(defined, n_in + n_out, np.nan)
    return hypergeom_upper_tail(in_right, n_in, total_right, population)


def q_values(p: np.ndarray, n_tests: int | None = None) -> np.ndarray:
    """Benjamini–Yekutieli q-values of ``p`` among ``n_tests`` tests in all (default: len(p)).

    Tests made but not in ``p`` count as p = 1: since the procedure is monotone in every
    p-value, leaving out p-values that are in fact smaller only makes the q-values larger
    (conservative). NaN p-values (no test) give NaN. Uses ``scipy.stats.false_discovery_control``
    on the given p-values and rescales it to ``n_tests``.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    tested = ~np.isnan(p)
    given = int(tested.sum())
    n_tests = given if n_tests is None else n_tests
    if n_tests < given:
        raise ValueError(f"n_tests={n_tests} is smaller than the {given} p-values given")
    if given:
        harmonic = digamma(n_tests + 1) + np.euler_gamma  # Σ_{i ≤ n_tests} 1/i, BY's factor
        bh = false_discovery_control(p[tested], method="bh")
        q[tested] = np.minimum(1.0, bh * (n_tests / given) * harmonic)
    return q
